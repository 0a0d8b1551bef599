"""Translates one X timeline response body into a :class:`~syncd.model.Page`; no HTTP.

Pure, so recorded bodies are tested without a client. Posts become interactions, or
quarantined items when unreadable; expanded users become authors; ``meta`` becomes the next
cursor; rate headers become :class:`~syncd.model.RateInfo`. :mod:`connectors.x.client` does
the HTTP.

The contract, on any JSON at all (tests/test_properties.py): a body that is not a timeline
page raises :class:`~syncd.errors.MalformedAnswer` (a TransientError: the pipeline parks a
stream whose answers are unreadable every time) and nothing else escapes; a bad item is
quarantined with its reason and its raw payload, and never costs the rest of the page; what
comes out (ids, text, cursor) can be stored as it is.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeGuard, TypeVar

from syncd.errors import ExternalError, MalformedAnswer, PaginationExpired
from syncd.model import (
    Account,
    Author,
    Cursor,
    Direction,
    Interaction,
    JsonObject,
    Page,
    Quarantined,
    RateInfo,
    Reads,
    Stream,
)

__all__ = ["NETWORK", "TIMELINE_HORIZONS", "parse_lookup", "parse_page"]

# Here rather than in connectors.x.source so that translation depends on nothing client-side.
NETWORK = "x"
_T = TypeVar("_T")
_MAX_MESSAGE = 500
# The OpenAPI spec's TweetId and UserId. Anything else is not an id, whatever its type: a
# since_id of "abc" would stall the stream, and ids must fit the state's 64-character columns.
_X_ID = re.compile(r"[0-9]{1,19}")
# Lone surrogates (json.loads makes them from "\ud800" escapes) cannot be encoded to UTF-8 and
# NUL cannot go into PostgreSQL text: either would fail the page's transaction on every retry.
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
# The state columns' sizes. X's own limits (15-character handles, 50-character names) are far
# below them, so only a garbled profile reaches them.
_HANDLE_MAX, _NAME_MAX, _URL_MAX, _TOKEN_MAX = 100, 200, 500, 500
# X escapes exactly these three characters in a post's text (as HTML would need), and nothing
# else: "&copy;" in a post is what its author typed. One pass, so "&amp;lt;" becomes "&lt;".
_X_ENTITIES = re.compile(r"&(amp|lt|gt);")
_X_ENTITY_CHARS = {"amp": "&", "lt": "<", "gt": ">"}
# A handle that can stand in a post's URL path as it is.
_URL_HANDLE = re.compile(r"[A-Za-z0-9_]{1,50}")
# X's documented reach of the timelines: the newest 800 mentions, the newest 3,200 of a user's
# own posts. A walk after a since_id that returns as many stopped there, not at the since_id.
TIMELINE_HORIZONS = {Stream.MENTIONS: 800, Stream.REPLIES: 3200}


def parse_page(
    body: object,
    *,
    account: Account,
    stream: Stream,
    cursor: Cursor,
    headers: Mapping[str, str] | None = None,
    owned: bool = False,
    known: Mapping[str, Author] | None = None,
    horizon: int | None = None,
) -> Page:
    """Translate one timeline response body into a :class:`Page`; no HTTP. ``owned``: the
    body was read with the account's own user token (billed as owned reads). ``known``: the
    profiles state holds of authors the body has no user object for. ``horizon``: the
    endpoint reaches only this many of the newest posts (a timeline, not search)."""
    if not isinstance(body, dict):
        raise MalformedAnswer("X sent a response body that is not a JSON object", system=NETWORK)
    data = _field(body, "data", list)
    includes, meta = _field(body, "includes", dict), _field(body, "meta", dict)
    warnings = [_warning(e) for e in _field(body, "errors", list)]

    authors: dict[str, Author] = {}
    for user in _field(includes, "users", list):
        if (author := parse_author(user)) is not None:
            authors[author.user_id] = author
        else:
            warnings.append(f"skipped an unreadable user object: {clip(repr(user))}")
    # Spec 2.159 says includes.tweets, 2.167 includes.posts.
    referenced = _field(includes, "posts", list) + _field(includes, "tweets", list)
    referenced_authors = {
        p["id"]: p["author_id"]
        for p in referenced
        if isinstance(p, dict) and is_x_id(p.get("id")) and is_x_id(p.get("author_id"))
    }

    interactions: list[Interaction] = []
    quarantined: list[Quarantined] = []
    # Profiles state already holds name the posts' links; only the page's own are stored.
    profiles = {**known, **authors} if known else authors
    for post in data:
        item = _translate(post, account, stream, profiles, referenced_authors)
        if isinstance(item, Interaction):
            interactions.append(item)
        elif isinstance(item, Quarantined):
            quarantined.append(item)

    return Page(
        interactions=tuple(interactions),
        authors=tuple(authors.values()),
        next_cursor=_next_cursor(cursor, meta, data),
        rate=_rate_info(headers),
        quarantined=tuple(quarantined),
        warnings=tuple(storable(w) for w in warnings),
        returned=len(data),
        oldest_id=_oldest(data),
        horizon=horizon,
        reads=_reads(data, referenced, _field(includes, "users", list), owned),
    )


def _reads(data: list[Any], referenced: list[Any], users: list[Any], owned: bool) -> Reads:
    """The resources X bills for this answer: each post (returned or expanded) and each
    user object once, whether or not it became history."""
    primary = {_resource_id(p, n) for n, p in enumerate(data)}
    expanded = {_resource_id(p, len(data) + n) for n, p in enumerate(referenced)} - primary
    return Reads(
        posts=len(primary),
        expanded=len(expanded),
        users=len({_resource_id(u, n) for n, u in enumerate(users)}),
        owned=owned,
    )


def _resource_id(item: object, position: int) -> str:
    # An item without a readable id is still a resource X sent: counted by where it stood.
    value = item.get("id") if isinstance(item, dict) else None
    return str(value) if isinstance(value, str | int) else f"#{position}"


def parse_lookup(body: object, asked: Sequence[str]) -> tuple[set[str], set[str]]:
    """A post lookup's (``GET /2/tweets?ids=``) answer: the asked ids that came back, and
    those X names in ``errors[]`` as not found (deleted; X does not tell deleted from never
    posted). Other problems (a protected or withheld post) decide nothing: neither set."""
    if not isinstance(body, dict):
        raise MalformedAnswer("X sent a response body that is not a JSON object", system=NETWORK)
    wanted = set(asked)
    alive = {p["id"] for p in _field(body, "data", list) if isinstance(p, dict)} & wanted
    deleted: set[str] = set()
    for error in _field(body, "errors", list):
        if not isinstance(error, dict) or error.get("resource_type", "tweet") != "tweet":
            continue
        # The problem type is ".../problems/resource-not-found" on both api hosts, and X files a
        # suspended author under it too, titled "Forbidden": only "Not Found Error" is deleted.
        kind = error.get("type")
        if not isinstance(kind, str) or not kind.endswith("/problems/resource-not-found"):
            continue
        if error.get("title") != "Not Found Error":
            continue
        post_id = error.get("resource_id", error.get("value"))
        if isinstance(post_id, str) and post_id in wanted and post_id not in alive:
            deleted.add(post_id)
    return alive, deleted


def _translate(
    post: object,
    account: Account,
    stream: Stream,
    authors: Mapping[str, Author],
    referenced_authors: Mapping[str, str],
) -> Interaction | Quarantined | None:
    """One post → an Interaction, a Quarantined item, or None when it is not history."""
    if not isinstance(post, dict):
        return Quarantined(NETWORK, "post is not a JSON object", {"value": post})
    post_id = post.get("id")
    if post_id is None:
        return Quarantined(NETWORK, "post has no id", post)
    if not is_x_id(post_id):
        return Quarantined(NETWORK, storable(clip(f"post id is not an X id: {post_id!r}")), post)
    author_id = post.get("author_id")
    replied_to = reply_target(post)

    def bad(reason: str) -> Quarantined:
        return Quarantined(NETWORK, storable(clip(reason)), post, item_id=post_id)

    if stream is Stream.MENTIONS:
        if author_id == account.user_id:
            return None  # the brand mentioning itself: its own replies come through `replies`
        direction, counterpart = Direction.INBOUND, author_id
    else:
        counterpart = post.get("in_reply_to_user_id")
        if counterpart is None and replied_to is not None:
            # The replied-to post, when expanded, still names whom the brand answered.
            counterpart = referenced_authors.get(replied_to)
            if counterpart is None:
                return bad("reply has no in_reply_to_user_id")
        if counterpart is None or counterpart == account.user_id:
            return None  # an original post, or a self-thread: not a customer's history
        if author_id is not None and author_id != account.user_id:
            return bad(f"post on the timeline of {account.user_id} is by {author_id}")
        direction = Direction.OUTBOUND

    created_at = _timestamp(post.get("created_at"))
    text = post.get("text")
    if not is_x_id(author_id):
        return bad("post has no author_id")
    if not is_x_id(counterpart):
        return bad("in_reply_to_user_id is not an id")
    if created_at is None:
        return bad(
            f"created_at is missing or not a zoned ISO 8601 time: {post.get('created_at')!r}"
        )
    if not isinstance(text, str):
        return bad("text is not a string")
    author = authors.get(author_id)
    handle = author.handle if author else None
    path = f"{handle}/status" if handle and _URL_HANDLE.fullmatch(handle) else "i/web/status"
    conversation_id = post.get("conversation_id")
    # Whom the post answers, as X names them; else the author of the replied-to post where X
    # expanded it (a reply whose in_reply_to_user_id is missing).
    answered = post.get("in_reply_to_user_id")
    if not is_x_id(answered):
        answered = referenced_authors.get(replied_to) if replied_to is not None else None
    return Interaction(
        network=NETWORK,
        post_id=post_id,
        account=account.handle,
        stream=stream,
        direction=direction,
        author_id=author_id,
        counterpart_id=counterpart,
        text=storable(unescape_text(text)),  # raw keeps what X sent
        created_at=created_at,
        url=f"https://x.com/{path}/{post_id}",
        conversation_id=conversation_id if is_x_id(conversation_id) else None,
        in_reply_to_post_id=replied_to,
        in_reply_to_user_id=answered,
        raw=post,
    )


def parse_author(user: object) -> Author | None:
    if not isinstance(user, dict) or not is_x_id(user.get("id")):
        return None
    url = user.get("url")
    entities = user.get("entities")
    # X shortens profile links to t.co; the expanded form is what a rep can recognise.
    with contextlib.suppress(KeyError, IndexError, TypeError):
        url = entities["url"]["urls"][0]["expanded_url"] or url  # type: ignore[index]
    return Author(
        network=NETWORK,
        user_id=user["id"],
        # A name cut short still reads; a handle or link cut short would be wrong: dropped.
        handle=_text(user.get("username"), drop_over=_HANDLE_MAX),
        display_name=_text(user.get("name"), cut_at=_NAME_MAX),
        description=_text(user.get("description")),
        location=_text(user.get("location"), cut_at=_NAME_MAX),
        url=_text(url, drop_over=_URL_MAX),
    )


def _next_cursor(cursor: Cursor, meta: Mapping[str, Any], data: list[Any]) -> Cursor:
    token = meta.get("next_token")
    # Stored and sent back verbatim, so it must be the opaque printable ASCII X uses.
    if token is not None and not (
        isinstance(token, str)
        and len(token) <= _TOKEN_MAX
        and token.isascii()
        and token.isprintable()
    ):
        raise MalformedAnswer("X sent an unreadable meta.next_token", system=NETWORK)
    newest = meta.get("newest_id") if is_x_id(meta.get("newest_id")) else _newest(data)
    # Only the first page of a walk sees the newest post; later pages' newest ids are older, so
    # the first page's value rides along as pending_since_id until the walk ends.
    pending = cursor.pending_since_id if cursor.in_walk else None
    if token:
        return Cursor(cursor.since_id, pagination_token=token, pending_since_id=pending or newest)
    return Cursor(since_id=pending or newest or cursor.since_id)


def _newest(data: list[Any]) -> str | None:
    ids = [p["id"] for p in data if isinstance(p, dict) and is_x_id(p.get("id"))]
    return max(ids, key=int, default=None)  # numerically: "9" < "10", and "010" is 10


def _oldest(data: list[Any]) -> str | None:
    ids = [p["id"] for p in data if isinstance(p, dict) and is_x_id(p.get("id"))]
    return min(ids, key=int, default=None)


def reply_target(post: JsonObject) -> str | None:
    refs = post.get("referenced_tweets")
    for ref in refs if isinstance(refs, list) else []:
        if isinstance(ref, dict) and ref.get("type") == "replied_to" and is_x_id(ref.get("id")):
            return str(ref["id"])
    return None


def _timestamp(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None  # a time without a zone is ambiguous; X always sends "Z"
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # "0001-01-01T00:00:00+01:00" is before datetime.min in UTC
        return None


def _warning(error: object) -> str:
    if isinstance(error, dict):
        title = error.get("title") or "error"
        detail = error.get("detail") or error.get("message") or ""
        return clip(f"{title}: {detail}" if detail else str(title))
    return clip(str(error))


def _rate_info(headers: Mapping[str, str] | None) -> RateInfo | None:
    lower = {k.lower(): v for k, v in (headers or {}).items()}
    limit, remaining = (_int(lower.get(f"x-rate-limit-{k}")) for k in ("limit", "remaining"))
    info = RateInfo(limit, remaining, reset_at(lower))
    return info if info != RateInfo() else None


def reset_at(headers: Mapping[str, str]) -> datetime | None:
    seconds = _int(headers.get("x-rate-limit-reset"))
    try:
        return datetime.fromtimestamp(seconds, UTC) if seconds is not None else None
    except (OverflowError, OSError, ValueError):
        return None


def expired_token(error: ExternalError, token: str | None) -> PaginationExpired | None:
    """``error`` as a refused page token, when it is one: X answers a request carrying a
    ``pagination_token`` (or search's ``next_token``) it no longer takes with a 400, whose
    message names no reason the caller could tell apart from any other bad request."""
    if token is None or error.status != 400:
        return None
    return PaginationExpired(str(error), system=error.system, status=error.status)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _field(container: Mapping[str, Any], key: str, kind: type[_T]) -> _T:
    value = container.get(key)
    if value is None:
        return kind()  # absent on empty pages and on error-only pages
    if not isinstance(value, kind):
        raise MalformedAnswer(f"X sent a {key!r} that is not a {kind.__name__}", system=NETWORK)
    return value


def is_x_id(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and _X_ID.fullmatch(value) is not None


def unescape_text(text: str) -> str:
    """A post's text as its author wrote it: X sends ``&``, ``<`` and ``>`` as ``&amp;``,
    ``&lt;`` and ``&gt;``; no other entity is X's doing."""
    return _X_ENTITIES.sub(lambda m: _X_ENTITY_CHARS[m.group(1)], text)


def storable(text: str) -> str:
    """``text`` with what no database column can hold replaced by U+FFFD."""
    return _UNSTORABLE.sub("\ufffd", text)


def _text(value: object, *, cut_at: int | None = None, drop_over: int | None = None) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    if drop_over is not None and len(value) > drop_over:
        return None
    value = storable(value)
    return clip(value, cut_at) if cut_at is not None else value


def clip(text: str, limit: int = _MAX_MESSAGE) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
