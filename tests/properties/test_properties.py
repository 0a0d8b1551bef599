"""Hypothesis properties: the X page parser on arbitrary JSON, and exactly-once delivery.

1. ``parse_page`` on anything: a page-level body that is not a timeline page raises
   :class:`~syncd.errors.TransientError` (the documented "unreadable body"), and nothing else
   escapes. Item-level garbage is quarantined with its reason and its raw payload untouched;
   good items beside it parse as before; every entry of ``data`` is accounted for exactly once
   (an interaction, a quarantined item, or skipped as not history); and what comes out can be
   stored on SQLite and PostgreSQL.
2. The ingest/deliver state machine, under overlapping, duplicated and out-of-order pages,
   replays, per-record CRM errors, merged Contacts and crashes anywhere (inside a page's
   transaction, inside the CRM call after it stored the records, between batches), with a new
   Pipeline after each crash: once every author is linked and the outbox drained, each post
   ever served is one interaction, and each customer interaction is one CRM record, created
   once, written again only when a crash lost the local commit.
"""

from __future__ import annotations

import copy
import json
import re
import sqlite3
from collections import Counter
from collections.abc import Callable
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import event, func, select
from support.fake_crm import Crash, FakeCrm, as_ref
from support.fake_source import FakeXSource
from support.properties import (
    ADIL,
    BRAND_IDS,
    BRANDS,
    CUSTOMERS,
    MUTATIONS,
    RECORDED,
    REPLACEMENTS,
    T0,
    Clock,
    StatementCrasher,
    Walks,
    accounts,
    as_json,
    cursors,
    customer_posts,
    json_values,
    mutate,
    mutated_recordings,
    page_like,
    streams,
    universe_post,
)

from connectors.x.parse import parse_page
from syncd.errors import TransientError
from syncd.model import (
    DEFAULT_TARGET,
    Account,
    Cursor,
    DeliveryState,
    Direction,
    Page,
    Quarantined,
    Stream,
)
from syncd.pipeline import Pipeline, PipelineSettings
from syncd.resolver.stage import ResolveSettings
from syncd.state import ingest as st_ingest
from syncd.state import outbox
from syncd.state.db import Database
from syncd.state.tables import deliveries, interactions, metadata, quarantine

X_ID = re.compile(r"[0-9]{1,19}")
PARSER = settings(max_examples=200, deadline=None)


# == 1. the parser ============================================================================
def clean(text: str) -> bool:
    """Storable text: no NUL (PostgreSQL), no lone surrogates (UTF-8)."""
    return "\x00" not in text and not any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def skippable(post: dict[str, Any], account: Account, stream: Stream) -> bool:
    """Not history, so neither an interaction nor quarantined: the brand's own posts."""
    if stream is Stream.MENTIONS:
        return bool(post.get("author_id") == account.user_id)
    # An original post (no reply), or the brand answering itself.
    return post.get("in_reply_to_user_id") in (None, account.user_id)


def parse_or_refuse(
    body: Any, account: Account, stream: Stream, cursor: Cursor | None = None
) -> Page | None:
    """Parse, allowing only TransientError out, and check every promise the Page makes."""
    snapshot = copy.deepcopy(body)
    try:
        page = parse_page(body, account=account, stream=stream, cursor=cursor or Cursor())
    except TransientError as exc:
        assert exc.system == "x"
        page = None
    assert body == snapshot  # the parser reads, never rewrites, what X sent
    if page is not None:
        check_page(body, page, account, stream)
    return page


def check_page(body: dict[str, Any], page: Page, account: Account, stream: Stream) -> None:
    data = body.get("data") or []
    entries = {id(e): e for e in data if isinstance(e, dict)}
    others = [e for e in data if not isinstance(e, dict)]
    fates: Counter[int] = Counter()

    for item in page.interactions:
        assert id(item.raw) in entries, "an interaction must carry its post as raw"
        fates[id(item.raw)] += 1
        assert item.raw.get("id") == item.post_id
        for value in (item.post_id, item.author_id, item.counterpart_id):
            assert value is not None and X_ID.fullmatch(value), value  # X always says who
        for opt in (item.conversation_id, item.in_reply_to_post_id):
            assert opt is None or X_ID.fullmatch(opt)
        assert clean(item.text) and clean(item.url) and len(item.url) <= 500
        assert item.created_at.tzinfo is UTC
        assert item.stream is stream and item.account == account.handle
        if stream is Stream.MENTIONS:
            assert item.direction is Direction.INBOUND and item.counterpart_id == item.author_id
            assert item.author_id != account.user_id
        else:
            assert item.direction is Direction.OUTBOUND and item.author_id == account.user_id
            assert item.counterpart_id != account.user_id

    wrapped = []
    for q in page.quarantined:
        assert q.network == "x" and q.reason and clean(q.reason), q
        if id(q.raw) in entries:
            # The raw payload is the post itself, whole: nothing copied, nothing dropped.
            fates[id(q.raw)] += 1
            assert q.item_id is None or q.item_id == q.raw.get("id")
        else:
            assert set(q.raw) == {"value"} and q.item_id is None, q
            wrapped.append(q.raw["value"])
    assert Counter(map(canon, wrapped)) == Counter(map(canon, others))

    skipped = 0
    for key, post in entries.items():
        assert fates[key] <= 1, f"accounted for twice: {post!r}"
        if fates[key] == 0:
            assert skippable(post, account, stream), f"lost without a trace: {post!r}"
            skipped += 1
    assert len(page.interactions) + len(page.quarantined) + skipped == len(data)

    for author in page.authors:
        assert X_ID.fullmatch(author.user_id)
        for text, limit in (
            (author.handle, 100),
            (author.display_name, 200),
            (author.location, 200),
            (author.url, 500),
            (author.description, None),
        ):
            assert text is None or (clean(text) and (limit is None or len(text) <= limit))
    token = page.next_cursor.pagination_token
    assert token is None or (clean(token) and 0 < len(token) <= 500)
    for cursor_id in (page.next_cursor.since_id, page.next_cursor.pending_since_id):
        assert cursor_id is None or X_ID.fullmatch(cursor_id)
    assert all(isinstance(w, str) and clean(w) for w in page.warnings)


@PARSER
@given(body=json_values, account=accounts, stream=streams)
def test_arbitrary_json_is_a_page_or_a_transient_error(
    body: Any, account: Account, stream: Stream
) -> None:
    parse_or_refuse(as_json(body), account, stream)


@PARSER
@given(body=page_like, account=accounts, stream=streams, cursor=cursors)
def test_page_shaped_garbage_is_a_page_or_a_transient_error(
    body: Any, account: Account, stream: Stream, cursor: Cursor
) -> None:
    parse_or_refuse(as_json(body), account, stream, cursor)


@PARSER
@given(body=mutated_recordings(), stream=streams)
def test_mutated_recordings_are_a_page_or_a_transient_error(
    body: dict[str, Any], stream: Stream
) -> None:
    parse_or_refuse(body, ADIL, stream)


POST_FIELDS = (
    "id",
    "author_id",
    "created_at",
    "text",
    "conversation_id",
    "in_reply_to_user_id",
    "referenced_tweets",
)
WITH_DATA = sorted(name for name, body in RECORDED.items() if body.get("data"))


@st.composite
def damaged_recordings(draw: st.DrawFn) -> tuple[str, dict[str, Any], set[int]]:
    """(recording, body, indexes of the posts damaged): one to three fields of some posts."""
    name = draw(st.sampled_from(WITH_DATA), label="recording")
    body = copy.deepcopy(RECORDED[name])
    posts = body["data"]
    hit = draw(st.sets(st.integers(0, len(posts) - 1), min_size=1), label="damaged")
    for index in sorted(hit):
        for _ in range(draw(st.integers(1, 3), label="fields")):
            key = draw(st.sampled_from(POST_FIELDS), label="field")
            how = draw(st.sampled_from(MUTATIONS), label="how")
            posts[index].setdefault(key, None)  # so that a missing field can be damaged too
            replacement = draw(REPLACEMENTS.get(how, st.none()), label="value")
            mutate(body, ("data", index, key), how, replacement)
    return name, body, hit


@PARSER
@given(damaged=damaged_recordings(), stream=streams)
def test_damaged_posts_are_quarantined_and_the_others_parse_as_before(
    parse_db: Database, damaged: tuple[str, dict[str, Any], set[int]], stream: Stream
) -> None:
    name, body, hit = damaged
    baseline = parse_page(RECORDED[name], account=ADIL, stream=stream, cursor=Cursor())
    page = parse_or_refuse(body, ADIL, stream)
    assert page is not None, "damage inside posts must never fail the whole page"
    before = {i.post_id: i for i in baseline.interactions}
    for index, post in enumerate(body["data"]):
        if index not in hit:
            now = [i for i in page.interactions if i.raw is post]
            assert now == ([before[post["id"]]] if post["id"] in before else [])
    store_and_read_back(parse_db, page, ADIL, stream)


# Bodies to store: mostly garbage around a page, and recordings with poisoned text in them.
storable_bodies = st.one_of(
    page_like.map(as_json),
    mutated_recordings(),
    damaged_recordings().map(lambda damaged: damaged[1]),
)


@pytest.fixture(scope="module")
def parse_db(tmp_path_factory: pytest.TempPathFactory) -> Any:
    database = Database(f"sqlite:///{tmp_path_factory.mktemp('parse') / 'state.db'}")
    database.upgrade()
    yield database
    database.dispose()


def store_and_read_back(db: Database, page: Page, account: Account, stream: Stream) -> None:
    """Ingest ``page`` in a transaction that is rolled back: what the parser makes must fit."""
    with db.connect() as conn, conn.begin() as tx:
        st_ingest.ingest_page(
            conn,
            source="x",
            network="x",
            account=account,
            stream=stream,
            page=page,
            crms=["sf"],
            brand_ids=set(),
            now=T0,
        )
        raws = conn.execute(select(quarantine.c.raw).order_by(quarantine.c.id)).scalars().all()
        stored = {
            r.post_id: r.raw
            for r in conn.execute(select(interactions.c.post_id, interactions.c.raw))
        }
        tx.rollback()
    # The raw payload survives the database whole (JSON round trip); an item the page repeats
    # is kept once.
    once: dict[tuple[str, str], Quarantined] = {}
    for q in page.quarantined:
        if q.item_id is not None:
            once.setdefault((q.item_id, q.reason), q)  # the first one is kept
    expected = [q for q in page.quarantined if q.item_id is None] + list(once.values())
    assert Counter(map(canon, raws)) == Counter(canon(q.raw) for q in expected)
    firsts = {i.post_id: i.raw for i in reversed(page.interactions)}
    assert {k: canon(v) for k, v in stored.items()} == {k: canon(v) for k, v in firsts.items()}


@settings(PARSER, max_examples=150)
@given(body=storable_bodies, account=accounts, stream=streams)
def test_parsed_pages_can_be_stored_on_sqlite(
    parse_db: Database, body: Any, account: Account, stream: Stream
) -> None:
    page = parse_or_refuse(body, account, stream)
    if page is not None:
        store_and_read_back(parse_db, page, account, stream)


@pytest.mark.postgres
@settings(PARSER, max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=storable_bodies, account=accounts, stream=streams)
def test_parsed_pages_can_be_stored_on_postgresql(
    postgres_db: Database, body: Any, account: Account, stream: Stream
) -> None:
    # The database is shared by the examples on purpose: each one rolls its page back.
    page = parse_or_refuse(body, account, stream)
    if page is not None:
        store_and_read_back(postgres_db, page, account, stream)


@pytest.fixture
def postgres_db(state_url: str, request: pytest.FixtureRequest) -> Any:
    if not state_url.startswith("postgresql"):
        pytest.skip("the SQLite variant is test_parsed_pages_can_be_stored_on_sqlite")
    return request.getfixturevalue("db")


# == 2. the state machine =====================================================================
SOURCE, CRM = "x", "sf"
# Where to crash: before the n-th SQL statement of a job (a page is about eight), or not at all.
crash_points = st.one_of(st.none(), st.none(), st.integers(0, 30))
# one_of picks its branches evenly: mostly no failure, so that walks also get to their end.
fetch_failures = st.one_of(st.none(), st.none(), st.none(), st.integers(0, 3))
# Page contents: indexes into the post universe; negative ones are unreadable items.
walks = st.lists(st.lists(st.integers(-2, 11), max_size=5), min_size=1, max_size=4)


_ENGINES: dict[str, tuple[Database, StatementCrasher]] = {}


def migrate(url: str) -> None:
    database = Database(url)
    database.upgrade()
    database.dispose()


def engine_for(url: str) -> tuple[Database, StatementCrasher]:
    """One Database (engine) per URL for every example and restart, its pool emptied at each.

    Only the engine's compiled-statement cache survives: a fresh engine recompiles every
    statement, which would be most of an example's run time.
    """
    if url not in _ENGINES:
        database, crasher = Database(url), StatementCrasher()
        crasher.attach(database.engine)
        event.listen(database.engine, "connect", _no_fsync)
        _ENGINES[url] = database, crasher
    return _ENGINES[url]


def _no_fsync(dbapi_conn: Any, _record: Any) -> None:
    """Durability against power loss is not under test (a crash here is an exception), and
    waiting for fsync was most of the run time. Atomicity and isolation are unchanged."""
    cur = dbapi_conn.cursor()
    if isinstance(dbapi_conn, sqlite3.Connection):
        cur.execute("PRAGMA synchronous=OFF")
    else:
        cur.execute("SET synchronous_commit TO off")
    cur.close()


class DeliveryMachine(RuleBasedStateMachine):
    """One state database, one fake X and one fake CRM; Pipelines come and go with crashes."""

    url: ClassVar[str]
    targets: ClassVar[tuple[str, ...]] = (DEFAULT_TARGET,)  # the CRM's history targets

    def __init__(self) -> None:
        super().__init__()
        self.walks = Walks()
        self.x = FakeXSource(self.walks.script)
        self.crm = FakeCrm(strict=True, targets=self.targets)
        self.clock = Clock()
        # Crashes that happened while the CRM was receiving a record: each allows one rewrite.
        self.interrupted: Counter[str] = Counter()
        self.db, self.crasher = engine_for(self.url)
        self.crasher.reset()
        self.pipeline = self._start()
        with self.db.transaction() as conn:
            for table in reversed(metadata.sorted_tables):
                conn.execute(table.delete())
            st_ingest.store_accounts(conn, SOURCE, BRANDS, T0)

    def _start(self) -> Pipeline:
        """A process start: a new Pipeline on fresh connections to the same database."""
        self.db.engine.dispose()
        # Small batches so a drain takes several; no dead letters: that policy is not under
        # test, and a record may bounce off many merges and locks in a long run.
        settings_ = PipelineSettings(
            retries=0,
            write_batch=3,
            record_max_attempts=1_000,
            resolve=ResolveSettings(batch=2),
        )
        return Pipeline(self.db, CRM, self.crm, settings_, clock=self.clock)

    def _run(self, call: Callable[[Pipeline], object], crash_at: int | None) -> None:
        """Run one job; a crash restarts the process. ``crash_at`` None leaves the crasher as
        it is: disarmed, or armed once for a whole scripted scenario."""
        if crash_at is not None:
            self.crasher.arm(crash_at)
        self.crasher.active = True
        self.crm.sent.clear()
        try:
            call(self.pipeline)
        except Crash:
            for external_id in set(self.crm.sent):
                self.interrupted[external_id] += 1
            self.pipeline = self._start()
        except TransientError:
            pass  # a failed fetch: the job ends, the process lives on
        finally:
            self.crasher.active = False
            if crash_at is not None:
                self.crasher.arm(None)

    @staticmethod
    def _key(post_id: str, target: str) -> str:
        """Where the fake CRM keeps the record of a post on a target (:func:`record_key`)."""
        return f"x:{post_id}" if target == DEFAULT_TARGET else f"{target}|x:{post_id}"

    def _cursor(self, account: Account) -> Cursor:
        with self.db.connect() as conn:
            return st_ingest.load_cursor(conn, SOURCE, account.handle, Stream.MENTIONS)

    def _poll(self, account: Account) -> Callable[[Pipeline], object]:
        return lambda p: p.poll(SOURCE, self.x, account, Stream.MENTIONS)

    # -- rules ---------------------------------------------------------------------------
    @initialize(known=st.sets(st.sampled_from(CUSTOMERS), min_size=1))
    def crm_knows_some_customers(self, known: set[str]) -> None:
        for customer in sorted(known):
            self.crm.people[customer] = f"003{customer}"

    @rule(
        account=st.sampled_from(BRANDS),
        pages=walks,
        crash_at=crash_points,
        fail_fetch=fetch_failures,
    )
    def poll(
        self, account: Account, pages: list[list[int]], crash_at: int | None, fail_fetch: int | None
    ) -> None:
        # Resuming a walk (or one whose first page was lost) replays it; otherwise a new one.
        self.walks.plan(account, self._cursor(account), pages)
        if fail_fetch is not None:  # that many fetches answer, then the connection resets
            self.walks.script.faults[:] = [*[None] * fail_fetch, "transient"]
        self._run(self._poll(account), crash_at)
        self.walks.script.faults.clear()

    @rule(crash_at=crash_points, crm_crash=st.none() | st.integers(0, 4))
    def resolve_and_deliver(self, crash_at: int | None, crm_crash: int | None) -> None:
        """The daemon's writer job: link who can be linked, then drain."""
        if crm_crash is not None:
            self.crm.crash_after = crm_crash

        def job(p: Pipeline) -> None:
            p.resolve()
            p.deliver()

        self._run(job, crash_at)
        if crm_crash is not None:
            self.crm.crash_after = None

    @rule(
        max_batches=st.none() | st.integers(1, 2),
        crash_at=crash_points,
        crm_crash=st.none() | st.integers(0, 4),
        locked=st.sets(st.integers(0, 11), max_size=2),
    )
    def deliver(
        self, max_batches: int | None, crash_at: int | None, crm_crash: int | None, locked: set[int]
    ) -> None:
        """Drain some batches; ``locked`` records answer UNABLE_TO_LOCK_ROW once."""
        self.crm.errors.update(
            (self._key(universe_post(i, BRANDS[0]).post_id, target), "UNABLE_TO_LOCK_ROW")
            for i in locked
            for target in self.targets
        )
        if crm_crash is not None:
            self.crm.crash_after = crm_crash
        self._run(lambda p: p.deliver(max_batches), crash_at)
        if crm_crash is not None:
            self.crm.crash_after = None

    @rule(customer=st.sampled_from(CUSTOMERS), merged=st.booleans())
    def crm_changes(self, customer: str, merged: bool) -> None:
        """A customer becomes known to the CRM, or their Contact is merged into a new one
        (the old id then answers ENTITY_IS_DELETED)."""
        old = self.crm.people.get(customer)
        if old is None:
            self.crm.people[customer] = f"003{customer}"
        elif merged:
            self.crm.deleted.add(as_ref(old).id)
            self.crm.people[customer] = f"{old}m"

    @rule(minutes=st.integers(1, 400), restart=st.booleans())
    def time_passes(self, minutes: int, restart: bool) -> None:
        """Back-offs run out; the daemon may be restarted meanwhile (no crash: a clean stop)."""
        self.clock.now += timedelta(minutes=minutes)
        if restart:
            self.pipeline = self._start()

    # -- what holds after every step -----------------------------------------------------
    @invariant()
    def nothing_invented_nothing_doubled(self) -> None:
        with self.db.connect() as conn:
            stored = conn.execute(select(interactions.c.post_id)).scalars().all()
            written = conn.execute(
                select(interactions.c.post_id, deliveries.c.target, deliveries.c.crm_record_id)
                .join(deliveries, deliveries.c.interaction_id == interactions.c.id)
                .where(deliveries.c.state == DeliveryState.WRITTEN)
            ).all()
            queued = conn.execute(
                select(interactions.c.author_id).join(
                    deliveries, deliveries.c.interaction_id == interactions.c.id
                )
            ).scalars()
            bad = conn.execute(select(quarantine.c.item_id)).scalars().all()
        assert set(stored) <= self.walks.script.served
        assert not set(queued) & BRAND_IDS, "a brand-to-brand post was queued for the CRM"
        for post_id, target, crm_id in written:
            assert crm_id == self.crm.crm_ids[self._key(post_id, target)]
        assert all(n == 1 for n in self.crm.created.values())
        for external_id, n in self.crm.stores.items():
            assert n <= 1 + self.interrupted[external_id], f"{external_id} written {n} times"
        assert set(bad) <= self.walks.script.served_bad
        assert len(bad) == len(set(bad)), f"an unreadable item quarantined twice: {bad}"

    def teardown(self) -> None:
        try:
            self.drain_and_check()
        finally:
            self.db.dispose()

    def drain_and_check(self) -> None:
        """No more crashes: finish every walk, link everybody, drain; then count."""
        self.crasher.arm(None)
        self.crm.crash_after = None
        for customer in CUSTOMERS:
            self.crm.people.setdefault(customer, f"003{customer}")
        self.pipeline = self._start()
        for account in BRANDS:
            self.walks.plan(account, self._cursor(account), [])
            self._poll(account)(self.pipeline)
            assert not self._cursor(account).in_walk
        for _ in range(6):
            self.clock.now += timedelta(days=1)
            looked_up = self.pipeline.resolve().looked_up
            if self.pipeline.deliver().attempted == 0 and looked_up == 0:
                break

        with self.db.connect() as conn:
            stored = conn.execute(select(interactions.c.post_id)).scalars().all()
            states = conn.execute(
                select(
                    interactions.c.post_id,
                    deliveries.c.target,
                    deliveries.c.state,
                    deliveries.c.crm_record_id,
                )
                .join(deliveries, deliveries.c.interaction_id == interactions.c.id)
                .where(deliveries.c.crm == CRM)
            ).all()
            ready = outbox.ready_deliveries(conn, CRM, self.clock.now + timedelta(days=365), 1000)
            held = outbox.held_count(conn, CRM)
            n_bad = conn.execute(select(func.count()).select_from(quarantine)).scalar_one()
        # Every post ever served is exactly one interaction ...
        assert sorted(stored) == sorted(self.walks.script.served)
        # ... every customer interaction one delivery per target, written, and one CRM
        # record per target ...
        customers = customer_posts(self.walks.script.served)
        assert sorted((p, t) for p, t, _, _ in states) == sorted(
            (p, t) for p in customers for t in self.targets
        )
        assert [s for _, _, s, _ in states if s != DeliveryState.WRITTEN] == []
        keys = {self._key(p, t) for p in customers for t in self.targets}
        assert set(self.crm.records) == keys
        assert {self._key(p, t): c for p, t, _, c in states} == self.crm.crm_ids
        # ... created once; and nothing is left waiting.
        assert all(self.crm.created[k] == 1 for k in keys)
        assert ready == [] and held == 0
        assert n_bad == len(self.walks.script.served_bad)


def test_each_interaction_is_delivered_exactly_once(migrated_url: str) -> None:
    on_sqlite = migrated_url.startswith("sqlite")

    class Machine(DeliveryMachine):
        url = migrated_url

    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=60 if on_sqlite else 15,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


def test_each_interaction_is_delivered_exactly_once_to_each_of_two_targets(
    state_url: str,
) -> None:
    """The same, with a CRM that writes every interaction twice over (a Task and a
    SocialPost): each is one delivery, written once, whatever crashes in between."""
    migrate(state_url)

    class Machine(DeliveryMachine):
        url = state_url
        targets = (DEFAULT_TARGET, "social_post")

    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=30 if state_url.startswith("sqlite") else 8,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


def test_the_machine_notices_a_double_write(tmp_path: Path) -> None:
    """The property has teeth: a writer that sends each batch twice (a blind retry) is caught."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    migrate(url)

    class Stuttering(DeliveryMachine):
        def _start(self) -> Pipeline:
            pipeline = super()._start()
            crm = self.crm

            class Twice(FakeCrm):
                def lookup(self, keys: Any) -> Any:
                    return crm.lookup(keys)

                def upsert_history(self, records: Any) -> Any:
                    crm.upsert_history(records)
                    return crm.upsert_history(records)

            pipeline.writer.crm = Twice()
            return pipeline

    Stuttering.url = url
    with pytest.raises(AssertionError, match=r"written \d+ times"):
        run_state_machine_as_test(
            Stuttering,
            settings=settings(
                max_examples=300, deadline=None, database=None, phases=[Phase.generate]
            ),
        )


# -- every crash point of one scripted day, exhaustively ----------------------------------
def scripted_day(m: DeliveryMachine) -> None:
    """Overlapping walks on two accounts, a held author linked later, a merged Contact,
    a lock error, a re-served unreadable item: each step a job that may crash."""
    acme, support = BRANDS
    m.crm_knows_some_customers({"7", "8"})
    m.poll(acme, [[0, 1, -1], [2, 1, 3]], None, None)  # posts by 7, 8, 9 (held), 7
    m.poll(support, [[3, 4], [0, 6]], None, None)  # 4: brand to brand; 3 and 0 again
    m.resolve_and_deliver(None, None)
    m.crm_changes("9", merged=False)  # 9's held post can go now ...
    m.crm_changes("7", merged=True)  # ... and 7's Contact is merged away
    m.time_passes(10, restart=False)
    m.poll(acme, [[5, 2, -1], [8, 12]], None, None)  # 12: 7 again, to the deleted Contact
    m.deliver(1, None, None, locked={5})
    m.resolve_and_deliver(None, None)
    m.poll(support, [[9, 0]], None, None)
    m.time_passes(10, restart=False)
    m.resolve_and_deliver(None, None)


def scenario_machine(tmp_path: Path, name: str) -> type[DeliveryMachine]:
    url = f"sqlite:///{tmp_path / name}"
    migrate(url)

    class Scripted(DeliveryMachine):
        pass

    Scripted.url = url
    return Scripted


def test_every_statement_crash_of_a_scripted_day(tmp_path: Path) -> None:
    machine = scenario_machine(tmp_path, "sweep.db")
    dry = machine()
    scripted_day(dry)
    dry.teardown()
    statements = dry.crasher.seen
    assert statements > 50  # the scenario really exercises the pipeline
    for crash_at in range(statements):
        m = machine()
        m.crasher.arm(crash_at)
        scripted_day(m)
        try:
            assert m.crasher.countdown is None, "the crash never happened"
            m.nothing_invented_nothing_doubled()
            m.teardown()
        except AssertionError as exc:
            raise AssertionError(f"crash before statement {crash_at}: {exc}") from exc


def test_every_crm_crash_of_a_scripted_day(tmp_path: Path) -> None:
    machine = scenario_machine(tmp_path, "crm.db")
    dry = machine()
    scripted_day(dry)
    received = dry.crm.received
    dry.teardown()
    assert received >= 10
    for crash_after in range(received + 1):
        m = machine()
        m.crm.crash_after = crash_after
        scripted_day(m)
        try:
            assert m.crm.crash_after is None or crash_after == received, "no crash happened"
            m.nothing_invented_nothing_doubled()
            m.teardown()
        except AssertionError as exc:
            raise AssertionError(f"CRM died after {crash_after} records: {exc}") from exc
