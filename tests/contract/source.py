"""The standard suite every :class:`syncd.contracts.Source` passes.

A connector gets the whole suite by one subclass that provides the ``source_world`` fixture:
a :class:`SourceWorld`, the network it reads (a loopback stand-in, or a fake's own state) with
the few verbs the suite needs to put posts in it and to make the next call fail. Only what the
Protocol and the domain types document is asserted (``syncd/contracts.py``,
``syncd/model.py``, ``syncd/errors.py``), never one network's particulars: where networks
differ in shape (their handles, their post ids, a walk that reads an overlap) the suite asks
the world, and every source passes the same tests.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import pytest
from sqlalchemy import select

from syncd.contracts import CheckRow, ConnectorSettings, Source
from syncd.errors import AuthError, ExternalError, MalformedAnswer, RateLimited, TransientError
from syncd.model import Account, Author, Cursor, Direction, Interaction, Page, Stream
from syncd.state.db import Database
from syncd.state.ingest import ingest_page
from syncd.state.tables import deliveries, interactions

from .base import Contract

MAX_PAGES = 50  # a walk longer than this is a walk that never ends


class SourceWorld(Protocol):
    """A network one source connector reads, as the suite drives it.

    The suite names its users with lower-case letters, digits and ``_`` ("fan",
    "fan_renamed"); each world makes of a name the handle its network would have
    (:meth:`handle`), and makes post ids in its network's shape (:meth:`absent_post_ids`).
    """

    page_size: int  # what the sources it makes read per page (the walks below exceed it)
    # What :meth:`fail_next` can do: "rate_limit", "transient", "malformed", "bad_item".
    faults: frozenset[str]
    # Whether a walk from a stored since_id also reads again posts it read before, at and
    # just below the mark (Bluesky: an overlap, for backdated posts the appview sorts below
    # it). The suite then asserts what it reads again is only that, and that storing it
    # adds nothing: no post is delivered twice.
    overlap: bool

    def make_source(self, *, valid_credentials: bool = True) -> Source:
        """A new connector instance reading this world (refused by it when not valid)."""
        ...

    def handle(self, name: str) -> str:
        """The handle, valid on this network, of the user the suite made (or renamed) as
        ``name``, as the network's pages show it (X: ``name``; Mastodon: ``name@domain``;
        Bluesky, whose handles are domain names: ``fan-renamed.bsky.social``)."""
        ...

    def add_user(self, name: str) -> str:
        """A new user, its handle made of ``name`` (:meth:`handle`); its immutable user id."""
        ...

    def add_post(self, author_id: str, text: str, *, in_reply_to: str | None = None) -> str:
        """A new post, newer than every other; its id. ``@handle`` in ``text`` mentions."""
        ...

    def delete_post(self, post_id: str) -> None: ...

    def rename_user(self, user_id: str, name: str) -> None:
        """Give a user the handle made of ``name`` (raise NotImplementedError where the world
        cannot)."""
        ...

    def absent_post_ids(self, like: str, n: int) -> list[str]:
        """``n`` post ids no post has, in the shape of ``like`` (a post's id) and older than
        it: numbers below it, where post ids are numbers; URIs, where they are URIs."""
        ...

    def fail_next(self, fault: str) -> None:
        """Make the next read fail so: a 429 with a reset, a 5xx, an unreadable body, or a
        page whose first item cannot be translated."""
        ...


def walk(source: Source, account: Account, stream: Stream, cursor: Cursor) -> list[Page]:
    """The pages of one walk from ``cursor``, as the pipeline reads them."""
    pages: list[Page] = []
    while not pages or not pages[-1].walk_complete:
        assert len(pages) < MAX_PAGES, "the walk never ends"
        pages.append(source.fetch(account, stream, cursor))
        cursor = pages[-1].next_cursor
    return pages


def post_ids(pages: list[Page]) -> list[str]:
    return [i.post_id for page in pages for i in page.interactions]


class State:
    """A state database the suite stores walks in, as the pipeline does: one transaction a
    page, the cursor with it, the unique (network, post id) key, one delivery a new post."""

    def __init__(self, path: Path) -> None:
        self.db = Database(f"sqlite:///{path}")
        self.db.upgrade()

    def store(self, source: Source, account: Account, stream: Stream, pages: list[Page]) -> int:
        """The walk's pages stored; how many of their posts were new."""
        new = 0
        for page in pages:
            with self.db.transaction() as conn:
                stored = ingest_page(
                    conn,
                    source="contract",
                    network=source.network,
                    account=account,
                    stream=stream,
                    page=page,
                    crms=["crm"],
                    brand_ids={account.user_id},
                    now=datetime.now(UTC),
                )
            new += stored.new
        return new

    def delivered(self) -> list[str]:
        """The post id of each delivery queued, in no order: a post twice is delivered twice."""
        query = select(interactions.c.post_id).join(
            deliveries, deliveries.c.interaction_id == interactions.c.id
        )
        with self.db.connect() as conn:
            return [str(row[0]) for row in conn.execute(query)]

    def close(self) -> None:
        self.db.dispose()


class SourceContract(Contract):
    """Subclass as ``TestXxxSource(SourceContract)`` and provide ``source_world``; what an
    implementation is known to lack goes in ``known_gaps`` (see :class:`~contract.base.Contract`).
    """

    @pytest.fixture
    def source_world(self) -> SourceWorld:
        raise NotImplementedError("a SourceContract subclass provides the source_world fixture")

    @pytest.fixture
    def source(self, source_world: SourceWorld) -> Iterator[Source]:
        source = source_world.make_source()
        yield source
        source.close()

    @pytest.fixture
    def brand(self, source_world: SourceWorld, source: Source) -> Account:
        user_id = source_world.add_user("acme")
        return Account(source.network, "acme", user_id)

    def mentions(self, world: SourceWorld, author_id: str, n: int) -> list[str]:
        return [world.add_post(author_id, f"@acme question {k}") for k in range(n)]

    # -- what it is ----------------------------------------------------------------------------
    def test_declares_its_network_and_settings(self, source: Source) -> None:
        assert isinstance(source.network, str) and source.network
        assert issubclass(type(source).Settings, ConnectorSettings)
        assert callable(type(source).from_settings)
        for name in ("resolve_accounts", "fetch", "lookup_posts", "check", "close"):
            assert callable(getattr(source, name)), name
        # The compliance check asks lookup_posts in batches of this, each stored in turn.
        batch = type(source).post_check_batch
        assert isinstance(batch, int) and batch >= 1

    # -- resolve_accounts ----------------------------------------------------------------------
    def test_resolve_accounts_finds_known_handles_only(
        self, source_world: SourceWorld, source: Source
    ) -> None:
        acme = source_world.add_user("acme")
        fan = source_world.add_user("fan")
        found = source.resolve_accounts(["acme", "fan", "nosuchuser"])
        assert dict(found) == {
            "acme": Account(source.network, "acme", acme),
            "fan": Account(source.network, "fan", fan),
        }
        assert dict(source.resolve_accounts(["nosuchuser"])) == {}

    def test_resolve_accounts_takes_more_handles_than_one_call(
        self, source_world: SourceWorld, source: Source
    ) -> None:
        first, last = source_world.add_user("first"), source_world.add_user("last")
        handles = ["first", *(f"nobody{n}" for n in range(230)), "last"]
        found = source.resolve_accounts(handles)
        assert {h: a.user_id for h, a in found.items()} == {"first": first, "last": last}

    # -- fetch -----------------------------------------------------------------------------
    def test_an_empty_stream_is_one_complete_page(
        self, source_world: SourceWorld, source: Source, brand: Account
    ) -> None:
        pages = walk(source, brand, Stream.MENTIONS, Cursor())
        assert len(pages) == 1 and pages[0].interactions == ()
        assert pages[0].walk_complete

    def test_first_page_translates_mentions(
        self, source_world: SourceWorld, source: Source, brand: Account
    ) -> None:
        fan = source_world.add_user("fan")
        (post,) = self.mentions(source_world, fan, 1)
        page = source.fetch(brand, Stream.MENTIONS, Cursor())
        assert isinstance(page, Page)
        (mention,) = page.interactions
        assert isinstance(mention, Interaction)
        assert (mention.network, mention.post_id) == (source.network, post)
        assert mention.external_id == f"{source.network}:{post}"
        assert (mention.account, mention.stream) == (brand.handle, Stream.MENTIONS)
        assert mention.direction is Direction.INBOUND
        # Keyed on the immutable user id, never the handle.
        assert mention.author_id == mention.counterpart_id == fan
        assert "@acme question 0" in mention.text
        assert mention.created_at.utcoffset() == timedelta(0)
        assert mention.url.startswith("http")
        # Without ``known``, the page describes its authors.
        authors = {a.user_id: a for a in page.authors}
        assert all(isinstance(a, Author) and a.network == source.network for a in page.authors)
        assert authors[fan].handle == source_world.handle("fan")
        assert page.walk_complete and page.next_cursor.since_id is not None
        assert page.quarantined == ()

    def test_author_id_survives_a_rename(
        self, source_world: SourceWorld, source: Source, brand: Account
    ) -> None:
        fan = source_world.add_user("fan")
        (before,) = self.mentions(source_world, fan, 1)
        try:
            source_world.rename_user(fan, "fan_renamed")
        except NotImplementedError:
            pytest.skip("this world cannot rename a user")
        after = source_world.add_post(fan, "@acme same person, new handle")
        pages = walk(source, brand, Stream.MENTIONS, Cursor())
        by_post = {i.post_id: i for p in pages for i in p.interactions}
        assert by_post[before].author_id == by_post[after].author_id == fan
        shown = {a.handle for p in pages for a in p.authors if a.user_id == fan}
        assert shown == {source_world.handle("fan_renamed")}

    def test_a_walk_reads_every_post_once_and_ends(
        self, source_world: SourceWorld, source: Source, brand: Account
    ) -> None:
        fan, other = source_world.add_user("fan"), source_world.add_user("other")
        posted = self.mentions(source_world, fan, 7) + self.mentions(source_world, other, 6)
        source_world.add_post(other, "not about the brand")
        pages = walk(source, brand, Stream.MENTIONS, Cursor())
        assert len(pages) > 1, "the world holds more than one page"
        # Mid-walk pages carry a page token and the since_id to take at the end.
        for page in pages[:-1]:
            assert page.next_cursor.in_walk and not page.walk_complete
            assert page.next_cursor.pending_since_id is not None
        read = post_ids(pages)
        assert len(read) == len(set(read)), "a post came twice in one walk"
        assert set(read) == set(posted)
        end = pages[-1].next_cursor
        assert not end.in_walk and end.since_id is not None
        assert end.since_id == pages[0].next_cursor.pending_since_id

    def test_a_walk_resumes_on_a_new_instance_from_the_stored_cursor(
        self, source_world: SourceWorld, source: Source, brand: Account
    ) -> None:
        fan = source_world.add_user("fan")
        posted = self.mentions(source_world, fan, source_world.page_size * 2 + 1)
        first = source.fetch(brand, Stream.MENTIONS, Cursor())
        assert first.next_cursor.in_walk
        source.close()  # the process dies; the stored cursor is all that is left
        again = source_world.make_source()
        try:
            rest = walk(again, brand, Stream.MENTIONS, first.next_cursor)
        finally:
            again.close()
        read = post_ids([first, *rest])
        assert len(read) == len(set(read)) and set(read) == set(posted)

    def test_a_stored_since_id_brings_only_newer_posts(
        self, source_world: SourceWorld, source: Source, brand: Account, tmp_path: Path
    ) -> None:
        fan = source_world.add_user("fan")
        older = self.mentions(source_world, fan, 3)
        state = State(tmp_path / "contract-state.db")
        try:
            first = walk(source, brand, Stream.MENTIONS, Cursor())
            assert state.store(source, brand, Stream.MENTIONS, first) == len(older)
            done = first[-1].next_cursor
            newer = self.mentions(source_world, fan, 2)
            pages = walk(source, brand, Stream.MENTIONS, done)
            read = post_ids(pages)
            assert len(read) == len(set(read)), "a post came twice in one walk"
            if source_world.overlap:
                # What it reads again is what it had read, and it does read some: the world
                # says it walks an overlap, which is what storing must absorb here.
                assert set(newer) < set(read) <= set(newer) | set(older)
            else:
                assert sorted(read) == sorted(newer)
            assert state.store(source, brand, Stream.MENTIONS, pages) == len(newer)
            after = pages[-1].next_cursor
            assert after.since_id is not None and after.since_id != done.since_id
            # Nothing new: nothing new stored, and the cursor to store stays where it was.
            idle = walk(source, brand, Stream.MENTIONS, after)
            assert idle[-1].next_cursor == Cursor(since_id=after.since_id)
            if source_world.overlap:
                assert set(post_ids(idle)) <= set(newer) | set(older)
            else:
                assert post_ids(idle) == []
            assert state.store(source, brand, Stream.MENTIONS, idle) == 0
            # Each post delivered once, however often a walk read it.
            assert sorted(state.delivered()) == sorted(older + newer)
        finally:
            state.close()

    def test_replies_stream_holds_the_brands_replies_to_others(
        self, source_world: SourceWorld, source: Source, brand: Account
    ) -> None:
        fan = source_world.add_user("fan")
        (asked,) = self.mentions(source_world, fan, 1)
        answer = source_world.add_post(brand.user_id, "@fan on it", in_reply_to=asked)
        source_world.add_post(brand.user_id, "New release today")  # not a reply: not history
        pages = walk(source, brand, Stream.REPLIES, Cursor())
        (reply,) = [i for p in pages for i in p.interactions]
        assert (reply.post_id, reply.stream) == (answer, Stream.REPLIES)
        assert reply.direction is Direction.OUTBOUND
        assert (reply.author_id, reply.counterpart_id) == (brand.user_id, fan)
        assert reply.in_reply_to_post_id == asked

    def test_known_authors_change_what_is_read_not_what_is_found(
        self, source_world: SourceWorld, source: Source, brand: Account
    ) -> None:
        fan, other = source_world.add_user("fan"), source_world.add_user("other")
        self.mentions(source_world, fan, 2)
        self.mentions(source_world, other, 2)
        plain = source.fetch(brand, Stream.MENTIONS, Cursor())
        asked: list[str] = []

        def known(ids: Collection[str]) -> Mapping[str, Author]:
            asked.extend(ids)
            return {fan: Author(source.network, fan, "fan")}

        with_known = source.fetch(brand, Stream.MENTIONS, Cursor(), known)
        assert with_known.interactions == plain.interactions
        assert with_known.next_cursor == plain.next_cursor
        assert all(isinstance(i, str) for i in asked)
        # The author it was not told of is described; the one it was need not be read.
        assert other in {a.user_id for a in with_known.authors}

    # -- lookup_posts --------------------------------------------------------------------------
    def test_lookup_posts_tells_standing_from_deleted(
        self, source_world: SourceWorld, source: Source, brand: Account
    ) -> None:
        fan = source_world.add_user("fan")
        kept, gone = self.mentions(source_world, fan, 2)
        source_world.delete_post(gone)
        assert source.lookup_posts([]) == (set(), set())
        alive, deleted = source.lookup_posts([kept, gone])
        assert kept in alive and gone in deleted
        assert not alive & deleted and alive | deleted <= {kept, gone}

    def test_lookup_posts_takes_more_ids_than_one_call(
        self, source_world: SourceWorld, source: Source, brand: Account
    ) -> None:
        fan = source_world.add_user("fan")
        kept, gone = self.mentions(source_world, fan, 2)
        source_world.delete_post(gone)
        # Ids no post has, in the same shape (older than every post here): over two batches.
        filler = source_world.absent_post_ids(kept, 2 * source.post_check_batch + 50)
        asked = [*filler[:120], kept, *filler[120:], gone]
        alive, deleted = source.lookup_posts(asked)
        assert kept in alive and gone in deleted
        assert not alive & deleted and alive | deleted <= set(asked)

    # -- check -------------------------------------------------------------------------------
    def test_check_reports_each_handle_in_rows(
        self, source_world: SourceWorld, source: Source, brand: Account
    ) -> None:
        rows = list(source.check(["acme", "nosuchuser"]))
        assert rows and all(isinstance(r, CheckRow) for r in rows)
        assert any(not r.ok and "nosuchuser" in r.item + r.detail for r in rows)
        assert all(r.ok for r in source.check(["acme"]))

    def test_check_reports_refused_credentials_as_a_row(
        self, source_world: SourceWorld, brand: Account
    ) -> None:
        refused = source_world.make_source(valid_credentials=False)
        try:
            rows = list(refused.check(["acme"]))
        finally:
            refused.close()
        assert any(not r.ok for r in rows)

    # -- errors: syncd.errors, classified ------------------------------------------------------
    def _fails(self, world: SourceWorld, source: Source, brand: Account, fault: str) -> Any:
        if fault not in world.faults:
            pytest.skip(f"this world cannot make a read fail with {fault!r}")
        self.mentions(world, world.add_user("fan"), 1)
        world.fail_next(fault)
        with pytest.raises(ExternalError) as info:
            source.fetch(brand, Stream.MENTIONS, Cursor())
        assert info.value.system == source.network
        return info.value

    def test_refused_credentials_raise_auth_error(
        self, source_world: SourceWorld, brand: Account
    ) -> None:
        refused = source_world.make_source(valid_credentials=False)
        try:
            with pytest.raises(AuthError) as info:
                refused.fetch(brand, Stream.MENTIONS, Cursor())
        finally:
            refused.close()
        assert info.value.system == refused.network

    def test_a_rate_limit_raises_rate_limited_with_resume_at(
        self, source_world: SourceWorld, source: Source, brand: Account
    ) -> None:
        error = self._fails(source_world, source, brand, "rate_limit")
        assert isinstance(error, RateLimited)
        assert error.resume_at.utcoffset() is not None

    def test_a_server_error_raises_transient_error(
        self, source_world: SourceWorld, source: Source, brand: Account
    ) -> None:
        error = self._fails(source_world, source, brand, "transient")
        assert isinstance(error, TransientError)

    def test_an_unreadable_answer_raises_malformed_answer(
        self, source_world: SourceWorld, source: Source, brand: Account
    ) -> None:
        error = self._fails(source_world, source, brand, "malformed")
        assert isinstance(error, MalformedAnswer)

    def test_a_bad_item_is_quarantined_and_the_rest_read(
        self, source_world: SourceWorld, source: Source, brand: Account
    ) -> None:
        if "bad_item" not in source_world.faults:
            pytest.skip("this world cannot break one item of a page")
        posted = self.mentions(source_world, source_world.add_user("fan"), 3)
        source_world.fail_next("bad_item")
        page = source.fetch(brand, Stream.MENTIONS, Cursor())
        (bad,) = page.quarantined
        assert bad.network == source.network and bad.reason
        good = [i.post_id for i in page.interactions]
        assert len(good) == 2 and set(good) < set(posted)
        assert bad.item_id is None or bad.item_id not in good
