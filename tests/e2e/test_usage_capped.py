"""The budget guard in the daemon, against the X and Salesforce stand-ins over real HTTP.

The daemon is driven job by job (its scheduler paused) on a clock the test moves, shared with
the X stand-in, so the cap's reset comes when the test says and nothing here waits on time.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import pytest
from prometheus_client import generate_latest
from rich.console import Console
from support.e2e import tasks
from support.x_sandbox import Clock

from sandbox.salesforce.api import SalesforceSandbox
from sandbox.seed import set_up_org
from sandbox.x.api import XSandbox
from syncd.backfill.runner import BackfillSource, Runner
from syncd.budget.ledger import BudgetHeld
from syncd.cli.budget_view import print_budgets
from syncd.config import settings as config
from syncd.model import BackfillState, Standing, Stream
from syncd.service.app import App, Job
from syncd.service.daemon import Daemon
from syncd.state import backfills, usage
from syncd.state.status import status

START = datetime(2027, 3, 9, 12, 0, tzinfo=UTC)
RESET = datetime(2027, 3, 10, tzinfo=UTC)  # the sandbox's cap resets on the 10th

CONFIG = """
[state]
url = "{state_url}"

[[sources]]
name = "acme-x"
type = "x"
bearer_token = "env:CAP_X_BEARER"
api_base_url = "{x_url}"
accounts = ["acme"]
page_size = 5
start = "1d"  # mentions are made before the first poll
{budget}

[crm]
type = "salesforce"
login_url = "{sf_url}"
username = "integration@sandbox.example"
password = "env:CAP_SF_PASSWORD"
security_token = "env:CAP_SF_TOKEN"
"""


@dataclass
class World:
    x: XSandbox
    sf: SalesforceSandbox
    clock: Clock
    app: App
    daemon: Daemon
    brand: str
    fans: list[str]
    asked: list[str]  # every X endpoint called, in order

    def mention(self, n: int) -> str:
        post = self.x.add_post(self.fans[n % len(self.fans)], f"@acme order {n} is late")
        return str(post["id"])

    def jobs(self) -> dict[Stream, Job]:
        return {job.stream: job for job in self.app.jobs("acme-x")}  # from state: no request

    def next_run(self, job: Job) -> datetime | None:
        found = self.daemon.scheduler.get_job(job.id)
        return None if found is None else found.next_run_time


@contextmanager
def world(
    state_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    cap: int = 2_000_000,
    cap_status: int = 429,
    budget: str = "",
) -> Iterator[World]:
    monkeypatch.setenv("CAP_X_BEARER", "cap-bearer")
    monkeypatch.setenv("CAP_SF_PASSWORD", "sandbox-password")
    monkeypatch.setenv("CAP_SF_TOKEN", "sandbox-token")
    clock = Clock(START)
    with (
        XSandbox(
            bearer_token="cap-bearer",
            clock=clock,
            project_cap=cap,
            cap_reset_day=10,
            cap_status=cap_status,
        ) as x,
        SalesforceSandbox() as sf,
    ):
        assert isinstance(x, XSandbox) and isinstance(sf, SalesforceSandbox)
        set_up_org(sf)
        brand = x.add_user("acme")["id"]
        fans = [x.add_user(f"fan{n}")["id"] for n in range(3)]
        for n, fan in enumerate(fans):
            sf.insert("Contact", {"LastName": f"Fan{n}", "X_User_Id__c": fan})
        path = tmp_path / "config.toml"
        path.write_text(
            CONFIG.format(state_url=state_url, x_url=x.url, sf_url=sf.url, budget=budget)
        )
        asked: list[str] = []
        x.on_request("*", lambda req: asked.append(req.endpoint))
        app = App(config.load(path), clock=clock)
        app.open()
        daemon = Daemon(app)
        daemon.start(paused=True)  # the test runs each job by hand
        try:
            daemon.jobs["setup:acme-x"].run()
            yield World(x, sf, clock, app, daemon, str(brand), [str(f) for f in fans], asked)
        finally:
            daemon.shutdown()
            app.close()


def queue_backfill(w: World) -> int:
    source = w.app.sources["acme-x"][1]
    account = w.app.jobs("acme-x")[0].account
    now = w.clock()
    plan = source.plan_backfill(  # type: ignore[attr-defined]
        account, [Stream.MENTIONS], now - timedelta(days=2), now - timedelta(hours=1), now
    )
    with w.app.db.transaction() as conn:
        return backfills.create(
            conn,
            source="acme-x",
            network="x",
            account=account.handle,
            since=now - timedelta(days=2),
            until=now - timedelta(hours=1),
            streams=["mentions"],
            plan=plan,
            estimate=None,
            status=BackfillState.QUEUED,
            now=now,
        )


def read(w: World) -> Standing:
    with w.app.db.connect() as conn:
        return usage.standing(conn, "acme-x", w.app.guard.budgets["acme-x"], w.clock())


def job_status(w: World, job_id: int) -> str:
    with w.app.db.connect() as conn:
        job = backfills.get(conn, job_id)
    assert job is not None
    return job.status


@pytest.mark.parametrize("cap_status", [429, 403])
def test_a_capped_source_asks_nothing_until_the_reset_then_everything_arrives(
    state_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    cap_status: int,
) -> None:
    caplog.set_level(logging.INFO, logger="syncd")
    with world(state_url, tmp_path, monkeypatch, cap=5, cap_status=cap_status) as w:
        w.clock.now = START - timedelta(hours=2)  # inside the backfill's window too
        posts = [w.mention(n) for n in range(8)]
        w.clock.now = START
        jobs = w.jobs()
        backfill = queue_backfill(w)

        w.daemon.jobs[jobs[Stream.MENTIONS].id].run()
        # The usage figures (the reset day) first, then the first page: 5 posts, the cap.
        assert w.asked.count("usage_tweets") == 1
        assert w.asked.index("usage_tweets") < w.asked.index("mentions")
        assert w.next_run(jobs[Stream.MENTIONS]) == RESET
        asked = len(w.asked)
        for _ in range(3):  # every job of the source, again and again: not one request
            w.daemon.jobs[jobs[Stream.MENTIONS].id].run()
            w.daemon.jobs[jobs[Stream.REPLIES].id].run()
            w.daemon.jobs["backfill"].run()
        assert len(w.asked) == asked
        assert w.next_run(jobs[Stream.REPLIES]) == RESET
        assert job_status(w, backfill) == BackfillState.QUEUED

        with w.app.db.connect() as conn:
            st = status(conn, "salesforce", w.app.guard.budgets, now=w.clock())
        (standing,) = st.budgets
        assert standing.capped_until == RESET and standing.backfills_paused
        assert standing.network_cap == 5
        assert all("capped by the network until 2027-03-10 00:00" in (s.last_error or "")
                   for s in st.streams)  # fmt: skip
        shown = io.StringIO()
        print_budgets(Console(file=shown, width=200), st.budgets)
        assert "CAPPED by the network until 2027-03-10 00:00 UTC" in shown.getvalue()
        scraped = generate_latest(w.daemon.metrics.registry).decode()
        assert 'syncd_budget_capped{source="acme-x"} 1.0' in scraped
        assert 'syncd_budget_backfills_paused{source="acme-x"} 1.0' in scraped
        assert 'syncd_budget_network_posts{source="acme-x",what="cap"} 5.0' in scraped
        capped = [r for r in caplog.records if "usage cap is reached" in r.getMessage()]
        assert len(capped) == 1 and capped[0].levelno == logging.WARNING
        assert not [r for r in caplog.records if "failing" in r.getMessage()]

        w.clock.now = RESET + timedelta(seconds=1)
        w.x.project_cap = 1000  # all 8 fit in the new period
        w.daemon.jobs[jobs[Stream.MENTIONS].id].run()  # the walk goes on from its stored page
        w.daemon.jobs[jobs[Stream.REPLIES].id].run()
        assert {"usage_tweets", "mentions", "user_tweets"} <= set(w.asked[asked:])
        w.app.pipeline.resolve()
        w.app.pipeline.deliver()
        assert set(tasks(w.sf)) == {f"x:{p}" for p in posts}
        before = read(w)
        w.daemon.jobs[
            "backfill"
        ].run()  # the backfill goes on too, its pages counted like the polls'
        assert "search_recent" in w.asked[asked:]
        assert read(w).month.posts - before.month.posts == len(posts)
        assert len([r for r in caplog.records if "cap has reset" in r.getMessage()]) == 1


def test_90_percent_pauses_backfills_while_live_polling_goes_on(
    state_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="syncd.budget")
    with world(state_url, tmp_path, monkeypatch, budget="budget_posts = 10") as w:
        mentions = w.jobs()[Stream.MENTIONS]
        for n in range(8):
            w.mention(n)
        w.daemon.jobs[mentions.id].run()  # 8 of 10 posts
        w.daemon.jobs[mentions.id].run()  # nothing new: nothing said again
        w.clock.advance(minutes=1)
        backfill = queue_backfill(w)
        w.mention(8)
        w.daemon.jobs[mentions.id].run()  # 9 of 10: backfills pause
        asked = len(w.asked)
        w.daemon.jobs["backfill"].run()
        w.daemon.jobs["backfill"].run()
        assert len(w.asked) == asked  # not one search
        assert job_status(w, backfill) == BackfillState.QUEUED
        # `syncd backfill` in the foreground works the job with the same runner: refused,
        # and the job handed back to the queue.
        source = cast(BackfillSource, w.app.sources["acme-x"][1])
        runner = Runner(w.app.pipeline, "acme-x", source, backfill, guard=w.app.guard)
        assert runner.claim() and job_status(w, backfill) == BackfillState.RUNNING
        with pytest.raises(BudgetHeld, match=r"90% pauses backfills.*queued for the daemon"):
            runner.step()
        assert job_status(w, backfill) == BackfillState.QUEUED and len(w.asked) == asked

        late = [w.mention(n) for n in (9, 10)]
        w.daemon.jobs[mentions.id].run()  # live polling goes on, past the budget
        with w.app.db.connect() as conn:
            stored = {s.since_id for s in status(conn, "salesforce").streams}
        assert max(late, key=int) in stored
        w.daemon.jobs["backfill"].run()
        assert job_status(w, backfill) == BackfillState.QUEUED

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3, warnings
    assert "80% used this period: 8 posts" in warnings[0]
    assert "90% used this period: 9 posts" in warnings[1] and "backfills and gap" in warnings[1]
    assert "budget spent" in warnings[2] and "110% used this period: 11 posts" in warnings[2]
