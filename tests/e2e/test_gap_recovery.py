"""Gaps closed end to end: posts the timelines no longer held when syncd polled again are found
by search, through the backfill job machinery, and reach Salesforce once each; a gap nothing
reaches is shown, logged once and counted.

The headline test runs ``syncd run`` itself, stopped and started again; the others drive the
app's poll and backfill work in-process, the way the daemon's jobs call them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from prometheus_client import generate_latest
from support.e2e import Daemon, World, make_world, tasks, wait_for

from sandbox.seed import Customer, seed
from syncd.cli import cli
from syncd.config import settings as config_mod
from syncd.model import Stream
from syncd.service.app import App
from syncd.service.metrics import Metrics
from syncd.state import backfills


def configure(world: World, *lines: str) -> None:
    """Add keys to the X source's table (those it sets already are left as they are)."""
    text = world.config.read_text()
    new = [line for line in lines if f"\n{line.split('=')[0].strip()} =" not in text]
    world.config.write_text(text.replace("page_size = 100", "\n".join(["page_size = 100", *new])))


@pytest.fixture
def world(migrated_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with make_world(migrated_url, tmp_path, monkeypatch, accounts=("acme",)) as w:
        w.config.write_text(w.config.read_text().replace("page_size = 20", "page_size = 100"))
        yield w


def linked(world: World, customers: int = 12) -> tuple[str, list[Customer]]:
    """The brand's id and customers the CRM knows by their X id."""
    people = seed(world.x, world.sf, customers=customers)
    return people.brand_ids["acme"], [c for c in people.customers if c.kind == "contact_by_id"]


def mention(world: World, who: Customer, text: str, at: datetime) -> str:
    return str(world.x.add_post(who.user_id, f"@acme {text}", created_at=at)["id"])


def open_app(world: World) -> App:
    """The app, its X source told the sandbox's horizons (X's own: 800 and 3,200)."""
    app = App(config_mod.load(world.config))
    app.open()
    source: Any = app.sources["acme-x"][1]
    source.horizons = {
        Stream.MENTIONS: world.x.mentions_horizon,
        Stream.REPLIES: world.x.timeline_horizon,
    }
    return app


def work_backfills(app: App) -> None:
    """What the daemon's backfill job does, until no backfill is left to work."""
    for _ in range(100):
        with app.db.connect() as conn:
            active = backfills.jobs(conn, active_only=True)
        if not active:
            return
        app.backfill_tick(5.0)
    raise AssertionError(f"backfills still active: {active}")


def status(world: World) -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["--config", str(world.config), "status", "--json"])
    assert result.exit_code == 0, result.output
    found: dict[str, Any] = json.loads(result.output)
    return found


@pytest.mark.parametrize("state_url", ["sqlite"], indirect=True)
def test_the_daemon_recovers_5000_mentions_that_arrived_while_it_was_stopped(
    world: World,
) -> None:
    _, people = linked(world, customers=20)
    now = datetime.now(UTC)
    first = mention(world, people[0], "anyone there?", now - timedelta(hours=3))
    daemon = Daemon(world.config)
    try:
        wait_for(lambda: f"x:{first}" in tasks(world.sf), 60, "the first poll's post written")
    finally:
        assert daemon.stop() == 0, daemon.log

    # 5,000 mentions while it is down: the mentions timeline holds only the newest 800.
    start = now - timedelta(hours=2)
    posted = [first] + [
        mention(world, people[i % len(people)], f"order {i}", start + timedelta(seconds=i))
        for i in range(5000)
    ]
    daemon = Daemon(world.config, "--log-level", "INFO")
    try:
        wait_for(lambda: len(tasks(world.sf)) == len(posted), 120, "every mention written")
        wait_for(lambda: "closed: 4200 post(s) recovered" in daemon.log, 60, "the gap closed")
    finally:
        assert daemon.stop() == 0, daemon.log
    assert set(tasks(world.sf)) == {f"x:{p}" for p in posted}  # tasks() fails on a duplicate
    assert world.x.store.horizon_cuts == 1
    assert "searching through backfill 1" in daemon.log
    # Closed gaps are only counted.
    assert status(world)["gaps"] == {"unclosed": [], "closed": 1, "recovered": 4200}


def test_replies_past_the_timeline_horizon_are_recovered_by_search(world: World) -> None:
    world.x.timeline_horizon = 300  # X's is 3,200: the same walk, a tenth of the posts
    brand, people = linked(world)
    now = datetime.now(UTC)
    first = mention(world, people[0], "hello?", now - timedelta(hours=3))
    answer = world.x.add_post(brand, "hi!", in_reply_to=first, created_at=now - timedelta(hours=3))
    app = open_app(world)
    try:
        # What the daemon's jobs do: the cycle only queues the gaps' searches, for the
        # backfill job (`poll --once` reads them itself: see the tests below).
        assert app.cycle(close_gaps=False).ok
        expected = {first, str(answer["id"])}
        start = now - timedelta(hours=2)
        for i in range(500):
            at = start + timedelta(seconds=10 * i)
            asked = mention(world, people[i % len(people)], f"question {i}", at)
            reply = world.x.add_post(
                brand, f"answer {i}", in_reply_to=asked, created_at=at + timedelta(seconds=5)
            )
            expected |= {asked, str(reply["id"])}
        assert app.cycle(close_gaps=False).ok  # 500 mentions (all reachable), 300 of 500 replies
        # 500 mentions are over half the mentions horizon: a walk that long may have been
        # cut, so it is searched too, and that search finds nothing missing.
        unclosed = {g["stream"]: g["state"] for g in status(world)["gaps"]["unclosed"]}
        assert unclosed == {"replies": "closing", "mentions": "closing"}
        work_backfills(app)
        assert app.cycle(close_gaps=False).ok
    finally:
        app.close()
    assert set(tasks(world.sf)) == {f"x:{p}" for p in expected}
    gaps = status(world)["gaps"]
    assert gaps == {"unclosed": [], "closed": 2, "recovered": 200}


def test_a_gap_no_access_reaches_is_shown_logged_once_and_counted(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    text = world.config.read_text()
    world.config.write_text(
        text.replace("page_size = 100", 'page_size = 100\nsearch_access = "none"')
    )
    world.x.mentions_horizon = 50
    _, people = linked(world)
    now = datetime.now(UTC)
    mention(world, people[0], "hello?", now - timedelta(hours=3))
    app = open_app(world)
    try:
        assert app.cycle().ok
        for i in range(80):
            mention(world, people[i % len(people)], f"q {i}", now - timedelta(minutes=80 - i))
        with caplog.at_level(logging.WARNING, logger="syncd.gaps"):
            reports = []
            for _ in range(3):
                reports.append(app.cycle())
                app.backfill_tick(1.0)
        # The cycle that found it out of reach says so (as the log does), once.
        assert [r.ok for r in reports] == [False, True, True]
        (left,) = reports[0].gaps
        assert left.state == "unclosable" and "search_access = 'none'" in left.why
        told = [r for r in caplog.records if "cannot be recovered" in r.getMessage()]
        assert len(told) == 1
        assert "search_access = 'none'" in told[0].getMessage()

        scraped = generate_latest(Metrics(lambda: app, lambda: None).registry).decode()
    finally:
        app.close()
    labels = 'account="acme",source="acme-x",state="{}",stream="mentions"'
    assert f"syncd_gaps{{{labels.format('unclosable')}}} 1.0" in scraped
    assert f"syncd_gaps{{{labels.format('open')}}} 0.0" in scraped
    (gap,) = status(world)["gaps"]["unclosed"]
    assert gap["state"] == "unclosable" and "search_access" in gap["reason"]
    assert len(tasks(world.sf)) == 51  # what the timeline still held reached the CRM
    shown = CliRunner().invoke(cli, ["--config", str(world.config), "status"]).output
    assert "UNCLOSABLE" in shown and "search_access" in shown


# -- `syncd poll --once` -------------------------------------------------------------------------
def poll_once(world: World, *args: str) -> tuple[int, str, str]:
    """``syncd poll --once`` through the CLI: exit code, stdout, stderr."""
    result = CliRunner().invoke(cli, ["--config", str(world.config), "poll", "--once", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def away(world: World, people: list[Customer], count: int, start: datetime) -> list[str]:
    """``count`` mentions made while syncd was not running, a second apart."""
    return [
        mention(world, people[i % len(people)], f"order {i}", start + timedelta(seconds=i))
        for i in range(count)
    ]


def test_poll_once_searches_a_gap_past_the_horizon_and_writes_all_of_it(world: World) -> None:
    """The issue's case: more mentions arrived while syncd was away than X's mentions
    timeline holds (800). One `poll --once` reads the timeline, finds the gap, reads its
    search to the end and writes everything: cron loses nothing."""
    _, people = linked(world)
    now = datetime.now(UTC)
    first = mention(world, people[0], "anyone there?", now - timedelta(hours=3))
    assert poll_once(world)[0] == 0
    posted = [first, *away(world, people, 1000, now - timedelta(hours=2))]

    code, _, err = poll_once(world)
    assert code == 0, err
    assert set(tasks(world.sf)) == {f"x:{p}" for p in posted}  # tasks() fails on a duplicate
    assert world.x.store.horizon_cuts == 1  # the timeline walk was indeed cut
    assert status(world)["gaps"] == {"unclosed": [], "closed": 1, "recovered": 200}
    assert "OPEN GAP" not in err


def test_poll_once_exits_1_naming_a_gap_it_cannot_close(world: World) -> None:
    """X refuses the search (the plan has no full-archive access): the run exits 1 and names
    the gap, on stderr and in --json. Once access works, the next run closes it."""
    configure(world, 'search_access = "all"')
    world.x.full_archive = False  # search_all answers 403
    _, people = linked(world)
    now = datetime.now(UTC)
    first = mention(world, people[0], "anyone there?", now - timedelta(hours=3))
    assert poll_once(world)[0] == 0
    posted = [first, *away(world, people, 1000, now - timedelta(hours=2))]

    code, out, err = poll_once(world, "--json")
    assert code == 1
    (gap,) = json.loads(out)["gaps"]
    assert (gap["id"], gap["stream"], gap["state"], gap["backfill_id"]) == (
        1,
        "mentions",
        "closing",
        1,
    )
    assert gap["since_id"] == first and int(gap["until_id"]) > int(first)
    assert "failed: AuthError" in gap["why"]
    said = f"OPEN GAP 1 acme-x @acme mentions after id {first}, before id {gap['until_id']}"
    assert said in err and "failed: AuthError" in err
    assert len(tasks(world.sf)) == 801  # what the timeline held; the rest is named above
    (shown,) = status(world)["backfills"]
    assert shown["status"] == "queued"  # handed back: the next run (or the daemon) retries

    world.x.full_archive = True
    code, _, err = poll_once(world)
    assert code == 0, err
    assert set(tasks(world.sf)) == {f"x:{p}" for p in posted}
