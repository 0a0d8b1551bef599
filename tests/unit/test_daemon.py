"""The daemon's failure policy: what each class of error does to the schedule and the log."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from syncd.errors import AuthError, RateLimited, TransientError
from syncd.model import Account, Stream
from syncd.pipeline.poll import PollResult
from syncd.service.app import Job
from syncd.service.daemon import Daemon
from syncd.service.jobs import AUTH_FAILURES_TO_PARK, HINT_POLL_SECONDS, PollJob


class Scripted:
    """A callable that raises or returns the next item of its script."""

    def __init__(self) -> None:
        self.script: list[Any] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        item = self.script.pop(0) if self.script else SimpleNamespace(linked=0, queued=0)
        if isinstance(item, BaseException):
            raise item
        return item


@pytest.fixture
def daemon() -> Iterator[Daemon]:
    pipeline = SimpleNamespace(
        resolve=Scripted(),
        link_on_file=Scripted(),
        deliver=Scripted(),
        record_poll_error=lambda *a: None,
        stopping=threading.Event(),
    )
    settings = SimpleNamespace(
        daemon=SimpleNamespace(write_interval=60.0, resolve_interval=60.0, jitter=0.0),
        backfill=SimpleNamespace(interval=60.0),
        compliance=SimpleNamespace(interval=86400.0),
    )
    parked: dict[str, str] = {}
    app = SimpleNamespace(
        jobs=lambda: [],
        settings=settings,
        pipeline=pipeline,
        sources={},
        parked_table=parked,
        park=lambda name, reason, failures: parked.__setitem__(name, reason),
        parked=lambda: set(parked),
        unpark_all=lambda: [parked.pop(n) and n for n in list(parked)],
        backfill_tick=Scripted(),
        release_backfill=lambda: None,
        compliance=Scripted(),
        prune=Scripted(),
        crm_check_seconds=0.0,  # no CRM change check (see test_crm_check.py)
    )
    d = Daemon(app)  # type: ignore[arg-type]
    d.start(paused=True)  # jobs run only when the test calls them
    yield d
    d.shutdown()


def test_rate_limit_moves_only_that_job_to_the_reset_time(daemon: Daemon) -> None:
    resume = datetime.now(UTC) + timedelta(minutes=7)
    daemon.app.pipeline.resolve.script = [RateLimited("429", resume_at=resume)]  # type: ignore[attr-defined]
    write_next = daemon.scheduler.get_job("write").next_run_time
    daemon.jobs["resolve"].run()
    assert daemon.scheduler.get_job("resolve").next_run_time == resume
    assert daemon.scheduler.get_job("write").next_run_time == write_next
    assert not daemon.stopping.is_set()


def test_auth_failures_park_the_crm_after_three_and_resume_undoes_it(
    daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    daemon.app.pipeline.deliver.script = [AuthError("bad password")] * AUTH_FAILURES_TO_PARK  # type: ignore[attr-defined]
    for _ in range(AUTH_FAILURES_TO_PARK - 1):
        daemon.jobs["write"].run()
    assert "crm" not in daemon.parked
    daemon.jobs["write"].run()
    assert "crm" in daemon.parked
    assert "bad password" in daemon.app.parked_table["crm"]  # type: ignore[attr-defined]
    # The resolver shares the CRM login: it is paused with the writer.
    assert daemon.scheduler.get_job("write").next_run_time is None
    assert daemon.scheduler.get_job("resolve").next_run_time is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(warnings) == 1  # logged when it started, not once per attempt
    assert len(errors) == 1 and "syncd resume crm" in errors[0].getMessage()

    daemon.jobs.check_parked()  # still parked in state: nothing changes
    assert daemon.scheduler.get_job("write").next_run_time is None
    daemon.app.parked_table.clear()  # type: ignore[attr-defined]  # what `syncd resume` does
    daemon.jobs.check_parked()
    assert "crm" not in daemon.parked
    assert daemon.scheduler.get_job("write").next_run_time is not None
    assert daemon.jobs["write"].auth_failures == 0
    assert "crm resumed" in caplog.text


def test_failure_logged_once_and_recovery_once(
    daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="syncd")
    daemon.app.pipeline.resolve.script = [TransientError("503")] * 4  # type: ignore[attr-defined]
    for _ in range(5):
        daemon.jobs["resolve"].run()
    messages = [r.getMessage() for r in caplog.records if r.name == "syncd.resolver"]
    assert messages == ["resolver failing (TransientError): 503", "resolver recovered"]


def test_an_unexpected_error_stops_the_daemon(daemon: Daemon) -> None:
    daemon.app.pipeline.deliver.script = [KeyError("bug")]  # type: ignore[attr-defined]
    daemon.jobs["write"].run()
    assert daemon.stopping.is_set()
    assert isinstance(daemon.fatal, KeyError)


def test_shutdown_tells_the_pipeline_to_stop_between_pages(daemon: Daemon) -> None:
    daemon.shutdown()
    assert daemon.app.pipeline.stopping.is_set()


def test_a_job_paused_under_two_names_runs_again_only_once_both_are_resumed(
    daemon: Daemon,
) -> None:
    # A stream parked for unreadable answers whose account is then parked for its login.
    table = daemon.app.parked_table  # type: ignore[attr-defined]
    table.update({"crm": "AuthError", "crm:stream": "unreadable"})
    write = daemon.jobs["write"]
    write.pause("crm:stream")
    write.pause("crm")
    assert daemon.parked == {"crm", "crm:stream"}
    del table["crm"]
    daemon.jobs.check_parked()
    assert daemon.parked == {"crm:stream"}
    assert daemon.scheduler.get_job("write").next_run_time is None
    table.clear()
    daemon.jobs.check_parked()
    assert daemon.parked == set()
    assert daemon.scheduler.get_job("write").next_run_time is not None


def test_queued_posts_bring_the_linker_resolver_and_writer_forward_and_a_link_the_writer(
    daemon: Daemon,
) -> None:
    def soon(job_id: str) -> bool:
        when = daemon.scheduler.get_job(job_id).next_run_time
        return when is not None and when <= datetime.now(UTC) + timedelta(seconds=5)

    later = datetime.now(UTC) + timedelta(minutes=1)
    for job_id in ("link", "resolve", "write"):
        daemon.scheduler.get_job(job_id).modify(next_run_time=later)
    assert not any(soon(j) for j in ("link", "resolve", "write"))
    daemon.jobs.queued()
    assert all(soon(j) for j in ("link", "resolve", "write"))

    daemon.scheduler.get_job("write").modify(next_run_time=later)
    daemon.jobs["link"].run()  # linked nobody: the writer keeps its time
    assert not soon("write")
    daemon.app.pipeline.link_on_file.script = [SimpleNamespace(linked=3)]  # type: ignore[attr-defined]
    daemon.jobs["link"].run()
    assert soon("write")


def test_a_stored_hint_brings_the_source_s_mentions_polls_forward_once_a_while(
    daemon: Daemon,
) -> None:
    acme = Account("facebook", "Acme", "111")
    polls = {
        (source, stream): PollJob(daemon.jobs, Job(source, acme, stream), interval=300.0)
        for source in ("acme-fb", "other")
        for stream in (Stream.MENTIONS, Stream.REPLIES)
    }
    later = datetime.now(UTC) + timedelta(minutes=5)
    for job in polls.values():
        daemon.jobs.add(job)
        job.run_at(later)

    def next_run(source: str, stream: Stream) -> datetime | None:
        found = daemon.scheduler.get_job(polls[(source, stream)].id).next_run_time
        return None if found is None else found.astimezone(UTC)

    assert daemon.jobs.hinted("acme-fb", now=1000.0)
    assert next_run("acme-fb", Stream.MENTIONS) < later - timedelta(minutes=4)  # type: ignore[operator]
    assert next_run("acme-fb", Stream.REPLIES) == later  # reads no hint
    assert next_run("other", Stream.MENTIONS) == later
    # A flood of deliveries makes one early poll, not one each.
    polls[("acme-fb", Stream.MENTIONS)].run_at(later)
    assert not daemon.jobs.hinted("acme-fb", now=1000.0 + HINT_POLL_SECONDS - 1)
    assert next_run("acme-fb", Stream.MENTIONS) == later
    # A rate limit holds the poll to its reset; parking holds it until resumed.
    held = datetime.now(UTC) + timedelta(minutes=7)
    mentions = polls[("acme-fb", Stream.MENTIONS)]
    mentions.held_until = held
    mentions.run_at(held)
    assert daemon.jobs.hinted("acme-fb", now=1000.0 + HINT_POLL_SECONDS)
    assert next_run("acme-fb", Stream.MENTIONS) == held
    mentions.held_until = None
    mentions.pause("acme-fb:Acme")
    assert daemon.jobs.hinted("acme-fb", now=1000.0 + 2 * HINT_POLL_SECONDS)
    assert next_run("acme-fb", Stream.MENTIONS) is None


def test_a_scheduled_poll_may_be_left_to_another_instance_a_hinted_one_walks(
    daemon: Daemon,
) -> None:
    """A scheduled run asks for its stream with one and a half intervals as spacing (another
    instance that began walking it less than that ago keeps it); a run brought forward for
    fresh hints asks with none, once."""
    acme = Account("facebook", "Acme", "111")
    job = PollJob(daemon.jobs, Job("acme-fb", acme, Stream.MENTIONS), interval=300.0)
    daemon.jobs.add(job)
    job.run_at(datetime.now(UTC) + timedelta(minutes=5))
    asked: list[timedelta | None] = []

    def poll(target: Job, *, spacing: timedelta | None = None) -> PollResult:
        asked.append(spacing)
        return PollResult()

    daemon.app.poll = poll  # type: ignore[method-assign,assignment]
    job.run()
    assert daemon.jobs.hinted("acme-fb", now=5000.0)
    job.run()
    job.run()
    assert asked == [timedelta(seconds=450), None, timedelta(seconds=450)]


def test_a_rate_limited_job_is_not_brought_forward_by_other_work(daemon: Daemon) -> None:
    resume = datetime.now(UTC) + timedelta(minutes=7)
    daemon.app.pipeline.resolve.script = [RateLimited("429", resume_at=resume)]  # type: ignore[attr-defined]
    daemon.jobs["resolve"].run()
    daemon.jobs.run_soon("resolve")  # a poll queued work for it
    assert daemon.scheduler.get_job("resolve").next_run_time == resume
    daemon.jobs["resolve"].run()  # it ran (at its reset): nothing holds it any more
    daemon.jobs.run_soon("resolve")
    assert daemon.scheduler.get_job("resolve").next_run_time < resume


def test_resuming_a_source_whose_set_up_was_refused_reads_its_credentials_again() -> None:
    """`syncd resume` after the admin replaced a refused token: the source is built again
    (its credentials read afresh) before its job runs, as a reload or a restart would."""
    parked: dict[str, str] = {}
    reconnected: list[str] = []
    refused = Scripted()
    refused.script = [AuthError("token expired")] * AUTH_FAILURES_TO_PARK
    app = SimpleNamespace(
        jobs=refused,
        settings=SimpleNamespace(
            daemon=SimpleNamespace(write_interval=60.0, resolve_interval=60.0, jitter=0.0),
            backfill=SimpleNamespace(interval=60.0),
            compliance=SimpleNamespace(interval=86400.0),
        ),
        pipeline=SimpleNamespace(
            resolve=Scripted(), deliver=Scripted(), stopping=threading.Event()
        ),
        sources={"page": (SimpleNamespace(interval=60.0), object())},
        park=lambda name, reason, failures: parked.__setitem__(name, reason),
        parked=lambda: set(parked),
        unpark_all=lambda: [],
        reconnect=reconnected.append,
        backfill_tick=Scripted(),
        release_backfill=lambda: None,
        compliance=Scripted(),
        prune=Scripted(),
        crm_check_seconds=0.0,
    )
    daemon = Daemon(app)  # type: ignore[arg-type]
    daemon.start(paused=True)
    try:
        for _ in range(AUTH_FAILURES_TO_PARK):
            daemon.jobs["setup:page"].run()
        assert "page" in daemon.parked and reconnected == []
        parked.clear()  # what `syncd resume page` does
        daemon.jobs.check_parked()
        assert reconnected == ["page"]
        assert "page" not in daemon.parked
    finally:
        daemon.shutdown()


def test_a_poll_s_page_warnings_are_said_once_while_they_last_and_their_end_once(
    daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="syncd")
    acme = Account("facebook", "Acme", "111")
    job = PollJob(daemon.jobs, Job("acme-fb", acme, Stream.MENTIONS), interval=300.0)
    denied = "Direct threads not read: Meta refused for want of a permission"
    gap = "Messenger thread t_1: more than 20 messages arrived since the last poll"
    cut = "walk stopped after 5 pages"
    poll = Scripted()
    daemon.app.poll = poll  # type: ignore[method-assign]
    poll.script = [
        PollResult(warnings=[denied, gap, denied]),  # twice in one walk: two pages said it
        PollResult(warnings=[denied]),
        PollResult(warnings=[], stopped=cut),  # the pages that bring it were not read
        PollResult(warnings=[denied]),
        PollResult(),
        PollResult(),
    ]
    for _ in range(6):
        job.run()
    said = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "syncd.facebook.Acme"]
    assert said == [
        (logging.WARNING, f"mentions poll: {denied}"),
        (logging.WARNING, f"mentions poll: {gap}"),
        (logging.INFO, f"mentions poll no longer warns: {gap}"),
        (logging.INFO, f"mentions poll no longer warns: {denied}"),
    ]
