"""``syncd backfill`` in the foreground: fetch a job's pages while one thread resolves authors
and another writes to the CRM, reporting progress until the job is done or stopped."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from syncd.backfill.runner import Runner
from syncd.errors import RateLimited
from syncd.model import BackfillState
from syncd.state import backfills
from syncd.state.backfills import Job, Progress

log = logging.getLogger("syncd.backfill")
DRAIN_IDLE = 0.2  # seconds a worker thread rests when it found nothing to do
# The written/held counts are a pass over the job's deliveries: asked again only after this
# many times what the last pass took, so a large job's progress costs a bounded share.
PROGRESS_SPACING = 10


@dataclass(frozen=True)
class Report:
    job: Job
    progress: Progress
    rate: float  # posts read per second, this run
    eta: float | None  # seconds, from the estimate; None when unknown
    waiting_until: datetime | None = None  # rate-limited: the next request goes then


Reporter = Callable[[Report], None]


class _Stage(threading.Thread):
    """Runs one stage (resolve, or deliver) over what the fetch loop stores, as it stores
    it, until ``finish`` is set: then once more, over everything, and ends.

    Resolving and writing run in threads of their own: in one thread, resolving the new
    authors of every page kept the writer from the CRM until the fetch ended, and the
    ready backlog (read oldest first, so sorted whole on each read) grew with the job.
    """

    def __init__(self, name: str, runner: Runner, once: Callable[[], int]) -> None:
        super().__init__(name=f"backfill-{name}", daemon=True)
        self.stopping = runner.pipeline.stopping
        self.once = once
        self.finish = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                last = self.finish.is_set()
                did = self.once()
                if last:
                    return
                if not did:
                    self.finish.wait(DRAIN_IDLE)
        except BaseException as exc:  # reported by the caller, on its thread
            self.error = exc


class _Workers:
    """The resolver and the writer threads. The writer's last round follows the
    resolver's, so what the last links release is written too."""

    def __init__(self, runner: Runner) -> None:
        pipeline = self.pipeline = runner.pipeline
        # While the job fetches, records wait for bulk jobs of the most one takes (a CRM
        # with bulk jobs: a few calls per job, where batches cost one per 200 records).
        pipeline.writer.bulk_first = pipeline.writer.bulk is not None
        self.resolver = _Stage("resolver", runner, lambda: pipeline.resolve().linked)
        self.writer = _Stage("writer", runner, lambda: pipeline.deliver().attempted)
        self.both = (self.resolver, self.writer)
        for thread in self.both:
            thread.start()

    def error(self) -> BaseException | None:
        return next((t.error for t in self.both if t.error is not None), None)

    def finish(self) -> None:
        """Let both finish their last round, in order (also after a stop: they end soon)."""
        self.resolver.finish.set()
        self.resolver.join()
        # The last round writes what is left, in a bulk job when enough is, else in batches.
        self.pipeline.writer.bulk_first = False
        self.writer.finish.set()
        self.writer.join()


class _Progress:
    """The job's delivery counts, asked again no sooner than :data:`PROGRESS_SPACING`
    times what the last pass took (every report on a small job, less often on a large)."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.last: Progress | None = None
        self.due = 0.0

    def get(self, job_id: int, fresh: bool) -> Progress:
        if self.last is not None and not fresh and time.monotonic() < self.due:
            return self.last
        began = time.monotonic()
        with self.runner.db.connect() as conn:
            self.last = backfills.progress(conn, self.runner.pipeline.crm_name, job_id)
        done = time.monotonic()
        self.due = done + PROGRESS_SPACING * (done - began)
        return self.last


def work(runner: Runner, report: Reporter, *, every: float = 0.5) -> Job:
    """Work the (claimed) job to its end. Ctrl-C pauses it, resumable; errors other than a
    rate limit stop it and leave it running under a lease that expires, for a resume."""
    workers = _Workers(runner)
    counts = _Progress(runner)
    started, read_before = time.monotonic(), None
    last_report = 0.0
    job = runner.job()
    try:
        while True:
            try:
                step = runner.step()
            except RateLimited as exc:
                _report(runner, report, counts, job, started, read_before, exc.resume_at)
                _sleep_until(runner, exc.resume_at)
                continue
            job = step.job
            read_before = job.read - step.read if read_before is None else read_before
            if step.done:
                break
            if time.monotonic() - last_report >= every:
                last_report = time.monotonic()
                _report(runner, report, counts, job, started, read_before)
            if step.wait:
                _sleep(runner, step.wait)
            if (error := workers.error()) is not None:
                raise error
    except KeyboardInterrupt:
        runner.pipeline.stopping.set()
        workers.finish()
        runner.release(BackfillState.PAUSED)
        with runner.db.connect() as conn:
            paused = backfills.get(conn, runner.job_id)
        assert paused is not None
        return paused
    workers.finish()
    if (error := workers.error()) is not None:
        raise error
    _report(runner, report, counts, job, started, read_before, final=True)
    return job


def _report(
    runner: Runner,
    report: Reporter,
    counts: _Progress,
    job: Job,
    started: float,
    read_before: int | None,
    waiting_until: datetime | None = None,
    *,
    final: bool = False,
) -> None:
    with runner.db.connect() as conn:
        fresh = backfills.get(conn, job.id) or job
    progress = counts.get(job.id, fresh=final)
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
