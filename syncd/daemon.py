"""``syncd run``: the scheduler, its jobs, signals and systemd notification.

One APScheduler job per source × account × stream, plus the resolver and the writer. A job's
failure is classified by what to do next (see syncd.errors): a rate limit moves that job's next
run to the reset time, an auth failure parks the account after three in a row, anything else
transient waits for the next interval. Each failure is logged when it starts and again when
it ends, not once per attempt.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from syncd.app import App, Job, UnknownAccounts
from syncd.errors import AuthError, ExternalError, RateLimited

log = logging.getLogger("syncd.daemon")

AUTH_FAILURES_TO_PARK = 3
EXIT_BUG = 70  # EX_SOFTWARE: an unexpected exception escaped a job


class JobHealth:
    """Failure bookkeeping for one job, so it logs a failure once and the recovery once."""

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self.logger = logger
        self.what = what
        self.failing: str | None = None
        self.auth_failures = 0

    def success(self) -> None:
        if self.failing is not None:
            self.logger.info("%s recovered", self.what)
        self.failing = None
        self.auth_failures = 0

    def failure(self, exc: Exception) -> None:
        kind = type(exc).__name__
        if self.failing != kind:
            self.logger.warning("%s failing (%s): %s", self.what, kind, exc)
        self.failing = kind
        self.auth_failures = self.auth_failures + 1 if isinstance(exc, AuthError) else 0


class Daemon:
    def __init__(self, app: App, *, stop_when: Callable[[], bool] | None = None) -> None:
        self.app = app
        self.stop_when = stop_when
        self.stopping = threading.Event()
        self.fatal: BaseException | None = None
        self.health: dict[str, JobHealth] = {}
        self.parked: set[str] = set()
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None},
        )

    # -- lifecycle -----------------------------------------------------------------------
    def run(self) -> int:
        """Schedule every job and serve until SIGTERM/SIGINT or ``stop_when``; the exit code."""
        self._install_signals()
        self.start()
        notify("READY=1\nSTATUS=polling")
        try:
            while not self.stopping.wait(0.2):
                if self.stop_when is not None and self.stop_when():
                    break
        finally:
            notify("STOPPING=1")
            self.shutdown()
        if self.fatal is not None:
            log.critical("stopped by an unexpected error", exc_info=self.fatal)
            return EXIT_BUG
        return 0

    def start(self, *, paused: bool = False) -> None:
        """Schedule every job; ``paused`` keeps them from running (tests drive them by hand)."""
        now = datetime.now(UTC)
        settings = self.app.settings
        for name in self.app.sources:
            self.health[f"setup:{name}"] = JobHealth(log.getChild(name), f"source {name} set-up")
            self.scheduler.add_job(
                self._setup_source,
                "interval",
                args=[name],
                id=f"setup:{name}",
                seconds=self.app.sources[name][0].interval,
                next_run_time=now,
            )
        self.health["resolve"] = JobHealth(logging.getLogger("syncd.resolver"), "resolver")
        self.health["write"] = JobHealth(logging.getLogger("syncd.writer"), "CRM writer")
        self.scheduler.add_job(
            self._resolve,
            "interval",
            id="resolve",
            seconds=settings.daemon.resolve_interval,
            next_run_time=now,
        )
        self.scheduler.add_job(
            self._write,
            "interval",
            id="write",
            seconds=settings.daemon.write_interval,
            next_run_time=now,
        )
        self.scheduler.start(paused=paused)
        log.info("syncd running: %d source(s)", len(self.app.sources))

    def shutdown(self) -> None:
        # wait=True lets every job finish the page or batch in hand, then the loops stop.
        self.app.pipeline.stopping.set()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)

    def stop(self) -> None:
        self.stopping.set()

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum: int, _frame: FrameType | None) -> None:
            log.info("received %s, finishing the work in hand", signal.Signals(signum).name)
            self.stopping.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

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
            self.health[job.id] = JobHealth(job.logger, f"{job.stream} poll")
            self.scheduler.add_job(
                self._poll,
                "interval",
                args=[job],
                id=job.id,
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
        result = self._guarded("resolve", self.app.pipeline.resolve)
        if result is not None and result.linked:
            self._run_soon("write")

    def _write(self) -> None:
        self._guarded("write", lambda: self.app.pipeline.deliver(max_batches=50))

    def _run_soon(self, job_id: str) -> None:
        if self.stopping.is_set() or not self.scheduler.running:
            return
        job = self.scheduler.get_job(job_id)
        if job is not None and job_id not in self.parked:
            soon = datetime.now(UTC) + timedelta(milliseconds=200)
            if job.next_run_time is None or job.next_run_time > soon:
                job.modify(next_run_time=soon)

    def _guarded(self, job_id: str, call: Callable[[], Any], job: Job | None = None) -> Any:
        if self.stopping.is_set():
            return None
        health = self.health[job_id]
        try:
            result = call()
        except RateLimited as exc:
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
        except ExternalError as exc:
            health.failure(exc)
            self._record(job, exc)
            if isinstance(exc, AuthError) and health.auth_failures >= AUTH_FAILURES_TO_PARK:
                self.parked.add(job_id)
                self.scheduler.pause_job(job_id)
                health.logger.error(
                    "%s parked after %d authentication failures: fix the credentials, then "
                    "restart syncd",
                    health.what,
                    health.auth_failures,
                )
            return None
        except Exception as exc:
            # A bug: stop loudly rather than keep running in an unknown state.
            self.fatal = exc
            self.stopping.set()
            return None
        health.success()
        return result

    def _record(self, job: Job | None, exc: Exception) -> None:
        if job is not None:
            try:
                self.app.pipeline.record_poll_error(
                    job.source, job.account.handle, job.stream, f"{type(exc).__name__}: {exc}"
                )
            except Exception:  # the state DB being down must not hide the original error
                log.debug("could not record poll error", exc_info=True)


def notify(message: str) -> None:
    """sd_notify(3) over $NOTIFY_SOCKET; a no-op outside systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError:
        log.debug("sd_notify failed", exc_info=True)
