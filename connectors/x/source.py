"""The X source: a brand account's mentions and its replies, read with tweepy's v2 ``Client``.

tweepy is used unmodified. ``return_type=dict`` hands back the JSON only, so a ``requests``
response hook keeps the ``x-rate-limit-*`` headers, and a URL-rewriting adapter points the
client at ``api_base_url`` (the sandbox, a proxy). Turning a body into domain objects is the
pure :func:`~connectors.x.parse.parse_page`, re-exported here. Nothing here retries or sleeps:
errors are classified (:func:`_classify`) and the pipeline decides.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self
from urllib.parse import urlsplit

import requests
import tweepy
from pydantic import Field, ValidationInfo, field_validator

from connectors._http import RewritingAdapter, mount
from connectors.x.auth import OAuth1UserAuth, OAuth2UserAuth, OwnedReads, UserAuth, check_user_auth
from connectors.x.authors import RecentProfiles, complete
from connectors.x.backfill import _SNOWFLAKE_EPOCH_MS, SearchAccess, XBackfill
from connectors.x.fields import EXPANSIONS, TWEET_FIELDS, USER_FIELDS
from connectors.x.parse import (
    NETWORK,
    clip,
    expired_token,
    is_x_id,
    parse_lookup,
    parse_page,
    reset_at,
)
from connectors.x.usage import XUsage, cap_resume
from syncd.contracts import (
    CheckRow,
    ConnectorSettings,
    Duration,
    DurationOrZero,
    KnownAuthors,
    SourceSettings,
    parse_start,
    start_moment,
)
from syncd.contracts.secrets import SecretRef, masked
from syncd.contracts.urls import require_tls
from syncd.errors import (
    AuthError,
    ExternalError,
    MalformedAnswer,
    NotFound,
    RateLimited,
    SyncdError,
    TransientError,
    UsageCapped,
)
from syncd.model import Account, Author, Cursor, Page, Stream

if TYPE_CHECKING:
    from syncd.contracts import Backfiller, Source, Starting

__all__ = [
    "EXPANSIONS",
    "NETWORK",
    "TWEET_FIELDS",
    "USER_FIELDS",
    "XSettings",
    "XSource",
    "parse_page",
]

# tweepy hard-codes api.twitter.com; newer code and docs say api.x.com. Both go to api_base_url.
_LIBRARY_ORIGINS = ("https://api.twitter.com", "https://api.x.com")
_LOOKUP_BATCH = 100  # most usernames GET /2/users/by (and ids GET /2/tweets) take in one call
# X rejects a whole lookup batch (400) if one username breaks its pattern, so such a handle is
# treated as unknown instead of failing every other handle in the batch.
_USERNAME = re.compile(r"[A-Za-z0-9_]{1,15}")  # fullmatch: "$" would take "acme\n"
# X sends no Retry-After; without x-rate-limit-reset a 15-minute window is the safe guess. A
# usage cap (billing) lasts until the cap period resets: see connectors.x.usage.cap_resume.
_RATE_WINDOW = timedelta(minutes=15)

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
    # Per account (by handle): user credentials its own timelines are read with, billed as
    # owned reads ([sources.user_auth.HANDLE], connectors.x.auth).
    user_auth: dict[str, UserAuth] = Field(default_factory=dict)
    api_base_url: str = "https://api.x.com"
    page_size: int = Field(default=100, ge=5, le=100)  # max_results: X accepts 5..100
    timeout: Duration = 30.0  # seconds per request
    # What the app's X plan may search, for backfills: "recent" (the last 7 days, every
    # paid plan), "all" (full archive: Pro, Enterprise, pay-per-use) or "none".
    search_access: SearchAccess = "recent"
    # X serves full-archive search one request per second; only a stand-in wants less.
    full_archive_interval: DurationOrZero = 1.0
    price_per_post: float = Field(default=0.005, ge=0.0)  # dollars per post read, estimates
    # The monthly budget (syncd.budget.ledger): posts, dollars at these prices, or both.
    price_per_user: float = Field(default=0.010, ge=0.0)  # dollars per user object read
    price_per_owned_post: float = Field(default=0.001, ge=0.0)  # read with a user's own token
    budget_posts: int | None = Field(default=None, gt=0)
    budget_dollars: float | None = Field(default=None, gt=0.0)

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
        return require_tls(value.strip()).rstrip("/")

    @field_validator("user_auth")
    @classmethod
    def _user_auth_accounts(
        cls, value: dict[str, OAuth1UserAuth | OAuth2UserAuth], info: ValidationInfo
    ) -> dict[str, OAuth1UserAuth | OAuth2UserAuth]:
        return check_user_auth(value, info.data.get("accounts"))


class XSource(XBackfill, XUsage):
    """Reads the ``mentions`` and ``replies`` streams of brand accounts (app bearer token, or
    an account's own user token where configured: :mod:`connectors.x.auth`), and past windows
    of them for backfills (:mod:`connectors.x.backfill`)."""

    network: ClassVar[str] = NETWORK
    Settings: ClassVar[type[ConnectorSettings]] = XSettings
    rate_limit_headers: ClassVar[tuple[str, str]] = ("x-rate-limit-remaining", "x-rate-limit-limit")
    post_check_batch: ClassVar[int] = _LOOKUP_BATCH

    def __init__(
        self,
        bearer_token: str,
        *,
        api_base_url: str = "https://api.x.com",
        page_size: int = 100,
        timeout: float = 30.0,
        search_access: SearchAccess = "recent",
        price_per_post: float = 0.005,
        full_archive_interval: float = 1.0,
        user_auth: Mapping[str, OAuth1UserAuth | OAuth2UserAuth] | None = None,
        start: str = "now",
    ) -> None:
        self.api_base_url = api_base_url
        self.start = parse_start(start)
        self.page_size = page_size
        self.search_access = search_access
        self.price_per_post = price_per_post
        self.full_archive_interval = full_archive_interval
        self._token = bearer_token
        # Never wait_on_rate_limit: tweepy would sleep inside the call, and retry forever when a
        # 429 lacks x-rate-limit-reset.
        self.client: Any = tweepy.Client(
            bearer_token=bearer_token, return_type=dict, wait_on_rate_limit=False
        )
        rewrites = dict.fromkeys(_LIBRARY_ORIGINS, api_base_url)
        self._adapter = RewritingAdapter(rewrites, timeout)
        mount(self.client.session, self._adapter)
        # Jobs for several accounts of one source run in parallel threads on this session.
        self._local = threading.local()
        self._recent_profiles = RecentProfiles()
        self.client.session.hooks["response"].append(self._remember)
        self._owned = OwnedReads(self.client, user_auth or {}, self._new_session)

    @classmethod
    def from_settings(cls, settings: XSettings) -> Self:
        return cls(
            settings.bearer_token.reveal(),
            api_base_url=settings.api_base_url,
            page_size=settings.page_size,
            timeout=settings.timeout,
            search_access=settings.search_access,
            price_per_post=settings.price_per_post,
            full_archive_interval=settings.full_archive_interval,
            user_auth=settings.user_auth,
            start=settings.start,
        )

    def start_after(self, now: datetime) -> str:
        """The id below every post made at or after ``start`` (X's ids are snowflakes: the
        time is in the id), for a first walk's since_id: the walk is then an ordinary walk
        after a since_id, and one cut at the horizon is a gap back to ``start``."""
        ms = math.floor(start_moment(self.start, now).timestamp() * 1000) - _SNOWFLAKE_EPOCH_MS
        # Before X's ids began (2010-11-04), every id is later.
        return str(max((ms << 22) - 1, 0))

    def resolve_accounts(self, handles: Sequence[str]) -> dict[str, Account]:
        names = {h: h.strip().removeprefix("@") for h in handles}
        lookup = list(dict.fromkeys(n.lower() for n in names.values() if _USERNAME.fullmatch(n)))
        ids: dict[str, str] = {}
        for start in range(0, len(lookup), _LOOKUP_BATCH):
            batch = lookup[start : start + _LOOKUP_BATCH]
            body, _ = self._call(self.client.get_users, usernames=batch)
            if not isinstance(body, dict) or not isinstance(body.get("data") or [], list):
                raise MalformedAnswer("X sent an unreadable user lookup", system=NETWORK)
            for user in body.get("data") or []:
                name = user.get("username") if isinstance(user, dict) else None
                if isinstance(name, str) and is_x_id(user.get("id")):
                    ids[name.lower()] = user["id"]
        # Unknown and suspended handles come back in errors[] and are simply absent here.
        return {
            given: Account(NETWORK, name, ids[name.lower()])
            for given, name in names.items()
            if name.lower() in ids
        }

    def fetch(
        self, account: Account, stream: Stream, cursor: Cursor, known: KnownAuthors | None = None
    ) -> Page:
        params: dict[str, Any] = {
            "id": account.user_id,
            "since_id": cursor.since_id,
            "pagination_token": cursor.pagination_token,
            "max_results": self.page_size,
            "tweet_fields": TWEET_FIELDS,
            **self.expanded(known),
        }
        # The replies stream reads the brand's retweets too, though never history (and billed
        # per post read): they count toward the timeline's 3,200-post reach, and excluded, a
        # walk the reach cut would show too few posts to be noticed (syncd.state.horizon).
        method = "get_users_mentions" if stream is Stream.MENTIONS else "get_users_tweets"

        def read(client: Any, user_auth: bool) -> tuple[Any, Mapping[str, str]]:
            return self._call(getattr(client, method), user_auth=user_auth, **params)

        # With the account's own user token where it has one (owned reads), else the app's.
        try:
            body, headers = self._owned.read(account, read)
        except ExternalError as exc:
            if expired := expired_token(exc, cursor.pagination_token):
                raise expired from exc
            raise
        owned = self._owned.covers(account)
        body, profiles = self.authors_of(body, account, stream, known)
        return parse_page(
            body,
            account=account,
            stream=stream,
            cursor=cursor,
            headers=headers,
            owned=owned,
            known=profiles,
            horizon=self.horizons[stream],
        )

    def expanded(self, known: KnownAuthors | None) -> dict[str, Any]:
        """What a page asks X to expand: nothing when state knows authors (they are looked up
        after, only those it lacks: :mod:`connectors.x.authors`), else everything."""
        return {} if known else {"expansions": EXPANSIONS, "user_fields": USER_FIELDS}

    def authors_of(
        self, body: Any, account: Account, stream: Stream, known: KnownAuthors | None
    ) -> tuple[Any, dict[str, Author]]:
        if known is None:
            return body, {}
        return complete(
            body,
            account=account,
            stream=stream,
            known=known,
            call=self._call,
            client=self.client,
            recent=self._recent_profiles,
        )

    def lookup_posts(self, post_ids: Sequence[str]) -> tuple[set[str], set[str]]:
        """Alive and deleted posts by ``GET /2/tweets?ids=``, 100 a call; no expansions,
        since only presence matters (each post returned is still billed as a read)."""
        ids = [i for i in dict.fromkeys(post_ids) if is_x_id(i)]
        alive: set[str] = set()
        deleted: set[str] = set()
        for start in range(0, len(ids), _LOOKUP_BATCH):
            batch = ids[start : start + _LOOKUP_BATCH]
            body, _ = self._call(self.client.get_tweets, ids=batch)
            found, gone = parse_lookup(body, batch)
            alive |= found
            deleted |= gone
        return alive, deleted

    def check(self, handles: Sequence[str]) -> list[CheckRow]:
        """Authenticate and look the brand handles up: one users lookup per 100 handles."""
        try:
            found = self.resolve_accounts(handles)
        except ExternalError as exc:
            if isinstance(exc, AuthError):
                fix = "check bearer_token: X refused it (a revoked or mistyped token?)"
            elif isinstance(exc, RateLimited):
                fix = "wait for X's rate limit or usage cap to reset"
            else:
                fix = f"check api_base_url ({self.api_base_url}) and that this host reaches it"
            return [CheckRow("users lookup", False, str(exc), fix)]
        rows = [CheckRow("users lookup", True, f"{self.api_base_url} accepted the bearer token")]
        for handle in handles:
            account = found.get(handle)
            rows.append(
                CheckRow(f"@{handle}", True, f"user id {account.user_id}")
                if account
                else CheckRow(
                    f"@{handle}",
                    False,
                    f"X knows no account @{handle} (or it is suspended)",
                    "correct the handle in accounts",
                )
            )
        # Accounts with user credentials: GET /2/users/me must answer that very account.
        return rows + self._owned.check(found, lambda c, ua: self._call(c.get_me, user_auth=ua)[0])

    def close(self) -> None:
        self.client.session.close()
        self._owned.close()

    # -- plumbing --------------------------------------------------------------------------
    def _remember(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self._local.response = response

    def _new_session(self) -> requests.Session:
        """A session like the app client's (same adapter, same hook), for one account."""
        session = requests.Session()
        mount(session, self._adapter)
        session.hooks["response"].append(self._remember)
        return session

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
        text = masked(str(error), [s for s in (self._token, *self._owned.secrets()) if s])
        if text != str(error):
            error.args = (text,)
        return error


if TYPE_CHECKING:
    _: type[Source] = XSource
    _b: type[Backfiller] = XSource
    _s: type[Starting] = XSource


def _classify(exc: Exception) -> SyncdError:
    """The one table from what the X client raised to what the runner must do.

    tweepy picks its exception class (BadRequest, Unauthorized, Forbidden, NotFound,
    TooManyRequests, TwitterServerError) from the status alone; reading the status here is the
    same table, and also serves a bare ``HTTPException`` built when tweepy's own failed.
    """
    if isinstance(exc, requests.JSONDecodeError):
        # A 200 whose body is not JSON (cut short, a proxy's HTML page): counted per stream.
        reason = clip(str(exc) or type(exc).__name__)
        return MalformedAnswer(f"X sent a body that is not JSON: {reason}", system=NETWORK)
    if isinstance(exc, requests.RequestException):
        # Connection refused or reset, timeouts, a body cut short.
        reason = clip(str(exc) or type(exc).__name__)
        return TransientError(f"X request failed: {reason}", system=NETWORK)
    if not isinstance(exc, tweepy.HTTPException):
        raise TypeError(f"not an X client error: {exc!r}")
    response: requests.Response = exc.response
    status = response.status_code
    detail = "; ".join(str(m) for m in exc.api_messages) or str(exc).replace("\n", "; ")
    message = f"X API {status}: {clip(detail)}"
    now = datetime.now(UTC)
    if status in (403, 429) and _usage_capped(response):  # billing cap, not a credential issue
        # Not x-rate-limit-reset: that is the rate window's end, and the cap outlasts it.
        resume, period = cap_resume(response, now)
        return UsageCapped(message, resume_at=resume, system=NETWORK, status=status, period=period)
    if status == 429:
        resume = reset_at(response.headers) or now + _RATE_WINDOW
        return RateLimited(message, resume_at=resume, system=NETWORK, status=status)
    if status in (401, 403):
        return AuthError(message, system=NETWORK, status=status)
    if status == 404:
        return NotFound(message, system=NETWORK, status=status)
    if status >= 500:
        return TransientError(message, system=NETWORK, status=status)
    # 400 (with a page token sent: expired_token, where the call knows it) and any other 4xx.
    return ExternalError(message, system=NETWORK, status=status)


def _usage_capped(response: requests.Response) -> bool:
    # Spec 2.159's UsageCapExceededProblem: type ".../problems/usage-capped" (api.twitter.com
    # even from api.x.com), title "UsageCapExceeded", as the whole body, not inside errors[].
    text = response.text.lower()
    return "usage-capped" in text or "usagecapexceeded" in text
