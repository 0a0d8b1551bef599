"""``syncd backfill`` in the foreground: fetch a job's pages while a second thread resolves
authors and writes to the CRM, reporting progress until the job is done or stopped."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from syncd.backfill.runner import Runner
from syncd.errors import RateLimited
from syncd.state import backfills
from syncd.state.backfills import PAUSED, Job, Progress

log = logging.getLogger("syncd.backfill")
DRAIN_IDLE = 0.2  # seconds the writer thread rests when nothing was ready


@dataclass(frozen=True)
class Report:
    job: Job
    progress: Progress
    rate: float  # posts read per second, this run
    eta: float | None  # seconds, from the estimate; None when unknown
    waiting_until: datetime | None = None  # rate-limited: the next request goes then


Reporter = Callable[[Report], None]


class _Writer(threading.Thread):
    """Resolves and writes what the fetch loop stores, as it stores it."""

    def __init__(self, runner: Runner) -> None:
        super().__init__(name="backfill-writer", daemon=True)
        self.pipeline = runner.pipeline
        self.finish = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while True:
                last = self.finish.is_set()
                linked = self.pipeline.resolve().linked
                wrote = self.pipeline.deliver().attempted
                if last or self.pipeline.stopping.is_set():
                    return
                if not (linked or wrote):
                    self.finish.wait(DRAIN_IDLE)
        except BaseException as exc:  # reported by the caller, on its thread
            self.error = exc


def work(runner: Runner, report: Reporter, *, every: float = 0.5) -> Job:
    """Work the (claimed) job to its end. Ctrl-C pauses it, resumable; errors other than a
    rate limit stop it and leave it running under a lease that expires, for a resume."""
    writer = _Writer(runner)
    writer.start()
    started, read_before = time.monotonic(), None
    last_report = 0.0
    job = runner.job()
    try:
        while True:
            try:
                step = runner.step()
            except RateLimited as exc:
                _report(runner, report, job, started, read_before, exc.resume_at)
                _sleep_until(runner, exc.resume_at)
                continue
            job = step.job
            read_before = job.read - step.read if read_before is None else read_before
            if step.done:
                break
            if time.monotonic() - last_report >= every:
                last_report = time.monotonic()
                _report(runner, report, job, started, read_before)
            if step.wait:
                _sleep(runner, step.wait)
            if writer.error is not None:
                raise writer.error
    except KeyboardInterrupt:
        runner.pipeline.stopping.set()
        writer.join()
        runner.release(PAUSED)
        with runner.db.connect() as conn:
            paused = backfills.get(conn, runner.job_id)
        assert paused is not None
        return paused
    writer.finish.set()
    writer.join()
    if writer.error is not None:
        raise writer.error
    _report(runner, report, job, started, read_before)
    return job


def _report(
    runner: Runner,
    report: Reporter,
    job: Job,
    started: float,
    read_before: int | None,
    waiting_until: datetime | None = None,
) -> None:
    with runner.db.connect() as conn:
        fresh = backfills.get(conn, job.id) or job
        progress = backfills.progress(conn, runner.pipeline.crm_name, job.id)
    elapsed = max(time.monotonic() - started, 1e-6)
    rate = (fresh.read - (read_before or 0)) / elapsed
    eta = None
    total = (fresh.estimate or {}).get("posts")
    if isinstance(total, int) and rate > 0:
        eta = max(total - fresh.read, 0) / rate
    report(Report(fresh, progress, rate, eta, waiting_until))


def _sleep(runner: Runner, seconds: float) -> None:
    runner.pipeline.stopping.wait(seconds)
    if runner.pipeline.stopping.is_set():
        raise KeyboardInterrupt


def _sleep_until(runner: Runner, moment: datetime) -> None:
    _sleep(runner, max((moment - datetime.now(UTC)).total_seconds(), 0.5))
