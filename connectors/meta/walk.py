"""How the Meta sources walk. A Facebook Page (comments and replies on its posts, visitor
posts, posts tagging it, Messenger) and an Instagram professional account (comments and
replies on its media, media tagging it) are read by :class:`~connectors.meta.client.GraphClient`.

Two source types, ``facebook`` (:mod:`.facebook`) and ``instagram`` (:mod:`.instagram`): a
source's network is a class-level name the core keys accounts, identities and brand ids on,
and the two networks have different settings (:mod:`.settings`). What they share is here:
the walk's token, the marks, what one fetch gathers, and :class:`MetaSource` (the client,
``lookup_posts``, ``plan_gap``, the page a fetch returns, and the fetch and backfill steps
themselves). A source's walk is data: its :class:`Phase` tuple (Facebook: the Page's posts,
then Messenger; Instagram: its media, media tagging it, then Direct), each phase a step
function over a :class:`Walk`, with the streams and backfills that read it.

Walks. Meta has no "what is new" endpoint: new comments land on old posts, and the feed is
ordered by creation, not activity [doc: page/feed; research §0.4]. So each walk re-scans a
*watch window* of the account's posts (``watch_window``, 90 days by default) and reads the
comments of a post only when it moved: on Facebook its ``updated_time`` passed the one stored
in its mark, on Instagram its ``comments_count`` changed. A post's mark (``post:<id>`` or
``media:<id>``) holds its creation time (so it goes when the post leaves the window), what
moved it last, and where its comments were read to; a Messenger thread's (``thread:<id>``)
its ``updated_time`` and newest message read. Marks are stored with the page in one
transaction (:attr:`syncd.model.Page.marks`).

One fetch reads one page of the account's posts (or threads) and, for each moved one on it,
one page of its comments; when a post has more comments than a page the fetch stops there
and the token says where (the feed page to read again, the post, the comments cursor), so a
crash replays that one page. The walk's token is compact JSON (a phase, Graph's ``after``
cursor, a post id, a comments cursor, a step count), never a whole ``next`` link: the stored
token holds 500 characters. A moved object whose own call fails for a moment (a 5xx, a
timeout, an unreadable answer) is left to the next walk by its mark, and the fetch goes on
with the others (:func:`left_for_next_walk`): the listing's failure alone fails the fetch.

Both streams read the same objects: ``mentions`` keeps what people wrote (inbound),
``replies`` what the brand wrote answering them (outbound, attributed by
:mod:`connectors.meta.parse`); each stream has its own marks, so each reads a moved post
once. A Page's reply names the comment it answers (``parent{id,from}`` is asked for), so it
is attributed even when that comment was read by an earlier walk.

``since_id`` is a time (ISO, UTC): when the last walk that read something new began. It is
the floor for objects the walk has no mark for (a new post, a new thread, a first walk from
the configured ``start``), read :data:`SKEW` earlier since it is this host's clock and the
items' times are Meta's; what that reads again is absorbed by the unique key.

Messenger details are given only for a thread's 20 newest messages [doc: messenger
conversations]: when a thread gained more than that since its mark, the older ones are
beyond reach of any poll, and the walk ends ``cut`` (a gap, which :meth:`plan_gap` calls
unclosable: no endpoint gives them). Meta's ``messages`` webhook is the only way to them: each
message it names is read by id while it is still among the 20 newest (:mod:`.hints`), and a
walk finding only such messages beyond reach records no gap (:mod:`.threads`).
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from connectors._http import ResponseReporter
from connectors.meta import backfill, hints
from connectors.meta.client import DEFAULT_VERSION, GraphClient, GraphPage
from connectors.meta.parse import Translated, clip
from connectors.meta.receiver import MetaWebhook, WebhookSettings
from connectors.meta.settings import FEED_MAX, WATCH_WINDOW, valid_version
from syncd.contracts import (
    ConnectorSettings,
    DroppedHints,
    KnownAuthors,
    ResponseObserver,
    UsageRatios,
    WebhookEndpoint,
    parse_start,
    start_moment,
)
from syncd.errors import (
    AuthError,
    BadItem,
    ExternalError,
    MalformedAnswer,
    NotFound,
    TransientError,
)
from syncd.model import (
    Account,
    Author,
    Cursor,
    Direction,
    GapPlan,
    Interaction,
    Page,
    PostCount,
    Quarantined,
    Segment,
    Stream,
    WebhookHint,
)

log = logging.getLogger("connectors.meta")

# This host's clock against Meta's: the floor of objects without a mark is read this early.
SKEW = timedelta(minutes=10)
OBJECT_ID = re.compile(r"[A-Za-z0-9_.:=-]{1,200}")
_TOKEN_MAX = 500  # cursors.pagination_token


def iso(moment: datetime) -> str:
    """A walk time as stored in ``since_id``: fixed-width UTC, so text order is time order."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def graph_time(value: Any) -> int | None:
    """Graph's ``2021-07-23T08:35:18+0000`` as epoch seconds (None: unreadable)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return int(moment.timestamp())


# -- the walk's token ----------------------------------------------------------------------------
@dataclass(frozen=True)
class WalkToken:
    """Where a walk stands between fetches.

    ``phase``: what is being listed (``posts``, ``threads``, ``tags``); ``after``: Graph's
    cursor of the listing page being read (None: its first page); ``post`` and ``comments``:
    the post on that page whose comments were left part-read, and their cursor; ``since``:
    the comments' lower bound they were asked with; ``step``: fetches so far (the poller
    takes a token seen twice for a loop); ``new``: the walk read something made after the
    stored ``since_id``; ``gap``: Messenger messages were beyond reach (the time of the
    newest such)."""

    phase: str
    after: str | None = None
    post: str | None = None
    comments: str | None = None
    since: int | None = None
    step: int = 0
    new: bool = False
    gap: str | None = None

    def text(self, network: str) -> str:
        data = {
            "ph": self.phase,
            "a": self.after,
            "p": self.post,
            "c": self.comments,
            "s": self.since,
            "n": self.step,
            "w": 1 if self.new else None,
            "g": self.gap,
        }
        text = json.dumps({k: v for k, v in data.items() if v is not None}, separators=(",", ":"))
        if len(text) > _TOKEN_MAX:
            raise MalformedAnswer(
                "Meta sent a paging cursor too long to keep as a walk position", system=network
            )
        return text

    @classmethod
    def parse(cls, text: str, network: str) -> WalkToken:
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or not isinstance(data.get("ph"), str):
                raise ValueError(text)
            for key in ("a", "p", "c", "g"):
                if data.get(key) is not None and not isinstance(data[key], str):
                    raise ValueError(key)
            for key in ("s", "n"):
                if data.get(key) is not None and not isinstance(data[key], int):
                    raise ValueError(key)
        except ValueError:
            raise MalformedAnswer(
                "a stored Meta walk position is unreadable", system=network
            ) from None
        return cls(
            phase=data["ph"],
            after=data.get("a"),
            post=data.get("p"),
            comments=data.get("c"),
            since=data.get("s"),
            step=int(data.get("n") or 0),
            new=bool(data.get("w")),
            gap=data.get("g"),
        )


@dataclass
class Collected:
    """What one fetch gathered across its calls."""

    interactions: list[Interaction] = field(default_factory=list)
    authors: dict[str, Author] = field(default_factory=dict)
    quarantined: list[Quarantined] = field(default_factory=list)
    marks: dict[str, str | None] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    newest: datetime | None = None
    gap: str | None = None  # the newest Messenger message beyond reach (a gap), when any

    def add(
        self,
        translated: Translated,
        stream: Stream,
        floor: datetime | None = None,
        skip: frozenset[str] = frozenset(),
        until: datetime | None = None,
    ) -> None:
        """The stream's interactions (inbound for mentions, outbound for replies), those
        made before ``floor`` or from ``until`` on, and those in ``skip`` (read at the floor
        before) left out."""
        direction = Direction.INBOUND if stream is Stream.MENTIONS else Direction.OUTBOUND
        for item in translated.interactions:
            if item.direction is not direction or item.post_id in skip:
                continue
            if floor is not None and item.created_at < floor:
                continue
            if until is not None and item.created_at >= until:
                continue
            self.interactions.append(item)
            for person in (item.author_id, item.counterpart_id):
                found = next((a for a in translated.authors if a.user_id == person), None)
                if found is not None:
                    self.authors[found.user_id] = found
            if self.newest is None or item.created_at > self.newest:
                self.newest = item.created_at
        # Quarantined once, by the stream whose side it would be: mentions (its author is
        # not known to be the brand's).
        if stream is Stream.MENTIONS:
            self.quarantined.extend(translated.quarantined)


def moved_mark(updated: int, now: datetime) -> str:
    """What a mark keeps of an object's ``updated_time`` once everything it listed was read.
    Graph's times are whole seconds: a comment (or message) arriving in the second of the
    read, after it, leaves ``updated_time`` as it was, and a mark holding it would pass the
    object over until something else moved it. So a recent object's mark keeps the second
    before, and the next walk reads it again (one call, from where its comments were read)
    until it is :data:`SKEW` old, past any clock difference between this host and Meta."""
    settled = now.timestamp() - updated >= SKEW.total_seconds()
    return str(updated if settled else updated - 1)


def mark_fields(value: str | None, n: int) -> list[str]:
    parts = (value or "").split("|")
    return (parts + [""] * n)[:n]


def as_int(text: str) -> int | None:
    return int(text) if text.lstrip("-").isdigit() else None


def after_cursor(page: GraphPage, network: str) -> str | None:
    """Graph's ``after`` cursor of the next page (None: the last page)."""
    if page.next_query is None:
        return None
    paging = page.body.get("paging")
    cursors = paging.get("cursors") if isinstance(paging, dict) else None
    after = cursors.get("after") if isinstance(cursors, dict) else None
    if not isinstance(after, str) or not after:
        raise MalformedAnswer("Meta sent a next page without an after cursor", system=network)
    return after


@contextmanager
def left_for_next_walk(
    got: Collected, key: str, mark: str, what: str, *, live: bool = True
) -> Iterator[None]:
    """Around the one call that reads a moved object's comments (or a thread's messages):
    a transient failure of it (a 5xx, a timeout, an unreadable answer) leaves that object to
    the next walk, ``mark`` saying where its reading stands and that it moved, and the fetch
    goes on with the others. A walk makes one such call per moved object, so failing the
    whole fetch on one of them would repeat them all, and one object's unreadable answer,
    counted against the stream, would park it while Meta answers every other call; the
    listing's own answer still counts (nothing of the page can be read without it). A
    throttle or a refused token ends the fetch as for any call, and so does any failure of a
    backfill's step (``live`` false): it keeps no marks, and its runner retries the step."""
    try:
        yield
    except TransientError as exc:
        if not live:
            raise
        got.marks[key] = mark
        got.warnings.append(f"{what} left for the next walk: {exc}")  # the poll logs it


def replies_of(comment: Mapping[str, Any]) -> list[Any]:
    replies = comment.get("replies")
    data = replies.get("data") if isinstance(replies, dict) else None
    return data if isinstance(data, list) else []


def read_from(resumed: WalkToken | None, read_to: str, floor: datetime) -> int:
    """The lower bound a post's comments are read from: the one a part-read post was asked
    with, else where its mark says they were read to, else the walk's floor."""
    if resumed is not None and resumed.since is not None:
        return resumed.since
    marked = as_int(read_to)
    return marked if marked is not None else int(floor.timestamp())


def data_time(item: Any, name: str) -> int | None:
    return graph_time(item.get(name)) if isinstance(item, dict) else None


# -- a walk's phases ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Walk:
    """What one step of a walk reads with: the account and stream walked, the stored cursor,
    the token it stands at (None: a walk's first page), the phase it reads, ``floor`` (where
    objects without a mark are read from), the clock's ``now``; a backfill's ``segment``
    (read inside its window, keeping no marks). ``got`` gathers what it reads."""

    account: Account
    stream: Stream
    cursor: Cursor
    token: WalkToken | None
    phase: str
    got: Collected
    now: datetime
    floor: datetime
    segment: Segment | None = None

    @property
    def marks(self) -> Mapping[str, str]:
        """The stored marks the step goes by: none for a backfill."""
        return self.cursor.marks if self.segment is None else {}

    @property
    def until(self) -> datetime | None:
        """A backfill's end: nothing made from then on is kept."""
        return self.segment.until if self.segment is not None else None

    def listing(self, fields: str, limit: int, **more: str | int | None) -> dict[str, str | int]:
        """A listing call's parameters: the fields, the page size, ``more`` (those not
        None), and Graph's cursor of the page the token stands at."""
        params: dict[str, str | int] = {"fields": fields, "limit": limit}
        params.update({k: v for k, v in more.items() if v is not None})
        if self.token is not None and self.token.after is not None:
            params["after"] = self.token.after
        return params

    def resumed(self, listing: GraphPage) -> list[dict[str, Any]]:
        """The objects of a listing page, from the one whose comments the token left
        part-read on (gone from the page: the whole page again)."""
        items = [i for i in listing.data if isinstance(i, dict)]
        resume = self.token.post if self.token is not None else None
        ids = [i.get("id") for i in items]
        return items[ids.index(resume) :] if resume is not None and resume in ids else items

    def comments_at(self, object_id: str) -> str | None:
        """The comments cursor the token stopped at inside this object (None: not inside it)."""
        token = self.token
        return token.comments if token is not None and token.post == object_id else None

    def part_read(self, object_id: str) -> bool:
        """Whether the token stopped inside this object's comments."""
        return self.comments_at(object_id) is not None

    def stopped_in(self, object_id: str, comments: str, since: int) -> WalkToken:
        """The token of a walk stopping inside an object's comments: the same listing page,
        the object, the comments' cursor and the lower bound they were asked with."""
        after = self.token.after if self.token is not None else None
        return WalkToken(self.phase, after=after, post=object_id, comments=comments, since=since)


# One page of a phase read (:class:`Walk`): the token to go on from inside the phase, or None
# once the phase is read.
Step = Callable[[Walk], WalkToken | None]


@dataclass(frozen=True)
class Phase:
    """One part of a source's walk (:attr:`MetaSource.phases`, walked in order): ``name`` is
    the token's phase while it is read, ``step`` reads a page of it; ``streams``: the streams
    whose walks read it; ``on``: whether the source's settings read it; ``backfill``: whether
    a backfill reads it too (an inbox is not: Graph details only a thread's 20 newest)."""

    name: str
    step: Step
    streams: frozenset[Stream] = frozenset(Stream)
    on: bool = True
    backfill: bool = True


# -- the shared part -------------------------------------------------------------------------------
class MetaSource:
    network: ClassVar[str]
    Settings: ClassVar[type[ConnectorSettings]]
    # lookup_posts asks Graph one object a call (a batch saves round trips, not quota).
    post_check_batch: ClassVar[int] = 50
    # A backfill's one route (its steps spend the account's budget, which live polls spend
    # too: ``shared_routes``) and what its plan says it reads.
    backfill_route: ClassVar[str]
    backfill_note: ClassVar[str]
    shared_routes: ClassVar[frozenset[str]]

    def __init__(
        self,
        access_token: str,
        *,
        account_id: str,
        app_secret: str | None = None,
        graph_version: str = DEFAULT_VERSION,
        watch_window: float = WATCH_WINDOW,
        page_size: int = FEED_MAX,
        timeout: float = 30.0,
        api_base_url: str | None = None,
        instagram_login: bool = False,
        start: str = "now",
        pace_at: float = 90.0,
        clock: Callable[[], datetime] | None = None,
        webhook: WebhookSettings | None = None,
    ) -> None:
        self.account_id = account_id
        self.webhook_settings = webhook
        self.instagram_login = instagram_login
        # Webhook hints taken with nothing stored, by why: the API refused the object, or it
        # does not concern this account (a forged or misdirected delivery).
        self.dropped_hints: Counter[str] = Counter()
        # The walk's own time (its start, the watch window): a test's clock may stand in.
        self.clock = clock or (lambda: datetime.now(UTC))
        self.watch_window = timedelta(seconds=watch_window)
        self.page_size = page_size
        self.start = parse_start(start)
        self.client = GraphClient(
            access_token,
            app_secret=app_secret,
            version=valid_version(graph_version),
            api_base_url=api_base_url,
            instagram_login=instagram_login,
            timeout=timeout,
            pace_at=pace_at,
        )
        self._reporter = ResponseReporter()
        self.client.session.hooks["response"].append(self._reporter.requests_hook)
        # The walk, in order; each source names its own from its settings.
        self.phases: tuple[Phase, ...] = ()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.account_id!r})"

    # -- what the core asks ----------------------------------------------------------------
    def start_after(self, now: datetime) -> str:
        """The configured ``start`` as a walk time: a first walk reads objects back to it."""
        return iso(start_moment(self.start, now))

    def observe_responses(self, callback: ResponseObserver) -> None:
        """Every answer Graph sends this source's client, for /metrics."""
        self._reporter.add(callback)

    def usage_ratios(self) -> Mapping[str, float]:
        """How much of Meta's allowances the app, the Page and its use cases have used, for
        /metrics (:class:`syncd.contracts.UsageRatios`)."""
        return self.client.usage_ratios()

    def close(self) -> None:
        self.client.close()

    def webhook(self) -> WebhookEndpoint | None:
        """The endpoint Meta's deliveries reach, when ``[sources.webhook]`` is set."""
        if self.webhook_settings is None:
            return None
        return MetaWebhook.from_settings(self.webhook_settings)

    def fetch(
        self, account: Account, stream: Stream, cursor: Cursor, known: KnownAuthors | None = None
    ) -> Page:
        """One page of the walk (:meth:`_step`), with what the webhook's hints read."""
        # ``known`` changes nothing: Graph gives each comment's author with it, free.
        self._guard(account)
        now = self.clock()
        token = self._position(cursor.pagination_token)
        # Hints first: a message they read is no gap to the thread walk of this same fetch.
        hinted = Collected()
        taken = hints.read(
            self._hint_readers(), account, stream, cursor, hinted, dropped=self._drop_hint
        )
        got = Collected(marks=dict(hinted.marks))
        following = self._step(account, stream, cursor, token, got, now, None)
        return hints.merged(self._page(got, cursor, token, following, now), hinted, taken)

    def _hint_readers(self) -> Mapping[str, hints.Reader]:
        """The reader of each hint kind the source reads (another kind is taken unread)."""
        return {}

    def _drop_hint(self, hint: WebhookHint, why: str) -> None:
        """A hint taken with nothing stored: said (ids only) and counted."""
        self.dropped_hints[why] += 1
        log.info(
            "%s webhook hint %s %s dropped: %s",
            self.network,
            clip(hint.kind, 64),
            clip(hint.object_id, 80),
            why,
        )

    def plan_gap(
        self, account: Account, stream: Stream, since_id: str, until_id: str, now: datetime
    ) -> GapPlan:
        """Nothing reaches a gap of a Meta walk: it is Messenger messages older than a
        thread's 20 newest, whose details Graph refuses to any token."""
        return GapPlan(
            unreachable=(
                "Messenger gives the details of a thread's 20 newest messages only: the "
                "older ones that arrived between two polls cannot be read by any API call. "
                "Subscribe the app to the Page's 'messages' and 'message_echoes' webhook "
                "fields ([sources.webhook]), or poll busy Pages more often (interval)"
            )
        )

    # backfill (Backfiller)
    def plan_backfill(
        self,
        account: Account,
        streams: Sequence[Stream],
        since: datetime,
        until: datetime,
        now: datetime,
    ) -> list[Segment]:
        """One segment a stream: what the walk's phases a backfill reads hold from the
        window (:attr:`backfill_note`). Graph lists a post's comments by time, but reaches
        posts only through the feed (``/media``), newest first, and an old post's comments
        cost as much as a recent one's: the window starts no earlier than the watch window,
        as the live walk's. No network call."""
        return backfill.plan(
            self.backfill_route,
            self.backfill_note,
            streams,
            since,
            until,
            now,
            self.watch_window,
            self.page_size,
        )

    def count_posts(self, account: Account, segment: Segment) -> PostCount:
        return backfill.count(self.fetch_segment(account, segment, None))

    def fetch_segment(
        self,
        account: Account,
        segment: Segment,
        token: str | None,
        known: KnownAuthors | None = None,
    ) -> Page:
        """One step of a backfill: a page of the phase it stands in, inside the segment (a
        post with more comments than a page: the token says where it stopped)."""
        self._guard(account)
        backfill.check_route(segment, self.shared_routes, self.network)
        at = self._position(token)
        got = Collected()
        following = self._step(account, segment.stream, Cursor(), at, got, self.clock(), segment)
        return backfill.step_page(got, at, following, self.network)

    def lookup_posts(
        self, post_ids: Sequence[str], refs: Mapping[str, str] | None = None
    ) -> tuple[set[str], set[str]]:
        """``GET /{id}?fields=id`` per post: standing, or deleted when Graph answers code 100
        subcode 33 ("does not exist"). Messenger messages (``m_…``) are neither: Graph
        answers the same error for a message older than a thread's 20 newest, which is not
        a deletion [doc: messenger conversations]."""
        alive: set[str] = set()
        deleted: set[str] = set()
        for post_id in dict.fromkeys(post_ids):
            if post_id.startswith("m_") or not OBJECT_ID.fullmatch(post_id):
                continue
            try:
                body = self._get(post_id, {"fields": "id"})
            except NotFound:
                deleted.add(post_id)
                continue
            except BadItem:
                continue  # not readable now (a permission, a block): asked again later
            if body.get("id") == post_id:
                alive.add(post_id)
        return alive, deleted

    # -- the walk ------------------------------------------------------------------------
    def _position(self, token: str | None) -> WalkToken | None:
        return WalkToken.parse(token, self.network) if token is not None else None

    def _step(
        self,
        account: Account,
        stream: Stream,
        cursor: Cursor,
        token: WalkToken | None,
        got: Collected,
        now: datetime,
        segment: Segment | None,
    ) -> WalkToken | None:
        """A page of the phase the token stands in (none: the first), and the token to go on
        from: inside that phase, else the next phase this walk reads (None: the walk's end).
        A stored phase the settings no longer read is read to its end (the walk was in it)."""
        phases = [p for p in self.phases if segment is None or p.backfill]
        names = [p.name for p in phases]
        name = token.phase if token is not None else names[0]
        if name not in names:
            what = "walk" if segment is None else "backfill"
            raise MalformedAnswer(
                f"a stored Meta {what} position is unreadable", system=self.network
            )
        at = names.index(name)
        floor = self._floor(cursor, now) if segment is None else segment.since
        walk = Walk(account, stream, cursor, token, name, got, now, floor, segment)
        following = phases[at].step(walk)
        if following is not None:
            return following
        nxt = next((p for p in phases[at + 1 :] if p.on and stream in p.streams), None)
        return WalkToken(nxt.name) if nxt is not None else None

    def _next_page(
        self,
        w: Walk,
        listing: GraphPage,
        items: Sequence[Any],
        field: str,
        edge: int,
        *,
        undated: bool,
    ) -> WalkToken | None:
        """The token of the listing's next page, while the listing reaches back past
        ``edge``: its oldest object (by ``field``) made at or after it, or, on a page with
        no dated object, ``undated``. None: the phase is read."""
        nxt = after_cursor(listing, self.network)
        oldest = min((t for i in items if (t := data_time(i, field))), default=None)
        reaches = undated if oldest is None else oldest >= edge
        return WalkToken(w.phase, after=nxt) if nxt is not None and reaches else None

    # -- shared reading ------------------------------------------------------------------
    def _get(self, path: str, params: Mapping[str, str | int]) -> dict[str, Any]:
        try:
            return self.client.get(path, params)
        except ExternalError as exc:
            raise self._named(exc) from None

    def _list(self, path: str, params: Mapping[str, str | int]) -> GraphPage:
        try:
            return self.client.page(path, params)
        except ExternalError as exc:
            raise self._named(exc) from None

    def _named(self, exc: ExternalError) -> ExternalError:
        """The client's error, said of this source's network (the client serves both)."""
        exc.system = self.network
        return exc

    def _guard(self, account: Account) -> None:
        if account.user_id != self.account_id:
            raise AuthError(
                f"this source reads {self.account_id}, not {account.handle} "
                f"({account.user_id}): its token is that account's",
                system=self.network,
            )

    def _floor(self, cursor: Cursor, now: datetime) -> datetime:
        """Where objects with no mark are read from (see the module docstring)."""
        since = parse_iso(cursor.since_id)
        if since is None:
            return start_moment(self.start, now)
        return since - SKEW

    def _page(
        self,
        got: Collected,
        cursor: Cursor,
        token: WalkToken | None,
        following: WalkToken | None,
        now: datetime,
    ) -> Page:
        """The fetch's page: the next token, or the walk's end with its since_id (the walk's
        start when it read anything made since the stored one, else unchanged)."""
        since = parse_iso(cursor.since_id)
        started = cursor.pending_since_id or iso(now)
        new = (token is not None and token.new) or (
            got.newest is not None and (since is None or got.newest >= since)
        )
        gap = (token.gap if token is not None else None) or got.gap
        made = [i.created_at for i in got.interactions]
        oldest = iso(min(made)) if made else None
        cut = False
        if following is not None:
            step = (token.step if token is not None else 0) + 1
            following = replace(following, step=step, new=new, gap=gap)
            nxt = Cursor(cursor.since_id, following.text(self.network), started)
        else:
            # A walk of one fetch ends at the newest thing it read (Meta's clock, so the same
            # answer gives the same cursor); a longer one at its start, declared on page one.
            end = iso(got.newest) if token is None and got.newest is not None else started
            nxt = Cursor(since_id=end if new or cursor.since_id is None else cursor.since_id)
            cut = gap is not None
            oldest = oldest or gap
        return Page(
            interactions=tuple(got.interactions),
            authors=tuple(got.authors.values()),
            next_cursor=nxt,
            quarantined=tuple(got.quarantined),
            warnings=tuple(got.warnings),
            returned=len(got.interactions) + len(got.quarantined),
            oldest_id=oldest,
            cut=cut,
            marks=dict(got.marks),
        )

    def _window_drop(self, marks: Mapping[str, str], prefix: str, now: datetime) -> dict[str, None]:
        """Marks of objects made before the watch window: gone (their post left it)."""
        edge = int((now - self.watch_window).timestamp())
        dropped: dict[str, None] = {}
        for key, value in marks.items():
            if key.startswith(prefix):
                made = as_int(mark_fields(value, 1)[0])
                if made is not None and made < edge:
                    dropped[key] = None
        return dropped


if TYPE_CHECKING:  # the contracts are structural: have mypy hold both Meta sources to them
    _u: type[UsageRatios] = MetaSource
    _d: type[DroppedHints] = MetaSource
