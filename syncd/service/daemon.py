"""``syncd run``: the scheduler, its jobs, signals and systemd notification.

The daemon builds one job object per scheduled job (:mod:`syncd.service.jobs`: a set-up job
per source that becomes one poll job per account × stream, the resolver, the CRM change
check, the writer, the backfills, the compliance check, the payload pruning), hands them to
APScheduler, and reports their health: /healthz and /metrics (:mod:`syncd.service.http`), and
systemd's READY/STATUS/WATCHDOG. Each job deals with its own failures (rate limits, parking,
a state database outage, which is waited out, never exited on); a bug in any stops the daemon
with :data:`EXIT_BUG`.

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
from datetime import UTC, datetime
from types import FrameType

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from syncd.config.settings import Settings
from syncd.errors import StateUnavailable, UserError
from syncd.service.app import App
from syncd.service.http import HealthServer, Run, serve
from syncd.service.jobs import (
    BackfillJob,
    Chore,
    CrmCheckJob,
    Jobs,
    LinkJob,
    ResolveJob,
    ScheduledJob,
    SetupJob,
    StateOutage,
)
from syncd.service.metrics import Metrics, status_line
from syncd.service.sdnotify import Heartbeat, heartbeat_seconds, notify
from syncd.service.webhooks import SourceWebhooks

__all__ = ["Daemon", "notify"]

log = logging.getLogger("syncd.daemon")

EXIT_BUG = 70  # EX_SOFTWARE: an unexpected exception escaped a job
CRM_PARK = "crm"  # the park name of the resolver and the writer: they share the CRM login
BACKFILL_PARK = "backfill"  # backfills pause on repeated auth failures until resumed
PARK_CHECK_SECONDS = 2.0
# systemd waits 90 s by default before SIGKILL; the issue promises exit within 10 s of SIGTERM.
STOP_DEADLINE_SECONDS = 8.0
PRUNE_SECONDS = 86400.0  # raw payloads past their retention are emptied daily
# How often the state tables' growth is checked (app.refresh_statistics): a fast-growing
# table is planned by stale statistics for at most this long, beside autovacuum's minute.
# Every second: a new database's first burst of posts (the first seconds' thousands) ran
# five seconds on no statistics at all, its look-ups planned as scans; the check is one
# read of the server's counters.
STATISTICS_SECONDS = 1.0
STATUS_SECONDS = 15.0  # how often `systemctl status` gets a fresh STATUS= line


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


class Daemon:
    """Builds the job objects of the configuration, hands them to the scheduler, and
    reports their health (/healthz, /metrics, systemd); signals stop or reload it."""

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
        self.fatal: BaseException | None = None
        self.abandoned = False  # a job outlived the stop deadline; the caller must not join it
        self.heartbeat = Heartbeat()
        self.metrics = Metrics(lambda: self.app, lambda: self.heartbeat.unix, self.runs)
        self.server: HealthServer | None = None
        self.outage = StateOutage()
        self._fresh_scheduler()

    def _fresh_scheduler(self) -> None:
        self.outage.clear()  # the jobs waiting for the database are replaced
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            # The heartbeat has a thread of its own: jobs busy on slow API calls must not
            # look like a hung scheduler to the watchdog.
            executors={"default": ThreadPoolExecutor(10), "heartbeat": ThreadPoolExecutor(1)},
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None},
        )
        self.jobs = Jobs(
            self.app, self.scheduler, self.metrics, self.outage, self.stopping, self._bug
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
        for job in self._build():
            self.jobs.add(job)
        self.scheduler.add_job(
            self.jobs.check_parked, "interval", id="parking", seconds=PARK_CHECK_SECONDS
        )
        self.scheduler.add_job(
            self.heartbeat.tick,
            "interval",
            id="heartbeat",
            executor="heartbeat",
            seconds=heartbeat_seconds(),
            next_run_time=datetime.now(UTC),
        )
        self.scheduler.add_job(
            self._status,
            "interval",
            id="status",
            seconds=STATUS_SECONDS,
            next_run_time=datetime.now(UTC),
        )
        self.metrics.attach(self.app)
        self.scheduler.start(paused=paused)
        log.info("syncd running: %d source(s)", len(self.app.sources))

    def _build(self) -> list[ScheduledJob]:
        """The configuration's jobs; each source's poll jobs come from its set-up job."""
        jobs, settings = self.jobs, self.app.settings
        built: list[ScheduledJob] = [
            SetupJob(jobs, name, jitter=settings.daemon.jitter) for name in self.app.sources
        ]
        resolver = ResolveJob(jobs, interval=settings.daemon.resolve_interval, park=CRM_PARK)
        built.append(resolver)
        built.append(LinkJob(jobs, interval=settings.daemon.resolve_interval, park=CRM_PARK))
        if self.app.crm_check_seconds:
            # The CRM is asked which people changed on this cadence (a write interval by
            # default), not the resolver's: a held author's new Contact is used within it.
            interval = self.app.crm_check_seconds
            built.append(CrmCheckJob(jobs, resolver, interval=interval, park=CRM_PARK))
        built.append(
            Chore(
                jobs,
                "write",
                lambda app: app.pipeline.deliver(max_batches=50),
                interval=settings.daemon.write_interval,
                logger=logging.getLogger("syncd.writer"),
                what="CRM writer",
                park=CRM_PARK,
            )
        )
        built.append(BackfillJob(jobs, interval=settings.backfill.interval, park=BACKFILL_PARK))
        built.append(
            Chore(
                jobs,
                "compliance",
                lambda app: app.compliance(),
                interval=settings.compliance.interval,
                logger=logging.getLogger("syncd.compliance"),
                what="compliance check",
                park=CRM_PARK,
            )
        )
        built.append(
            Chore(
                jobs,
                "prune",
                lambda app: app.prune(),
                interval=PRUNE_SECONDS,
                logger=logging.getLogger("syncd.privacy"),
                what="payload pruning",
                park=CRM_PARK,
            )
        )
        built.append(
            Chore(
                jobs,
                "statistics",
                lambda app: app.refresh_statistics(),
                interval=STATISTICS_SECONDS,
                logger=logging.getLogger("syncd.state"),
                what="state statistics",
                park=CRM_PARK,
            )
        )
        return built

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
            self.server = serve(
                listen, self, self.metrics.registry, self.app.settings.path, self._webhooks()
            )

    def _webhooks(self) -> SourceWebhooks:
        # Through the daemon's current app: a reload's sources and database are served.
        return SourceWebhooks(
            lambda: {name: source for name, (_, source) in self.app.sources.items()},
            lambda: self.app.db,
            lambda: self.app.pipeline.clock(),
            # Through the current jobs too: a reload's scheduler is the one told.
            lambda source: self.jobs.hinted(source),
        )

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

    # -- what the jobs report -------------------------------------------------------------
    def _bug(self, exc: BaseException) -> None:
        """A job met an unexpected exception: stop loudly rather than run on in an unknown
        state (``run`` then exits with :data:`EXIT_BUG`)."""
        self.fatal = exc
        self.stopping.set()

    @property
    def parked(self) -> set[str]:
        return self.jobs.parked

    def state_outage(self) -> str | None:
        """Why /healthz fails while jobs wait for the state database (None: none does)."""
        return self.outage.describe()

    def runs(self) -> Sequence[Run]:
        """The job runs in progress, for /healthz and /metrics to tell a stuck one."""
        return self.jobs.runs(self.app.settings.daemon.stuck_after)
