"""An in-memory social network and a :class:`~syncd.contracts.Source` that reads it.

:class:`FakeNetwork` is the world (users, posts, deletions, a failure queued for the next
call); :class:`FakeSource` reads it as a connector reads its API: a walk newest first, pages of
``page_size``, a page token naming where the next page starts and the walk's newest id carried
as ``pending_since_id`` until the last page. Several sources may read one network, so a walk
resumed by a new instance from a stored cursor goes on where the old one stopped.

Post and user ids are decimal strings that grow with time, as X's do; the network name is
``"fake"`` so nothing mistakes it for a real one.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

from syncd.contracts import CheckRow, ConnectorSettings, KnownAuthors, SourceSettings
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
)

if TYPE_CHECKING:
    from syncd.contracts import Source

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


@dataclass
class FakeNetwork:
    """The network's state; tests change it directly."""

    token: str = "fake-token"
    users: dict[str, FakeUser] = field(default_factory=dict)
    posts: dict[str, FakePost] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    faults: list[Fault] = field(default_factory=list)  # the next calls' failures, in order
    calls: int = 0
    _ids: Any = field(default_factory=lambda: itertools.count(1_000_000_001))

    def add_user(self, handle: str, name: str | None = None) -> FakeUser:
        user = FakeUser(str(next(self._ids)), handle, name or handle.title())
        self.users[user.id] = user
        return user

    def by_handle(self, handle: str) -> FakeUser | None:
        wanted = handle.strip().removeprefix("@").lower()
        return next((u for u in self.users.values() if u.handle.lower() == wanted), None)

    def add_post(self, author_id: str, text: str, *, in_reply_to: str | None = None) -> FakePost:
        n = next(self._ids)
        mentioned = [self.by_handle(w) for w in text.split() if w.startswith("@")]
        post = FakePost(
            str(n),
            author_id,
            text,
            T0 + timedelta(seconds=n - 1_000_000_000),
            in_reply_to,
            tuple(u.id for u in mentioned if u is not None),
        )
        self.posts[post.id] = post
        return post

    def delete_post(self, post_id: str) -> None:
        self.deleted.add(post_id)

    def standing(self) -> list[FakePost]:
        """Every post not deleted, newest first."""
        live = [p for p in self.posts.values() if p.id not in self.deleted]
        return sorted(live, key=lambda p: int(p.id), reverse=True)


class FakeSettings(SourceSettings):
    type: Literal["fake"]
    token: str = "fake-token"
    page_size: int = 5


class FakeSource:
    """Reads a :class:`FakeNetwork`; satisfies :class:`syncd.contracts.Source`."""

    network: ClassVar[str] = NETWORK
    Settings: ClassVar[type[ConnectorSettings]] = FakeSettings
    post_check_batch: ClassVar[int] = 100
    networks: ClassVar[dict[str, FakeNetwork]] = {}  # from_settings finds its world by name

    def __init__(self, world: FakeNetwork, *, token: str | None = None, page_size: int = 5) -> None:
        self.world = world
        self.token = world.token if token is None else token
        self.page_size = page_size
        self.closed = False

    @classmethod
    def from_settings(cls, settings: Any) -> Self:
        world = cls.networks.setdefault(settings.name, FakeNetwork())
        return cls(world, token=settings.token, page_size=settings.page_size)

    # -- the Source contract -----------------------------------------------------------------
    def resolve_accounts(self, handles: Sequence[str]) -> dict[str, Account]:
        self._call()
        found = {h: self.world.by_handle(h) for h in handles}
        return {h: Account(NETWORK, u.handle, u.id) for h, u in found.items() if u is not None}

    def fetch(
        self, account: Account, stream: Stream, cursor: Cursor, known: KnownAuthors | None = None
    ) -> Page:
        fault = self._call()
        since = int(cursor.since_id) if cursor.since_id else 0
        below = int(cursor.pagination_token) if cursor.pagination_token else None
        posts = [
            p
            for p in self._timeline(account, stream)
            if int(p.id) > since and (below is None or int(p.id) < below)
        ]
        read, rest = posts[: self.page_size], posts[self.page_size :]
        pending = cursor.pending_since_id or (read[0].id if read else None)
        if rest:
            following = Cursor(cursor.since_id, read[-1].id, pending)
        else:
            following = Cursor(since_id=pending or cursor.since_id)
        bad = read[:1] if fault == "bad_item" else []
        kept = [p for p in read if p not in bad]
        interactions = [self._interaction(account, stream, p) for p in kept]
        wanted = {i.author_id for i in interactions} | {i.counterpart_id for i in interactions}
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
            reads=Reads(posts=len(read), users=len(authors)),
        )

    def lookup_posts(self, post_ids: Sequence[str]) -> tuple[set[str], set[str]]:
        alive: set[str] = set()
        deleted: set[str] = set()
        ids = list(dict.fromkeys(post_ids))
        for start in range(0, len(ids), self.post_check_batch):  # batched, as networks are
            self._call()
            for post_id in ids[start : start + self.post_check_batch]:
                if post_id in self.world.posts and post_id not in self.world.deleted:
                    alive.add(post_id)
                else:  # as X, a post never made reads as "not found": deleted
                    deleted.add(post_id)
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

    # -- the network's side ------------------------------------------------------------------
    def _call(self) -> Fault | None:
        """One API call: refused with a bad token, or failing as queued."""
        self.world.calls += 1
        if self.token != self.world.token:
            raise AuthError("fake: 401 Unauthorized", system=NETWORK, status=401)
        fault = self.world.faults.pop(0) if self.world.faults else None
        if fault == "rate_limit":
            resume = datetime.now(UTC) + timedelta(minutes=15)
            raise RateLimited("fake: 429", resume_at=resume, system=NETWORK, status=429)
        if fault == "transient":
            raise TransientError("fake: 503", system=NETWORK, status=503)
        if fault == "malformed":
            raise MalformedAnswer("fake: the body is not JSON", system=NETWORK)
        return fault

    def _timeline(self, account: Account, stream: Stream) -> list[FakePost]:
        if stream is Stream.MENTIONS:
            return [p for p in self.world.standing() if account.user_id in p.mentions]
        return [
            p
            for p in self.world.standing()
            if p.author_id == account.user_id and self._replied_to(p) not in (None, p.author_id)
        ]

    def _replied_to(self, post: FakePost) -> str | None:
        parent = self.world.posts.get(post.in_reply_to or "")
        return parent.author_id if parent else None

    def _interaction(self, account: Account, stream: Stream, post: FakePost) -> Interaction:
        inbound = stream is Stream.MENTIONS
        counterpart = post.author_id if inbound else self._replied_to(post)
        assert counterpart is not None
        handle = self.world.users[post.author_id].handle
        return Interaction(
            network=NETWORK,
            post_id=post.id,
            account=account.handle,
            stream=stream,
            direction=Direction.INBOUND if inbound else Direction.OUTBOUND,
            author_id=post.author_id,
            counterpart_id=counterpart,
            text=post.text,
            created_at=post.created_at,
            url=f"https://fake.example/{handle}/{post.id}",
            conversation_id=self._root(post),
            in_reply_to_post_id=post.in_reply_to,
            raw={"id": post.id, "text": post.text},
        )

    def _root(self, post: FakePost) -> str:
        while post.in_reply_to in self.world.posts:
            post = self.world.posts[post.in_reply_to]
        return post.id

    def _author(self, user_id: str) -> Author:
        user = self.world.users[user_id]
        return Author(NETWORK, user.id, user.handle, user.name)


if TYPE_CHECKING:
    _: type[Source] = FakeSource
