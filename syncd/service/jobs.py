"""The daemon's scheduled jobs, one object each, as Home Assistant's DataUpdateCoordinator
owns one update loop: its interval, its health (a failure logged once, the recovery once),
its parking and its run in progress, which /healthz, /metrics and ``systemctl status`` read.

What a job's failure does next (see syncd.errors): a rate limit moves that job's next run to
the reset time; an auth failure parks its park name (an account, the CRM, the backfills)
after three in a row, pausing every job of that name until ``syncd resume`` or a reload; a
stream the pipeline parked (unreadable answers) pauses its one poll job the same way; an
unavailable state database is waited out with back-off (:class:`StateOutage`); anything else
transient waits for the next interval; anything unexpected is a bug and stops the daemon.

The jobs of one configuration share a :class:`Jobs`: the scheduler, the outage, the metrics
and what is parked. A reload builds a new one; parking itself is kept in state, so that
``syncd status`` in another process shows it.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TypeVar

from apscheduler.job import Job as SchedulerJob
from apscheduler.schedulers.background import BackgroundScheduler

from syncd.budget.ledger import CappedSource
from syncd.errors import AuthError, ExternalError, RateLimited, StateUnavailable, StreamParked
from syncd.model import Stream
from syncd.pipeline.poll import PollResult
from syncd.service.app import App, Job, UnknownAccounts
from syncd.service.http import Run
from syncd.service.metrics import Metrics
from syncd.state.db import unavailable

log = logging.getLogger("syncd.daemon")

T = TypeVar("T")

AUTH_FAILURES_TO_PARK = 3
# A source's webhook brings its mentions polls forward at most this often: a hint of a
# Messenger message is read while it is among its thread's 20 newest, and a flood of
# deliveries costs one early walk, not one each (pacing and rate limits hold as always).
HINT_POLL_SECONDS = 30.0
# New authors the CRM copy does not know wait up to this long for a full batch before
# their candidate search (see syncd.resolver.stage); the resolver runs again soon anyway.
SEARCH_GATHER = timedelta(seconds=10)
# A job that met an unavailable state database runs again after 1 s, 2 s, 4 s … at most 60 s.
OUTAGE_FIRST_WAIT = 1.0
OUTAGE_MAX_WAIT = 60.0


class StateOutage:
    """The state database being out of reach, as the daemon's jobs meet it: said once when
    the first job meets it and once when the last of those jobs gets through again, however
    many jobs and attempts lie between. Each job waits with its own back-off meanwhile; while
    any job is waiting, /healthz fails with :meth:`describe`. Jobs run on several threads."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._attempts: dict[str, int] = {}  # job id → outages met in a row
        self._since: float | None = None
        self._why = ""

    def failed(self, job_id: str, exc: StateUnavailable) -> float:
        """Note ``job_id`` met the outage; the seconds it waits before trying again."""
        with self._lock:
            if self._since is None:
                self._since, self._why = self._clock(), str(exc)
                log.error(
                    "%s; waiting for it, trying again at least every %.0fs",
                    exc,
                    OUTAGE_MAX_WAIT,
                )
            attempts = self._attempts[job_id] = self._attempts.get(job_id, 0) + 1
        return min(OUTAGE_MAX_WAIT, OUTAGE_FIRST_WAIT * 2.0 ** min(attempts - 1, 16))

    def passed(self, job_id: str) -> None:
        """``job_id`` ran without meeting the outage."""
        with self._lock:
            if self._attempts.pop(job_id, None) is not None and not self._attempts:
                self._recovered()

    def clear(self) -> None:
        """The jobs were replaced (a reload, which opened the database afresh)."""
        with self._lock:
            if self._attempts:
                self._attempts.clear()
                self._recovered()

    def _recovered(self) -> None:
        assert self._since is not None
        log.info("state database available again after %.0fs", self._clock() - self._since)
        self._since = None

    def describe(self) -> str | None:
        """Why /healthz fails while jobs wait for the database; None when none does."""
        with self._lock:
            if self._since is None or not self._attempts:
                return None
            return (
                f"{self._why} (for {self._clock() - self._since:.0f}s; waiting: "
                f"{', '.join(sorted(self._attempts))})"
            )


class Jobs:
    """The jobs of one configuration on one scheduler, and what they share: the app, the
    outage, the metrics, the daemon's stop, and what is parked (the union of their parks).
    Jobs run on the scheduler's threads; a set-up job adds poll jobs from one of them."""

    def __init__(
        self,
        app: App,
        scheduler: BackgroundScheduler,
        metrics: Metrics,
        outage: StateOutage,
        stopping: threading.Event,
        bug: Callable[[BaseException], None],
    ) -> None:
        self.app = app
        self.scheduler = scheduler
        self.metrics = metrics
        self.outage = outage
        self.stopping = stopping
        self.bug = bug  # an unexpected exception: the daemon stops rather than run on unsure
        self._jobs: dict[str, ScheduledJob] = {}
        self._hinted: dict[str, float] = {}  # source → time.monotonic() of its early poll
        self._hinted_lock = threading.Lock()  # the HTTP listener's threads call hinted()

    def add(self, job: ScheduledJob, *, jitter: float | None = None) -> None:
        """Schedule ``job`` every its interval, its first run now."""
        self._jobs[job.id] = job
        self.scheduler.add_job(
            job.run,
            "interval",
            id=job.id,
            seconds=job.interval,
            jitter=jitter,
            next_run_time=datetime.now(UTC),
        )

    def remove(self, job_id: str) -> None:
        self.scheduler.remove_job(job_id)
        self._jobs.pop(job_id, None)

    def __getitem__(self, job_id: str) -> ScheduledJob:
        return self._jobs[job_id]

    def __iter__(self) -> Iterator[ScheduledJob]:
        return iter(list(self._jobs.values()))  # a copy: a set-up job may add meanwhile

    def run_soon(self, job_id: str) -> None:
        """Bring ``job_id``'s next run forward: there is work for it now."""
        if self.stopping.is_set() or not self.scheduler.running:
            return
        job = self._jobs.get(job_id)
        if job is not None:
            job.run_soon()

    def queued(self) -> None:
        """New posts were queued: link their authors, resolve them, write what is ready."""
        for job_id in ("link", "resolve", "write"):
            self.run_soon(job_id)

    def hinted(self, source: str, now: float | None = None) -> bool:
        """A webhook delivery stored new hints for ``source``: bring its mentions polls
        (the walks that read hints) forward, at most once in :data:`HINT_POLL_SECONDS` a
        source, so a flood of deliveries makes one early poll, not one each. A parked poll,
        or one waiting out a rate limit, keeps its time. Whether polls were brought forward."""
        moment = time.monotonic() if now is None else now
        with self._hinted_lock:
            last = self._hinted.get(source)
            if last is not None and moment - last < HINT_POLL_SECONDS:
                return False
            self._hinted[source] = moment
        for job in self:
            target = job.target if isinstance(job, PollJob) else None
            if target is not None and (target.source, target.stream) == (source, Stream.MENTIONS):
                self.run_soon(job.id)
        return True

    @property
    def parked(self) -> set[str]:
        """The names parked: accounts, the CRM, the backfills, streams."""
        return {name for job in self for name in job.parks}

    def park(self, name: str, by: ScheduledJob, exc: ExternalError) -> None:
        """Pause every job of park ``name``: ``by``'s credentials keep being refused."""
        for job in self:
            if job.park == name:
                job.pause(name)
        try:
            self.app.park(name, f"{type(exc).__name__}: {exc}", by.auth_failures)
        except Exception:  # parked in memory regardless; status just will not show it
            log.warning("could not record that %s is parked", name, exc_info=True)
        by.logger.error(
            "%s parked after %d authentication failures: fix the credentials, then run "
            "`syncd resume %s` or reload the configuration",
            name,
            by.auth_failures,
            name,
        )

    def check_parked(self) -> None:
        """Resume what ``syncd resume`` took out of the parked table since the last look."""
        parked = self.parked
        if not parked:
            return
        try:
            still = self.app.parked()
        except Exception:
            log.debug("could not read parked accounts", exc_info=True)
            return
        for name in sorted(parked - still):
            self._reconnect(name)
            for job in self:
                job.resume(name)
            log.info("%s resumed", name)

    def _reconnect(self, name: str) -> None:
        """The sources of the accounts parked under ``name`` read their credentials again:
        the point of resuming an account parked on refused credentials is its new ones."""
        sources = {
            job.target.source if isinstance(job, PollJob) else job.source
            for job in self
            if isinstance(job, PollJob | SetupJob) and job.park == name
        }
        for source in sorted(sources):
            try:
                self.app.reconnect(source)
            except Exception as exc:  # resumed regardless: its polls say what is wrong
                log.error("%s: its credentials could not be read again: %s", source, exc)
        if sources:
            self.metrics.attach(self.app)  # the new sources' answers are counted too

    def runs(self, stuck_after: float) -> list[Run]:
        """The job runs in progress, each with how long it may last before it is stuck."""
        runs = []
        for job in self:
            started = job.started
            if started is not None:
                runs.append(Run(job.id, started, max(stuck_after, 3 * job.interval)))
        return runs


class ScheduledJob(ABC):
    """One scheduled job: what it runs (:meth:`run`), every ``interval`` seconds, what it
    logs as (``logger``, ``what``), and the park name an auth failure parks (``park``)."""

    # Exceptions :meth:`attempt` hands to :meth:`run` as they are, rather than judge them.
    passes: tuple[type[Exception], ...] = ()

    def __init__(
        self,
        jobs: Jobs,
        job_id: str,
        *,
        interval: float,
        logger: logging.Logger,
        what: str,
        park: str,
    ) -> None:
        self.jobs = jobs
        self.id = job_id
        self.interval = interval
        self.logger = logger
        self.what = what
        self.park = park
        self.failing: str | None = None  # the error class of the failure under way
        self.auth_failures = 0  # in a row
        # The names it is paused under; replaced, never changed in place, as /healthz reads
        # it from another thread.
        self.parks: frozenset[str] = frozenset()
        self.started: float | None = None  # time.monotonic() of the run in progress
        # Until when a rate limit holds it: nothing brings it forward before then.
        self.held_until: datetime | None = None

    @property
    def app(self) -> App:
        return self.jobs.app

    @abstractmethod
    def run(self) -> None:
        """One run, as the scheduler calls it."""

    def attempt(self, call: Callable[[], T]) -> T | None:
        """``call``'s result, or None when it failed and the failure was dealt with."""
        if self.jobs.stopping.is_set():
            return None
        jobs = self.jobs
        try:
            self.started = time.monotonic()
            try:
                result = call()
            finally:
                self.started = None
        except RateLimited as exc:
            jobs.outage.passed(self.id)  # got past the database (or never needed it)
            jobs.metrics.error(self.id, exc)
            if not isinstance(exc, CappedSource):  # a cap is logged once per source, not per job
                self._failed(exc)
            self.record(exc)
            # This job only; the scheduler's other jobs carry on.
            self.held_until = max(exc.resume_at, datetime.now(UTC) + timedelta(seconds=1))
            self.run_at(self.held_until)
            return None
        except self.passes:
            raise
        except StreamParked as exc:  # said once, here; the job waits for resume
            jobs.metrics.error(self.id, exc)
            self.record(exc)
            if exc.name not in jobs.parked:
                self.pause(exc.name)
                self.logger.error("%s; or reload the configuration", exc)
            return None
        except ExternalError as exc:
            jobs.outage.passed(self.id)
            jobs.metrics.error(self.id, exc)
            self._failed(exc)
            self.record(exc)
            if (
                isinstance(exc, AuthError)
                and self.auth_failures >= AUTH_FAILURES_TO_PARK
                and self.park not in jobs.parked
            ):
                jobs.park(self.park, self, exc)
            return None
        except Exception as exc:
            if (outage := unavailable(exc)) is not None:
                jobs.metrics.error(self.id, outage)
                # Said once for every job, by the outage; this job tries again after its wait.
                wait = jobs.outage.failed(self.id, outage)
                self.run_at(datetime.now(UTC) + timedelta(seconds=wait))
                return None
            jobs.metrics.error(self.id, exc)
            jobs.bug(exc)
            return None
        if self.failing is not None:
            self.logger.info("%s recovered", self.what)
        self.failing = None
        self.auth_failures = 0
        self.held_until = None
        jobs.outage.passed(self.id)
        self.observe(result)
        return result

    def _failed(self, exc: Exception) -> None:
        kind = type(exc).__name__
        if self.failing != kind:
            self.logger.warning("%s failing (%s): %s", self.what, kind, exc)
        self.failing = kind
        self.auth_failures = self.auth_failures + 1 if isinstance(exc, AuthError) else 0

    def observe(self, result: object) -> None:
        """Count a successful run's result in the metrics."""
        self.jobs.metrics.observe(self.id, None, result)

    def record(self, exc: Exception) -> None:  # noqa: B027 (a hook; most jobs keep nothing)
        """Keep a failure in state, where ``syncd status`` shows it; most jobs need not."""

    # -- the schedule --------------------------------------------------------------------
    def _scheduled(self) -> SchedulerJob | None:
        return self.jobs.scheduler.get_job(self.id)

    def run_at(self, when: datetime) -> None:
        if (job := self._scheduled()) is not None:
            job.modify(next_run_time=when)

    def run_soon(self) -> None:
        if self.parks:
            return
        job = self._scheduled()
        soon = datetime.now(UTC) + timedelta(milliseconds=200)
        if self.held_until is not None and self.held_until > soon:
            return
        if job is not None and (job.next_run_time is None or job.next_run_time > soon):
            job.modify(next_run_time=soon)

    def pause(self, name: str) -> None:
        """Park this job under ``name``; it runs again once every name it is parked under
        is resumed."""
        self.parks = self.parks | {name}
        if self._scheduled() is not None:
            self.jobs.scheduler.pause_job(self.id)

    def resume(self, name: str) -> None:
        """``name`` was resumed: credentials read afresh, so the failures start over."""
        if name not in self.parks:
            return
        self.parks = self.parks - {name}
        self.auth_failures = 0
        if not self.parks and self._scheduled() is not None:
            self.jobs.scheduler.resume_job(self.id)
            self.run_at(datetime.now(UTC))


class Chore(ScheduledJob):
    """A job that calls one thing each run and has nothing to do with its result but count
    it: the writer, the compliance check, the payload pruning."""

    def __init__(
        self,
        jobs: Jobs,
        job_id: str,
        call: Callable[[App], object],
        *,
        interval: float,
        logger: logging.Logger,
        what: str,
        park: str,
    ) -> None:
        super().__init__(jobs, job_id, interval=interval, logger=logger, what=what, park=park)
        self.call = call

    def run(self) -> None:
        self.attempt(partial(self.call, self.app))


class SetupJob(ScheduledJob):
    """Looks up a source's brand accounts, then schedules its poll jobs and retires; tried
    again every interval until that is done."""

    passes = (UnknownAccounts,)

    def __init__(self, jobs: Jobs, source: str, *, jitter: float) -> None:
        super().__init__(
            jobs,
            f"setup:{source}",
            interval=jobs.app.sources[source][0].interval,
            logger=log.getChild(source),
            what=f"source {source} set-up",
            park=source,
        )
        self.source = source
        self.jitter = jitter  # of the poll jobs: a fleet's polls do not all start at once

    def run(self) -> None:
        try:
            found = self.attempt(partial(self.app.jobs, self.source))
        except UnknownAccounts as exc:
            # A config mistake: said once; the known accounts are polled meanwhile.
            log.error("%s (check sources[].accounts)", exc)
            found = exc.jobs
        if found is None:
            return
        self.jobs.remove(self.id)
        for job in found:
            self.jobs.add(PollJob(self.jobs, job, interval=self.interval), jitter=self.jitter)
        log.info("%s: polling %d stream(s)", self.source, len(found))


class PollJob(ScheduledJob):
    """Polls one stream of one account of a source; parked with the account's other
    streams (they share its credentials), or on its own when its answers are unreadable."""

    def __init__(self, jobs: Jobs, target: Job, *, interval: float) -> None:
        super().__init__(
            jobs,
            target.id,
            interval=interval,
            logger=target.logger,
            what=f"{target.stream} poll",
            park=target.park_name,
        )
        self.target = target
        # The pages' warnings said and still standing: each is said once when it comes, and
        # once when a whole walk no longer brings it, not on every poll.
        self.warned: frozenset[str] = frozenset()
        self.early = False  # brought forward (run_soon): not left to another instance

    def run_soon(self) -> None:
        # Brought forward for fresh hints: walks even if another instance just did (its
        # walk may have begun before the hints were stored).
        self.early = True
        super().run_soon()

    def run(self) -> None:
        # Of several instances, the one walking a stream keeps it; the others leave it until
        # it has not been walked for one and a half intervals (longer than an interval and
        # its jitter): its instance stopped (see syncd.state.walks.take_turn).
        early, self.early = self.early, False
        spacing = None if early else timedelta(seconds=self.interval * 1.5)
        result = self.attempt(partial(self.app.poll, self.target, spacing=spacing))
        if result is not None:
            self._say_warnings(result)
        if result is not None and result.queued:
            self.logger.debug(
                "%s: %d new, %d queued", self.target.stream, result.new, result.queued
            )
            self.jobs.queued()

    def _say_warnings(self, result: PollResult) -> None:
        now = frozenset(result.warnings)
        for warning in sorted(now - self.warned):
            self.logger.warning("%s poll: %s", self.target.stream, warning)
        if result.stopped is not None:
            # A walk cut short did not read the pages that may still bring the others.
            self.warned |= now
            return
        for warning in sorted(self.warned - now):
            self.logger.info("%s poll no longer warns: %s", self.target.stream, warning)
        self.warned = now

    def observe(self, result: object) -> None:
        self.jobs.metrics.observe(self.id, self.target, result)

    def record(self, exc: Exception) -> None:
        t = self.target
        try:
            self.app.pipeline.record_poll_error(
                t.source, t.account.handle, t.stream, f"{type(exc).__name__}: {exc}"
            )
        except Exception:  # the state DB being down must not hide the original error
            log.debug("could not record poll error", exc_info=True)


class ResolveJob(ScheduledJob):
    """Resolves new authors to CRM people; asks the CRM which people changed only on the
    runs the :class:`CrmCheckJob` asks for (``check_due``)."""

    def __init__(self, jobs: Jobs, *, interval: float, park: str) -> None:
        super().__init__(
            jobs,
            "resolve",
            interval=interval,
            logger=logging.getLogger("syncd.resolver"),
            what="resolver",
            park=park,
        )
        self.check_due = threading.Event()

    def run(self) -> None:
        while True:
            # Only a run the CRM check asked for asks the CRM which people changed: that
            # cadence, not how often resolve runs, bounds what the check costs.
            check = self.check_due.is_set()
            self.check_due.clear()
            # New authors the copy knows are the on-file linker's (LinkJob): this run's
            # chain asks the copy first for the rest.
            gather = partial(
                self.app.pipeline.resolve, SEARCH_GATHER, check_crm=check, on_file_first=False
            )
            result = self.attempt(gather)
            if result is not None and result.linked:
                self.jobs.run_soon("write")
            # Asked for during this run: run again now rather than at the next interval
            # (the scheduler skips an early run while this one is still going).
            if not self.check_due.is_set() or self.jobs.stopping.is_set():
                return


class LinkJob(ScheduledJob):
    """Links new authors the local copy of the CRM's keys knows, with no network call, soon
    after a poll queues their posts: a resolver run may be seconds into its CRM calls then
    (a change check, the copy's reload, a candidate search), and their posts need not wait
    for it. Authors the copy does not know are the resolver's."""

    def __init__(self, jobs: Jobs, *, interval: float, park: str) -> None:
        super().__init__(
            jobs,
            "link",
            interval=interval,
            logger=logging.getLogger("syncd.resolver"),
            what="on-file linker",
            park=park,
        )

    def run(self) -> None:
        result = self.attempt(self.app.pipeline.link_on_file)
        if result is not None and result.linked:
            self.jobs.run_soon("write")


class CrmCheckJob(ScheduledJob):
    """Has the resolver ask the CRM which people changed, at once, when that can help (a
    held author waits); this job reads the database only."""

    def __init__(self, jobs: Jobs, resolver: ResolveJob, *, interval: float, park: str) -> None:
        super().__init__(
            jobs,
            "crm-check",
            interval=interval,
            logger=logging.getLogger("syncd.resolver"),
            what="CRM change check",
            park=park,
        )
        self.resolver = resolver

    def run(self) -> None:
        if self.attempt(self.app.crm_check_wanted):
            self.resolver.check_due.set()
            self.jobs.run_soon(self.resolver.id)


class BackfillJob(ScheduledJob):
    """A second's worth of backfill requests a run, in a job of its own: live polls run
    beside it; a run that must wait for the rate limit moves its next run past it."""

    def __init__(self, jobs: Jobs, *, interval: float, park: str) -> None:
        super().__init__(
            jobs,
            "backfill",
            interval=interval,
            logger=logging.getLogger("syncd.backfill"),
            what="backfill",
            park=park,
        )

    def run(self) -> None:
        result = self.attempt(partial(self.app.backfill_tick, self.interval))
        if result is None:
            return
        wait, new = result
        if new:
            self.jobs.queued()
        if wait > self.interval:
            self.run_at(datetime.now(UTC) + timedelta(seconds=wait))
