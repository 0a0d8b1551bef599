"""The assembled service: settings → database, connectors, pipeline; and one full cycle.

``syncd run`` hands an :class:`App` to the daemon's scheduler; ``syncd poll --once`` calls
:meth:`App.cycle` directly. Both run exactly the same pipeline code.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import connectors
from syncd.config import Settings
from syncd.connector import Crm, Source, SourceSettings
from syncd.errors import ExternalError, SyncdError
from syncd.model import Account, Stream
from syncd.pipeline import Clock, DeliverResult, Pipeline, PollResult, ResolveResult, utcnow
from syncd.state.db import Database

log = logging.getLogger("syncd")


@dataclass(frozen=True)
class Job:
    """One poll job: a source's account's stream."""

    source: str
    account: Account
    stream: Stream

    @property
    def id(self) -> str:
        return f"poll:{self.source}:{self.account.handle}:{self.stream}"

    @property
    def logger(self) -> logging.Logger:
        return logging.getLogger(f"syncd.{self.account.network}.{self.account.handle}")


@dataclass
class CycleReport:
    polls: dict[str, PollResult] = field(default_factory=dict)
    resolve: ResolveResult | None = None
    deliver: DeliverResult | None = None
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors and (self.deliver is None or self.deliver.dead == 0)


class App:
    def __init__(self, settings: Settings, *, clock: Clock = utcnow) -> None:
        self.settings = settings
        self.db = Database(settings.state.url)
        self.sources: dict[str, tuple[SourceSettings, Source]] = {}
        for s in settings.sources:
            self.sources[s.name] = (s, connectors.source_class(s.type).from_settings(s))
        self.crm: Crm = connectors.crm_class(settings.crm.type).from_settings(settings.crm)
        self.pipeline = Pipeline(
            self.db, settings.crm.name, self.crm, settings.pipeline(), clock=clock
        )

    def open(self) -> None:
        """Apply migrations; the state database is ready after this."""
        self.db.upgrade()

    def close(self) -> None:
        for _, source in self.sources.values():
            source.close()
        self.crm.close()
        self.db.dispose()

    def jobs(self) -> list[Job]:
        """Every poll job, resolving brand handles to ids on first use (then from state)."""
        out: list[Job] = []
        for name, (settings, source) in self.sources.items():
            for account in self.pipeline.accounts(name, source, settings.accounts):
                out.extend(Job(name, account, stream) for stream in settings.streams)
        return out

    def poll(self, job: Job) -> PollResult:
        _, source = self.sources[job.source]
        return self.pipeline.poll(job.source, source, job.account, job.stream)

    def cycle(self) -> CycleReport:
        """Poll every stream, resolve, write; collect failures instead of stopping at the first."""
        report = CycleReport()
        try:
            jobs = self.jobs()
        except SyncdError as exc:
            report.errors["accounts"] = str(exc)
            jobs = []
        for job in jobs:
            try:
                report.polls[job.id] = self.poll(job)
            except ExternalError as exc:
                report.errors[job.id] = f"{type(exc).__name__}: {exc}"
                self.pipeline.record_poll_error(
                    job.source, job.account.handle, job.stream, str(exc)
                )
        try:
            report.resolve = self.pipeline.resolve()
            report.deliver = self.pipeline.deliver()
        except ExternalError as exc:
            report.errors["crm"] = f"{type(exc).__name__}: {exc}"
        return report
