"""The Meta sources: a Facebook Page (comments and replies on its posts, visitor posts, posts
tagging it, Messenger) and an Instagram professional account (comments and replies on its
media, media tagging it), read by :class:`~connectors.meta.client.GraphClient`.

Two source types, ``facebook`` and ``instagram``, one module: a source's network is a
class-level name the core keys accounts, identities and brand ids on, and the two networks
have different settings (a Page id and Messenger; an Instagram account id and the Instagram
Login host). What they share (the client, the walk's token, the marks, ``lookup_posts``) is
:class:`_MetaSource`.

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
token holds 500 characters.

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
unclosable: no endpoint gives them; only Meta's ``messages`` webhook delivers each one).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

from pydantic import Field, field_validator, model_validator

from connectors._http import ResponseReporter
from connectors.meta.client import (
    DEFAULT_VERSION,
    GraphClient,
    GraphPage,
    PermissionDenied,
)
from connectors.meta.parse import (
    NETWORK_FACEBOOK,
    NETWORK_INSTAGRAM,
    Translated,
    clip,
    conversation_url,
    parse_fb_comments,
    parse_fb_posts,
    parse_ig_comments,
    parse_ig_media,
    parse_messages,
    scoped_id,
)
from syncd.contracts import (
    CheckRow,
    ConnectorSettings,
    Duration,
    KnownAuthors,
    ResponseObserver,
    SourceSettings,
    parse_start,
    start_moment,
)
from syncd.contracts.secrets import SecretRef
from syncd.contracts.urls import base_url
from syncd.errors import (
    AuthError,
    BadItem,
    ExternalError,
    MalformedAnswer,
    NotFound,
    RateLimited,
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
)

if TYPE_CHECKING:
    from syncd.contracts import Backfiller, GapCloser, ObservedResponses, Source, Starting

__all__ = ["FacebookSettings", "FacebookSource", "InstagramSettings", "InstagramSource"]

WATCH_WINDOW = 90 * 86400.0
# This host's clock against Meta's: the floor of objects without a mark is read this early.
SKEW = timedelta(minutes=10)
FEED_MAX = 100  # "You can only read a maximum of 100 feed posts with the limit field"
IG_COMMENTS_MAX = 50  # "Returns a maximum of 50 comments per query" (IG media comments)
MESSAGE_DETAILS = 20  # "you can only get details about the 20 most recent messages"
MESSAGES_PAGE = 25  # one messages call: more than the 20 with details, to see a gap
_ID = re.compile(r"[0-9]{1,40}")
_OBJECT_ID = re.compile(r"[A-Za-z0-9_.:=-]{1,200}")
_TOKEN_MAX = 500  # cursors.pagination_token
POST_FIELDS = "id,created_time,updated_time,from,message,permalink_url,status_type"
COMMENT_FIELDS = "id,from,message,created_time,parent{id,from},permalink_url"
BACKFILL_ROUTE = "page_comments"
# Seconds between two backfill steps: the Page's budget is the live polls' too (4800 calls
# a day per engaged user), and each step may make several calls.
BACKFILL_INTERVAL = 2.0
BACKFILL_NOTE = (
    "comments and replies on the Page's posts of the watch window, and visitor and tagged "
    "posts; comments on older posts and Messenger messages are not read"
)
THREAD_FIELDS = "id,updated_time,link,participants"
MESSAGE_FIELDS = "id,created_time,from,to,message"
MEDIA_FIELDS = "id,timestamp,comments_count,permalink,caption,media_type"
_IG_COMMENT = "id,text,timestamp,from,username,parent_id,user"
IG_COMMENT_FIELDS = f"{_IG_COMMENT},replies{{{_IG_COMMENT}}}"
TAG_FIELDS = "id,caption,media_type,timestamp,permalink,username"


def iso(moment: datetime) -> str:
    """A walk time as stored in ``since_id``: fixed-width UTC, so text order is time order."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(value: str | None) -> datetime | None:
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


# -- settings ----------------------------------------------------------------------------------
def _version(value: str) -> str:
    if not re.fullmatch(r"v\d{1,3}\.\d{1,3}", value):
        raise ValueError(f"a Graph API version looks like {DEFAULT_VERSION!r}")
    return value


class _MetaSettings(SourceSettings):
    # The Page access token (both types; an Instagram Login token with instagram_login).
    access_token: SecretRef
    # The app's secret: every call then carries appsecret_proof (apps may require it).
    app_secret: SecretRef | None = None
    graph_version: str = DEFAULT_VERSION
    # How far back posts are re-scanned for new comments on every walk.
    watch_window: Duration = WATCH_WINDOW
    # Posts (or threads, media) a walk reads per call, and comments per call.
    page_size: int = Field(default=FEED_MAX, ge=1, le=FEED_MAX)
    timeout: Duration = 30.0
    # Graph's address, only for a stand-in or a proxy.
    api_base_url: str | None = None
    # Meta's usage percentages rise across a poll's calls: they pause at this figure.
    pace_at: float = Field(default=90.0, gt=0, le=100)

    @field_validator("graph_version")
    @classmethod
    def _graph_version(cls, value: str) -> str:
        return _version(value)

    @field_validator("api_base_url")
    @classmethod
    def _absolute_http(cls, value: str | None) -> str | None:
        return None if value is None else base_url(value, "https://graph.facebook.com")

    @field_validator("accounts")
    @classmethod
    def _one_account(cls, value: list[str]) -> list[str]:
        if len(value) != 1:
            raise ValueError(
                "a Meta access token reads one Page or Instagram account: give exactly one "
                "(another is another [[sources]] table)"
            )
        return value


def _default_accounts(data: Any, id_key: str) -> Any:
    """``accounts`` defaults to the one account the source reads, by its id."""
    if isinstance(data, dict) and "accounts" not in data and isinstance(data.get(id_key), str):
        return {**data, "accounts": [data[id_key]]}
    return data


class FacebookSettings(_MetaSettings):
    type: Literal["facebook"]
    page_id: str  # the Page's numeric id (Page → About → Page transparency, or /me)
    # Read the Page's Messenger threads (pages_messaging; Advanced Access for customers).
    messenger: bool = True

    @model_validator(mode="before")
    @classmethod
    def _accounts(cls, data: Any) -> Any:
        return _default_accounts(data, "page_id")

    @field_validator("page_id")
    @classmethod
    def _numeric(cls, value: str) -> str:
        if not _ID.fullmatch(value.strip()):
            raise ValueError("a Page id is a number, e.g. '112130216863063'")
        return value.strip()


class InstagramSettings(_MetaSettings):
    type: Literal["instagram"]
    # The professional account's id (the Page's instagram_business_account), not its
    # username; the username goes in accounts.
    ig_user_id: str
    # An Instagram Login token on graph.instagram.com instead of the linked Page's token.
    instagram_login: bool = False
    page_size: int = Field(default=IG_COMMENTS_MAX, ge=1, le=FEED_MAX)

    @model_validator(mode="before")
    @classmethod
    def _accounts(cls, data: Any) -> Any:
        return _default_accounts(data, "ig_user_id")

    @field_validator("ig_user_id")
    @classmethod
    def _numeric(cls, value: str) -> str:
        if not _ID.fullmatch(value.strip()):
            raise ValueError("an Instagram account id is a number, e.g. '17841405822304914'")
        return value.strip()


# -- the walk's token ----------------------------------------------------------------------------
@dataclass(frozen=True)
class _Token:
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
    def parse(cls, text: str, network: str) -> _Token:
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
class _Collected:
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


def _mark_fields(value: str | None, n: int) -> list[str]:
    parts = (value or "").split("|")
    return (parts + [""] * n)[:n]


def _int(text: str) -> int | None:
    return int(text) if text.lstrip("-").isdigit() else None


def _after(page: GraphPage, network: str) -> str | None:
    """Graph's ``after`` cursor of the next page (None: the last page)."""
    if page.next_query is None:
        return None
    paging = page.body.get("paging")
    cursors = paging.get("cursors") if isinstance(paging, dict) else None
    after = cursors.get("after") if isinstance(cursors, dict) else None
    if not isinstance(after, str) or not after:
        raise MalformedAnswer("Meta sent a next page without an after cursor", system=network)
    return after


def _replies(comment: Mapping[str, Any]) -> list[Any]:
    replies = comment.get("replies")
    data = replies.get("data") if isinstance(replies, dict) else None
    return data if isinstance(data, list) else []


def _since(resumed: _Token | None, read_to: str, floor: datetime) -> int:
    """The lower bound a post's comments are read from: the one a part-read post was asked
    with, else where its mark says they were read to, else the walk's floor."""
    if resumed is not None and resumed.since is not None:
        return resumed.since
    marked = _int(read_to)
    return marked if marked is not None else int(floor.timestamp())


def _data_time(item: Any, name: str) -> int | None:
    return graph_time(item.get(name)) if isinstance(item, dict) else None


# -- the shared part -------------------------------------------------------------------------------
class _MetaSource:
    network: ClassVar[str]
    Settings: ClassVar[type[ConnectorSettings]]
    # lookup_posts asks Graph one object a call (a batch saves round trips, not quota).
    post_check_batch: ClassVar[int] = 50

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
    ) -> None:
        self.account_id = account_id
        # The walk's own time (its start, the watch window): a test's clock may stand in.
        self.clock = clock or (lambda: datetime.now(UTC))
        self.watch_window = timedelta(seconds=watch_window)
        self.page_size = page_size
        self.start = parse_start(start)
        self.client = GraphClient(
            access_token,
            app_secret=app_secret,
            version=_version(graph_version),
            api_base_url=api_base_url,
            instagram_login=instagram_login,
            timeout=timeout,
            pace_at=pace_at,
        )
        self._reporter = ResponseReporter()
        self.client.session.hooks["response"].append(self._reporter.requests_hook)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.account_id!r})"

    # -- what the core asks ----------------------------------------------------------------
    def start_after(self, now: datetime) -> str:
        """The configured ``start`` as a walk time: a first walk reads objects back to it."""
        return iso(start_moment(self.start, now))

    def observe_responses(self, callback: ResponseObserver) -> None:
        """Every answer Graph sends this source's client, for /metrics."""
        self._reporter.add(callback)

    def close(self) -> None:
        self.client.close()

    def plan_gap(
        self, account: Account, stream: Stream, since_id: str, until_id: str, now: datetime
    ) -> GapPlan:
        """Nothing reaches a gap of a Meta walk: it is Messenger messages older than a
        thread's 20 newest, whose details Graph refuses to any token."""
        return GapPlan(
            unreachable=(
                "Messenger gives the details of a thread's 20 newest messages only: the "
                "older ones that arrived between two polls cannot be read by any API call. "
                "Poll more often (interval), or subscribe the app to the Page's messages "
                "webhook, which delivers each message as it is sent"
            )
        )

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
            if post_id.startswith("m_") or not _OBJECT_ID.fullmatch(post_id):
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
        since = _parse_iso(cursor.since_id)
        if since is None:
            return start_moment(self.start, now)
        return since - SKEW

    def _page(
        self,
        got: _Collected,
        cursor: Cursor,
        token: _Token | None,
        following: _Token | None,
        now: datetime,
    ) -> Page:
        """The fetch's page: the next token, or the walk's end with its since_id (the walk's
        start when it read anything made since the stored one, else unchanged)."""
        since = _parse_iso(cursor.since_id)
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
                made = _int(_mark_fields(value, 1)[0])
                if made is not None and made < edge:
                    dropped[key] = None
        return dropped


def _parents(items: Iterable[Any], page_id: str) -> dict[str, Author | None]:
    """The authors of the comments these replies answer, as Graph expanded them
    (``parent{id,from}``): a Page reply is attributed though its parent was read earlier."""
    found: dict[str, Author | None] = {}
    for raw in items:
        parent = raw.get("parent") if isinstance(raw, dict) else None
        if not isinstance(parent, dict) or not isinstance(parent.get("id"), str):
            continue
        person = parent.get("from")
        if isinstance(person, dict) and isinstance(person.get("id"), str) and person["id"]:
            name = person.get("name")
            found[parent["id"]] = Author(
                NETWORK_FACEBOOK,
                scoped_id(page_id, person["id"]),
                display_name=name if isinstance(name, str) and name.strip() else None,
            )
        else:
            found[parent["id"]] = None
    return found


# -- Facebook ------------------------------------------------------------------------------------
class FacebookSource(_MetaSource):
    """A Facebook Page: ``mentions`` are people's comments and replies on the Page's posts in
    the watch window, visitor posts and posts tagging the Page (``/feed`` holds all three
    [doc: page/feed]), and their Messenger messages; ``replies`` the Page's own comments and
    messages answering them."""

    network: ClassVar[str] = NETWORK_FACEBOOK
    Settings: ClassVar[type[ConnectorSettings]] = FacebookSettings
    # Backfill steps spend the Page's budget, which live polls spend too.
    shared_routes: ClassVar[frozenset[str]] = frozenset({BACKFILL_ROUTE})

    def __init__(self, access_token: str, *, page_id: str, messenger: bool = True, **kw: Any):
        super().__init__(access_token, account_id=page_id, **kw)
        self.page_id = page_id
        self.messenger = messenger

    @classmethod
    def from_settings(cls, settings: FacebookSettings) -> Self:
        return cls(
            settings.access_token.reveal(),
            page_id=settings.page_id,
            messenger=settings.messenger,
            app_secret=settings.app_secret.reveal() if settings.app_secret else None,
            graph_version=settings.graph_version,
            watch_window=settings.watch_window,
            page_size=settings.page_size,
            timeout=settings.timeout,
            api_base_url=settings.api_base_url,
            start=settings.start,
            pace_at=settings.pace_at,
        )

    def resolve_accounts(self, handles: Sequence[str]) -> dict[str, Account]:
        """The Page, by its id or its name (``GET /{page-id}?fields=id,name``): a Page token
        reads its own Page only, so other handles are unknown."""
        body = self._get(self.page_id, {"fields": "id,name"})
        name = body.get("name") if isinstance(body.get("name"), str) else None
        if body.get("id") != self.page_id:
            raise MalformedAnswer("Meta answered for another Page", system=self.network)
        found: dict[str, Account] = {}
        for handle in handles:
            given = handle.strip().removeprefix("@")
            if given == self.page_id or (name is not None and given.lower() == name.lower()):
                found[handle] = Account(self.network, given, self.page_id)
        return found

    def fetch(
        self, account: Account, stream: Stream, cursor: Cursor, known: KnownAuthors | None = None
    ) -> Page:
        # ``known`` changes nothing: Graph gives each comment's author with it, free.
        self._guard(account)
        now = self.clock()
        token = (
            _Token.parse(cursor.pagination_token, self.network)
            if cursor.pagination_token is not None
            else None
        )
        got = _Collected()
        if token is None or token.phase == "posts":
            following = self._posts_step(account, stream, cursor, token, got, now)
        elif token.phase == "threads":
            following = self._threads_step(account, stream, cursor, token, got, now)
        else:
            raise MalformedAnswer("a stored Meta walk position is unreadable", system=self.network)
        return self._page(got, cursor, token, following, now)

    # posts and their comments
    def _posts_step(
        self,
        account: Account,
        stream: Stream,
        cursor: Cursor,
        token: _Token | None,
        got: _Collected,
        now: datetime,
        segment: Segment | None = None,
    ) -> _Token | None:
        """One feed page and the comments of its moved posts; with ``segment`` (a backfill),
        every post's comments inside the segment's window, and no marks."""
        window = now - self.watch_window
        marks = cursor.marks if segment is None else {}
        floor = self._floor(cursor, now) if segment is None else segment.since
        until = segment.until if segment is not None else None
        after = token.after if token is not None else None
        params: dict[str, str | int] = {
            "fields": POST_FIELDS,
            "limit": self.page_size,
            "since": int(window.timestamp()),
        }
        if until is not None:
            params["until"] = int(until.timestamp())
        if after is not None:
            params["after"] = after
        listing = self._list(f"{self.page_id}/feed", params)
        posts = [p for p in listing.data if isinstance(p, dict)]
        resume = token.post if token is not None else None
        if resume is not None:
            ids = [p.get("id") for p in posts]
            # The post left part-read: from it on (gone from the page: the page again).
            posts = posts[ids.index(resume) :] if resume in ids else posts
        others = parse_fb_posts(posts, account)
        if stream is Stream.MENTIONS:
            fresh = [
                i
                for i in others.interactions
                if f"post:{i.post_id}" not in marks or i.post_id == resume
            ]
            bounds = (segment.since, segment.until) if segment is not None else (None, None)
            got.add(
                replace(others, interactions=tuple(fresh)),
                stream,
                floor=bounds[0],
                until=bounds[1],
            )
        for post in posts:
            post_id = post.get("id")
            if not isinstance(post_id, str) or not _OBJECT_ID.fullmatch(post_id):
                continue
            made = _data_time(post, "created_time")
            updated = _data_time(post, "updated_time")
            if made is None or updated is None or made < int(window.timestamp()):
                continue
            key = f"post:{post_id}"
            mark = marks.get(key)
            _, was_updated, read_to, last_id = _mark_fields(mark, 4)
            part = token is not None and token.post == post_id and token.comments is not None
            if not part and mark is not None and (_int(was_updated) or 0) >= updated:
                continue  # not moved since its comments were read
            since = _since(token if part else None, read_to, floor)
            more = self._comments(
                account,
                stream,
                post,
                since,
                last_id if not part else "",
                token.comments if part and token is not None else None,
                got,
                key,
                made,
                updated,
                mark,
                until,
            )
            if more is not None:
                return _Token("posts", after=after, post=post_id, comments=more, since=since)
        nxt = _after(listing, self.network)
        oldest = min((t for p in posts if (t := _data_time(p, "created_time"))), default=None)
        if nxt is not None and (oldest is None or oldest >= int(window.timestamp())):
            return _Token("posts", after=nxt)
        if segment is not None:
            return None
        got.marks.update(self._window_drop(cursor.marks, "post:", now))
        if self.messenger:
            return _Token("threads")
        return None

    def _comments(
        self,
        account: Account,
        stream: Stream,
        post: Mapping[str, Any],
        since: int,
        last_id: str,
        after: str | None,
        got: _Collected,
        key: str,
        made: int,
        updated: int,
        mark: str | None,
        until: datetime | None = None,
    ) -> str | None:
        """One page of a moved post's comments (all levels, oldest first) from ``since``
        (to ``until``, a backfill's end); its mark moved to the newest read. The next page's
        cursor, or None when read."""
        params: dict[str, str | int] = {
            "fields": COMMENT_FIELDS,
            "filter": "stream",
            "order": "chronological",
            "since": since,
            "limit": self.page_size,
        }
        if until is not None:
            params["until"] = int(until.timestamp())
        if after is not None:
            params["after"] = after
        post_id = str(post["id"])
        answer = self._list(f"{post_id}/comments", params)
        items = [c for c in answer.data if isinstance(c, dict)]
        if after is None and last_id:
            # The comments of the mark's second up to the last one read were read then.
            ids = [c.get("id") for c in items]
            if last_id in ids:
                items = items[ids.index(last_id) + 1 :]
        translated = parse_fb_comments(
            items,
            account,
            post_id=post_id,
            post_url=str(post.get("permalink_url") or ""),
            parents=_parents(items, self.page_id),
        )
        got.add(translated, stream, until=until)
        _, was_updated, read_to, was_last = _mark_fields(mark, 4)
        newest_at, newest_id = read_to or str(since), was_last
        stamped = [(t, str(c["id"])) for c in items if (t := _data_time(c, "created_time"))]
        if stamped:
            newest_at, newest_id = str(stamped[-1][0]), stamped[-1][1]
        more = _after(answer, self.network)
        moved = str(updated) if more is None else (was_updated or "0")
        got.marks[key] = f"{made}|{moved}|{newest_at}|{newest_id}"
        return more

    # backfill (Backfiller)
    def plan_backfill(
        self,
        account: Account,
        streams: Sequence[Stream],
        since: datetime,
        until: datetime,
        now: datetime,
    ) -> list[Segment]:
        """One segment a stream: the comments made in the window on the Page's posts of the
        watch window (and, for mentions, its visitor and tagged posts). Graph lists a
        post's comments by time, but reaches posts only through the feed, so the window
        starts no earlier than the watch window, and Messenger (only a thread's 20 newest
        messages have details) is not read. No network call."""
        start, end = max(since, now - self.watch_window), min(until, now)
        if end <= start:
            return []
        note = BACKFILL_NOTE
        if since < start:
            note += f"; nothing before {start:%Y-%m-%d %H:%M} UTC (the watch window's start)"
        return [
            Segment(
                stream=stream,
                route=BACKFILL_ROUTE,
                since=start,
                until=end,
                page_size=self.page_size,
                min_interval=BACKFILL_INTERVAL,
                note=note,
            )
            for stream in streams
        ]

    def count_posts(self, account: Account, segment: Segment) -> PostCount:
        """No counts endpoint: what the first step finds, exact when it is the whole."""
        page = self.fetch_segment(account, segment, None)
        found = len(page.interactions) + len(page.quarantined)
        return PostCount(found, exact=page.next_cursor.pagination_token is None)

    def fetch_segment(
        self,
        account: Account,
        segment: Segment,
        token: str | None,
        known: KnownAuthors | None = None,
    ) -> Page:
        """One feed page of the watch window and its posts' comments inside the segment (a
        post with more than a page of them: the token says where it stopped)."""
        self._guard(account)
        if segment.route != BACKFILL_ROUTE:
            raise MalformedAnswer(f"no Meta backfill route {segment.route!r}", system=self.network)
        position = _Token.parse(token, self.network) if token is not None else None
        got = _Collected()
        following = self._posts_step(
            account, segment.stream, Cursor(), position, got, self.clock(), segment=segment
        )
        if following is not None:
            following = replace(following, step=(position.step if position else 0) + 1)
        return Page(
            interactions=tuple(got.interactions),
            authors=tuple(got.authors.values()),
            next_cursor=Cursor(
                pagination_token=following.text(self.network) if following else None
            ),
            quarantined=tuple(got.quarantined),
            returned=len(got.interactions) + len(got.quarantined),
        )

    # Messenger
    def _threads_step(
        self,
        account: Account,
        stream: Stream,
        cursor: Cursor,
        token: _Token,
        got: _Collected,
        now: datetime,
    ) -> _Token | None:
        floor = int(self._floor(cursor, now).timestamp())
        params: dict[str, str | int] = {
            "platform": "messenger",
            "fields": THREAD_FIELDS,
            "limit": self.page_size,
        }
        if token.after is not None:
            params["after"] = token.after
        listing = self._list(f"{self.page_id}/conversations", params)
        threads = [t for t in listing.data if isinstance(t, dict)]
        for thread in threads:
            thread_id = thread.get("id")
            updated = _data_time(thread, "updated_time")
            if not isinstance(thread_id, str) or not _OBJECT_ID.fullmatch(thread_id):
                continue
            if updated is None:
                continue
            key = f"thread:{thread_id}"
            mark = cursor.marks.get(key)
            was_updated, read_to, last_id = _mark_fields(mark, 3)
            if mark is None and updated < floor:
                continue
            if mark is not None and (_int(was_updated) or 0) >= updated:
                continue
            since = _int(read_to) if mark is not None and _int(read_to) is not None else floor
            self._messages(account, stream, thread, since or 0, last_id, got, key, updated)
        nxt = _after(listing, self.network)
        oldest = min((t for th in threads if (t := _data_time(th, "updated_time"))), default=None)
        if nxt is not None and oldest is not None and oldest >= floor:
            return _Token("threads", after=nxt)
        edge = int((now - self.watch_window).timestamp())
        for key, value in cursor.marks.items():
            if key.startswith("thread:"):
                moved = _int(_mark_fields(value, 1)[0])
                if moved is not None and moved < edge:
                    got.marks[key] = None
        return None

    def _messages(
        self,
        account: Account,
        stream: Stream,
        thread: Mapping[str, Any],
        since: int,
        last_id: str,
        got: _Collected,
        key: str,
        updated: int,
    ) -> None:
        """A moved thread's messages newer than its mark, newest first, one call: Graph
        details only the 20 newest, so more than that since the mark is a gap."""
        thread_id = str(thread["id"])
        answer = self._list(
            f"{thread_id}/messages", {"fields": MESSAGE_FIELDS, "limit": MESSAGES_PAGE}
        )
        items = [m for m in answer.data if isinstance(m, dict)]
        fresh: list[dict[str, Any]] = []
        reached = False
        for message in items:
            at = _data_time(message, "created_time")
            if message.get("id") == last_id or (at is not None and at < since):
                reached = True
                break
            fresh.append(message)
        detailed = [m for m in fresh if "from" in m or "message" in m]
        beyond = [m for m in fresh if m not in detailed]
        if beyond or (not reached and answer.next_query is not None):
            stamps = [t for m in beyond or fresh if (t := _data_time(m, "created_time"))]
            got.gap = iso(datetime.fromtimestamp(max(stamps) if stamps else updated, UTC))
            got.warnings.append(
                f"Messenger thread {clip(thread_id, 40)}: more than {MESSAGE_DETAILS} messages "
                "arrived since the last poll; Graph details only the 20 newest (a gap)"
            )
        participants = thread.get("participants")
        people = participants.get("data") if isinstance(participants, dict) else None
        translated = parse_messages(
            detailed,
            account,
            conversation_id=thread_id,
            conversation_url=conversation_url(thread.get("link")),
            participants=people if isinstance(people, list) else (),
        )
        got.add(translated, stream)
        newest = next(
            ((t, str(m["id"])) for m in detailed if (t := _data_time(m, "created_time"))), None
        )
        read_to, read_id = (str(newest[0]), newest[1]) if newest else (str(since), last_id)
        got.marks[key] = f"{updated}|{read_to}|{read_id}"

    # check
    def check(self, handles: Sequence[str]) -> list[CheckRow]:
        """The token is a Page token of this Page (``/me`` answers as the Page), what each
        stream reads is readable (the permissions it needs named), whether Meta withholds
        authors (App Review), and the handles."""
        try:
            me = self._get("me", {"fields": "id,name"})
        except ExternalError as exc:
            return [CheckRow("Page token", False, str(exc), _fix(exc, "Page token"))]
        if me.get("id") != self.page_id:
            return [
                CheckRow(
                    "Page token",
                    False,
                    f"the token answers as {clip(str(me.get('id')), 40)}, not as Page "
                    f"{self.page_id}: it is a user token or another Page's",
                    "issue a Page access token of this Page (GET /me/accounts with a Page "
                    "admin's long-lived user token gives it) and set access_token to it",
                )
            ]
        rows = [CheckRow("Page token", True, f"a Page token of {me.get('name')} ({self.page_id})")]
        rows.append(
            self._probe(
                "posts and comments",
                f"{self.page_id}/feed",
                {"fields": "id,comments.limit(5){from}", "limit": 5},
                "pages_read_engagement, pages_read_user_content, pages_show_list",
            )
        )
        if self.messenger:
            rows.append(
                self._probe(
                    "Messenger",
                    f"{self.page_id}/conversations",
                    {"platform": "messenger", "fields": "id", "limit": 1},
                    "pages_messaging, pages_manage_metadata, pages_read_engagement",
                )
            )
        rows.append(self._authors_row())
        rows.append(
            CheckRow(
                "webhooks",
                True,
                "polling reads the Page's posts, comments, visitor and tagged posts and "
                "Messenger; mentions of the Page in comments elsewhere reach syncd only by the "
                "Page 'mention' webhook (and Messenger messages beyond a thread's 20 newest "
                "only by the 'messages' webhook)",
            )
        )
        for handle in handles:
            given = handle.strip().removeprefix("@")
            name = str(me.get("name") or "")
            if given == self.page_id or given.lower() == name.lower():
                rows.append(CheckRow(handle, True, f"Page {self.page_id}"))
            else:
                rows.append(
                    CheckRow(
                        handle,
                        False,
                        f"{handle} is not this source's Page ({name}, {self.page_id})",
                        "set accounts to the Page's id or name",
                    )
                )
        return rows

    def _probe(self, item: str, path: str, params: Mapping[str, str | int], needs: str) -> CheckRow:
        try:
            self._list(path, params)
        except PermissionDenied as exc:
            named = ", ".join(exc.permissions) or needs
            return CheckRow(
                item,
                False,
                str(exc),
                f"grant the app {named} (it needs {needs}) and issue a new Page token",
            )
        except ExternalError as exc:
            return CheckRow(item, False, str(exc), _fix(exc, "Page token"))
        return CheckRow(item, True, f"readable (uses {needs})")

    def _authors_row(self) -> CheckRow:
        """Whether the recent comments carry ``from``: without Advanced Access Meta leaves
        it out for people with no role on the app."""
        try:
            listing = self._list(
                f"{self.page_id}/feed",
                {"fields": "id,comments.limit(25){from}", "limit": 10},
            )
        except ExternalError as exc:
            return CheckRow("comment authors", False, str(exc), _fix(exc, "Page token"))
        comments = [
            c
            for p in listing.data
            if isinstance(p, dict) and isinstance(p.get("comments"), dict)
            for c in p["comments"].get("data", [])
            if isinstance(c, dict)
        ]
        withheld = sum(1 for c in comments if "from" not in c)
        if withheld:
            return CheckRow(
                "comment authors",
                False,
                f"Meta withheld the author of {withheld} of {len(comments)} recent comments: "
                "the app lacks Advanced Access, so people without a role on it are faceless "
                "(stored, linked to no one, counted in syncd status)",
                "submit the app for App Review (pages_read_user_content, pages_messaging with "
                "Advanced Access; Business Verification), then issue a new Page token",
            )
        return CheckRow(
            "comment authors", True, f"Meta named the author of all {len(comments)} recent comments"
        )


# -- Instagram -----------------------------------------------------------------------------------
class InstagramSource(_MetaSource):
    """An Instagram professional account: ``mentions`` are people's comments and replies on
    its media in the watch window and media tagging it; ``replies`` the account's own
    replies to them. @mentions in other people's captions and comments are not listed by
    any endpoint: only the ``mentions`` webhook names them."""

    network: ClassVar[str] = NETWORK_INSTAGRAM
    Settings: ClassVar[type[ConnectorSettings]] = InstagramSettings

    def __init__(self, access_token: str, *, ig_user_id: str, **kw: Any) -> None:
        super().__init__(access_token, account_id=ig_user_id, **kw)
        self.ig_user_id = ig_user_id

    @classmethod
    def from_settings(cls, settings: InstagramSettings) -> Self:
        return cls(
            settings.access_token.reveal(),
            ig_user_id=settings.ig_user_id,
            app_secret=settings.app_secret.reveal() if settings.app_secret else None,
            graph_version=settings.graph_version,
            watch_window=settings.watch_window,
            page_size=settings.page_size,
            timeout=settings.timeout,
            api_base_url=settings.api_base_url,
            instagram_login=settings.instagram_login,
            start=settings.start,
            pace_at=settings.pace_at,
        )

    def resolve_accounts(self, handles: Sequence[str]) -> dict[str, Account]:
        """The account, by its username or id (``GET /{ig-user-id}?fields=id,username``);
        the handle kept is its username, which the brand's own comments carry."""
        body = self._get(self.ig_user_id, {"fields": "id,username"})
        if body.get("id") != self.ig_user_id:
            raise MalformedAnswer("Meta answered for another account", system=self.network)
        username = body.get("username") if isinstance(body.get("username"), str) else None
        found: dict[str, Account] = {}
        for handle in handles:
            given = handle.strip().removeprefix("@")
            if username is not None and given.lower() in (username.lower(), self.ig_user_id):
                found[handle] = Account(self.network, username, self.ig_user_id)
        return found

    def fetch(
        self, account: Account, stream: Stream, cursor: Cursor, known: KnownAuthors | None = None
    ) -> Page:
        self._guard(account)
        now = self.clock()
        token = (
            _Token.parse(cursor.pagination_token, self.network)
            if cursor.pagination_token is not None
            else None
        )
        got = _Collected()
        if token is None or token.phase == "posts":
            following = self._media_step(account, stream, cursor, token, got, now)
        elif token.phase == "tags":
            following = self._tags_step(account, cursor, token, got, now)
        else:
            raise MalformedAnswer("a stored Meta walk position is unreadable", system=self.network)
        return self._page(got, cursor, token, following, now)

    def _media_step(
        self,
        account: Account,
        stream: Stream,
        cursor: Cursor,
        token: _Token | None,
        got: _Collected,
        now: datetime,
    ) -> _Token | None:
        window = int((now - self.watch_window).timestamp())
        floor = self._floor(cursor, now)
        after = token.after if token is not None else None
        params: dict[str, str | int] = {"fields": MEDIA_FIELDS, "limit": self.page_size}
        if after is not None:
            params["after"] = after
        listing = self._list(f"{self.ig_user_id}/media", params)
        media = [m for m in listing.data if isinstance(m, dict)]
        resume = token.post if token is not None else None
        if resume is not None:
            ids = [m.get("id") for m in media]
            media = media[ids.index(resume) :] if resume in ids else media
        for item in media:
            media_id = item.get("id")
            made = _data_time(item, "timestamp")
            count = item.get("comments_count")
            if not isinstance(media_id, str) or not _OBJECT_ID.fullmatch(media_id):
                continue
            if made is None or made < window or not isinstance(count, int):
                continue
            key = f"media:{media_id}"
            mark = cursor.marks.get(key)
            _, was_count, read_to = _mark_fields(mark, 3)
            part = token is not None and token.post == media_id and token.comments is not None
            if not part and mark is not None and _int(was_count) == count:
                continue  # no comment came or went
            if not part and count == 0:
                got.marks[key] = f"{made}|0|{read_to or int(floor.timestamp())}"
                continue
            since = _since(token if part else None, read_to, floor)
            more = self._ig_comments(
                account,
                stream,
                item,
                since,
                token.comments if part and token is not None else None,
                got,
                key,
                made,
                count,
                was_count,
                mark,
            )
            if more is not None:
                return _Token("posts", after=after, post=media_id, comments=more, since=since)
        nxt = _after(listing, self.network)
        oldest = min((t for m in media if (t := _data_time(m, "timestamp"))), default=None)
        if nxt is not None and (oldest is None or oldest >= window):
            return _Token("posts", after=nxt)
        got.marks.update(self._window_drop(cursor.marks, "media:", now))
        return _Token("tags") if stream is Stream.MENTIONS else None

    def _ig_comments(
        self,
        account: Account,
        stream: Stream,
        media: Mapping[str, Any],
        since: int,
        after: str | None,
        got: _Collected,
        key: str,
        made: int,
        count: int,
        was_count: str,
        mark: str | None,
    ) -> str | None:
        """One page (50) of a moved media's comments, replies expanded: all of them, since
        a new reply sits under an old comment; those made before ``since`` are left out."""
        params: dict[str, str | int] = {"fields": IG_COMMENT_FIELDS, "limit": IG_COMMENTS_MAX}
        if after is not None:
            params["after"] = after
        media_id = str(media["id"])
        answer = self._list(f"{media_id}/comments", params)
        translated = parse_ig_comments(
            list(answer.data),
            account,
            media_id=media_id,
            media_url=str(media.get("permalink") or ""),
        )
        _, _, read_to, read_ids = _mark_fields(got.marks.get(key) or mark, 4)
        at_mark = frozenset(read_ids.split(",")) if read_to == str(since) and read_ids else None
        got.add(
            translated,
            stream,
            floor=datetime.fromtimestamp(since, UTC),
            skip=at_mark or frozenset(),
        )
        # The newest second read, and the comments of that second (read again next time,
        # by the floor, and left out by id).
        stamped: list[tuple[int, str]] = []
        for raw in answer.data:
            if not isinstance(raw, dict):
                continue
            for item in [raw, *_replies(raw)]:
                at = _data_time(item, "timestamp")
                if at is not None and isinstance(item.get("id"), str):
                    stamped.append((at, item["id"]))
        newest = max([since, *(at for at, _ in stamped)])
        if read_to and _int(read_to) is not None and (_int(read_to) or 0) > newest:
            newest = _int(read_to) or newest
        ids_then = set(read_ids.split(",")) if read_to == str(newest) and read_ids else set()
        ids_then |= {i for at, i in stamped if at == newest}
        more = _after(answer, self.network)
        # The count is kept once every page was read: a stop between pages reads it again.
        kept = str(count) if more is None else (was_count or "-1")
        got.marks[key] = f"{made}|{kept}|{newest}|{','.join(sorted(ids_then))}"
        return more

    def _tags_step(
        self, account: Account, cursor: Cursor, token: _Token, got: _Collected, now: datetime
    ) -> _Token | None:
        """Media of others tagging the account, newest first, back to the floor (a tag
        carries the media's time, not the tagging's)."""
        floor = self._floor(cursor, now)
        params: dict[str, str | int] = {"fields": TAG_FIELDS, "limit": self.page_size}
        if token.after is not None:
            params["after"] = token.after
        listing = self._list(f"{self.ig_user_id}/tags", params)
        items = [m for m in listing.data if isinstance(m, dict)]
        got.add(parse_ig_media(items, account), Stream.MENTIONS, floor=floor)
        nxt = _after(listing, self.network)
        oldest = min((t for m in items if (t := _data_time(m, "timestamp"))), default=None)
        if nxt is not None and oldest is not None and oldest >= int(floor.timestamp()):
            return _Token("tags", after=nxt)
        return None

    def check(self, handles: Sequence[str]) -> list[CheckRow]:
        """The account is readable with the token, its media and comments are, and the
        handles name it."""
        try:
            me = self._get(self.ig_user_id, {"fields": "id,username"})
        except ExternalError as exc:
            return [CheckRow("Instagram account", False, str(exc), _fix(exc, "Page token"))]
        username = str(me.get("username") or "")
        rows = [CheckRow("Instagram account", True, f"@{username} ({self.ig_user_id})")]
        try:
            self._list(
                f"{self.ig_user_id}/media",
                {"fields": "id,comments.limit(1){id}", "limit": 1},
            )
            rows.append(CheckRow("media and comments", True, "readable"))
        except PermissionDenied as exc:
            rows.append(
                CheckRow(
                    "media and comments",
                    False,
                    str(exc),
                    "grant instagram_basic and instagram_manage_comments (Instagram Login: "
                    "instagram_business_basic, instagram_business_manage_comments) and issue "
                    "a new token",
                )
            )
        except ExternalError as exc:
            rows.append(CheckRow("media and comments", False, str(exc), _fix(exc, "Page token")))
        rows.append(
            CheckRow(
                "webhooks",
                True,
                "polling reads comments on the account's media and media tagging it; "
                "@mentions in other people's captions and comments reach syncd only by the "
                "Instagram 'mentions' webhook",
            )
        )
        for handle in handles:
            given = handle.strip().removeprefix("@")
            if given.lower() in (username.lower(), self.ig_user_id):
                rows.append(CheckRow(handle, True, f"@{username} ({self.ig_user_id})"))
            else:
                rows.append(
                    CheckRow(
                        handle,
                        False,
                        f"{handle} is not this source's account (@{username})",
                        "set accounts to the account's username",
                    )
                )
        return rows


def _fix(exc: ExternalError, token_name: str) -> str:
    if isinstance(exc, AuthError):
        return f"issue a new {token_name} and set access_token to it"
    if isinstance(exc, RateLimited):
        return "wait for Meta's usage to fall (syncd paces itself on it)"
    if isinstance(exc, PermissionDenied):
        return "grant the permissions named and issue a new token"
    return "check api_base_url and that this host reaches Graph"


if TYPE_CHECKING:  # the contracts are structural: have mypy hold the classes to them
    _f: type[Source] = FacebookSource
    _fs: type[Starting] = FacebookSource
    _fg: type[GapCloser] = FacebookSource
    _fb: type[Backfiller] = FacebookSource
    _fo: type[ObservedResponses] = FacebookSource
    _i: type[Source] = InstagramSource
    _is: type[Starting] = InstagramSource
    _io: type[ObservedResponses] = InstagramSource
