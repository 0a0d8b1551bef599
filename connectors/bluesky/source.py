"""The Bluesky source: the brand account's mentions, replies and quotes (its notifications)
and its own replies (its author feed), read with the atproto SDK.

:class:`BlueskySource` is what the core sees (:class:`syncd.contracts.Source`, ``Starting``,
``RateLimited``). It holds a :class:`~connectors.bluesky.client.BlueskyClient` (the SDK, the
stored session, errors); turning an answer into domain objects is the pure
:mod:`connectors.bluesky.parse`. A source is one login, so it reads one brand account.

Never called: ``updateSeen`` (it would mark the brand's notifications read for its staff),
and ``listNotifications`` is never sent ``seenAt`` (the server refuses it).
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Self

from pydantic import AfterValidator, Field, field_validator

from connectors.bluesky import backfill
from connectors.bluesky.client import LEXICON, BlueskyClient, SessionStore, params
from connectors.bluesky.parse import (
    NETWORK,
    REASONS,
    REPLY_NOTIFY_DEPTH,
    BrandPost,
    Mark,
    brand_posts,
    parse_feed,
    parse_notifications,
    parse_post_views,
    parse_search,
    post_url,
    quote_views,
    rate_info,
    thread_replies,
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
from syncd.model import (
    Account,
    Cursor,
    GapPlan,
    Page,
    PostCount,
    RateInfo,
    Segment,
    Stream,
)

if TYPE_CHECKING:
    from syncd.contracts import Backfiller, GapCloser, ObservedResponses, Source, Starting
    from syncd.contracts import RateLimited as RateLimitedSource

__all__ = ["BlueskySettings", "BlueskySource"]

_PROFILES_BATCH = 25  # app.bsky.actor.getProfiles: at most 25 actors
_POSTS_BATCH = 25  # app.bsky.feed.getPosts: at most 25 uris
# The atproto handle syntax: a domain name. getProfiles refuses a whole batch (400) for one
# actor that is neither a handle nor a DID, so such a name is unknown instead.
_HANDLE = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
)
_DID = re.compile(r"did:[a-z]+:[A-Za-z0-9._:%-]{1,2048}")


def _absolute(path: Path) -> Path:
    if not path.is_absolute():
        raise ValueError("must be an absolute path, e.g. '/var/lib/syncd/bluesky-acme.session'")
    if path.is_dir():
        raise ValueError("is a directory: name the file syncd keeps the session in")
    return path


class BlueskySettings(SourceSettings):
    type: Literal["bluesky"]
    service: str = "https://bsky.social"  # the brand's PDS (or the entryway that finds it)
    identifier: str  # the brand account's handle or DID, as it logs in
    app_password: SecretRef  # an app password (Settings → App Passwords), never the main one
    # Where the session (access and refresh JWTs) is kept between polls and restarts: logins
    # are limited to 30 per 5 minutes and 300 a day, so syncd logs in only when none is kept.
    session_file: Annotated[Path, AfterValidator(_absolute)]
    # A configured handle without a dot is taken as <name>.<handle_domain>, as the app does.
    handle_domain: str = "bsky.social"
    page_size: int = Field(default=50, ge=1, le=100)  # limit: the lexicons allow 1..100
    timeout: Duration = 30.0
    # How far past the stored mark a walk reads, for backdated posts the appview sorts below
    # it (by their older createdAt); what it reads twice is absorbed by the unique key.
    overlap: DurationOrZero = 3600.0
    # How far before a mentions backfill's window (or a gap) the brand's posts are scanned
    # for the replies and quotes inside it (search finds a post only by its mention): those
    # answering older posts are not recovered. Each scanned post answered or quoted costs a
    # request or more.
    gap_lookback: DurationOrZero = backfill.GAP_LOOKBACK.total_seconds()

    @field_validator("service")
    @classmethod
    def _absolute_http(cls, value: str) -> str:
        return base_url(value, "https://bsky.social")

    @field_validator("accounts")
    @classmethod
    def _one_account(cls, value: list[str]) -> list[str]:
        if len(value) != 1:
            raise ValueError(
                "a Bluesky source logs in as one account and reads its notifications: give "
                "exactly one (another account is another [[sources]] table)"
            )
        return value


class BlueskySource:
    """Reads the ``mentions`` stream (notifications: mention, reply, quote) and the
    ``replies`` stream (the brand's own replies) of the logged-in brand account."""

    network: ClassVar[str] = NETWORK
    Settings: ClassVar[type[ConnectorSettings]] = BlueskySettings
    post_check_batch: ClassVar[int] = _POSTS_BATCH
    rate_limit_headers: ClassVar[tuple[str, str]] = ("ratelimit-remaining", "ratelimit-limit")
    shared_routes: ClassVar[frozenset[str]] = backfill.SHARED_ROUTES

    def __init__(
        self,
        *,
        identifier: str,
        app_password: str,
        session_file: Path,
        service: str = "https://bsky.social",
        handle_domain: str = "bsky.social",
        page_size: int = 50,
        timeout: float = 30.0,
        overlap: float = 3600.0,
        start: str = "now",
        gap_lookback: float = backfill.GAP_LOOKBACK.total_seconds(),
    ) -> None:
        self.service = service
        self.handle_domain = handle_domain.strip(".")
        self.page_size = page_size
        self.overlap = timedelta(seconds=overlap)
        self.gap_lookback = timedelta(seconds=gap_lookback)
        # The brand posts of the author feed pages brand-post segments read last, so that
        # a step asks one thing (see connectors.bluesky.backfill); a few pages: the segments
        # of the jobs in hand.
        self._scans: OrderedDict[tuple[str, ...], _FeedScan] = OrderedDict()
        self._scans_lock = threading.Lock()
        self.start = parse_start(start)
        self.client = BlueskyClient(
            service=service,
            identifier=self._qualified(identifier),
            app_password=app_password,
            session=SessionStore(session_file),
            timeout=timeout,
        )

    @classmethod
    def from_settings(cls, settings: BlueskySettings) -> Self:
        return cls(
            identifier=settings.identifier,
            app_password=settings.app_password.reveal(),
            session_file=settings.session_file,
            service=settings.service,
            handle_domain=settings.handle_domain,
            page_size=settings.page_size,
            timeout=settings.timeout,
            overlap=settings.overlap,
            start=settings.start,
            gap_lookback=settings.gap_lookback,
        )

    def _qualified(self, handle: str) -> str:
        name = handle.strip().removeprefix("@")
        if name.startswith("did:") or "." in name or not name:
            return name.lower() if not name.startswith("did:") else name
        return f"{name}.{self.handle_domain}".lower()

    def start_after(self, now: datetime) -> str:
        """A mark at the configured ``start``: a first walk reads back to it (and the overlap)."""
        return Mark(start_moment(self.start, now)).text()

    def resolve_accounts(self, handles: Sequence[str]) -> dict[str, Account]:
        """Handles (or DIDs) → accounts by ``getProfiles``, 25 a call; the DID is the key."""
        names = {h: self._qualified(h) for h in handles}
        ask = [
            n for n in dict.fromkeys(names.values()) if _HANDLE.fullmatch(n) or _DID.fullmatch(n)
        ]
        found: dict[str, str] = {}
        for start in range(0, len(ask), _PROFILES_BATCH):
            batch = ask[start : start + _PROFILES_BATCH]
            body, _ = self.client.query(
                "app.bsky.actor.getProfiles",
                params(LEXICON.AppBskyActorGetProfiles.Params, actors=batch),
            )
            profiles = body.get("profiles")
            if not isinstance(profiles, list):
                raise MalformedAnswer(
                    "Bluesky sent an unreadable getProfiles answer", system=NETWORK
                )
            for profile in profiles:
                did = profile.get("did") if isinstance(profile, dict) else None
                if not isinstance(did, str) or not _DID.fullmatch(did) or len(did) > 64:
                    continue
                found[did] = did
                handle = profile.get("handle")
                if isinstance(handle, str):
                    found[handle.lower()] = did
        # Unknown, deactivated and taken-down accounts are absent from the answer.
        return {
            given: Account(NETWORK, given, found[name])
            for given, name in names.items()
            if name in found
        }

    def fetch(
        self, account: Account, stream: Stream, cursor: Cursor, known: KnownAuthors | None = None
    ) -> Page:
        # ``known`` changes nothing: every Bluesky answer carries its authors' profiles, free.
        if stream is Stream.MENTIONS:
            self.client.ensure_session()
            if self.client.did() != account.user_id:
                raise AuthError(
                    f"this source is logged in as {self.client.did()}, not @{account.handle} "
                    f"({account.user_id}): notifications are the logged-in account's own",
                    system=NETWORK,
                )
            body, headers = self.client.query(
                "app.bsky.notification.listNotifications",
                params(
                    LEXICON.AppBskyNotificationListNotifications.Params,
                    reasons=list(REASONS),
                    limit=self.page_size,
                    cursor=cursor.pagination_token,
                ),
            )
            return parse_notifications(
                body, account=account, cursor=cursor, overlap=self.overlap, headers=headers
            )
        body, headers = self._author_feed(account, self.page_size, cursor.pagination_token)
        return parse_feed(
            body, account=account, cursor=cursor, overlap=self.overlap, headers=headers
        )

    # -- backfills and gaps (Backfiller, GapCloser) ------------------------------------------
    def plan_backfill(
        self,
        account: Account,
        streams: Sequence[Stream],
        since: datetime,
        until: datetime,
        now: datetime,
    ) -> list[Segment]:
        return backfill.plan(streams, since, until, now, self.page_size, self.gap_lookback)

    def plan_gap(
        self, account: Account, stream: Stream, since_id: str, until_id: str, now: datetime
    ) -> GapPlan:
        return backfill.plan_gap(
            stream, since_id, until_id, self.overlap, self.page_size, self.gap_lookback
        )

    def count_posts(self, account: Account, segment: Segment) -> PostCount:
        """A search's ``hitsTotal`` where it sends one; else one page, extrapolated (for a
        brand-post segment, the requests it takes too: see ``backfill.brand_post_count``)."""
        if segment.route == backfill.SEARCH:
            body, page, oldest = self._search(account, segment, None)
            total = backfill.hits_total(body)
            more = page.next_cursor.pagination_token is not None
            if total is not None:
                return PostCount(total, exact=not more)
        elif segment.route in backfill.BRAND_POST_ROUTES:
            # The newest feed page's posts: their counts and how often they were made.
            body, _ = self._author_feed(account, segment.page_size, None)
            own, nxt = brand_posts(body, account=account)
            oldest = backfill.feed_oldest(body)
            now = datetime.now(UTC)
            return backfill.brand_post_count(own, nxt is not None, oldest, segment, now)
        else:
            page, oldest = self._feed(account, segment, None)
            more = page.next_cursor.pagination_token is not None
        posts = len(page.interactions) + len(page.quarantined)
        return backfill.estimate(posts, more, oldest, segment)

    def fetch_segment(
        self,
        account: Account,
        segment: Segment,
        token: str | None,
        known: KnownAuthors | None = None,
    ) -> Page:
        if segment.route == backfill.SEARCH:
            return self._search(account, segment, token)[1]
        if segment.route in backfill.BRAND_POST_ROUTES:
            return self._brand_post_step(account, segment, token)
        return self._feed(account, segment, token)[0]

    def _search(
        self, account: Account, segment: Segment, token: str | None
    ) -> tuple[object, Page, datetime | None]:
        """One page of the brand's mentions in the segment, newest first."""
        at = backfill.SearchToken.parse(token, segment)
        body, headers = self.client.query(
            "app.bsky.feed.searchPosts",
            params(
                LEXICON.AppBskyFeedSearchPosts.Params,
                q=segment.query or backfill.SEARCH_QUERY,
                mentions=account.user_id,
                since=backfill.iso(segment.since),
                until=backfill.iso(at.until),
                sort="latest",
                limit=segment.page_size,
                cursor=at.cursor,
            ),
        )
        page, oldest = parse_search(body, account=account, headers=headers)
        cursor = body.get("cursor") if isinstance(body, dict) else None
        # Kept inside the job's stored token (500 characters) with the query's until and count.
        if cursor is not None and (not isinstance(cursor, str) or len(cursor) > 400):
            raise MalformedAnswer("Bluesky sent an unreadable search cursor", system=NETWORK)
        following = at.following(cursor or None, page.returned, oldest, segment)
        nxt = Cursor(pagination_token=following.text() if following else None)
        return body, replace(page, next_cursor=nxt), oldest

    def _feed(
        self, account: Account, segment: Segment, token: str | None
    ) -> tuple[Page, datetime | None]:
        """One page of the brand's author feed, kept to the segment's window; the walk ends
        at the first page reaching below the window's start."""
        body, headers = self._author_feed(account, segment.page_size, token)
        page = parse_feed(
            body,
            account=account,
            cursor=Cursor(pagination_token=token),
            overlap=timedelta(0),
            headers=headers,
        )
        oldest = backfill.feed_oldest(body)
        more = oldest is None or oldest >= segment.since
        token = page.next_cursor.pagination_token if more else None
        kept = tuple(i for i in page.interactions if segment.since <= i.created_at < segment.until)
        page = replace(page, interactions=kept, next_cursor=Cursor(pagination_token=token))
        return page, oldest

    def _author_feed(
        self, account: Account, limit: int, cursor: str | None
    ) -> tuple[Any, Mapping[str, str]]:
        """One page of the brand's author feed, its own replies included."""
        return self.client.query(
            "app.bsky.feed.getAuthorFeed",
            params(
                LEXICON.AppBskyFeedGetAuthorFeed.Params,
                actor=account.user_id,
                filter="posts_with_replies",
                limit=limit,
                cursor=cursor,
            ),
        )

    def _brand_post_step(self, account: Account, segment: Segment, token: str | None) -> Page:
        """One request of a brand-post segment: an author feed page (which names the brand
        posts to read), or one brand post's thread or quotes page."""
        at = backfill.PostScanToken.parse(token)
        if at.rkey is None:
            scan, headers = self._read_feed(account, segment, at.feed)
            after = [p for p in scan.wanted(segment.route) if at.at is None or p.at < at.at]
            first = self._first(at.feed, after[0]) if after else self._page_after(scan)
            return _empty(first, rate_info(headers))
        uri = f"at://{account.user_id}/app.bsky.feed.post/{at.rkey}"
        sub: str | None = None
        if segment.route == backfill.POST_REPLIES:
            views, headers = self._thread(uri)
        else:
            views, sub, headers = self._quotes(uri, segment, at.sub)
        page, oldest = parse_post_views(
            views, account=account, since=segment.since, until=segment.until, headers=headers
        )
        nxt: backfill.PostScanToken | None
        if sub is not None and oldest is not None and oldest >= segment.since:
            nxt = replace(at, sub=sub)  # more of its quotes inside the window
        else:
            nxt = self._next_post(account, segment, at)
        return replace(page, next_cursor=Cursor(pagination_token=nxt.text() if nxt else None))

    def _thread(self, uri: str) -> tuple[list[object], dict[str, str]]:
        try:
            body, headers = self.client.query(
                "app.bsky.feed.getPostThread",
                params(
                    LEXICON.AppBskyFeedGetPostThread.Params,
                    uri=uri,
                    depth=REPLY_NOTIFY_DEPTH,
                    parent_height=0,
                ),
            )
        except NotFound:
            return [], {}  # the brand post was deleted since its feed page was read
        return thread_replies(body), dict(headers)

    def _quotes(
        self, uri: str, segment: Segment, cursor: str | None
    ) -> tuple[list[object], str | None, dict[str, str]]:
        body, headers = self.client.query(
            "app.bsky.feed.getQuotes",
            params(
                LEXICON.AppBskyFeedGetQuotes.Params,
                uri=uri,
                limit=segment.page_size,
                cursor=cursor,
            ),
        )
        views, nxt = quote_views(body)
        return views, nxt, dict(headers)

    def _next_post(
        self, account: Account, segment: Segment, at: backfill.PostScanToken
    ) -> backfill.PostScanToken | None:
        """The position after brand post ``at``: the next wanted post of its page, from the
        page kept in memory; else the page is to be read again (after a restart)."""
        scan = self._scans.get(_scan_key(account, segment, at.feed))
        wanted = scan.wanted(segment.route) if scan is not None else []
        keys = [_rkey(p.uri) for p in wanted]
        if scan is None or at.rkey not in keys:
            return backfill.PostScanToken(at.feed, at.at)
        rest = wanted[keys.index(at.rkey) + 1 :]
        return self._first(at.feed, rest[0]) if rest else self._page_after(scan)

    @staticmethod
    def _first(feed: str | None, post: BrandPost) -> backfill.PostScanToken:
        return backfill.PostScanToken(feed, post.at, _rkey(post.uri))

    @staticmethod
    def _page_after(scan: _FeedScan) -> backfill.PostScanToken | None:
        return backfill.PostScanToken(scan.next) if scan.next is not None else None

    def _read_feed(
        self, account: Account, segment: Segment, cursor: str | None
    ) -> tuple[_FeedScan, dict[str, str]]:
        """An author feed page's brand posts sorted in the segment's scan (from its start to
        the gap's end), kept in memory; ``next`` is None where the walk ends (the page
        reached below the scan's start, or the feed's end)."""
        body, headers = self._author_feed(account, segment.page_size, cursor)
        posts, nxt = brand_posts(body, account=account)
        start = backfill.scan_from(segment)
        oldest = backfill.feed_oldest(body)
        if oldest is not None and oldest < start:
            nxt = None
        kept = tuple(p for p in posts if start <= p.at < segment.until)
        scan = _FeedScan(kept, nxt)
        with self._scans_lock:
            key = _scan_key(account, segment, cursor)
            self._scans[key] = scan
            self._scans.move_to_end(key)
            while len(self._scans) > _SCANS_KEPT:
                self._scans.popitem(last=False)
        return scan, dict(headers)

    # -- compliance and check --------------------------------------------------------------
    def lookup_posts(
        self, post_ids: Sequence[str], refs: Mapping[str, str] | None = None
    ) -> tuple[set[str], set[str]]:
        """Standing posts by ``getPosts`` (25 a call); each post it leaves out is asked of
        ``getPostThread``, which tells a deleted post (``NotFound``, ``notFoundPost``) from
        one hidden by a block (``blockedPost``: neither, asked again later). An at-uri
        names its post for any server, so Bluesky sets no refs and ``refs`` is not read."""
        uris = [u for u in dict.fromkeys(post_ids) if post_url(u) is not None]
        alive: set[str] = set()
        deleted: set[str] = set()
        for start in range(0, len(uris), _POSTS_BATCH):
            batch = uris[start : start + _POSTS_BATCH]
            body, _ = self.client.query(
                "app.bsky.feed.getPosts", params(LEXICON.AppBskyFeedGetPosts.Params, uris=batch)
            )
            posts = body.get("posts")
            if not isinstance(posts, list):
                raise MalformedAnswer("Bluesky sent an unreadable getPosts answer", system=NETWORK)
            alive |= {p["uri"] for p in posts if isinstance(p, dict) and p.get("uri") in batch}
            for uri in batch:
                if uri not in alive:
                    state = self._thread_state(uri)
                    (alive if state == "alive" else deleted if state == "deleted" else set()).add(
                        uri
                    )
        return alive, deleted

    def _thread_state(self, uri: str) -> str:
        try:
            body, _ = self.client.query(
                "app.bsky.feed.getPostThread",
                params(LEXICON.AppBskyFeedGetPostThread.Params, uri=uri, depth=0, parent_height=0),
            )
        except NotFound:
            return "deleted"
        kind = body.get("thread", {}).get("$type") if isinstance(body.get("thread"), dict) else None
        if kind == "app.bsky.feed.defs#threadViewPost":
            return "alive"
        if kind == "app.bsky.feed.defs#notFoundPost":
            return "deleted"
        return "unknown"  # blockedPost, or a shape not known: never acted on

    def check(self, handles: Sequence[str]) -> list[CheckRow]:
        """Log in (from the kept session where there is one) and look the handles up."""
        try:
            self.client.ensure_session()
            found = self.resolve_accounts(handles)
        except ExternalError as exc:
            if isinstance(exc, AuthError):
                fix = "check identifier and app_password (an app password, not the main one)"
            elif isinstance(exc, RateLimited):
                fix = "wait for Bluesky's rate limit to reset"
            else:
                fix = f"check service ({self.service}) and that this host reaches it"
            return [CheckRow("session", False, str(exc), fix)]
        me = self.client.did()
        rows = [CheckRow("session", True, f"{self.service} accepted the session of {me}")]
        for handle in handles:
            account = found.get(handle)
            if account is None:
                rows.append(
                    CheckRow(
                        f"@{handle}",
                        False,
                        f"Bluesky knows no @{self._qualified(handle)} (or it is taken down)",
                        "correct the handle in accounts",
                    )
                )
            elif account.user_id != me:
                rows.append(
                    CheckRow(
                        f"@{handle}",
                        False,
                        f"{account.user_id} is not the logged-in account {me}",
                        "set identifier and app_password to that account's",
                    )
                )
            else:
                rows.append(CheckRow(f"@{handle}", True, f"DID {account.user_id}"))
        return rows

    def observe_responses(self, callback: ResponseObserver) -> None:
        """Every answer the service sends (logins and refreshes too), for /metrics."""
        self.client.observe_responses(callback)

    def close(self) -> None:
        self.client.close()


_SCANS_KEPT = 8


@dataclass(frozen=True)
class _FeedScan:
    posts: tuple[BrandPost, ...]
    next: str | None

    def wanted(self, route: str) -> list[BrandPost]:
        return [p for p in self.posts if backfill.wanted(p, route)]


def _scan_key(account: Account, segment: Segment, cursor: str | None) -> tuple[str, ...]:
    return (account.user_id, segment.query or "", backfill.iso(segment.until), cursor or "")


def _rkey(uri: str) -> str:
    return uri.rsplit("/", 1)[1]


def _empty(token: backfill.PostScanToken | None, rate: RateInfo | None) -> Page:
    """A step that read where to go on (a feed page), no post."""
    return Page(
        interactions=(),
        authors=(),
        next_cursor=Cursor(pagination_token=token.text() if token else None),
        rate=rate,
    )


if TYPE_CHECKING:  # the contracts are structural: have mypy hold the class to them
    _: type[Source] = BlueskySource
    _s: type[Starting] = BlueskySource
    _r: type[RateLimitedSource] = BlueskySource
    _b: type[Backfiller] = BlueskySource
    _g: type[GapCloser] = BlueskySource
    _o: type[ObservedResponses] = BlueskySource
