"""A stream whose answers are unreadable every time is parked after a bounded number in a row,
not retried forever as transient: the reason shows in ``syncd status``, ``/metrics`` and the
log (once); the account's other stream goes on; ``syncd resume`` with the name status shows
polls it again. Real polls: tweepy against the X sandbox, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client import generate_latest
from sqlalchemy import select
from support.e2e import World, make_world, poll_once
from support.fake_crm import FakeCrm

from connectors.x.source import XSource
from sandbox.seed import set_up_org
from sandbox.server import Request
from sandbox.x.api import XSandbox
from syncd.backfill.runner import Runner
from syncd.cli import cli
from syncd.config.settings import load
from syncd.errors import ExternalError, MalformedAnswer
from syncd.model import Account, BackfillState, Stream
from syncd.pipeline import Pipeline, PipelineSettings
from syncd.service.app import App
from syncd.service.daemon import Daemon
from syncd.service.metrics import Metrics
from syncd.state import backfills
from syncd.state.db import Database
from syncd.state.tables import interactions
from syncd.state.walks import UNREADABLE_TO_PARK

STREAM = "acme-x:acme:mentions"
TOKEN = "sandbox-x-bearer"


def _run(world: World, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--config", str(world.config), *args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def world(migrated_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv("COLUMNS", "400")  # status's table, one line a row
    with make_world(migrated_url, tmp_path, monkeypatch, accounts=("acme",)) as w:
        set_up_org(w.sf)
        # One attempt a poll, so each poll is one unreadable answer (no back-off sleeps).
        w.config.write_text(w.config.read_text() + "\n[writer]\nretries = 0\n")
        yield w


def _requests(world: World) -> dict[str, int]:
    counted: dict[str, int] = {"mentions": 0, "user_tweets": 0}

    def count(req: Request) -> None:
        counted[req.endpoint] += 1

    for endpoint in counted:
        world.x.on_request(endpoint, count)
    return counted


def test_a_stream_unreadable_every_time_is_parked_and_resume_polls_it_again(
    world: World,
) -> None:
    brand = world.x.add_user("acme")["id"]
    fan = world.x.add_user("fan")["id"]
    assert poll_once(world)[0] == 0  # the first walks: nothing yet
    requests = _requests(world)
    # Every mentions answer is a 200 whose JSON is cut off; the replies stream is fine.
    world.x.inject("malformed", endpoint="mentions", rate=1.0)
    mention = world.x.add_post(fan, "@acme hello?")
    world.x.add_post(brand, "@fan hi there", in_reply_to=mention["id"])

    for n in range(1, UNREADABLE_TO_PARK):
        code, output = poll_once(world)
        assert code == 1 and "MalformedAnswer" in output, output
        assert requests["mentions"] == n
    code, output = poll_once(world)
    assert code == 1 and f"{STREAM} parked" in output, output
    assert requests["mentions"] == UNREADABLE_TO_PARK

    # Parked: no more requests for it, however often it is polled; the replies go on.
    for _ in range(3):
        code, output = poll_once(world)
        assert code == 1 and "StreamParked" in output and f"syncd resume {STREAM}" in output
    assert requests["mentions"] == UNREADABLE_TO_PARK
    assert requests["user_tweets"] == UNREADABLE_TO_PARK + 3
    shown = _run(world, "status")
    assert f"PARKED stream {STREAM}" in shown and "unreadable answers in a row" in shown
    assert f"syncd resume {STREAM}" in shown
    assert "authentication" not in shown

    app = App(load(world.config))
    try:
        metrics = generate_latest(Metrics(lambda: app, lambda: None).registry).decode()
    finally:
        app.close()
    assert f'syncd_parked{{name="{STREAM}"}} 1.0' in metrics

    world.x.clear_faults()
    assert _run(world, "resume", STREAM).strip() == f"resumed: {STREAM}"
    code, output = poll_once(world)
    assert code == 0, output
    assert requests["mentions"] == UNREADABLE_TO_PARK + 1
    after = json.loads(_run(world, "status", "--json"))
    assert after["parked"] == []
    assert after["interactions"] == 2  # the mention waited, nothing lost; the reply went on


def test_the_daemon_pauses_only_that_stream_logs_once_and_resumes_it(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.x.add_user("acme")
    caplog.set_level(logging.INFO, logger="syncd")
    app = App(load(world.config))
    app.open()
    daemon = Daemon(app)
    daemon.start(paused=True)  # jobs run only when the test calls them
    try:
        daemon.jobs["setup:acme-x"].run()
        jobs = {j.stream: j for j in app.jobs("acme-x")}
        mentions, replies = jobs[Stream.MENTIONS], jobs[Stream.REPLIES]
        world.x.inject("malformed", endpoint="mentions", rate=1.0)
        for _ in range(UNREADABLE_TO_PARK):
            daemon.jobs[mentions.id].run()
            daemon.jobs[replies.id].run()
        assert STREAM in daemon.parked
        assert daemon.scheduler.get_job(mentions.id).next_run_time is None
        assert daemon.scheduler.get_job(replies.id).next_run_time is not None
        said = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(said) == 1 and f"syncd resume {STREAM}" in said[0]

        world.x.clear_faults()
        _run(world, "resume", STREAM)
        daemon.jobs.check_parked()
        assert STREAM not in daemon.parked
        assert daemon.scheduler.get_job(mentions.id).next_run_time is not None
        daemon.jobs[mentions.id].run()
        assert daemon.jobs[mentions.id].failing is None
    finally:
        daemon.shutdown()
        app.close()


def test_a_backfill_whose_answers_are_unreadable_every_time_is_paused(db: Database) -> None:
    with XSandbox(bearer_token=TOKEN) as x:
        brand = x.add_user("acme")["id"]
        fan = x.add_user("fan")["id"]
        now = datetime.now(UTC)
        made = now - timedelta(hours=2)
        posted = {
            str(x.add_post(fan, f"@acme hi {i}", created_at=made + timedelta(seconds=i))["id"])
            for i in range(30)
        }
        source = XSource(TOKEN, api_base_url=x.url)
        pipeline = Pipeline(db, "sf", FakeCrm(), PipelineSettings(retries=0))
        try:
            pipeline.accounts("x", source, ["acme"])
            since = now - timedelta(days=1)
            account = Account("x", "acme", brand)
            plan = source.plan_backfill(account, [Stream.MENTIONS], since, now, now)
            with db.transaction() as conn:
                job_id = backfills.create(
                    conn, source="x", network="x", account="acme", since=since, until=now,
                    streams=["mentions"], plan=plan, estimate=None, status=BackfillState.QUEUED,
                    now=now,
                )  # fmt: skip
            asked: list[str] = []
            x.on_request("search_recent", lambda req: asked.append(req.path))
            x.inject("malformed", endpoint="search_recent", rate=1.0)
            runner = Runner(pipeline, "x", source, job_id)
            assert runner.claim()
            for _ in range(UNREADABLE_TO_PARK - 1):
                with pytest.raises(MalformedAnswer):
                    runner.step()
            with pytest.raises(ExternalError, match="unreadable answers in a row"):
                runner.step()
            assert len(asked) == UNREADABLE_TO_PARK
            with db.connect() as conn:
                job = backfills.get(conn, job_id)
            assert job is not None and job.status == BackfillState.PAUSED
            assert job.error is not None and "unreadable answers in a row" in job.error

            x.clear_faults()
            assert runner.claim(paused_too=True)  # what `syncd backfill resume` does
            while not runner.step().done:
                pass
            with db.connect() as conn:
                stored = {r[0] for r in conn.execute(select(interactions.c.post_id))}
            assert posted <= stored
        finally:
            source.close()
