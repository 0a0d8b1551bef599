"""The in-memory :class:`~syncd.contracts.Source` every test that needs a network but not X's
stand-in uses; ``tests/contract/test_sources.py`` holds it to the same suite as the real
connector.

A :class:`FakeSource` reads a world through an API of its own: a token the world may refuse,
failures queued for the next calls, calls counted. Two worlds:

- :class:`FakeNetwork`, users and posts, read as a connector reads its API: a walk newest
  first, pages of ``page_size``, a page token naming where the next page starts and the
  walk's newest id carried as ``pending_since_id`` until the last page. Several sources may
  read one network, so a walk resumed by a new instance from a stored cursor goes on where
  the old one stopped. Post and user ids are decimal strings that grow with time, as X's do;
  the network name is ``"fake"`` so nothing mistakes it for a real one.
- :class:`FakeThreads`, threads of posts a walk re-reads, keeping a mark per thread with the
  stream's cursor (:attr:`~syncd.model.Page.marks`), as a network whose new comments land on
  old posts is read.
- :class:`Script`, pages a test wrote, answered by the cursor that asks for them: for driving
  the pipeline through exactly the walks a test is about. Those pages are X-shaped, so
  :class:`FakeXSource` reads them under X's name.

A post may be ``withheld``: the network does not say who wrote it (as Meta leaves ``from``
out for an app without Advanced Access), and it is read without an author.

A post may be ``unpolled``: no timeline shows it (as an Instagram caption mentioning the
brand), only a webhook tells of it. :class:`FakeWebhookSource` has a webhook
(:class:`FakeWebhook`: a verify token, an HMAC-SHA256 signature of the body, one hint a body
line ``account object kind``), and a mentions walk's first page reads the posts its ``mention``
hints name, through the "API": a post that exists, stands and mentions the account is read,
and every mention hint is taken, confirmed or not; hints of other kinds are left.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, Self

from syncd.contracts import (
    CheckRow,
    ConnectorSettings,
    KnownAuthors,
    SourceSettings,
    WebhookEndpoint,
)
from syncd.errors import AuthError, MalformedAnswer, RateLimited, SyncdError, TransientError
from syncd.model import (
    Account,
    Author,
    Cursor,
    Direction,
    Interaction,
    Page,
    Quarantined,
    Reads,
    Stream,
    WebhookHint,
)

if TYPE_CHECKING:
    from syncd.contracts import Source, WebhookSource

NETWORK = "fake"
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
Fault = Literal["rate_limit", "transient", "malformed", "bad_item"]


@dataclass
class FakeUser:
    id: str
    handle: str
    name: str


@dataclass
class FakePost:
    id: str
    author_id: str
    text: str
    created_at: datetime
    in_reply_to: str | None = None  # the replied-to post's id
    mentions: tuple[str, ...] = ()  # user ids of the handles the text names
    # Set: the post is read again only by this address, not by its id (Interaction.ref), as
    # a Mastodon status of another instance is.
    ref: str | None = None
    withheld: bool = False  # the API does not say who wrote it
    unpolled: bool = False  # in no timeline: read only when a webhook hint names it


@dataclass
class FakeNetwork:
    """The network's state; tests change it directly."""

    token: str = "fake-token"
    users: dict[str, FakeUser] = field(default_factory=dict)
    posts: dict[str, FakePost] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    faults: list[Fault | None] = field(default_factory=list)  # the next calls' fates, in order
    calls: int = 0
    _ids: Any = field(default_factory=lambda: itertools.count(1_000_000_001))

    def add_user(self, handle: str, name: str | None = None) -> FakeUser:
        user = FakeUser(str(next(self._ids)), handle, name or handle.title())
        self.users[user.id] = user
        return user

    def by_handle(self, handle: str) -> FakeUser | None:
        wanted = handle.strip().removeprefix("@").lower()
        return next((u for u in self.users.values() if u.handle.lower() == wanted), None)

    def add_post(
        self,
        author_id: str,
        text: str,
        *,
        in_reply_to: str | None = None,
        ref: str | None = None,
        withheld: bool = False,
        unpolled: bool = False,
    ) -> FakePost:
        n = next(self._ids)
        mentioned = [self.by_handle(w) for w in text.split() if w.startswith("@")]
        post = FakePost(
            str(n),
            author_id,
            text,
            T0 + timedelta(seconds=n - 1_000_000_000),
            in_reply_to,
            tuple(u.id for u in mentioned if u is not None),
            ref,
            withheld,
            unpolled,
        )
        self.posts[post.id] = post
        return post

    def delete_post(self, post_id: str) -> None:
        self.deleted.add(post_id)

    def standing(self) -> list[FakePost]:
        """Every post not deleted, newest first."""
        live = [p for p in self.posts.values() if p.id not in self.deleted]
        return sorted(live, key=lambda p: int(p.id), reverse=True)

    def stands(self, post_id: str, ref: str | None = None) -> bool | None:
        """As X, a post never made reads as "not found": deleted. A post read by its ref
        cannot be told without it (None)."""
        post = self.posts.get(post_id)
        if post is not None and post.ref is not None and post.ref != ref:
            return None
        return post is not None and post_id not in self.deleted

    def accounts(self, handles: Sequence[str]) -> dict[str, Account]:
        found = {h: self.by_handle(h) for h in handles}
        return {h: Account(NETWORK, u.handle, u.id) for h, u in found.items() if u is not None}

    def read(
        self,
        account: Account,
        stream: Stream,
        cursor: Cursor,
        *,
        page_size: int,
        known: KnownAuthors | None,
        bad_item: bool,
    ) -> Page:
        since = int(cursor.since_id) if cursor.since_id else 0
        below = int(cursor.pagination_token) if cursor.pagination_token else None
        posts = [
            p
            for p in self._timeline(account, stream)
            if int(p.id) > since and (below is None or int(p.id) < below)
        ]
        read, rest = posts[:page_size], posts[page_size:]
        pending = cursor.pending_since_id or (read[0].id if read else None)
        if rest:
            following = Cursor(cursor.since_id, read[-1].id, pending)
        else:
            following = Cursor(since_id=pending or cursor.since_id)
        bad = read[:1] if bad_item else []
        kept = [p for p in read if p not in bad]
        hinted, taken = self._hinted(account, stream, cursor)
        kept += [p for p in hinted if p not in kept]
        interactions = [self._interaction(account, stream, p) for p in kept]
        wanted = {u for i in interactions for u in (i.author_id, i.counterpart_id) if u}
        have = known(wanted) if known is not None and wanted else {}
        authors = [self._author(uid) for uid in sorted(wanted) if uid not in have]
        return Page(
            interactions=tuple(interactions),
            authors=tuple(authors),
            next_cursor=following,
            quarantined=tuple(
                Quarantined(NETWORK, "created_at is missing", {"id": p.id}, p.id) for p in bad
            ),
            returned=len(read),
            oldest_id=read[-1].id if read else None,
            reads=Reads(posts=len(read) + len(hinted), users=len(authors)),
            taken_hints=taken,
        )

    def _hinted(
        self, account: Account, stream: Stream, cursor: Cursor
    ) -> tuple[list[FakePost], tuple[WebhookHint, ...]]:
        """The posts a mentions walk's first page reads for its mention hints, and the hints
        it took: each one read, whether the API confirmed it or not."""
        if stream is not Stream.MENTIONS or cursor.in_walk:
            return [], ()
        taken = tuple(h for h in cursor.hints if h.kind == "mention")
        found = [self.posts.get(h.object_id) for h in taken]
        confirmed = [
            p
            for p in found
            if p is not None and p.id not in self.deleted and account.user_id in p.mentions
        ]
        return confirmed, taken

    def _timeline(self, account: Account, stream: Stream) -> list[FakePost]:
        if stream is Stream.MENTIONS:
            return [p for p in self.standing() if account.user_id in p.mentions and not p.unpolled]
        return [
            p
            for p in self.standing()
            if p.author_id == account.user_id and self._replied_to(p) not in (None, p.author_id)
        ]

    def _replied_to(self, post: FakePost) -> str | None:
        parent = self.posts.get(post.in_reply_to or "")
        return parent.author_id if parent else None

    def _interaction(self, account: Account, stream: Stream, post: FakePost) -> Interaction:
        inbound = stream is Stream.MENTIONS
        counterpart = post.author_id if inbound else self._replied_to(post)
        assert counterpart is not None
        customer = post if inbound else self.posts.get(post.in_reply_to or "")
        if customer is not None and customer.withheld:
            counterpart = None  # the API does not say who the customer is
        handle = self.users[post.author_id].handle
        return Interaction(
            network=NETWORK,
            post_id=post.id,
            account=account.handle,
            stream=stream,
            direction=Direction.INBOUND if inbound else Direction.OUTBOUND,
            author_id=None if post.withheld else post.author_id,
            counterpart_id=counterpart,
            text=post.text,
            created_at=post.created_at,
            url=f"https://fake.example/{handle}/{post.id}",
            conversation_id=self._root(post),
            in_reply_to_post_id=post.in_reply_to,
            raw={"id": post.id, "text": post.text},
            ref=post.ref,
        )

    def _root(self, post: FakePost) -> str:
        while post.in_reply_to in self.posts:
            post = self.posts[post.in_reply_to]
        return post.id

    def _author(self, user_id: str) -> Author:
        user = self.users[user_id]
        return Author(NETWORK, user.id, user.handle, user.name)


@dataclass
class FakeThreads:
    """Threads of posts to the brand (a post's comments, a conversation's messages), all
    re-read by every walk of ``mentions``: ``page_size`` threads a page, in the order they
    were opened, the page token naming the thread the next page starts at. Of each thread a
    walk reads only the posts after the thread's mark, and the newest of them becomes its
    mark (:attr:`Page.marks`); once a walk has passed every thread, the marks of threads
    closed since go. A stream's walk thus ends with no since_id to keep: the marks are where
    it stands. Other streams read nothing."""

    token: str = "fake-token"
    users: dict[str, FakeUser] = field(default_factory=dict)
    threads: dict[str, list[FakePost]] = field(default_factory=dict)  # oldest post first
    closed: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)
    faults: list[Fault | None] = field(default_factory=list)
    calls: int = 0
    _ids: Any = field(default_factory=lambda: itertools.count(2_000_000_001))

    def add_user(self, handle: str) -> FakeUser:
        user = FakeUser(str(next(self._ids)), handle, handle.title())
        self.users[user.id] = user
        return user

    def open_thread(self) -> str:
        thread = str(next(self._ids))
        self.threads[thread] = []
        return thread

    def add_post(self, thread: str, author_id: str, *, withheld: bool = False) -> FakePost:
        n = next(self._ids)
        post = FakePost(
            str(n),
            author_id,
            f"post {n} in {thread}",
            T0 + timedelta(seconds=n - 2_000_000_000),
            in_reply_to=thread,
            withheld=withheld,
        )
        self.threads[thread].append(post)
        return post

    def accounts(self, handles: Sequence[str]) -> dict[str, Account]:
        wanted = {h.strip().removeprefix("@").lower(): h for h in handles}
        return {
            wanted[u.handle.lower()]: Account(NETWORK, u.handle, u.id)
            for u in self.users.values()
            if u.handle.lower() in wanted
        }

    def stands(self, post_id: str, ref: str | None = None) -> bool | None:
        posts = {p.id for thread in self.threads.values() for p in thread}
        return post_id in posts and post_id not in self.deleted

    def read(
        self,
        account: Account,
        stream: Stream,
        cursor: Cursor,
        *,
        page_size: int,
        known: KnownAuthors | None,
        bad_item: bool,
    ) -> Page:
        if stream is not Stream.MENTIONS:
            return Page((), (), Cursor())
        opened = [t for t in self.threads if t not in self.closed]
        start = opened.index(cursor.pagination_token) if cursor.pagination_token else 0
        batch, rest = opened[start : start + page_size], opened[start + page_size :]
        posts: list[FakePost] = []
        marks: dict[str, str | None] = {}
        for thread in batch:
            after = int(cursor.marks.get(thread, "0"))
            new = [
                p
                for p in self.threads[thread]
                if int(p.id) > after and p.id not in self.deleted and p.author_id != account.user_id
            ]
            if new:
                posts += new
                marks[thread] = new[-1].id
        if not rest:  # the walk passed every open thread: the others' marks are not needed
            marks.update({t: None for t in cursor.marks if t not in opened})
        interactions = tuple(
            Interaction(
                network=NETWORK,
                post_id=p.id,
                account=account.handle,
                stream=stream,
                direction=Direction.INBOUND,
                author_id=None if p.withheld else p.author_id,
                counterpart_id=None if p.withheld else p.author_id,
                text=p.text,
                created_at=p.created_at,
                url=f"https://fake.example/t/{p.in_reply_to}/{p.id}",
                conversation_id=p.in_reply_to,
                raw={"id": p.id, "text": p.text},
            )
            for p in posts
        )
        people = sorted({p.author_id for p in posts if not p.withheld})
        have = known(people) if known is not None and people else {}
        authors = tuple(
            Author(NETWORK, u, self.users[u].handle, self.users[u].name)
            for u in people
            if u not in have
        )
        return Page(
            interactions=interactions,
            authors=authors,
            next_cursor=Cursor(pagination_token=rest[0]) if rest else Cursor(),
            returned=len(posts),
            reads=Reads(posts=len(posts), users=len(authors)),
            marks=marks,
        )


@dataclass
class Script:
    """Pages a test wrote, answered by the (account handle, cursor) that asks for them; a
    scripted exception is raised instead. Asked again with a cursor it already answered, it
    answers the same again: the network re-serving a request whose result was never stored.
    A cursor nobody scripted is a KeyError: the pipeline lost or invented one."""

    brands: dict[str, Account] = field(default_factory=dict)  # handle → account
    pages: dict[tuple[str, Cursor], Page | Exception] = field(default_factory=dict)
    token: str = "fake-token"
    faults: list[Fault | None] = field(default_factory=list)
    calls: int = 0
    deleted: set[str] = field(default_factory=set)
    served: set[str] = field(default_factory=set)  # post ids answered
    served_bad: set[str] = field(default_factory=set)  # item ids answered as quarantined

    @classmethod
    def of(cls, account: Account, pages: Mapping[Cursor, Page | Exception]) -> Script:
        """One account's pages, by cursor."""
        script = cls(brands={account.handle: account})
        script.pages.update({(account.handle, c): answer for c, answer in pages.items()})
        return script

    def stands(self, post_id: str, ref: str | None = None) -> bool | None:
        return post_id in self.served and post_id not in self.deleted

    def accounts(self, handles: Sequence[str]) -> dict[str, Account]:
        return {h: self.brands[h] for h in handles if h in self.brands}

    def read(
        self,
        account: Account,
        stream: Stream,
        cursor: Cursor,
        *,
        page_size: int,
        known: KnownAuthors | None,
        bad_item: bool,
    ) -> Page:
        answer = self.pages[(account.handle, cursor)]
        if isinstance(answer, Exception):
            raise answer
        self.served.update(i.post_id for i in answer.interactions)
        self.served_bad.update(q.item_id or "" for q in answer.quarantined)
        return answer


class World(Protocol):
    """What a :class:`FakeSource` reads: the network's state behind its API."""

    token: str  # the one token the API accepts
    faults: list[Fault | None]  # the next calls' failures, in order (None: that one answers)
    calls: int

    def accounts(self, handles: Sequence[str]) -> dict[str, Account]: ...

    def read(
        self,
        account: Account,
        stream: Stream,
        cursor: Cursor,
        *,
        page_size: int,
        known: KnownAuthors | None,
        bad_item: bool,
    ) -> Page: ...

    def stands(self, post_id: str, ref: str | None = None) -> bool | None:
        """Whether the post stands; None when it cannot be told (its ref is needed)."""
        ...


class FakeSettings(SourceSettings):
    type: Literal["fake"]
    token: str = "fake-token"
    page_size: int = 5


class FakeSource:
    """Reads a :class:`World`; satisfies :class:`syncd.contracts.Source`."""

    network: ClassVar[str] = NETWORK
    Settings: ClassVar[type[ConnectorSettings]] = FakeSettings
    post_check_batch: ClassVar[int] = 100
    networks: ClassVar[dict[str, FakeNetwork]] = {}  # from_settings finds its world by name

    def __init__(self, world: World, *, token: str | None = None, page_size: int = 5) -> None:
        self.world = world
        self.token = world.token if token is None else token
        self.page_size = page_size
        self.fetched: list[Cursor] = []  # every cursor asked for, in order
        # Every lookup_posts call: the ids, and the refs given (None: none passed).
        self.looked_up: list[tuple[list[str], dict[str, str] | None]] = []
        self.closed = False

    @classmethod
    def from_settings(cls, settings: Any) -> Self:
        world = cls.networks.setdefault(settings.name, FakeNetwork())
        return cls(world, token=settings.token, page_size=settings.page_size)

    def resolve_accounts(self, handles: Sequence[str]) -> dict[str, Account]:
        self._call()
        return self.world.accounts(handles)

    def fetch(
        self, account: Account, stream: Stream, cursor: Cursor, known: KnownAuthors | None = None
    ) -> Page:
        self.fetched.append(cursor)
        fault = self._call()
        return self.world.read(
            account,
            stream,
            cursor,
            page_size=self.page_size,
            known=known,
            bad_item=fault == "bad_item",
        )

    def lookup_posts(
        self, post_ids: Sequence[str], refs: Mapping[str, str] | None = None
    ) -> tuple[set[str], set[str]]:
        self.looked_up.append((list(post_ids), None if refs is None else dict(refs)))
        alive: set[str] = set()
        deleted: set[str] = set()
        ids = list(dict.fromkeys(post_ids))
        for start in range(0, len(ids), self.post_check_batch):  # batched, as networks are
            self._call()
            for post_id in ids[start : start + self.post_check_batch]:
                stands = self.world.stands(post_id, (refs or {}).get(post_id))
                if stands is not None:
                    (alive if stands else deleted).add(post_id)
        return alive, deleted

    def check(self, handles: Sequence[str]) -> list[CheckRow]:
        try:
            found = self.resolve_accounts(handles)
        except SyncdError as exc:
            return [CheckRow("login", False, str(exc), "check the token")]
        rows = [CheckRow("login", True, "token accepted")]
        for h in handles:
            account = found.get(h)
            rows.append(
                CheckRow(f"@{h}", True, f"user id {account.user_id}")
                if account
                else CheckRow(f"@{h}", False, f"no account @{h}", "correct the handle")
            )
        return rows

    def close(self) -> None:
        self.closed = True

    def _call(self) -> Fault | None:
        """One API call: refused with a bad token, or failing as queued."""
        self.world.calls += 1
        if self.token != self.world.token:
            raise AuthError("fake: 401 Unauthorized", system=self.network, status=401)
        fault = self.world.faults.pop(0) if self.world.faults else None
        if fault == "rate_limit":
            resume = datetime.now(UTC) + timedelta(minutes=15)
            raise RateLimited("fake: 429", resume_at=resume, system=self.network, status=429)
        if fault == "transient":
            raise TransientError("fake: 503", system=self.network, status=503)
        if fault == "malformed":
            raise MalformedAnswer("fake: the body is not JSON", system=self.network)
        return fault


class FakeXSource(FakeSource):
    """The fake under X's name, for scripts of X-shaped pages: the pipeline stores what it reads
    under its source's network, and those tests assert X's external ids (``x:<post id>``)."""

    network: ClassVar[str] = "x"


def fake_signature(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class FakeWebhook:
    """The fake network's webhook endpoint: a ``GET`` with the verify ``token`` gets its
    ``challenge`` back; a ``POST`` signed in ``X-Fake-Signature`` (HMAC-SHA256 of the body)
    names one hint a line, ``account object kind``."""

    def __init__(self, verify_token: str, secret: str) -> None:
        self._token = verify_token
        self._secret = secret
        self.received: list[tuple[bytes, dict[str, str]]] = []  # every POST, as handed over

    def __repr__(self) -> str:
        return "FakeWebhook()"

    def subscribe(self, params: Mapping[str, str]) -> str | None:
        ok = hmac.compare_digest(params.get("token", "").encode(), self._token.encode())
        return params.get("challenge") if ok else None

    def receive(self, body: bytes, headers: Mapping[str, str]) -> Sequence[WebhookHint] | None:
        self.received.append((body, dict(headers)))
        expected = fake_signature(body, self._secret)
        if not hmac.compare_digest(headers.get("x-fake-signature", ""), expected):
            return None
        lines = body.decode("utf-8", "replace").splitlines()
        return [WebhookHint(*line.split()) for line in lines if len(line.split()) == 3]


class FakeWebhookSource(FakeSource):
    """The fake with a webhook (None: its settings configure none)."""

    def __init__(self, world: World, hook: FakeWebhook | None, *, page_size: int = 5) -> None:
        super().__init__(world, page_size=page_size)
        self.hook = hook

    def webhook(self) -> WebhookEndpoint | None:
        return self.hook


if TYPE_CHECKING:
    _: type[Source] = FakeSource
    _hooked: type[WebhookSource] = FakeWebhookSource
    _endpoint: type[WebhookEndpoint] = FakeWebhook
