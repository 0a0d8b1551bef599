"""Translates Bluesky answers (``listNotifications``, ``getAuthorFeed``) into pages; no HTTP.

Pure, so recorded bodies are tested without a client. A body that is not the lexicon's shape
raises :class:`~syncd.errors.MalformedAnswer`; one item that cannot be translated is
quarantined with its reason and raw payload, never costing the rest of its page.

The walk. Both endpoints answer newest first with an opaque cursor and take no ``since``: a
walk reads back until it reaches the stored high-water mark, a :class:`Mark` (the newest item's
sort time and its uri). The appview sorts a post by the older of its index time and its
``createdAt``, so a backdated post can land *below* the mark: a walk goes on for ``overlap``
past the mark's time, and the interactions table's unique key absorbs what it reads twice.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from syncd.errors import MalformedAnswer
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
    Stream,
)

__all__ = [
    "NETWORK",
    "BrandPost",
    "Mark",
    "brand_posts",
    "parse_feed",
    "parse_notifications",
    "parse_post_views",
    "parse_search",
    "post_url",
    "quote_views",
    "rate_info",
    "thread_replies",
]

NETWORK = "bluesky"
# The notifications read as history: a reply that also mentions the brand comes once, as
# "mention"; likes, reposts and follows are not conversations.
REASONS = ("mention", "reply", "quote")
# The CRM's external id (``bluesky:<at-uri>``) is an upsert key of at most 255 characters.
# A did:plc uri is about 70; a did:web one can be longer than any such key: quarantined.
EXTERNAL_ID_MAX = 255
_DID = re.compile(r"did:[a-z]+:[A-Za-z0-9._:%-]{1,2048}")
_POST_URI = re.compile(
    r"at://(did:[a-z]+:[A-Za-z0-9._:%-]+)/app\.bsky\.feed\.post/([A-Za-z0-9._~:-]{1,512})"
)
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")  # NUL and lone surrogates: unstorable text
_HANDLE_MAX, _NAME_MAX, _TOKEN_MAX = 100, 200, 500
_MAX_REASON = 300


@dataclass(frozen=True)
class Mark:
    """A stream's high-water mark: the sort time of the newest item read and a short digest
    of its uri. Stored as the cursor's ``since_id`` (a 64-character column: a whole at-uri
    does not fit, and only the time orders; the digest tells the very item)."""

    at: datetime
    digest: str = ""  # empty for a start mark: no item, only a moment

    def text(self) -> str:
        return f"{self.at.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}|{self.digest}"

    @classmethod
    def of(cls, at: datetime, uri: str) -> Mark:
        return cls(at, hashlib.sha256(uri.encode()).hexdigest()[:16])

    @classmethod
    def parse(cls, text: str | None) -> Mark | None:
        """None for no mark; a mark syncd did not write is refused (the cursor is corrupt)."""
        if text is None:
            return None
        moment, sep, digest = text.partition("|")
        at = parse_time(moment)
        if not sep or at is None:
            raise MalformedAnswer(f"not a Bluesky mark: {text[:80]!r}", system=NETWORK)
        return cls(at, digest)


def parse_time(value: Any) -> datetime | None:
    """An atproto datetime (RFC 3339 with a zone) as aware UTC; None if it is not one."""
    if not isinstance(value, str) or not 10 <= len(value) <= 64:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo is not None else None


def post_url(uri: str) -> str | None:
    """``https://bsky.app/profile/<did>/post/<rkey>`` for a post's at-uri (by DID: a handle
    may change or read ``handle.invalid``)."""
    m = _POST_URI.fullmatch(uri)
    return f"https://bsky.app/profile/{m.group(1)}/post/{m.group(2)}" if m else None


def uri_did(uri: Any) -> str | None:
    """The DID of a post's at-uri: its author."""
    m = _POST_URI.fullmatch(uri) if isinstance(uri, str) else None
    return m.group(1) if m else None


def rate_info(headers: Mapping[str, str]) -> RateInfo | None:
    """The ``RateLimit-*`` headers (the IETF draft's names; ``Reset`` in epoch seconds)."""
    low = {k.lower(): v for k, v in headers.items()}

    def number(name: str) -> int | None:
        value = low.get(name, "")
        return int(value) if value.isdigit() else None

    limit, remaining, reset = (
        number("ratelimit-limit"),
        number("ratelimit-remaining"),
        number("ratelimit-reset"),
    )
    if limit is None and remaining is None:
        return None
    at = datetime.fromtimestamp(reset, UTC) if reset is not None and reset < 2**33 else None
    return RateInfo(limit, remaining, at)


class _Bad(Exception):
    """One item cannot be translated; the message is the quarantine reason."""


def _text(value: Any, limit: int | None = None) -> str | None:
    if not isinstance(value, str):
        return None
    clean = _UNSTORABLE.sub("\ufffd", value)
    return clean[:limit] if limit is not None else clean


def author_of(view: Any) -> Author:
    """A profile view (``profileView`` or ``profileViewBasic``) as an author, keyed on the DID."""
    if not isinstance(view, dict):
        raise _Bad("author is not a profile view")
    did = view.get("did")
    if not isinstance(did, str) or not _DID.fullmatch(did) or len(did) > 64:
        raise _Bad("author has no DID that fits the state (did:method:id, 64 characters)")
    handle = _text(view.get("handle"), _HANDLE_MAX)
    # "handle.invalid": the handle no longer verifies; the DID still names the person.
    return Author(
        NETWORK,
        did,
        handle=None if handle in (None, "", "handle.invalid") else handle,
        display_name=_text(view.get("displayName"), _NAME_MAX) or None,
        description=_text(view.get("description")) or None,
    )


@dataclass(frozen=True)
class _Post:
    uri: str
    author: Author
    text: str
    created_at: datetime
    parent: str | None
    root: str | None


def _post(uri: Any, author: Any, record: Any) -> _Post:
    if not isinstance(uri, str) or post_url(uri) is None:
        raise _Bad("uri is not an app.bsky.feed.post at-uri")
    if len(f"{NETWORK}:{uri}") > EXTERNAL_ID_MAX:
        raise _Bad(f"at-uri longer than the CRM's {EXTERNAL_ID_MAX}-character external id")
    who = author_of(author)
    if uri_did(uri) != who.user_id:
        raise _Bad("uri names another author than the item's")
    if not isinstance(record, dict) or record.get("$type") not in (None, "app.bsky.feed.post"):
        raise _Bad("record is not an app.bsky.feed.post")
    text = _text(record.get("text"))
    if text is None:
        raise _Bad("record has no text")
    created = parse_time(record.get("createdAt"))
    if created is None:
        raise _Bad("record has no valid createdAt")
    parent = root = None
    if (reply := record.get("reply")) is not None:
        parent, root = _dig(reply, "parent", "uri"), _dig(reply, "root", "uri")
        if uri_did(parent) is None or uri_did(root) is None:
            raise _Bad("record.reply has no parent and root post uris")
    return _Post(uri, who, text, created, parent, root)


def _dig(value: Any, *keys: str) -> Any:
    """``value[k1][k2]…``, or None where a level is missing or not an object."""
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _sort_time(item: Any, key: Callable[[JsonObject], Any]) -> datetime | None:
    return parse_time(key(item)) if isinstance(item, dict) else None


@dataclass(frozen=True)
class _Walk:
    """What a page's items mean for the walk: where to stop and what to store."""

    mark: Mark | None
    overlap: timedelta

    def below(self, at: datetime) -> bool:
        """Past the mark by more than the overlap: this item and every later one were read."""
        return self.mark is not None and at < self.mark.at - self.overlap


def _page(
    items: list[Any],
    *,
    sort_key: Callable[[JsonObject], Any],
    translate: Callable[[JsonObject], Interaction | None],
    cursor: Cursor,
    next_token: Any,
    overlap: timedelta,
    headers: Mapping[str, str],
) -> Page:
    walk = _Walk(Mark.parse(cursor.since_id), overlap)
    interactions: list[Interaction] = []
    quarantined: list[Quarantined] = []
    authors: dict[str, Author] = {}
    newest: Mark | None = None
    oldest: Mark | None = None
    stopped = False
    for item in items:
        at = _sort_time(item, sort_key)
        uri = item.get("uri") if isinstance(item, dict) else None
        if at is None:
            # Without its time the item cannot be placed in the walk; it is kept, not lost.
            quarantined.append(_quarantine(item, "no valid indexedAt", uri))
            continue
        if walk.below(at):
            stopped = True
            break
        mark = Mark.of(at, str(uri or _dig(item, "post", "uri") or ""))
        newest = newest or mark
        oldest = mark
        try:
            found = translate(item)
        except _Bad as exc:
            quarantined.append(_quarantine(item, str(exc), uri))
            continue
        if found is not None:
            interactions.append(found)
    for found in interactions:
        raw = found.raw
        views = (
            raw.get("author"),
            _dig(raw, "post", "author"),
            _dig(raw, "reply", "parent", "author"),
        )
        for view in views:
            # A blocked parent's author (blockedAuthor) has a DID but no handle: not a profile.
            if not isinstance(view, dict) or "handle" not in view:
                continue
            try:
                author = author_of(view)
            except _Bad:
                continue
            authors.setdefault(author.user_id, author)
    token = next_token if isinstance(next_token, str) and next_token else None
    if token is not None and len(token) > _TOKEN_MAX:
        raise MalformedAnswer("Bluesky sent a cursor longer than any it sends", system=NETWORK)
    # The walk's first page names the mark the walk ends at; later pages carry it along.
    pending = cursor.pending_since_id if cursor.in_walk else (newest.text() if newest else None)
    if stopped or token is None or not items:
        end = Cursor(since_id=pending or cursor.since_id)
        # A walk that ran out of pages before it reached its mark may have missed posts (the
        # network dropped older notifications, or the mark's own post was deleted and the
        # rest with it): a gap, said on the walk's last page (``Page.cut``).
        cut = (
            not stopped
            and walk.mark is not None
            and bool(walk.mark.digest)
            and oldest is not None
            and oldest.at > walk.mark.at
        )
        return _result(interactions, authors, quarantined, end, items, oldest, headers, cut)
    nxt = Cursor(since_id=cursor.since_id, pagination_token=token, pending_since_id=pending)
    return _result(interactions, authors, quarantined, nxt, items, oldest, headers, False)


def _result(
    interactions: list[Interaction],
    authors: Mapping[str, Author],
    quarantined: list[Quarantined],
    cursor: Cursor,
    items: list[Any],
    oldest: Mark | None,
    headers: Mapping[str, str],
    cut: bool,
) -> Page:
    return Page(
        interactions=tuple(interactions),
        authors=tuple(authors.values()),
        next_cursor=cursor,
        rate=rate_info(headers),
        quarantined=tuple(quarantined),
        returned=len(items),
        oldest_id=oldest.text() if oldest else None,
        # The endpoints have no horizon; a walk that ran out before its mark says so outright.
        cut=cut,
    )


def _quarantine(item: Any, reason: str, item_id: Any) -> Quarantined:
    raw = item if isinstance(item, dict) else {"item": item}
    ident = item_id if isinstance(item_id, str) and len(item_id) <= 300 else None
    return Quarantined(NETWORK, reason[:_MAX_REASON], raw, ident)


def _body(body: Any, key: str, what: str) -> list[Any]:
    if not isinstance(body, dict) or not isinstance(body.get(key), list):
        raise MalformedAnswer(f"Bluesky sent an unreadable {what} answer", system=NETWORK)
    items: list[Any] = body[key]
    return items


def parse_notifications(
    body: Any,
    *,
    account: Account,
    cursor: Cursor,
    overlap: timedelta,
    headers: Mapping[str, str],
) -> Page:
    """A ``listNotifications`` answer as a page of the ``mentions`` stream."""
    items = _body(body, "notifications", "listNotifications")

    def translate(item: JsonObject) -> Interaction | None:
        reason = item.get("reason")
        if reason not in REASONS:
            return None  # asked only for these; another reason is not history
        post = _post(item.get("uri"), item.get("author"), item.get("record"))
        if post.author.user_id == account.user_id:
            return None  # the brand's own post (a self-quote)
        return _interaction(
            post, account, Stream.MENTIONS, Direction.INBOUND, post.author.user_id, item
        )

    return _page(
        items,
        sort_key=lambda item: item.get("indexedAt"),
        translate=translate,
        cursor=cursor,
        next_token=body.get("cursor"),
        overlap=overlap,
        headers=headers,
    )


def parse_feed(
    body: Any,
    *,
    account: Account,
    cursor: Cursor,
    overlap: timedelta,
    headers: Mapping[str, str],
) -> Page:
    """A ``getAuthorFeed`` (``posts_with_replies``) answer as a page of the ``replies``
    stream: the brand's own replies, each attributed to the author of the post replied to
    (read from the reply's parent uri, so a deleted or blocked parent still names them)."""
    items = _body(body, "feed", "getAuthorFeed")

    def translate(item: JsonObject) -> Interaction | None:
        if item.get("reason") is not None:
            return None  # a repost by the brand: not a conversation
        view = item.get("post")
        if not isinstance(view, dict):
            raise _Bad("feed item has no post view")
        post = _post(view.get("uri"), view.get("author"), view.get("record"))
        if post.author.user_id != account.user_id or post.parent is None:
            return None  # not the brand's, or not a reply
        counterpart = uri_did(post.parent)
        if counterpart is None or counterpart == account.user_id:
            return None  # a thread of the brand's own
        return _interaction(post, account, Stream.REPLIES, Direction.OUTBOUND, counterpart, item)

    def when(item: JsonObject) -> Any:
        # A repost sorts by when it was reposted; a post by its own (sort) time.
        reason, post = item.get("reason"), item.get("post")
        if isinstance(reason, dict) and reason.get("indexedAt"):
            return reason.get("indexedAt")
        return post.get("indexedAt") if isinstance(post, dict) else None

    return _page(
        items,
        sort_key=when,
        translate=translate,
        cursor=cursor,
        next_token=body.get("cursor"),
        overlap=overlap,
        headers=headers,
    )


def sort_at(view: Any) -> datetime | None:
    """A post view's sort time, as search filters and orders by it: the older of its index
    time and its ``createdAt`` (a post view does not carry it)."""
    if not isinstance(view, dict):
        return None
    indexed = parse_time(view.get("indexedAt"))
    created = parse_time(_dig(view, "record", "createdAt"))
    times = [t for t in (indexed, created) if t is not None]
    return min(times) if times else None


def parse_search(
    body: Any, *, account: Account, headers: Mapping[str, str]
) -> tuple[Page, datetime | None]:
    """A ``searchPosts`` answer (asked with ``mentions=<the brand>``) as posts of the
    ``mentions`` stream, and the oldest sort time it held. The page's cursor is left to the
    caller, which knows the window it reads."""
    posts = _body(body, "posts", "searchPosts")
    return _views_page(posts, account=account, headers=headers, what="search hit")


def parse_post_views(
    views: list[Any],
    *,
    account: Account,
    since: datetime,
    until: datetime,
    headers: Mapping[str, str],
) -> tuple[Page, datetime | None]:
    """Replies to and quotes of the brand's posts (post views, from ``getPostThread`` or
    ``getQuotes``) as posts of the ``mentions`` stream, kept to those sorted in ``[since,
    until)`` and to those the brand's notifications list: not its own, and not by an account
    it mutes or that a block stands between (``listNotifications`` leaves those out). Also
    the oldest sort time among the views."""
    return _views_page(
        views, account=account, headers=headers, what="post", window=(since, until), heard=True
    )


def _views_page(
    views: list[Any],
    *,
    account: Account,
    headers: Mapping[str, str],
    what: str,
    window: tuple[datetime, datetime] | None = None,
    heard: bool = False,
) -> tuple[Page, datetime | None]:
    interactions: list[Interaction] = []
    quarantined: list[Quarantined] = []
    authors: dict[str, Author] = {}
    oldest: datetime | None = None
    for view in views:
        at = sort_at(view)
        if at is not None:
            oldest = at if oldest is None else min(oldest, at)
            if window is not None and not window[0] <= at < window[1]:
                continue
        uri = view.get("uri") if isinstance(view, dict) else None
        try:
            if not isinstance(view, dict):
                raise _Bad(f"{what} is not a post view")
            if window is not None and at is None:
                raise _Bad("post view has no valid indexedAt or createdAt")
            post = _post(uri, view.get("author"), view.get("record"))
            if post.author.user_id == account.user_id:
                continue  # the brand naming itself: not a customer's post
            if heard and _unheard(view.get("author")):
                continue
            found = _interaction(
                post, account, Stream.MENTIONS, Direction.INBOUND, post.author.user_id, view
            )
        except _Bad as exc:
            quarantined.append(_quarantine(view, str(exc), uri))
            continue
        authors.setdefault(post.author.user_id, post.author)
        interactions.append(found)
    page = Page(
        interactions=tuple(interactions),
        authors=tuple(authors.values()),
        next_cursor=Cursor(),
        rate=rate_info(headers),
        quarantined=tuple(quarantined),
        returned=len(views),
    )
    return page, oldest


def _unheard(author: Any) -> bool:
    """An author whose posts never reach the brand's notifications: one it mutes (itself or
    by a list), blocks or is blocked by (the appview's ``listNotifications`` drops them)."""
    viewer = author.get("viewer") if isinstance(author, dict) else None
    if not isinstance(viewer, dict):
        return False
    return bool(
        viewer.get("muted")
        or viewer.get("mutedByList")
        or viewer.get("blocking")
        or viewer.get("blockingByList")
        or viewer.get("blockedBy")
    )


# The depth of the replies that notify an ancestor's author: the appview notifies the
# authors of a reply's ancestors at heights 1 to 4 (``REPLY_NOTIF_DEPTH = 5``, ``height <
# REPLY_NOTIF_DEPTH``: bluesky-social/atproto, packages/bsky/src/data-plane/server/indexing/
# plugins/post.ts), so a brand post hears of the replies up to 4 levels below it.
REPLY_NOTIFY_DEPTH = 4


def thread_replies(body: Any, *, depth: int = REPLY_NOTIFY_DEPTH) -> list[Any]:
    """The post views of a ``getPostThread`` answer's replies that notify the anchor's
    author: those at most ``depth`` levels below it, leaving out what lies below a reply the
    thread's root author hid (the appview stops notifying ancestors above a hidden reply; the
    hidden reply itself still notifies). ``blockedPost`` and ``notFoundPost`` entries have no
    post to read: the notifications leave them out too."""
    thread = body.get("thread") if isinstance(body, dict) else None
    if not isinstance(thread, dict):
        raise MalformedAnswer("Bluesky sent an unreadable getPostThread answer", system=NETWORK)
    if thread.get("$type", _THREAD_VIEW) != _THREAD_VIEW:
        return []  # the anchor itself blocked or gone
    listed = _dig(body, "threadgate", "record", "hiddenReplies")
    hidden = {u for u in listed if isinstance(u, str)} if isinstance(listed, list) else set()
    found: list[Any] = []
    level: list[Any] = [thread]
    for _ in range(depth):
        below: list[Any] = []
        for node in level:
            replies = node.get("replies")
            for reply in replies if isinstance(replies, list) else []:
                if not isinstance(reply, dict) or reply.get("$type", _THREAD_VIEW) != _THREAD_VIEW:
                    continue
                view = reply.get("post")
                # A reply without its post view is kept as it came, to be quarantined.
                found.append(view if isinstance(view, dict) else reply)
                if not isinstance(view, dict) or view.get("uri") not in hidden:
                    below.append(reply)
        level = below
    return found


_THREAD_VIEW = "app.bsky.feed.defs#threadViewPost"


def quote_views(body: Any) -> tuple[list[Any], str | None]:
    """A ``getQuotes`` answer: its post views (newest first) and the next page's cursor."""
    posts = _body(body, "posts", "getQuotes")
    cursor = body.get("cursor")
    if cursor is not None and (not isinstance(cursor, str) or len(cursor) > _CURSOR_MAX):
        raise MalformedAnswer("Bluesky sent an unreadable getQuotes cursor", system=NETWORK)
    return posts, cursor or None


@dataclass(frozen=True)
class BrandPost:
    """One of the brand's own posts on an author feed page, with what it was answered by."""

    uri: str
    at: datetime  # its sort time
    replies: int | None  # replyCount, quoteCount: None when the view leaves them out
    quotes: int | None


def brand_posts(body: Any, *, account: Account) -> tuple[list[BrandPost], str | None]:
    """The brand's own posts (its replies included, reposts left out) on a ``getAuthorFeed``
    page, newest first, and the next page's cursor."""
    items = _body(body, "feed", "getAuthorFeed")
    out: list[BrandPost] = []
    for item in items:
        if not isinstance(item, dict) or item.get("reason") is not None:
            continue  # a repost (or a pin): another author's post, or one listed again
        view = item.get("post")
        uri = view.get("uri") if isinstance(view, dict) else None
        at = sort_at(view)
        if uri_did(uri) != account.user_id or at is None or not isinstance(uri, str):
            continue
        out.append(BrandPost(uri, at, _count(view, "replyCount"), _count(view, "quoteCount")))
    cursor = body.get("cursor") if isinstance(body, dict) else None
    if cursor is not None and (not isinstance(cursor, str) or len(cursor) > _CURSOR_MAX):
        raise MalformedAnswer("Bluesky sent an unreadable getAuthorFeed cursor", system=NETWORK)
    return out, cursor or None


_CURSOR_MAX = 200  # two cursors and a record key share a stored 500-character position


def _count(view: Any, key: str) -> int | None:
    value = view.get(key) if isinstance(view, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _interaction(
    post: _Post,
    account: Account,
    stream: Stream,
    direction: Direction,
    counterpart: str,
    raw: JsonObject,
) -> Interaction:
    if len(counterpart) > 64:
        raise _Bad("the other party's DID is longer than the state's 64-character user ids")
    # Who wrote the post answered: the DID its at-uri names (a DID longer than any user id
    # the state keeps is nobody's it knows, the brand's included).
    answered = uri_did(post.parent)
    return Interaction(
        network=NETWORK,
        post_id=post.uri,
        account=account.handle,
        stream=stream,
        direction=direction,
        author_id=post.author.user_id,
        counterpart_id=counterpart,
        text=post.text,
        created_at=post.created_at,
        url=post_url(post.uri) or "",
        conversation_id=post.root or post.uri,
        in_reply_to_post_id=post.parent,
        in_reply_to_user_id=answered if answered is not None and len(answered) <= 64 else None,
        raw=raw,
    )
