"""Failure bookkeeping per scheduled job: a failure logged once, the recovery once, and
the run of authentication failures that parks an account (its jobs paused until
``syncd resume`` or a reload); a stream the pipeline parked (unreadable answers) has its one
poll job paused the same way."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from syncd.errors import AuthError, ExternalError, StreamParked

if TYPE_CHECKING:
    from apscheduler.schedulers.background import BackgroundScheduler

    from syncd.app import App

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
