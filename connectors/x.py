"""The X source: a brand account's mentions and its replies, read with tweepy's v2 ``Client``.

tweepy is used unmodified. ``return_type=dict`` hands back the JSON only, so a ``requests``
response hook keeps the ``x-rate-limit-*`` headers, and a URL-rewriting adapter points the
client at ``api_base_url`` (the sandbox, a proxy). Turning a body into domain objects is the
pure :func:`parse_page`, so recorded bodies are tested without HTTP. Nothing here retries or
sleeps: errors are classified (:func:`_classify`) and the pipeline decides.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self, TypeGuard, TypeVar
from urllib.parse import urlsplit

import requests
import tweepy
from pydantic import Field, field_validator

from connectors._http import RewritingAdapter, mount
from syncd.connector import ConnectorSettings, Duration, SourceSettings
from syncd.errors import AuthError, ExternalError, NotFound, RateLimited, SyncdError, TransientError
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
from syncd.secrets import SecretRef

if TYPE_CHECKING:
    from syncd.connector import Source

NETWORK = "x"
_T = TypeVar("_T")
TWEET_FIELDS = ["created_at", "author_id", "conversation_id", "in_reply_to_user_id", "lang"]
TWEET_FIELDS += ["referenced_tweets", "entities"]
USER_FIELDS = ["username", "name", "description", "location", "url", "created_at"]
EXPANSIONS = ["author_id", "in_reply_to_user_id", "referenced_tweets.id"]
EXPANSIONS += ["referenced_tweets.id.author_id", "entities.mentions.username"]
# tweepy hard-codes api.twitter.com; newer code and docs say api.x.com. Both go to api_base_url.
_LIBRARY_ORIGINS = ("https://api.twitter.com", "https://api.x.com")
_LOOKUP_BATCH = 100  # most usernames GET /2/users/by accepts in one call
# X rejects a whole lookup batch (400) if one username breaks its pattern, so such a handle is
# treated as unknown instead of failing every other handle in the batch.
_USERNAME = re.compile(r"^[A-Za-z0-9_]{1,15}$")
# X sends no Retry-After; without x-rate-limit-reset a 15-minute window is the safe guess, and a
# usage cap (billing) lasts until the cap period resets, so it is re-checked hourly.
_RATE_WINDOW = timedelta(minutes=15)
_USAGE_CAP_RECHECK = timedelta(hours=1)
_MAX_MESSAGE = 500

# tweepy logs every request's headers, bearer token included, at DEBUG. A service that turns on
# debug logging must not write the token to its journal.
_BEARER = re.compile(r"Bearer [^\s'\",}]+")


def _redact_bearer(record: logging.LogRecord) -> bool:
    if isinstance(record.msg, str) and "Bearer " in record.msg:
        record.msg = _BEARER.sub("Bearer [redacted]", record.msg)
    return True


logging.getLogger("tweepy.client").addFilter(_redact_bearer)


class XSettings(SourceSettings):
    type: Literal["x"]
    bearer_token: SecretRef
    api_base_url: str = "https://api.x.com"
    page_size: int = Field(default=100, ge=5, le=100)  # max_results: X accepts 5..100
    timeout: Duration = 30.0  # seconds per request

    @field_validator("api_base_url")
    @classmethod
    def _absolute_http(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        try:
            ok = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
        except ValueError:  # a malformed port
            ok = False
        if not ok or parts.query or parts.fragment:
            raise ValueError(
                "must be an absolute http(s) URL without a query, e.g. https://api.x.com"
            )
        return value.strip().rstrip("/")


class XSource:
    """Reads the ``mentions`` and ``replies`` streams of brand accounts (app bearer token)."""

    network: ClassVar[str] = NETWORK
    Settings: ClassVar[type[ConnectorSettings]] = XSettings

    def __init__(
        self,
        bearer_token: str,
        *,
        api_base_url: str = "https://api.x.com",
        page_size: int = 100,
        timeout: float = 30.0,
    ) -> None:
        self.api_base_url = api_base_url
        self.page_size = page_size
        self._token = bearer_token
        # Never wait_on_rate_limit: tweepy would sleep inside the call, and retry forever when a
        # 429 lacks x-rate-limit-reset.
        self.client: Any = tweepy.Client(
            bearer_token=bearer_token, return_type=dict, wait_on_rate_limit=False
        )
        rewrites = dict.fromkeys(_LIBRARY_ORIGINS, api_base_url)
        mount(self.client.session, RewritingAdapter(rewrites, timeout))
        # Jobs for several accounts of one source run in parallel threads on this session.
        self._local = threading.local()
        self.client.session.hooks["response"].append(self._remember)

    @classmethod
    def from_settings(cls, settings: XSettings) -> Self:
        return cls(
            settings.bearer_token.reveal(),
            api_base_url=settings.api_base_url,
            page_size=settings.page_size,
            timeout=settings.timeout,
        )

    def resolve_accounts(self, handles: Sequence[str]) -> dict[str, Account]:
        names = {h: h.strip().removeprefix("@") for h in handles}
        lookup = list(dict.fromkeys(n.lower() for n in names.values() if _USERNAME.match(n)))
        ids: dict[str, str] = {}
        for start in range(0, len(lookup), _LOOKUP_BATCH):
            batch = lookup[start : start + _LOOKUP_BATCH]
            body, _ = self._call(self.client.get_users, usernames=batch)
            if not isinstance(body, dict) or not isinstance(body.get("data") or [], list):
                raise TransientError("X sent an unreadable user lookup", system=NETWORK)
            for user in body.get("data") or []:
                name = user.get("username") if isinstance(user, dict) else None
                if isinstance(name, str) and _is_id(user.get("id")):
                    ids[name.lower()] = user["id"]
        # Unknown and suspended handles come back in errors[] and are simply absent here.
        return {
            given: Account(NETWORK, name, ids[name.lower()])
            for given, name in names.items()
            if name.lower() in ids
        }

    def fetch(self, account: Account, stream: Stream, cursor: Cursor) -> Page:
        params: dict[str, Any] = {
            "id": account.user_id,
            "since_id": cursor.since_id,
            "pagination_token": cursor.pagination_token,
            "max_results": self.page_size,
            "tweet_fields": TWEET_FIELDS,
            "user_fields": USER_FIELDS,
            "expansions": EXPANSIONS,
        }
        if stream is Stream.MENTIONS:
            method = self.client.get_users_mentions
        else:
            method = self.client.get_users_tweets
            params["exclude"] = ["retweets"]  # billed per post read, and never history
        body, headers = self._call(method, **params)
        return parse_page(body, account=account, stream=stream, cursor=cursor, headers=headers)

    def close(self) -> None:
        self.client.session.close()

    # -- plumbing --------------------------------------------------------------------------
    def _remember(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self._local.response = response

    def _call(self, method: Callable[..., Any], **params: Any) -> tuple[Any, Mapping[str, str]]:
        self._local.response = None
        error: SyncdError | None = None
        try:
            body = method(**params)
        except (tweepy.HTTPException, requests.RequestException) as exc:
            error = _classify(exc)
        except (AttributeError, TypeError, ValueError):
            # tweepy builds its exception from the error body and chokes on JSON that is not
            # X's error shape (or on a non-numeric x-rate-limit-reset): classify by status.
            response = self._local.response
            if response is None or response.ok:
                raise
            error = _classify(tweepy.HTTPException(response, response_json={}))
        response = self._local.response
        self._local.response = None
        if error is not None:
            # Raised outside the except block so no traceback chains to the tweepy exception,
            # whose request still carries the Authorization header.
            raise self._redact(error)
        return body, (response.headers if response is not None else {})

    def _redact(self, error: SyncdError) -> SyncdError:
        text = str(error)
        if self._token and self._token in text:
            error.args = (text.replace(self._token, "[redacted]"),)
        return error


if TYPE_CHECKING:
    _: type[Source] = XSource


def _classify(exc: Exception) -> SyncdError:
    """The one table from what the X client raised to what the runner must do.

    tweepy picks its exception class (BadRequest, Unauthorized, Forbidden, NotFound,
    TooManyRequests, TwitterServerError) from the status alone; reading the status here is the
    same table, and also serves a bare ``HTTPException`` built when tweepy's own failed.
    """
    if isinstance(exc, requests.RequestException):
        # Connection refused or reset, timeouts, a body cut short, JSON that does not parse.
        reason = _clip(str(exc) or type(exc).__name__)
        return TransientError(f"X request failed: {reason}", system=NETWORK)
    if not isinstance(exc, tweepy.HTTPException):
        raise TypeError(f"not an X client error: {exc!r}")
    response: requests.Response = exc.response
    status = response.status_code
    detail = "; ".join(str(m) for m in exc.api_messages) or str(exc).replace("\n", "; ")
    message = f"X API {status}: {_clip(detail)}"
    now = datetime.now(UTC)
    if status in (403, 429) and _usage_capped(response):  # billing cap, not a credential issue
        resume = _reset_at(response.headers) or now + _USAGE_CAP_RECHECK
        return RateLimited(message, resume_at=resume, system=NETWORK, status=status)
    if status == 429:
        resume = _reset_at(response.headers) or now + _RATE_WINDOW
        return RateLimited(message, resume_at=resume, system=NETWORK, status=status)
    if status in (401, 403):
        return AuthError(message, system=NETWORK, status=status)
    if status == 404:
        return NotFound(message, system=NETWORK, status=status)
    if status >= 500:
        return TransientError(message, system=NETWORK, status=status)
    # 400 (a rejected pagination token: the pipeline restarts the walk) and any other 4xx.
    return ExternalError(message, system=NETWORK, status=status)


def _usage_capped(response: requests.Response) -> bool:
    # The problem type is ".../problems/usage-capped", title "UsageCapExceeded".
    text = response.text.lower()
    return "usage-capped" in text or "usagecapexceeded" in text


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


# -- translation (pure) --------------------------------------------------------------------
def parse_page(
    body: object,
    *,
    account: Account,
    stream: Stream,
    cursor: Cursor,
    headers: Mapping[str, str] | None = None,
) -> Page:
    """Translate one timeline response body into a :class:`Page`; no HTTP."""
    if not isinstance(body, dict):
        raise TransientError("X sent a response body that is not a JSON object", system=NETWORK)
    data = _field(body, "data", list)
    includes, meta = _field(body, "includes", dict), _field(body, "meta", dict)
    warnings = [_warning(e) for e in _field(body, "errors", list)]

    authors: dict[str, Author] = {}
    for user in _field(includes, "users", list):
        if (author := _author(user)) is not None:
            authors[author.user_id] = author
        else:
            warnings.append(f"skipped an unreadable user object: {_clip(repr(user))}")
    # Spec 2.159 says includes.tweets, 2.167 includes.posts.
    referenced = _field(includes, "posts", list) + _field(includes, "tweets", list)
    referenced_authors = {
        p["id"]: p["author_id"]
        for p in referenced
        if isinstance(p, dict) and _is_id(p.get("id")) and _is_id(p.get("author_id"))
    }

    interactions: list[Interaction] = []
    quarantined: list[Quarantined] = []
    for post in data:
        item = _translate(post, account, stream, authors, referenced_authors)
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
        warnings=tuple(warnings),
    )


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
    if not _is_id(post_id):
        return Quarantined(NETWORK, "post has no id", post)
    author_id = post.get("author_id")
    replied_to = _replied_to(post)

    def bad(reason: str) -> Quarantined:
        return Quarantined(NETWORK, reason, post, item_id=post_id)

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
    if not _is_id(author_id):
        return bad("post has no author_id")
    if not _is_id(counterpart):
        return bad("in_reply_to_user_id is not an id")
    if created_at is None:
        return bad(
            f"created_at is missing or not a zoned ISO 8601 time: {post.get('created_at')!r}"
        )
    if not isinstance(text, str):
        return bad("text is not a string")
    author = authors.get(author_id)
    path = f"{author.handle}/status" if author and author.handle else "i/web/status"
    conversation_id = post.get("conversation_id")
    return Interaction(
        network=NETWORK,
        post_id=post_id,
        account=account.handle,
        stream=stream,
        direction=direction,
        author_id=author_id,
        counterpart_id=counterpart,
        text=text,
        created_at=created_at,
        url=f"https://x.com/{path}/{post_id}",
        conversation_id=conversation_id if isinstance(conversation_id, str) else None,
        in_reply_to_post_id=replied_to,
        raw=post,
    )


def _author(user: object) -> Author | None:
    if not isinstance(user, dict) or not _is_id(user.get("id")):
        return None
    url = user.get("url")
    entities = user.get("entities")
    # X shortens profile links to t.co; the expanded form is what a rep can recognise.
    with contextlib.suppress(KeyError, IndexError, TypeError):
        url = entities["url"]["urls"][0]["expanded_url"] or url  # type: ignore[index]
    return Author(
        network=NETWORK,
        user_id=user["id"],
        handle=_text(user.get("username")),
        display_name=_text(user.get("name")),
        description=_text(user.get("description")),
        location=_text(user.get("location")),
        url=_text(url),
    )


def _next_cursor(cursor: Cursor, meta: Mapping[str, Any], data: list[Any]) -> Cursor:
    token = meta.get("next_token")
    if token is not None and not isinstance(token, str):
        raise TransientError("X sent an unreadable meta.next_token", system=NETWORK)
    newest = meta.get("newest_id") if _is_id(meta.get("newest_id")) else _newest(data)
    # Only the first page of a walk sees the newest post; later pages' newest ids are older, so
    # the first page's value rides along as pending_since_id until the walk ends.
    pending = cursor.pending_since_id if cursor.in_walk else None
    if token:
        return Cursor(cursor.since_id, pagination_token=token, pending_since_id=pending or newest)
    return Cursor(since_id=pending or newest or cursor.since_id)


def _newest(data: list[Any]) -> str | None:
    ids = [p["id"] for p in data if isinstance(p, dict) and _is_id(p.get("id"))]
    return max(ids, key=lambda i: (len(i), i), default=None)  # numeric strings of any length


def _replied_to(post: JsonObject) -> str | None:
    refs = post.get("referenced_tweets")
    for ref in refs if isinstance(refs, list) else []:
        if isinstance(ref, dict) and ref.get("type") == "replied_to" and _is_id(ref.get("id")):
            return str(ref["id"])
    return None


def _timestamp(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    # A time without a zone is ambiguous; X always sends "Z".
    return parsed.astimezone(UTC) if parsed.tzinfo is not None else None


def _warning(error: object) -> str:
    if isinstance(error, dict):
        title = error.get("title") or "error"
        detail = error.get("detail") or error.get("message") or ""
        return _clip(f"{title}: {detail}" if detail else str(title))
    return _clip(str(error))


def _rate_info(headers: Mapping[str, str] | None) -> RateInfo | None:
    lower = {k.lower(): v for k, v in (headers or {}).items()}
    limit, remaining = (_int(lower.get(f"x-rate-limit-{k}")) for k in ("limit", "remaining"))
    info = RateInfo(limit, remaining, _reset_at(lower))
    return info if info != RateInfo() else None


def _reset_at(headers: Mapping[str, str]) -> datetime | None:
    seconds = _int(headers.get("x-rate-limit-reset"))
    try:
        return datetime.fromtimestamp(seconds, UTC) if seconds is not None else None
    except (OverflowError, OSError, ValueError):
        return None


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
        raise TransientError(f"X sent a {key!r} that is not a {kind.__name__}", system=NETWORK)
    return value


def _is_id(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and bool(value.strip())


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
