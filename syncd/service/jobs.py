"""Failure bookkeeping per scheduled job: a failure logged once, the recovery once, and
the run of authentication failures that parks an account (its jobs paused until
``syncd resume`` or a reload); a stream the pipeline parked (unreadable answers) has its one
poll job paused the same way; an outage of the state database, which jobs wait out."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from syncd.errors import AuthError, ExternalError, StateUnavailable, StreamParked

if TYPE_CHECKING:
    from apscheduler.schedulers.background import BackgroundScheduler

    from syncd.service.app import App

log = logging.getLogger("syncd.daemon")


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


class Parking:
    """Pausing the jobs of an account (or the CRM) whose credentials keep being refused,
    and resuming them once ``syncd resume`` cleared it. Mixed into the daemon."""

    app: App
    scheduler: BackgroundScheduler
    parked: set[str]
    park_of: dict[str, str]  # job id → what parking it belongs to
    stream_parks: dict[str, str]  # a stream parked on its own → its poll job id
    health: dict[str, JobHealth]

    def _park(self, name: str, health: JobHealth, exc: ExternalError) -> None:
        self.parked.add(name)
        for job_id, park in self.park_of.items():
            if park == name and self.scheduler.get_job(job_id) is not None:
                self.scheduler.pause_job(job_id)
        try:
            self.app.park(name, f"{type(exc).__name__}: {exc}", health.auth_failures)
        except Exception:  # parked in memory regardless; status just will not show it
            log.warning("could not record that %s is parked", name, exc_info=True)
        health.logger.error(
            "%s parked after %d authentication failures: fix the credentials, then run "
            "`syncd resume %s` or reload the configuration",
            name,
            health.auth_failures,
            name,
        )

    def _park_stream(self, job_id: str, health: JobHealth, exc: StreamParked) -> None:
        """Pause one poll job whose stream the pipeline parked (in state, with the reason):
        its answers kept being unreadable. The account's other streams go on."""
        if exc.name in self.parked:
            return
        self.parked.add(exc.name)
        self.stream_parks[exc.name] = job_id
        if self.scheduler.get_job(job_id) is not None:
            self.scheduler.pause_job(job_id)
        health.logger.error("%s; or reload the configuration", exc)

    def _check_parked(self) -> None:
        """Resume what ``syncd resume`` took out of the parked table since the last look."""
        if not self.parked:
            return
        try:
            still = self.app.parked()
        except Exception:
            log.debug("could not read parked accounts", exc_info=True)
            return
        for name in sorted(self.parked - still):
            self.parked.discard(name)
            stream_job = self.stream_parks.pop(name, None)
            for job_id, park in self.park_of.items():
                ours = park == name or job_id == stream_job
                if ours and self.scheduler.get_job(job_id) is not None:
                    self.health[job_id].auth_failures = 0
                    self.scheduler.resume_job(job_id)
                    self.scheduler.modify_job(job_id, next_run_time=datetime.now(UTC))
            log.info("%s resumed", name)


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
