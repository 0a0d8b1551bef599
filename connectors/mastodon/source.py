"""The Mastodon source: the brand account's mention notifications and its own replies, read
with Mastodon.py on the brand's instance.

A walk is X's in shape (newest first, then back to the stored id), but a hole-free one: the
first request of a walk reads the newest page without ``min_id``/``max_id`` (Mastodon counts
only paginated requests against its separate 300-per-15-minutes limit, so an idle poll costs
none of it), and when that page is full the posts between the stored id and it are read
*forward*, ``min_id`` from the stored id and ``max_id`` at the first page's oldest, each next
``min_id`` taken from the answer's ``Link: rel="prev"``. A ``since_id`` walk would answer the
newest page of that range and leave a hole when more than a page arrived. The walk always
reaches the stored id (the endpoints have no horizon), so it never leaves a gap.

Notification ids are a sequence, not a time, so this source cannot turn ``start`` into an id
(:class:`syncd.contracts.Starting`). It honours ``start`` in the first walk itself instead: with
no stored id, the walk reads newest first (``max_id``) until a post made before ``start``, and
its end stores the newest id it saw, so nothing made after ``start`` is skipped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from connectors.mastodon import backfill
from connectors.mastodon.client import MastodonClient
from connectors.mastodon.parse import (
    NETWORK,
    Translated,
    id_key,
    instance_of,
    is_id,
    parse_author,
    parse_mentions,
    parse_replies,
    rate_info,
    ref_id,
    replied_to,
)
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
from syncd.errors import AuthError, ExternalError, MalformedAnswer, NotFound, RateLimited
from syncd.model import Account, Author, Cursor, Page, PostCount, Segment, Stream

if TYPE_CHECKING:
    from syncd.contracts import Backfiller, ObservedResponses, Source
    from syncd.contracts import RateLimited as RateLimitedSource

__all__ = ["MastodonSettings", "MastodonSource"]

NOTIFICATIONS_LIMIT = 80  # GET /api/v1/notifications: limit up to 80
STATUSES_LIMIT = 40  # GET /api/v1/accounts/:id/statuses: limit up to 40
_BACK = "back:"  # the page position of a first walk, read newest first back to `start`
MANY_IDS = 20  # ids a GET /api/v1/statuses?id[]= or /api/v1/accounts?id[]= call takes
# The notification policy's filters that hide a stranger's mention (a customer is a stranger
# to the brand): "filter" moves it to notification requests, "drop" discards it.
_POLICY_KEYS = {
    "for_not_following": "people the account does not follow",
    "for_not_followers": "people who do not follow the account",
    "for_new_accounts": "accounts created in the past 30 days",
    "for_private_mentions": "private mentions from strangers",
}


class MastodonSettings(SourceSettings):
    type: Literal["mastodon"]
    api_base_url: str  # the brand's instance, e.g. https://mastodon.social
    access_token: SecretRef  # the brand account's token (scopes read:accounts, read:statuses,
    # read:notifications); a token is one account's, so `accounts` holds that one account
    # Mastodon allows 300 paginated requests per 15 minutes per user and a poll makes up to
    # two of them per stream: a minute between polls keeps an idle brand at a tenth of that.
    interval: Duration = 60.0
    page_size: int = Field(default=NOTIFICATIONS_LIMIT, ge=1, le=NOTIFICATIONS_LIMIT)
    timeout: Duration = 30.0
    # Seconds between two backfill requests: half the paginated budget (300 per 15 minutes)
    # by default, the rest left to live polls; only a stand-in wants less.
    backfill_interval: DurationOrZero = backfill.MIN_INTERVAL
    # The domain of the instance's accounts (``user@domain``) when it is not api_base_url's
    # host (an instance with a separate web domain).
    domain: str | None = None

    @field_validator("api_base_url")
    @classmethod
    def _absolute_http(cls, value: str) -> str:
        return base_url(value, "https://mastodon.social")

    @field_validator("accounts")
    @classmethod
    def _one_account(cls, value: list[str]) -> list[str]:
        if len(value) != 1:
            raise ValueError(
                "a Mastodon access token reads one account: list that one here, and add "
                "another [[sources]] (with its own token) for each other account"
            )
        return value


@dataclass(frozen=True)
class _Me:
    local_id: str
    uri: str
    acct: str


class MastodonSource:
    """Reads ``mentions`` (mention notifications) and ``replies`` (the brand's own statuses
    answering someone) of the account the access token belongs to."""

    network: ClassVar[str] = NETWORK
    Settings: ClassVar[type[ConnectorSettings]] = MastodonSettings
    rate_limit_headers: ClassVar[tuple[str, str]] = ("x-ratelimit-remaining", "x-ratelimit-limit")
    post_check_batch: ClassVar[int] = MANY_IDS
    shared_routes: ClassVar[frozenset[str]] = backfill.SHARED_ROUTES

    def __init__(
        self,
        access_token: str,
        *,
        api_base_url: str,
        page_size: int = NOTIFICATIONS_LIMIT,
        timeout: float = 30.0,
        domain: str | None = None,
        start: str = "now",
        backfill_interval: float = backfill.MIN_INTERVAL,
    ) -> None:
        self.start = parse_start(start)
        self.backfill_interval = backfill_interval
        self.api_base_url = api_base_url.rstrip("/")
        self.domain = domain or (urlsplit(self.api_base_url).netloc.lower())
        self.page_size = page_size
        self.client = MastodonClient(access_token, api_base_url=self.api_base_url, timeout=timeout)
        self._me: _Me | None = None
        # Account local id → author: ids are stable on one instance, so read once a process.
        self._people: dict[str, Author] = {}

    @classmethod
    def from_settings(cls, settings: MastodonSettings) -> Self:
        return cls(
            settings.access_token.reveal(),
            api_base_url=settings.api_base_url,
            page_size=settings.page_size,
            timeout=settings.timeout,
            domain=settings.domain,
            start=settings.start,
            backfill_interval=settings.backfill_interval,
        )

    # -- accounts ----------------------------------------------------------------------------
    def resolve_accounts(self, handles: Sequence[str]) -> dict[str, Account]:
        """``GET /api/v1/accounts/lookup`` per handle (the API has no batched lookup)."""
        found: dict[str, Account] = {}
        for given in dict.fromkeys(handles):
            acct = given.strip().removeprefix("@")
            if not acct or any(c.isspace() or c == "/" for c in acct):
                continue
            try:
                _, body, _ = self.client.call(self.client.api.account_lookup, acct=acct)
            except NotFound:
                continue  # {"error":"Record not found"}
            try:
                author = parse_author(body, self.domain)
            except ExternalError as exc:
                raise MalformedAnswer(
                    f"Mastodon sent an unreadable account: {exc}", system=NETWORK
                ) from None
            found[given] = Account(NETWORK, acct, author.user_id)
        return found

    def me(self) -> _Me:
        """The account the token belongs to (``verify_credentials``), read once."""
        if self._me is None:
            _, body, _ = self.client.call(self.client.api.account_verify_credentials)
            if not isinstance(body, dict) or not is_id(body.get("id")):
                raise MalformedAnswer("Mastodon sent unreadable credentials", system=NETWORK)
            try:
                author = parse_author(body, self.domain)
            except ExternalError as exc:
                raise MalformedAnswer(
                    f"Mastodon sent an unreadable account: {exc}", system=NETWORK
                ) from None
            self._me = _Me(str(body["id"]), author.user_id, author.handle or "")
        return self._me

    # -- fetch -------------------------------------------------------------------------------
    def fetch(
        self, account: Account, stream: Stream, cursor: Cursor, known: KnownAuthors | None = None
    ) -> Page:
        read, params = self._endpoint(account, stream)
        items, headers, next_cursor = self._step(read, params, cursor)
        return self._page(items, headers, next_cursor, account, stream)

    def _endpoint(
        self, account: Account, stream: Stream
    ) -> tuple[Callable[..., Any], dict[str, Any]]:
        """The Mastodon.py method reading ``stream`` of the token's account, and its params."""
        me = self.me()
        if me.uri != account.user_id:
            raise AuthError(
                f"the access token belongs to {me.acct}, not to {account.handle}", system=NETWORK
            )
        if stream is Stream.MENTIONS:
            read: Callable[..., Any] = self.client.api.notifications
            params: dict[str, Any] = {"types": ["mention"], "limit": self.page_size}
        else:
            read = self.client.api.account_statuses
            limit = min(self.page_size, STATUSES_LIMIT)
            params = {"id": me.local_id, "exclude_reblogs": True, "limit": limit}
        return read, params

    def _page(
        self,
        items: list[Any],
        headers: Mapping[str, str],
        next_cursor: Cursor,
        account: Account,
        stream: Stream,
    ) -> Page:
        me = self.me()
        if stream is Stream.MENTIONS:
            translated = parse_mentions(items, account, self.domain, me.local_id, self._people)
        else:
            translated = self._replies(items, account, me)
        ids = [str(i["id"]) for i in items if isinstance(i, dict) and is_id(i.get("id"))]
        return Page(
            interactions=translated.interactions,
            authors=translated.authors,
            next_cursor=next_cursor,
            rate=rate_info(headers),
            quarantined=translated.quarantined,
            returned=len(items),
            oldest_id=min(ids, key=id_key) if ids else None,
            horizon=None,
        )

    def _step(
        self, read: Callable[..., Any], params: dict[str, Any], cursor: Cursor
    ) -> tuple[list[Any], Mapping[str, str], Cursor]:
        """One request of a walk and the cursor after it (see the module's docstring)."""
        limit = int(params["limit"])
        since = cursor.since_id
        token = cursor.pagination_token
        if since is None and (token is None or token.startswith(_BACK)):
            return self._first_walk(read, params, cursor)
        if token is None:
            _, body, headers = self.client.call(read, **params)
            items = self._items(body)
            ids = self._ids(items)
            fresh = [i for i in ids if since is None or id_key(i) > id_key(since)]
            newest = max(fresh, key=id_key) if fresh else since
            if len(items) < limit or len(fresh) < len(ids) or not fresh:
                # The newest page holds all that came after the stored id.
                kept = [i for i in items if self._after(i, since)]
                return kept, headers, Cursor(since_id=newest)
            oldest = min(ids, key=id_key)
            return items, headers, Cursor(since, f"{since}:{oldest}", pending_since_id=newest)
        low, _, high = token.partition(":")
        if not (is_id(low) and is_id(high)):
            raise MalformedAnswer("a stored Mastodon page position is unreadable", system=NETWORK)
        result, body, headers = self.client.call(read, **params, min_id=low, max_id=high)
        items = self._items(body)
        ids = self._ids(items)
        if len(items) < limit or not ids:
            return items, headers, Cursor(since_id=cursor.pending_since_id or since)
        # Link: rel="prev" names the next min_id (the newest id of this answer).
        prev = getattr(result, "_pagination_prev", None)
        following = prev.get("min_id") if isinstance(prev, dict) else None
        following = str(following) if following is not None else max(ids, key=id_key)
        if not is_id(following) or id_key(following) <= id_key(low):
            raise MalformedAnswer("Mastodon's Link header does not move forward", system=NETWORK)
        token = f"{following}:{high}"
        return items, headers, Cursor(since, token, cursor.pending_since_id)

    def _first_walk(
        self, read: Callable[..., Any], params: dict[str, Any], cursor: Cursor
    ) -> tuple[list[Any], Mapping[str, str], Cursor]:
        """A stream's first walk: newest first (``max_id``) back to the configured ``start``,
        whose moment the page position carries, so a walk resumed later keeps it. Its end
        stores the newest id it saw (``"0"`` when the stream was empty: everything is new)."""
        token = cursor.pagination_token
        if token is None:
            moment = start_moment(self.start, datetime.now(UTC))
            _, body, headers = self.client.call(read, **params)
            newest: str | None = None
        else:
            below, _, stamp = token.removeprefix(_BACK).partition(":")
            try:
                moment = datetime.fromtimestamp(float(stamp), UTC)
            except (ValueError, OverflowError):
                below = ""
            if not is_id(below):
                raise MalformedAnswer(
                    "a stored Mastodon page position is unreadable", system=NETWORK
                )
            _, body, headers = self.client.call(read, **params, max_id=below)
            newest = cursor.pending_since_id
        items = self._items(body)
        ids = self._ids(items)
        newest = newest or (max(ids, key=id_key) if ids else None)
        kept = [i for i in items if not self._before(i, moment)]
        if len(items) < int(params["limit"]) or len(kept) < len(items) or not ids:
            return kept, headers, Cursor(since_id=newest or "0")
        oldest = min(ids, key=id_key)
        position = f"{_BACK}{oldest}:{moment.timestamp()}"
        return kept, headers, Cursor(None, position, pending_since_id=newest)

    @staticmethod
    def _before(item: Any, moment: datetime) -> bool:
        """Made before ``moment`` (an item whose time cannot be read is not: it goes on to
        be quarantined with the reason)."""
        value = item.get("created_at") if isinstance(item, dict) else None
        try:
            made = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return False
        return made.tzinfo is not None and made < moment

    @staticmethod
    def _items(body: Any) -> list[Any]:
        if not isinstance(body, list):
            raise MalformedAnswer("Mastodon sent something other than a list", system=NETWORK)
        return body

    @staticmethod
    def _ids(items: Sequence[Any]) -> list[str]:
        return [str(i["id"]) for i in items if isinstance(i, dict) and is_id(i.get("id"))]

    @staticmethod
    def _after(item: Any, since: str | None) -> bool:
        if since is None or not isinstance(item, dict) or not is_id(item.get("id")):
            return True  # an item without a readable id goes on to be quarantined
        return id_key(str(item["id"])) > id_key(since)

    def _replies(self, items: Sequence[Any], account: Account, me: _Me) -> Translated:
        """Who each brand status answers, as actor uris (``GET /api/v1/accounts?id[]=``), and
        the uris of the statuses replied to (``GET /api/v1/statuses?id[]=``), batched."""
        statuses = [i for i in items if isinstance(i, dict) and not i.get("reblog")]
        targets = {t for s in statuses if (t := replied_to(s, me.local_id))}
        self._read_people(sorted(targets - set(self._people)))
        parent_ids = sorted(
            {
                str(s["in_reply_to_id"])
                for s in statuses
                if replied_to(s, me.local_id) and is_id(s.get("in_reply_to_id"))
            }
        )
        parents = {local: uri for local, (uri, _) in self._read_statuses(parent_ids).items()}
        return parse_replies(items, account, me.local_id, self._people, parents)

    def _read_people(self, ids: Sequence[str]) -> None:
        for start in range(0, len(ids), MANY_IDS):
            batch = list(ids[start : start + MANY_IDS])
            _, body, _ = self.client.call(self.client.api.accounts, ids=batch)
            for raw in body if isinstance(body, list) else []:
                try:
                    self._people[str(raw["id"])] = parse_author(raw, self.domain)
                except (ExternalError, KeyError, TypeError):
                    continue  # its replies are quarantined, saying the account was unreadable

    def _read_statuses(self, ids: Sequence[str]) -> dict[str, tuple[str, Any]]:
        """Local status id → (uri, body) of those the instance still shows."""
        found: dict[str, tuple[str, Any]] = {}
        for start in range(0, len(ids), MANY_IDS):
            batch = list(ids[start : start + MANY_IDS])
            _, body, _ = self.client.call(self.client.api.statuses, ids=batch)
            for raw in body if isinstance(body, list) else []:
                if (
                    isinstance(raw, dict)
                    and is_id(raw.get("id"))
                    and isinstance(raw.get("uri"), str)
                ):
                    found[str(raw["id"])] = (raw["uri"], raw)
        return found

    # -- backfills (Backfiller) --------------------------------------------------------------
    def plan_backfill(
        self,
        account: Account,
        streams: Sequence[Stream],
        since: datetime,
        until: datetime,
        now: datetime,
    ) -> list[Segment]:
        return backfill.plan(streams, since, until, now, self.page_size, self.backfill_interval)

    def count_posts(self, account: Account, segment: Segment) -> PostCount:
        """No counts endpoint: one page of the window, extrapolated over its span."""
        page = self.fetch_segment(account, segment, None)
        posts = len(page.interactions) + len(page.quarantined)
        if page.next_cursor.pagination_token is None:
            return PostCount(posts, exact=True)
        oldest = min((i.created_at for i in page.interactions), default=segment.until)
        covered = max((segment.until - oldest).total_seconds(), 1.0)
        span = (segment.until - segment.since).total_seconds()
        return PostCount(math.ceil(posts * span / covered), exact=False)

    def fetch_segment(
        self,
        account: Account,
        segment: Segment,
        token: str | None,
        known: KnownAuthors | None = None,
    ) -> Page:
        """One page of the window, newest first: ``token`` is the ``max_id`` to read below."""
        read, params = self._endpoint(account, segment.stream)
        params["limit"] = segment.page_size
        if token is not None:
            if not is_id(token):
                raise MalformedAnswer(
                    "a stored Mastodon page position is unreadable", system=NETWORK
                )
            params["max_id"] = token
        elif segment.stream is Stream.REPLIES:
            params["max_id"] = backfill.status_id_at(segment.until)
        _, body, headers = self.client.call(read, **params)
        items = self._items(body)
        ids = self._ids(items)
        times = [t for i in items if (t := backfill.made_at(i)) is not None]
        more = (
            len(items) >= segment.page_size
            and bool(ids)
            and min(times, default=segment.since) >= segment.since
        )
        following = min(ids, key=id_key) if more else None
        kept = [i for i in items if backfill.inside(i, segment)]
        return self._page(
            kept, headers, Cursor(pagination_token=following), account, segment.stream
        )

    # -- compliance and check ----------------------------------------------------------------
    def local_id(self, uri: str) -> str | None:
        """The local id of a status of this instance, from its uri (``…/statuses/<id>``, the
        shape Mastodon gives its own statuses' uris). None for another instance's status."""
        parts = urlsplit(uri)
        if parts.netloc.lower() not in {urlsplit(self.api_base_url).netloc.lower(), self.domain}:
            return None
        head, _, last = parts.path.rstrip("/").rpartition("/")
        return last if head.endswith("/statuses") and is_id(last) else None

    def lookup_posts(
        self, post_ids: Sequence[str], refs: Mapping[str, str] | None = None
    ) -> tuple[set[str], set[str]]:
        """Standing and deleted statuses, by uri, asked of this (the brand's) instance by
        their id here: the ``ref`` a status was read with (the ``id`` this instance gave it;
        one another instance gave is not used), else, for a status of this instance, the id
        its uri ends in. A batched
        ``GET /api/v1/statuses?id[]=`` answers the standing ones; each it leaves out is asked
        alone, and a 404 says deleted.

        That holds for another instance's status too: this instance keeps its own copy, which
        goes when the author's Delete activity reaches it, and answers from that copy, never
        asking the author's instance, so one that is down cannot make a standing status look
        deleted. A 404 also answers a status this instance no longer shows the brand (its
        author blocks the brand, a moderator removed it): Mastodon does not tell those apart.
        A status of another instance with no ref (read before refs were kept, its payload
        since emptied) has no id here that its uri tells: it is in neither set."""
        here = instance_of(self.me().uri) if refs else ""
        by_local: dict[str, str] = {}
        for uri in dict.fromkeys(post_ids):
            local = ref_id((refs or {}).get(uri), here) or self.local_id(uri)
            if local is not None:
                by_local[local] = uri
        alive: set[str] = set()
        deleted: set[str] = set()
        found = self._read_statuses(list(by_local))
        for local, uri in by_local.items():
            if local in found:
                if found[local][0] == uri:
                    alive.add(uri)
                continue
            try:
                _, body, _ = self.client.call(self.client.api.status, id=local)
            except NotFound:
                deleted.add(uri)
                continue
            if isinstance(body, dict) and body.get("uri") == uri:
                alive.add(uri)
        return alive, deleted

    def check(self, handles: Sequence[str]) -> list[CheckRow]:
        """The token's account (``verify_credentials``) must be each handle, and its
        notification policy (``GET /api/v2/notifications/policy``) must let strangers' mentions
        through."""
        try:
            me = self.me()
        except ExternalError as exc:
            if isinstance(exc, AuthError):
                fix = "check access_token: the instance refused it (revoked or mistyped?)"
            elif isinstance(exc, RateLimited):
                fix = "wait for the instance's rate limit to reset"
            else:
                fix = f"check api_base_url ({self.api_base_url}) and that this host reaches it"
            return [CheckRow("access token", False, str(exc), fix)]
        rows = [CheckRow("access token", True, f"belongs to {me.acct}")]
        for handle in handles:
            name = handle.strip().removeprefix("@")
            mine = name.lower() in {me.acct.lower(), me.acct.partition("@")[0].lower()}
            rows.append(
                CheckRow(f"@{name}", True, f"actor {me.uri}")
                if mine
                else CheckRow(
                    f"@{name}",
                    False,
                    f"the access token belongs to {me.acct}, not to {name}",
                    f'use a token of {name}\'s, or set accounts to ["{me.acct}"]',
                )
            )
        return [*rows, self._policy_row()]

    def _policy_row(self) -> CheckRow:
        item = "notification policy"
        try:
            _, body, _ = self.client.call(self.client.api.notifications_policy)
        except ExternalError as exc:
            fix = "give the token the read:notifications scope (Mastodon 4.3 or later)"
            return CheckRow(item, False, str(exc), fix)
        if not isinstance(body, dict):
            return CheckRow(item, False, "the instance sent an unreadable policy", "")
        hiding = [
            f"{who} ({body[key]})"
            for key, who in _POLICY_KEYS.items()
            if body.get(key) in ("filter", "drop")
        ]
        if hiding:
            return CheckRow(
                item,
                False,
                "mentions are filtered or dropped from " + ", ".join(hiding) + ": customers' "
                "mentions never reach the notifications syncd reads",
                "in Mastodon's Preferences > Notifications > Filter notifications from, set "
                "these to Accept (API: PATCH /api/v2/notifications/policy with "
                + ", ".join(
                    f"{k}=accept" for k in _POLICY_KEYS if body.get(k) in ("filter", "drop")
                )
                + ")",
            )
        return CheckRow(item, True, "mentions from strangers are accepted")

    def observe_responses(self, callback: ResponseObserver) -> None:
        """Every answer the instance sends, for /metrics."""
        self.client.observe_responses(callback)

    def close(self) -> None:
        self.client.close()


if TYPE_CHECKING:  # the contracts are structural: have mypy hold the class to them
    _: type[Source] = MastodonSource
    _r: type[RateLimitedSource] = MastodonSource
    _b: type[Backfiller] = MastodonSource
    _o: type[ObservedResponses] = MastodonSource
