"""The X source: a brand account's mentions and its replies, read with tweepy's v2 ``Client``.

:class:`XSource` is what the core sees (:class:`syncd.contracts.Source`, ``Backfiller``,
``GapCloser``, ``UsageReporter``, ``Starting``). It holds an :class:`~connectors.x.client.XClient`
(the HTTP side: clients, credentials, errors) and reads through it; authors are completed by
:mod:`connectors.x.authors`, past windows read by :mod:`connectors.x.backfill`, the usage figures
by :mod:`connectors.x.usage`. Turning a body into domain objects is the pure
:func:`~connectors.x.parse.parse_page`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

from pydantic import Field, ValidationInfo, field_validator

from connectors.x.auth.auth import OAuth1UserAuth, OAuth2UserAuth, UserAuth, check_user_auth
from connectors.x.authors import Authors
from connectors.x.backfill import _SNOWFLAKE_EPOCH_MS, SHARED_ROUTES, SearchAccess, XBackfill
from connectors.x.client import XClient
from connectors.x.fields import TWEET_FIELDS
from connectors.x.parse import (
    NETWORK,
    TIMELINE_HORIZONS,
    expired_token,
    is_x_id,
    parse_lookup,
    parse_page,
)
from connectors.x.usage import project_usage
from syncd.contracts import (
    CheckRow,
    ConnectorSettings,
    Duration,
    DurationOrZero,
    KnownAuthors,
    ResponseObserver,
    SourceSettings,
    parse_start,
    start_moment,
)
from syncd.contracts.secrets import SecretRef
from syncd.contracts.urls import base_url
from syncd.errors import AuthError, ExternalError, MalformedAnswer, RateLimited
from syncd.model import (
    Account,
    Cursor,
    GapPlan,
    Page,
    PostCount,
    ProjectUsage,
    Segment,
    Stream,
)

if TYPE_CHECKING:
    from syncd.contracts import (
        Backfiller,
        GapCloser,
        ObservedResponses,
        Source,
        Starting,
        UsageReporter,
    )
    from syncd.contracts import RateLimited as RateLimitedSource

__all__ = ["XSettings", "XSource"]

_LOOKUP_BATCH = 100  # most usernames GET /2/users/by (and ids GET /2/tweets) take in one call
# X rejects a whole lookup batch (400) if one username breaks its pattern, so such a handle is
# treated as unknown instead of failing every other handle in the batch.
_USERNAME = re.compile(r"[A-Za-z0-9_]{1,15}")  # fullmatch: "$" would take "acme\n"


class XSettings(SourceSettings):
    type: Literal["x"]
    bearer_token: SecretRef
    # Per account (by handle): user credentials its own timelines are read with, billed as
    # owned reads ([sources.user_auth.HANDLE], connectors.x.auth.auth).
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
        return base_url(value, "https://api.x.com")

    @field_validator("user_auth")
    @classmethod
    def _user_auth_accounts(
        cls, value: dict[str, OAuth1UserAuth | OAuth2UserAuth], info: ValidationInfo
    ) -> dict[str, OAuth1UserAuth | OAuth2UserAuth]:
        return check_user_auth(value, info.data.get("accounts"))


class XSource:
    """Reads the ``mentions`` and ``replies`` streams of brand accounts (app bearer token, or
    an account's own user token where configured: :mod:`connectors.x.auth.auth`), and past
    windows of them for backfills (:mod:`connectors.x.backfill`)."""

    network: ClassVar[str] = NETWORK
    Settings: ClassVar[type[ConnectorSettings]] = XSettings
    rate_limit_headers: ClassVar[tuple[str, str]] = ("x-rate-limit-remaining", "x-rate-limit-limit")
    post_check_batch: ClassVar[int] = _LOOKUP_BATCH
    shared_routes: ClassVar[frozenset[str]] = SHARED_ROUTES
    # How many of the newest posts each timeline reaches: X's numbers (a stand-in may differ).
    horizons: Mapping[Stream, int] = TIMELINE_HORIZONS

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
        self.price_per_post = price_per_post
        self.client = XClient(
            bearer_token, api_base_url=api_base_url, timeout=timeout, user_auth=user_auth or {}
        )
        self.authors = Authors(self.client)
        self.backfill = XBackfill(
            self.client,
            self.authors,
            search_access=search_access,
            full_archive_interval=full_archive_interval,
        )

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
            body, _ = self.client.call(self.client.app.get_users, usernames=batch)
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
            **self.authors.expansions(known),
        }
        # The replies stream reads the brand's retweets too, though never history (and billed
        # per post read): they count toward the timeline's 3,200-post reach, and excluded, a
        # walk the reach cut would show too few posts to be noticed (syncd.state.horizon).
        method = "get_users_mentions" if stream is Stream.MENTIONS else "get_users_tweets"

        def read(client: Any, user_auth: bool) -> tuple[Any, Mapping[str, str]]:
            return self.client.call(getattr(client, method), user_auth=user_auth, **params)

        # With the account's own user token where it has one (owned reads), else the app's.
        try:
            body, headers = self.client.owned.read(account, read)
        except ExternalError as exc:
            if expired := expired_token(exc, cursor.pagination_token):
                raise expired from exc
            raise
        owned = self.client.owned.covers(account)
        body, profiles = self.authors.complete(body, account, stream, known)
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

    # -- backfills and gaps (Backfiller, GapCloser) ---------------------------------------
    def plan_backfill(
        self,
        account: Account,
        streams: Sequence[Stream],
        since: datetime,
        until: datetime,
        now: datetime,
    ) -> list[Segment]:
        return self.backfill.plan_backfill(account, streams, since, until, now)

    def plan_gap(
        self, account: Account, stream: Stream, since_id: str, until_id: str, now: datetime
    ) -> GapPlan:
        return self.backfill.plan_gap(account, stream, since_id, until_id, now)

    def count_posts(self, account: Account, segment: Segment) -> PostCount:
        return self.backfill.count_posts(account, segment, self.horizons)

    def fetch_segment(
        self,
        account: Account,
        segment: Segment,
        token: str | None,
        known: KnownAuthors | None = None,
    ) -> Page:
        return self.backfill.fetch_segment(account, segment, token, known, self.horizons)

    def project_usage(self) -> ProjectUsage:
        """Of the budget guard's contract (:class:`syncd.contracts.UsageReporter`)."""
        return project_usage(self.client)

    # -- compliance and check --------------------------------------------------------------
    def lookup_posts(
        self, post_ids: Sequence[str], refs: Mapping[str, str] | None = None
    ) -> tuple[set[str], set[str]]:
        """Alive and deleted posts by ``GET /2/tweets?ids=``, 100 a call; no expansions,
        since only presence matters (each post returned is still billed as a read). A post's
        id is its address everywhere, so X sets no refs and ``refs`` is not read."""
        ids = [i for i in dict.fromkeys(post_ids) if is_x_id(i)]
        alive: set[str] = set()
        deleted: set[str] = set()
        for start in range(0, len(ids), _LOOKUP_BATCH):
            batch = ids[start : start + _LOOKUP_BATCH]
            body, _ = self.client.call(self.client.app.get_tweets, ids=batch)
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
        call = self.client.call
        return rows + self.client.owned.check(found, lambda c, ua: call(c.get_me, user_auth=ua)[0])

    def observe_responses(self, callback: ResponseObserver) -> None:
        """Every answer of the app's client and of each account's, for /metrics."""
        self.client.observe_responses(callback)

    def close(self) -> None:
        self.client.close()


if TYPE_CHECKING:  # the contracts are structural: have mypy hold the class to them
    _: type[Source] = XSource
    _b: type[Backfiller] = XSource
    _g: type[GapCloser] = XSource
    _s: type[Starting] = XSource
    _u: type[UsageReporter] = XSource
    _r: type[RateLimitedSource] = XSource
    _o: type[ObservedResponses] = XSource
