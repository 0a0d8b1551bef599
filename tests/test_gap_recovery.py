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
from e2e_support import Daemon, World, make_world, tasks, wait_for
from prometheus_client import generate_latest

from syncd import config as config_mod
from syncd.app import App
from syncd.cli import cli
from syncd.metrics import Metrics
from syncd.model import Stream
from syncd.sandbox.seed import Customer, seed
from syncd.state import backfills


@pytest.fixture
def world(state_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with make_world(state_url, tmp_path, monkeypatch, accounts=("acme",)) as w:
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
        wait_for(lambda: "closed: 4200 post(s) recovered" in daemon.log, 30, "the gap closed")
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
        assert app.cycle().ok
        expected = {first, str(answer["id"])}
        start = now - timedelta(hours=2)
        for i in range(500):
            at = start + timedelta(seconds=10 * i)
            asked = mention(world, people[i % len(people)], f"question {i}", at)
            reply = world.x.add_post(
                brand, f"answer {i}", in_reply_to=asked, created_at=at + timedelta(seconds=5)
            )
            expected |= {asked, str(reply["id"])}
        assert app.cycle().ok  # 500 mentions (all reachable), 300 of the 500 replies
        # 500 mentions are over half the mentions horizon: a walk that long may have been
        # cut, so it is searched too, and that search finds nothing missing.
        unclosed = {g["stream"]: g["state"] for g in status(world)["gaps"]["unclosed"]}
        assert unclosed == {"replies": "closing", "mentions": "closing"}
        work_backfills(app)
        assert app.cycle().ok
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
            for _ in range(3):
                assert app.cycle().ok
                app.backfill_tick(1.0)
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
