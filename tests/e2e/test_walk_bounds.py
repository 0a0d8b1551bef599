"""A poll walk is bounded: a page token the walk already followed stops it (reported, the
cursor kept where it was), and a walk reads at most ``[daemon] max_pages_per_walk`` pages a
poll, going on from its stored cursor at the next one. Backfill walks stop on a repeated
token too. Real walks: tweepy against the X sandbox, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from support.e2e import World, make_world, poll_once
from support.fake_crm import FakeCrm

from connectors.x.source import XSource
from sandbox.seed import set_up_org
from sandbox.server import Request
from sandbox.x.api import XSandbox
from syncd.backfill.runner import Runner
from syncd.cli import cli
from syncd.errors import PaginationLoop
from syncd.model import Account, BackfillState, Segment, Stream
from syncd.pipeline import Pipeline, PipelineSettings, PollResult
from syncd.state import backfills
from syncd.state import gaps as gap_state
from syncd.state.db import Database
from syncd.state.status import status
from syncd.state.tables import cursors, interactions

TOKEN = "sandbox-x-bearer"
RUNAWAY = 12  # requests after which the test itself ends a walk that was never stopped


def _stored(db: Database) -> set[str]:
    with db.connect() as conn:
        return {r[0] for r in conn.execute(select(interactions.c.post_id))}


def _mention(x: XSandbox, author: str, text: str, n: int) -> str:
    """A post made an hour ago: a walk spread over polls is searched as a suspected gap
    (syncd.state.horizon), and search reaches a post only once it is a little old."""
    made = datetime.now(UTC) - timedelta(hours=1) + timedelta(seconds=n)
    return str(x.add_post(author, text, created_at=made)["id"])


def _run(world: World, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--config", str(world.config), *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_a_repeated_page_token_stops_the_poll_and_status_says_so(
    state_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # status's table, one line a row
    with make_world(state_url, tmp_path, monkeypatch, accounts=("acme",)) as w:
        set_up_org(w.sf)
        brand = w.x.add_user("acme")["id"]
        fan = w.x.add_user("fan")["id"]
        assert poll_once(w)[0] == 0  # the first walk: nothing yet
        posted = [_mention(w.x, fan, f"@acme where is order {i}?", i) for i in range(50)]
        assert brand
        sent: list[str | None] = []

        def count(req: Request) -> None:
            sent.append(req.query.get("pagination_token"))
            if len(sent) >= RUNAWAY:  # unbounded: end it here, so the test fails, not hangs
                w.x.clear_faults()

        w.x.on_request("mentions", count)
        # Every page after the first names itself as the next: a walk that follows it reads
        # that page forever (1,579 billed requests in 3 s were seen).
        w.x.inject("repeat_token", endpoint="mentions", rate=1.0)
        code, output = poll_once(w)

        assert code == 1
        assert "PaginationLoop" in output and "already followed" in output
        first, looping = sent[0], sent[1]
        assert first is None and looping is not None
        assert sent.count(looping) <= 2 and len(sent) <= 3
        # What the walk read is kept, and the cursor stays on the page that looped: nothing
        # after it is skipped when the API answers sanely again.
        stored = _stored_posts(state_url)
        assert stored == set(posted[-40:])
        shown = _run(w, "status")
        assert "already followed" in shown and "(mid-walk)" in shown

        w.x.clear_faults()
        sent.clear()
        code, output = poll_once(w)
        assert code == 0, output
        assert sent[0] == looping  # taken up where it stopped
        assert set(posted) <= _stored_posts(state_url)
        assert "already followed" not in _run(w, "status")


def _stored_posts(state_url: str) -> set[str]:
    db = Database(state_url)
    try:
        return _stored(db)
    finally:
        db.dispose()


class Walk:
    def __init__(self, x: XSandbox, db: Database, max_pages: int) -> None:
        self.x, self.db = x, db
        self.brand = x.add_user("acme")["id"]
        self.fan = x.add_user("fan")["id"]
        self.account = Account("x", "acme", self.brand)
        self.source = XSource(TOKEN, api_base_url=x.url, page_size=10)
        settings = PipelineSettings(retries=0, max_pages_per_walk=max_pages)
        self.pipeline = Pipeline(db, "sf", FakeCrm(), settings)

    def mentions(self, n: int) -> list[str]:
        return [str(self.x.add_post(self.fan, f"@acme hello {i}")["id"]) for i in range(n)]


@pytest.fixture
def walk(db: Database) -> Iterator[Walk]:
    with XSandbox(bearer_token=TOKEN) as x:
        w = Walk(x, db, max_pages=3)
        try:
            yield w
        finally:
            w.source.close()


def test_a_long_walk_stops_at_the_page_bound_and_goes_on_next_poll(walk: Walk) -> None:
    poll: Callable[[], PollResult] = lambda: walk.pipeline.poll(  # noqa: E731
        "x", walk.source, walk.account, Stream.MENTIONS
    )
    poll()  # the first walk: nothing yet
    first = walk.mentions(5)
    assert poll().pages == 1
    posted = walk.mentions(75)  # 8 pages of 10 after the stored since_id

    result = poll()
    assert result.pages == 3 and result.stopped is not None
    with walk.db.connect() as conn:
        (stream,) = status(conn, "sf").streams
        token = conn.execute(select(cursors.c.pagination_token)).scalar_one()
    assert token is not None and stream.in_walk
    assert stream.walk_stopped is not None and "max_pages_per_walk" in stream.walk_stopped
    assert len(_stored(walk.db)) == 5 + 30

    assert poll().pages == 3
    last = poll()
    assert last.pages == 2 and last.stopped is None
    with walk.db.connect() as conn:
        (stream,) = status(conn, "sf").streams
        # One walk over three polls paused twice, while posts could have overtaken it: a
        # suspected gap, searched to be sure (syncd.state.horizon); none is lost either way.
        (gap,) = gap_state.listing(conn)
        assert (gap.since_id, gap.until_id, gap.walk_seen) == (first[-1], posted[0], 75)
    assert not stream.in_walk and stream.walk_stopped is None
    assert _stored(walk.db) == set(first) | set(posted)
    assert poll().pages == 1  # and the next walk starts after the newest


def test_the_page_bound_is_a_daemon_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from syncd.config.settings import load

    for name in "TPS":
        monkeypatch.setenv(name, "secret")
    path = tmp_path / "c.toml"
    path.write_text(
        f'[state]\nurl = "sqlite:///{tmp_path}/s.db"\n[daemon]\nmax_pages_per_walk = 7\n'
        '[[sources]]\nname = "x"\ntype = "x"\nbearer_token = "env:T"\naccounts = ["acme"]\n'
        '[crm]\ntype = "salesforce"\nlogin_url = "https://login.salesforce.com"\n'
        'username = "u"\npassword = "env:P"\nsecurity_token = "env:S"\n'
    )
    assert load(path).pipeline().max_pages_per_walk == 7
    assert PipelineSettings().max_pages_per_walk == 100


def test_a_backfill_walk_stops_on_a_repeated_token_and_pauses(walk: Walk) -> None:
    now = walk.pipeline.clock()
    posted = [
        str(
            walk.x.add_post(
                walk.fan, f"@acme hi {i}", created_at=now - timedelta(hours=2, seconds=i)
            )["id"]
        )
        for i in range(250)  # search pages hold 100
    ]
    walk.pipeline.accounts("x", walk.source, ["acme"])  # the account is known, as after a poll
    since = now - timedelta(days=1)
    segments = walk.source.plan_backfill(walk.account, [Stream.MENTIONS], since, now, now)
    assert [s.route for s in segments] == ["search_recent"]
    with walk.db.transaction() as conn:
        job_id = backfills.create(
            conn,
            source="x",
            network="x",
            account="acme",
            since=since,
            until=now,
            streams=["mentions"],
            plan=segments,
            estimate=None,
            status=BackfillState.QUEUED,
            now=now,
        )
    sent: list[str | None] = []

    def count(req: Request) -> None:
        sent.append(req.query.get("next_token"))
        if len(sent) >= RUNAWAY:
            walk.x.clear_faults()

    walk.x.on_request("search_recent", count)
    walk.x.inject("repeat_token", endpoint="search_recent", rate=1.0)
    runner = Runner(walk.pipeline, "x", walk.source, job_id)
    assert runner.claim()
    with pytest.raises(PaginationLoop):
        while not runner.step().done:
            pass
    assert len(sent) <= 3 and sent.count(sent[1]) <= 2
    with walk.db.connect() as conn:
        job = backfills.get(conn, job_id)
    assert job is not None and job.status == BackfillState.PAUSED
    assert job.error is not None and "already followed" in job.error
    assert job.token == sent[1]  # it takes up at the page that looped, none skipped

    walk.x.clear_faults()
    assert runner.claim(paused_too=True)
    while not runner.step().done:
        pass
    assert set(posted) <= _stored(walk.db)


def test_a_full_archive_count_stops_on_a_repeated_token(walk: Walk) -> None:
    now = walk.pipeline.clock()
    since = now - timedelta(days=120)  # counts pages hold 31 days: four pages, not one
    segment = Segment(Stream.MENTIONS, "search_all", since, now - timedelta(minutes=1), "@acme")
    sent: list[str | None] = []

    def count(req: Request) -> None:
        sent.append(req.query.get("next_token"))
        if len(sent) >= RUNAWAY:
            walk.x.clear_faults()

    walk.x.on_request("counts_all", count)
    assert walk.source.count_posts(walk.account, segment).requests == 4  # a sane walk
    sent.clear()
    walk.x.inject("repeat_token", endpoint="counts_all", rate=1.0)
    with pytest.raises(PaginationLoop):
        walk.source.count_posts(walk.account, segment)
    assert len(sent) == 2 and sent[0] is None


def test_status_shows_a_walk_the_page_bound_stopped(
    state_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # status's table, one line a row
    with make_world(state_url, tmp_path, monkeypatch, accounts=("acme",)) as w:
        set_up_org(w.sf)
        w.config.write_text(
            w.config.read_text().replace("[daemon]\n", "[daemon]\nmax_pages_per_walk = 2\n")
        )
        w.x.add_user("acme")
        fan = w.x.add_user("fan")["id"]
        assert poll_once(w)[0] == 0  # the first walk: nothing yet
        posted = [_mention(w.x, fan, f"@acme late order {i}", i) for i in range(50)]

        assert poll_once(w)[0] == 0  # 2 of 3 pages (of 20): not an error, still under way
        shown = _run(w, "status")
        assert "walk stopped after 2 pages ([daemon] max_pages_per_walk)" in shown
        assert "(mid-walk)" in shown
        assert len(_stored_posts(state_url)) == 40

        assert poll_once(w)[0] == 0
        assert _stored_posts(state_url) == set(posted)
        shown = _run(w, "status")
        assert "max_pages_per_walk" not in shown and "(mid-walk)" not in shown
