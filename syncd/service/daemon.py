"""``syncd run``: the scheduler, its jobs, signals and systemd notification.

One APScheduler job per source × account × stream, plus the resolver, the writer and the CRM
change check (the resolver asks the CRM which people changed only when it says so). A job's
failure is classified by what to do next (see syncd.errors): a rate limit moves that job's next
run to the reset time, an auth failure parks the account after three in a row, anything else
transient waits for the next interval. Each failure is logged when it starts and again when
it ends, not once per attempt. An unavailable state database (down, restarting, locked past
the lock timeout, disk full: :func:`syncd.state.db.unavailable`) is waited out: the job tries
again with back-off, /healthz fails meanwhile, and it is said once and once on recovery.

Parking is kept in state (so ``syncd status`` in another process shows it) and undone by
``syncd resume NAME`` (noticed within :data:`PARK_CHECK_SECONDS`), by SIGHUP, or by a restart:
each re-reads the credentials, which is the point of parking.

Signals: SIGTERM/SIGINT stop after the page or batch in hand (bounded by
:data:`STOP_DEADLINE_SECONDS`: work in flight is uncommitted and redone on the next start);
SIGHUP reloads the config, keeping the running one when the new one is invalid.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from types import FrameType
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from syncd.budget.ledger import CappedSource
from syncd.config.settings import Settings
from syncd.errors import (
    AuthError,
    ExternalError,
    RateLimited,
    StateUnavailable,
    StreamParked,
    UserError,
)
from syncd.service.app import App, Job, UnknownAccounts
from syncd.service.http import HealthServer, Run, serve
from syncd.service.jobs import JobHealth, Parking, StateOutage
from syncd.service.metrics import Metrics, status_line
from syncd.service.sdnotify import Heartbeat, heartbeat_seconds, notify
from syncd.state.db import unavailable

__all__ = ["Daemon", "notify"]

log = logging.getLogger("syncd.daemon")

AUTH_FAILURES_TO_PARK = 3
EXIT_BUG = 70  # EX_SOFTWARE: an unexpected exception escaped a job
CRM_PARK = "crm"  # the park name of the resolver and the writer: they share the CRM login
BACKFILL_PARK = "backfill"  # backfills pause on repeated auth failures until resumed
PARK_CHECK_SECONDS = 2.0
# systemd waits 90 s by default before SIGKILL; the issue promises exit within 10 s of SIGTERM.
STOP_DEADLINE_SECONDS = 8.0
PRUNE_SECONDS = 86400.0  # raw payloads past their retention are emptied daily
STATUS_SECONDS = 15.0  # how often `systemctl status` gets a fresh STATUS= line
# New authors the CRM copy does not know wait up to this long for a full batch before
# their candidate search (see syncd.resolver.stage); the resolver runs again soon anyway.
SEARCH_GATHER = timedelta(seconds=10)


def open_waiting(app: App, sleep: Callable[[float], None] = time.sleep) -> None:
    """Open (migrate) the state database, waiting out an outage with the jobs' back-off: a
    restart during a database outage must not spend systemd's start limit (5 in 10 minutes)
    and leave the unit failed. SIGTERM meanwhile ends the wait (see ``syncd run``)."""
    outage = StateOutage()
    while True:
        try:
            app.open()
        except StateUnavailable as exc:
            wait = outage.failed("start-up", exc)
            # Type=notify: the start timeout is pushed back while the wait goes on.
            notify(
                f"STATUS=waiting for the state database\n"
                f"EXTEND_TIMEOUT_USEC={int((wait + STATUS_SECONDS) * 1_000_000)}"
            )
            sleep(wait)
            continue
        outage.passed("start-up")
        return


class Daemon(Parking):
    def __init__(
        self,
        app: App,
        *,
        stop_when: Callable[[], bool] | None = None,
        reload: Callable[[], Settings] | None = None,
    ) -> None:
        self.app = app
        self.stop_when = stop_when
        self.reload_config = reload
        self.stopping = threading.Event()
        self.reload_requested = threading.Event()
        self._crm_check_due = threading.Event()  # the next resolve run asks the CRM
        self.fatal: BaseException | None = None
        self.abandoned = False  # a job outlived the stop deadline; the caller must not join it
        self.heartbeat = Heartbeat()
        self.metrics = Metrics(lambda: self.app, lambda: self.heartbeat.unix, self.runs)
        self.server: HealthServer | None = None
        self.running: dict[str, float] = {}  # job id → time.monotonic() its run started
        self.outage = StateOutage()
        self._fresh_scheduler()

    def _fresh_scheduler(self) -> None:
        self.outage.clear()  # the jobs waiting for the database are replaced
        self.health: dict[str, JobHealth] = {}
        self.park_of: dict[str, str] = {}  # job id → the name an auth failure parks
        self.stream_parks: dict[str, str] = {}  # a parked stream's name → its poll job id
        self.intervals: dict[str, float] = {}  # job id → seconds between its runs
        self.parked: set[str] = set()
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            # The heartbeat has a thread of its own: jobs busy on slow API calls must not
            # look like a hung scheduler to the watchdog.
            executors={"default": ThreadPoolExecutor(10), "heartbeat": ThreadPoolExecutor(1)},
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None},
        )

    # -- lifecycle -----------------------------------------------------------------------
    def run(self) -> int:
        """Schedule every job and serve until SIGTERM/SIGINT or ``stop_when``; the exit code."""
        self._install_signals()
        self._serve()
        self.start()
        notify("READY=1\nSTATUS=polling")
        try:
            while not self.stopping.wait(0.2):
                if self.stop_when is not None and self.stop_when():
                    break
                if self.reload_requested.is_set():
                    self.reload_requested.clear()
                    self.reload()
        finally:
            notify("STOPPING=1")
            self.shutdown(deadline=STOP_DEADLINE_SECONDS)
            if self.server is not None:
                self.server.stop()
        if self.fatal is not None:
            log.critical("stopped by an unexpected error", exc_info=self.fatal)
            return EXIT_BUG
        return 0

    def start(self, *, paused: bool = False) -> None:
        """Schedule every job; ``paused`` keeps them from running (tests drive them by hand)."""
        resumed = self.app.unpark_all()
        if resumed:
            log.info("resuming parked %s: credentials are read afresh", ", ".join(resumed))
        now = datetime.now(UTC)
        settings = self.app.settings
        for name in self.app.sources:
            self._add(
                f"setup:{name}",
                self._setup_source,
                JobHealth(log.getChild(name), f"source {name} set-up"),
                park=name,
                args=[name],
                seconds=self.app.sources[name][0].interval,
                next_run_time=now,
            )
        self._add(
            "resolve",
            self._resolve,
            JobHealth(logging.getLogger("syncd.resolver"), "resolver"),
            park=CRM_PARK,
            seconds=settings.daemon.resolve_interval,
            next_run_time=now,
        )
        if self.app.crm_check_seconds:
            # The CRM is asked which people changed on this cadence (a write interval by
            # default), not the resolver's: a held author's new Contact is used within it.
            self._add(
                "crm-check",
                self._check_crm,
                JobHealth(logging.getLogger("syncd.resolver"), "CRM change check"),
                park=CRM_PARK,
                seconds=self.app.crm_check_seconds,
                next_run_time=now,
            )
        self._add(
            "write",
            self._write,
            JobHealth(logging.getLogger("syncd.writer"), "CRM writer"),
            park=CRM_PARK,
            seconds=settings.daemon.write_interval,
            next_run_time=now,
        )
        self._add(
            "backfill",
            self._backfill,
            JobHealth(logging.getLogger("syncd.backfill"), "backfill"),
            park=BACKFILL_PARK,
            seconds=settings.backfill.interval,
            next_run_time=now,
        )
        self._add(
            "compliance",
            self._compliance,
            JobHealth(logging.getLogger("syncd.compliance"), "compliance check"),
            park=CRM_PARK,
            seconds=settings.compliance.interval,
            next_run_time=now,
        )
        self._add(
            "prune",
            self._prune,
            JobHealth(logging.getLogger("syncd.privacy"), "payload pruning"),
            park=CRM_PARK,
            seconds=PRUNE_SECONDS,
            next_run_time=now,
        )
        self.scheduler.add_job(
            self._check_parked, "interval", id="parking", seconds=PARK_CHECK_SECONDS
        )
        self.scheduler.add_job(
            self.heartbeat.tick,
            "interval",
            id="heartbeat",
            executor="heartbeat",
            seconds=heartbeat_seconds(),
            next_run_time=now,
        )
        self.scheduler.add_job(
            self._status, "interval", id="status", seconds=STATUS_SECONDS, next_run_time=now
        )
        self.metrics.attach(self.app)
        self.scheduler.start(paused=paused)
        log.info("syncd running: %d source(s)", len(self.app.sources))

    def _add(
        self, job_id: str, fn: Callable[..., None], health: JobHealth, *, park: str, **kw: Any
    ) -> None:
        self.health[job_id] = health
        self.intervals[job_id] = kw["seconds"]
        self.park_of[job_id] = park
        self.scheduler.add_job(fn, "interval", id=job_id, **kw)

    def shutdown(self, deadline: float | None = None) -> None:
        """Stop every job after the page or batch in hand, waiting at most ``deadline`` s."""
        self.app.pipeline.stopping.set()
        if not self.scheduler.running:
            return
        waiter = threading.Thread(
            target=self.scheduler.shutdown, kwargs={"wait": True}, name="shutdown", daemon=True
        )
        waiter.start()
        waiter.join(deadline)
        if waiter.is_alive():
            # Only a network call can take this long (the database is never held across one);
            # whatever it would have stored is redone from the stored cursor next start.
            self.abandoned = True
            log.warning("a job is still waiting on an API call; stopping without it")
            return
        try:
            self.app.release_backfill()
        except Exception:  # its lease expires instead; the job is taken up again then
            log.debug("could not hand the backfill back", exc_info=True)

    def stop(self) -> None:
        self.stopping.set()

    def reload(self) -> bool:
        """Re-read the config; start from it if valid, else keep running the current one."""
        if self.reload_config is None:
            return False
        notify("RELOADING=1")
        try:
            try:
                settings = self.reload_config()
            except UserError as exc:
                log.error("config reload refused, the running configuration stays: %s", exc)
                return False
            if settings.state.url != self.app.settings.state.url:
                log.error("config reload refused: state.url changed; restart syncd to move state")
                return False
            try:
                new_app = App(settings)
                new_app.open()
            except (UserError, StateUnavailable) as exc:  # an outage: the old jobs wait it out
                log.error("config reload refused, the running configuration stays: %s", exc)
                return False
            before, after = set(self.app.sources), {s.name for s in settings.sources}
            self.shutdown()  # no deadline: the old jobs must be gone before the new ones start
            self.app.close()
            self.app = new_app
            self._fresh_scheduler()
            self.start()
            log.info(
                "configuration reloaded (sources added: %s; removed: %s)",
                ", ".join(sorted(after - before)) or "none",
                ", ".join(sorted(before - after)) or "none",
            )
            return True
        finally:
            notify("READY=1\nSTATUS=polling")

    def _serve(self) -> None:
        listen = self.app.settings.daemon.listen
        if listen is not None and self.server is None:  # a reload keeps the first listener
            self.server = serve(listen, self, self.metrics.registry, self.app.settings.path)

    def _status(self) -> None:
        if os.environ.get("NOTIFY_SOCKET"):
            line = status_line(self.metrics.state, self.app.settings.crm.name, self.parked)
            if line is not None:
                notify(line)

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def stop(signum: int, _frame: FrameType | None) -> None:
            log.info("received %s, finishing the work in hand", signal.Signals(signum).name)
            self.stopping.set()

        def reload(_signum: int, _frame: FrameType | None) -> None:
            log.info("received SIGHUP, reloading the configuration")
            self.reload_requested.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, reload)

    # -- jobs ----------------------------------------------------------------------------
    def _setup_source(self, name: str) -> None:
        """Look up a source's brand accounts, then schedule its poll jobs; retried until done."""
        try:
            jobs = self._guarded(f"setup:{name}", lambda: self.app.jobs(name))
        except UnknownAccounts as exc:
            # A config mistake: said once; the known accounts are polled meanwhile.
            log.error("%s (check sources[].accounts)", exc)
            jobs = exc.jobs
        if jobs is None:
            return  # failed this time; the set-up job runs again next interval
        self.scheduler.remove_job(f"setup:{name}")
        interval = self.app.sources[name][0].interval
        for job in jobs:
            self._add(
                job.id,
                self._poll,
                JobHealth(job.logger, f"{job.stream} poll"),
                park=job.park_name,
                args=[job],
                seconds=interval,
                jitter=self.app.settings.daemon.jitter,
                next_run_time=datetime.now(UTC),
            )
        log.info("%s: polling %d stream(s)", name, len(jobs))

    def _poll(self, job: Job) -> None:
        result = self._guarded(job.id, lambda: self.app.poll(job), job)
        if result is not None and result.queued:
            job.logger.debug("%s: %d new, %d queued", job.stream, result.new, result.queued)
            self._run_soon("resolve")
            self._run_soon("write")

    def _resolve(self) -> None:
        while True:
            # Only a run the CRM check asked for asks the CRM which people changed: that
            # cadence, not how often resolve runs, bounds what the check costs.
            check = self._crm_check_due.is_set()
            self._crm_check_due.clear()
            gather = partial(self.app.pipeline.resolve, SEARCH_GATHER, check_crm=check)
            result = self._guarded("resolve", gather)
            if result is not None and result.linked:
                self._run_soon("write")
            # Asked for during this run: run again now rather than at the next interval
            # (the scheduler skips an early run while this one is still going).
            if not self._crm_check_due.is_set() or self.stopping.is_set():
                return

    def _check_crm(self) -> None:
        """Have the resolver ask the CRM which people changed, at once, when that can help
        (a held author waits; the check reads the database only)."""
        if self._guarded("crm-check", self.app.crm_check_wanted):
            self._crm_check_due.set()
            self._run_soon("resolve")

    def _write(self) -> None:
        self._guarded("write", lambda: self.app.pipeline.deliver(max_batches=50))

    def _backfill(self) -> None:
        """A second's worth of backfill requests, in its own job: live polls run beside it."""
        result = self._guarded(
            "backfill", lambda: self.app.backfill_tick(self.app.settings.backfill.interval)
        )
        if result is None:
            return
        wait, new = result
        if new:
            self._run_soon("resolve")
            self._run_soon("write")
        job = self.scheduler.get_job("backfill")
        if job is not None and wait > self.app.settings.backfill.interval:
            job.modify(next_run_time=datetime.now(UTC) + timedelta(seconds=wait))

    def _compliance(self) -> None:
        self._guarded("compliance", self.app.compliance)

    def _prune(self) -> None:
        self._guarded("prune", self.app.prune)

    def _run_soon(self, job_id: str) -> None:
        if self.stopping.is_set() or not self.scheduler.running:
            return
        job = self.scheduler.get_job(job_id)
        if job is not None and self.park_of.get(job_id) not in self.parked:
            soon = datetime.now(UTC) + timedelta(milliseconds=200)
            if job.next_run_time is None or job.next_run_time > soon:
                job.modify(next_run_time=soon)

    def _guarded(self, job_id: str, call: Callable[[], Any], job: Job | None = None) -> Any:
        if self.stopping.is_set():
            return None
        health = self.health[job_id]
        try:
            result = self._timed(job_id, call)
        except RateLimited as exc:
            self.outage.passed(job_id)  # got past the database (or never needed it)
            self.metrics.error(job_id, exc)
            if not isinstance(exc, CappedSource):  # a cap is logged once per source, not per job
                health.failure(exc)
            self._record(job, exc)
            # Move this job only; the scheduler's other jobs carry on.
            resume = max(exc.resume_at, datetime.now(UTC) + timedelta(seconds=1))
            sched_job = self.scheduler.get_job(job_id)
            if sched_job is not None:
                sched_job.modify(next_run_time=resume)
            return None
        except UnknownAccounts:
            raise
        except StreamParked as exc:  # said once, by the parking; its job waits for resume
            self.metrics.error(job_id, exc)
            self._record(job, exc)
            self._park_stream(job_id, health, exc)
            return None
        except ExternalError as exc:
            self.outage.passed(job_id)
            self.metrics.error(job_id, exc)
            health.failure(exc)
            self._record(job, exc)
            park = self.park_of[job_id]
            if (
                isinstance(exc, AuthError)
                and health.auth_failures >= AUTH_FAILURES_TO_PARK
                and park not in self.parked
            ):
                self._park(park, health, exc)
            return None
        except Exception as exc:
            if (outage := unavailable(exc)) is not None:
                self.metrics.error(job_id, outage)
                self._wait_for_state(job_id, outage)
                return None
            # A bug: stop loudly rather than keep running in an unknown state.
            self.metrics.error(job_id, exc)
            self.fatal = exc
            self.stopping.set()
            return None
        health.success()
        self.outage.passed(job_id)
        self.metrics.observe(job_id, job, result)
        return result

    def _wait_for_state(self, job_id: str, exc: StateUnavailable) -> None:
        """Run the job again once its back-off has passed; the outage itself is said once."""
        wait = self.outage.failed(job_id, exc)
        sched_job = self.scheduler.get_job(job_id)
        if sched_job is not None:
            sched_job.modify(next_run_time=datetime.now(UTC) + timedelta(seconds=wait))

    def state_outage(self) -> str | None:
        """Why /healthz fails while jobs wait for the state database (None: none does)."""
        return self.outage.describe()

    def _timed(self, job_id: str, call: Callable[[], Any]) -> Any:
        self.running[job_id] = time.monotonic()
        try:
            return call()
        finally:
            del self.running[job_id]

    def runs(self) -> Sequence[Run]:
        """The job runs in progress, for /healthz to tell a stuck one."""
        stuck_after = self.app.settings.daemon.stuck_after
        return [
            Run(job_id, started, max(stuck_after, 3 * self.intervals.get(job_id, 0.0)))
            for job_id, started in self.running.copy().items()
        ]

    def _record(self, job: Job | None, exc: Exception) -> None:
        if job is not None:
            try:
                self.app.pipeline.record_poll_error(
                    job.source, job.account.handle, job.stream, f"{type(exc).__name__}: {exc}"
                )
            except Exception:  # the state DB being down must not hide the original error
                log.debug("could not record poll error", exc_info=True)
