"""The assembled service: settings → database, connectors, pipeline; and one full cycle.

``syncd run`` hands an :class:`App` to the daemon's scheduler; ``syncd poll --once`` calls
:meth:`App.cycle` directly. Both run exactly the same pipeline code; a one-off cycle also
reads the searches of the gaps it finds to their end, where the daemon leaves them to its
backfill job (see :meth:`App.close_gaps`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import cast

import connectors
from syncd.backfill.gaps import GapPass
from syncd.backfill.gaps import recover as recover_gaps
from syncd.backfill.runner import BackfillSource, Runner
from syncd.budget.guard import BudgetGuard
from syncd.budget.ledger import BudgetHeld, budgets
from syncd.compliance.deleted import ComplianceReport
from syncd.compliance.deleted import run as run_compliance
from syncd.config.settings import Settings
from syncd.contracts import Crm, Source, SourceSettings
from syncd.errors import ExternalError, NotFound, RateLimited, UsageCapped
from syncd.model import Account, BackfillState, GapState, Stream
from syncd.pipeline import Clock, DeliverResult, Pipeline, PollResult, utcnow
from syncd.pipeline.coordination import CoordinatedPipeline
from syncd.resolver.stage import ResolveResult, check_wanted
from syncd.state import admin, backfills, hints, privacy, statistics
from syncd.state import gaps as gap_state
from syncd.state.backfills import LeaseLost
from syncd.state.coordination import JobLocks
from syncd.state.db import Database

log = logging.getLogger("syncd")

# How long a one-off cycle waits for a gap's search: for a gap to become old enough for it
# (X searches posts some seconds old), or for the rate limit's pacing. A longer wait leaves
# the gap open, reported, for the next run (or the daemon) to close.
ONCE_WAIT_SECONDS = 60.0


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

    @property
    def park_name(self) -> str:
        """What an auth failure parks: the whole account (both streams share its credentials)."""
        return f"{self.source}:{self.account.handle}"


class UnknownAccounts(NotFound):
    """Brand handles the network does not know; ``jobs`` holds those of the known ones."""

    def __init__(self, source: str, network: str, handles: list[str], jobs: list[Job]) -> None:
        super().__init__(
            f"{source}: brand account(s) not found on {network}: {', '.join(handles)}",
            system=network,
        )
        self.handles = handles
        self.jobs = jobs


@dataclass(frozen=True)
class OpenGap:
    """A gap a one-off cycle leaves open: posts of ``stream`` after ``since_id`` and before
    ``until_id`` (exclusive) that may be missing, and why they were not recovered."""

    id: int
    source: str
    account: str
    stream: str
    since_id: str
    until_id: str
    state: str  # open, closing (its search is under way or queued) or unclosable
    why: str
    backfill_id: int | None = None


@dataclass
class CycleReport:
    polls: dict[str, PollResult] = field(default_factory=dict)
    resolve: ResolveResult | None = None
    deliver: DeliverResult | None = None
    errors: dict[str, str] = field(default_factory=dict)
    gaps: list[OpenGap] = field(default_factory=list)  # left open by the cycle

    @property
    def ok(self) -> bool:
        return (
            not self.errors and not self.gaps and (self.deliver is None or self.deliver.dead == 0)
        )


class App:
    def __init__(self, settings: Settings, *, clock: Clock = utcnow) -> None:
        self.settings = settings
        self.db = Database(settings.state.url, timeouts=settings.state.timeouts())
        self.sources: dict[str, tuple[SourceSettings, Source]] = {}
        for s in settings.sources:
            self.sources[s.name] = (s, connectors.source_class(s.type).from_settings(s))
        self.crm: Crm = connectors.crm_class(settings.crm.type).from_settings(settings.crm)
        # Several instances may share PostgreSQL state: jobs that must not run twice at once
        # take a lock; on SQLite (single-instance) every lock is granted.
        self.locks = JobLocks(self.db.url, self.db.engine_options)
        self.pipeline: Pipeline = CoordinatedPipeline(
            self.db,
            settings.crm.name,
            self.crm,
            replace(settings.pipeline(), lease=settings.daemon.lease),
            clock=clock,
            locks=self.locks,
        )
        # What the writer looks a long-waiting delivery's post up on (deleted meanwhile?).
        self.pipeline.writer.sources = {name: source for name, (_, source) in self.sources.items()}
        # The read budget of each source billed per resource (see syncd.budget.guard).
        self.guard = BudgetGuard(
            self.db,
            budgets(settings.sources),
            {name: source for name, (_, source) in self.sources.items()},
            self.pipeline.clock,
        )
        self._backfill: Runner | None = None

    # -- backfills -----------------------------------------------------------------------
    def backfill_tick(self, budget: float = 1.0) -> tuple[float, int]:
        """Work queued backfills for about ``budget`` seconds, one request at a time, so a
        live poll never waits behind more than one backfill request. Returns the seconds
        before the next request may go (rate pacing; 0: go on) and the posts stored new.
        Gaps the live polls found are queued here as backfill jobs of their own."""
        self.recover_gaps()
        started, new = time.monotonic(), 0
        while not self.pipeline.stopping.is_set():
            runner = self._backfill or self._claim_backfill()
            if runner is None:
                return 0.0, new
            try:
                step = runner.step()
            except LeaseLost:
                self._backfill = None
                continue
            except BudgetHeld:  # queued again; claimed once the budget allows
                self._backfill = None
                return 0.0, new
            new += step.new
            if step.done:
                log.info(
                    "backfill %d done: %d read, %d new", step.job.id, step.job.read, step.job.new
                )
                self._backfill = None
            elif step.wait or time.monotonic() - started >= budget:
                return step.wait, new
        return 0.0, new

    def _claim_backfill(self) -> Runner | None:
        with self.db.connect() as conn:
            ids = backfills.claimable(conn, self.pipeline.clock())
            found = {i: backfills.get(conn, i) for i in ids}
        for job_id, job in found.items():
            if job is None or job.source not in self.sources:
                continue
            if self.guard.holds_backfill(job.source):  # 90 % of its budget, or capped
                continue
            source = cast(BackfillSource, self.sources[job.source][1])
            runner = Runner(
                self.pipeline,
                job.source,
                source,
                job_id,
                reserve=self.settings.backfill.reserve,
                guard=self.guard,
            )
            if runner.claim():
                log.info("backfill %d: working %s @%s", job_id, job.source, job.account)
                self._backfill = runner
                return runner
        return None

    def recover_gaps(self) -> GapPass:
        """Settle, plan and report the gaps live walks left (see :mod:`syncd.backfill.gaps`)."""
        sources = {name: source for name, (_, source) in self.sources.items()}
        return recover_gaps(self.db, sources, self.pipeline.clock())

    def close_gaps(self, since: datetime) -> list[OpenGap]:
        """A one-off cycle's gap recovery: each gap's search (its backfill job) is read to
        its end now, rather than left queued for a daemon that may not run (``syncd poll
        --once`` from cron). Returns the gaps still open, each with why: those whose
        search could not run or finish in this run (tried again by the next), and those
        this run found out of every configured access's reach (``since``: the cycle's
        start; reported once, like the daemon's log line, then shown by ``status``)."""
        found = self.recover_gaps()
        if found.not_ready:
            # X searches only posts some seconds old: a gap that recent is read once it may be.
            wait = (max(found.not_ready.values()) - self.pipeline.clock()).total_seconds()
            if wait <= ONCE_WAIT_SECONDS:
                self.pipeline.stopping.wait(max(wait, 0.0))
                found = self.recover_gaps()
        why: dict[int, str] = {}
        with self.db.connect() as conn:
            closing = gap_state.listing(conn, (GapState.CLOSING,))
        for gap in closing:
            if gap.backfill_id is not None and gap.source in self.sources:
                problem = self._search_now(gap.source, gap.backfill_id)
                if problem is not None:
                    why[gap.id] = problem
        settled = self.recover_gaps()  # gaps whose search ended: closed
        with self.db.connect() as conn:
            left = gap_state.listing(conn, (GapState.OPEN, GapState.CLOSING, GapState.UNCLOSABLE))
        open_gaps: list[OpenGap] = []
        for gap in left:
            if gap.state == GapState.UNCLOSABLE:
                if gap.updated_at < since:
                    continue  # found unclosable before this run: reported then
                reason = gap.reason or "no configured access reaches it"
            elif gap.id in why:
                reason = why[gap.id]
            elif gap.id in settled.not_ready or gap.id in found.not_ready:
                at = settled.not_ready.get(gap.id) or found.not_ready[gap.id]
                reason = f"too recent for search until {at:%Y-%m-%d %H:%M:%S} UTC"
            elif gap.id in settled.no_source:
                reason = f"its source {gap.source} (or @{gap.account} in it) is not configured"
            elif gap.backfill_id is not None:
                reason = f"its search (backfill {gap.backfill_id}) has not ended"
            else:
                reason = "its search has not started"
            open_gaps.append(
                OpenGap(
                    gap.id,
                    gap.source,
                    gap.account,
                    gap.stream,
                    gap.since_id,
                    gap.until_id,
                    gap.state,
                    reason,
                    gap.backfill_id,
                )
            )
        return open_gaps

    def _search_now(self, source_name: str, job_id: int) -> str | None:
        """Work one gap's backfill job to its end in the foreground; why it could not, or
        None. A job left unfinished goes back to the queue, where it stood."""
        source = cast(BackfillSource, self.sources[source_name][1])
        runner = Runner(
            self.pipeline,
            source_name,
            source,
            job_id,
            reserve=self.settings.backfill.reserve,
            guard=self.guard,
        )
        if not runner.claim():
            with self.db.connect() as conn:
                job = backfills.get(conn, job_id)
            owner = job.lease_owner if job is not None else None
            return f"its search (backfill {job_id}) is being read by {owner or 'another process'}"
        try:
            while not self.pipeline.stopping.is_set():
                try:
                    step = runner.step()
                except RateLimited as exc:
                    wait = (exc.resume_at - self.pipeline.clock()).total_seconds()
                    if wait > ONCE_WAIT_SECONDS:
                        runner.release(BackfillState.QUEUED)
                        return (
                            f"its search (backfill {job_id}) is rate-limited until "
                            f"{exc.resume_at:%Y-%m-%d %H:%M:%S} UTC"
                        )
                    self.pipeline.stopping.wait(max(wait, 0.0))
                    continue
                if step.done:
                    log.info(
                        "backfill %d done: %d read, %d new", job_id, step.job.read, step.job.new
                    )
                    return None
                if step.wait > ONCE_WAIT_SECONDS:
                    runner.release(BackfillState.QUEUED)
                    return (
                        f"its search (backfill {job_id}) must wait {step.wait:.0f} s for "
                        "the rate limit"
                    )
                if step.wait:
                    self.pipeline.stopping.wait(step.wait)
        except BudgetHeld as held:  # the runner handed the job back to the queue
            return f"its search (backfill {job_id}) is held by the read budget: {held}"
        except LeaseLost:
            return f"its search (backfill {job_id}) was taken over by another process"
        except ExternalError as exc:
            runner.release(BackfillState.QUEUED)
            return f"its search (backfill {job_id}) failed: {type(exc).__name__}: {exc}"
        except BaseException:  # interrupted: the job is not left under this process's lease
            runner.release(BackfillState.QUEUED)
            raise
        runner.release(BackfillState.QUEUED)
        return f"stopped before its search (backfill {job_id}) ended"

    def release_backfill(self) -> None:
        """On shutdown: hand the job in hand back to the queue, where it stood."""
        if self._backfill is not None:
            self._backfill.release(BackfillState.QUEUED)
            self._backfill = None

    def open(self) -> None:
        """Apply migrations; the state database is ready after this."""
        self.db.upgrade()

    def close(self) -> None:
        for _, source in self.sources.values():
            source.close()
        self.crm.close()
        self.locks.dispose()
        self.db.dispose()

    def jobs(self, source_name: str) -> list[Job]:
        """A source's poll jobs, resolving brand handles to ids on first use (then from state).

        Raises NotFound naming handles the network does not know, after the known ones'
        jobs are ready in ``NotFound.jobs``: one mistyped handle must not stop the others.
        """
        settings, source = self.sources[source_name]
        found, unknown = self.pipeline.accounts(source_name, source, settings.accounts)
        jobs = [Job(source_name, a, stream) for a in found for stream in settings.streams]
        if unknown:
            raise UnknownAccounts(source_name, source.network, unknown, jobs)
        return jobs

    # -- the CRM change check ---------------------------------------------------------------
    def crm_check_wanted(self) -> bool:
        """Whether the daemon's next resolve run should ask the CRM which people changed (see
        :func:`syncd.resolver.stage.check_wanted`): a database read, no CRM call."""
        return check_wanted(self.db, self.pipeline.crm_name, self.pipeline.clock())

    @property
    def crm_check_seconds(self) -> float:
        """How often the daemon may ask the CRM which people changed; 0: never."""
        return self.pipeline.settings.resolve.crm_check.total_seconds()

    # -- privacy and compliance ------------------------------------------------------------
    def prune(self) -> dict[str, int]:
        """Empty raw payloads older than ``[privacy] payload_retention`` (0: keep them all)
        and delete stale webhook hints; the rows emptied or deleted per table
        (``webhook_hints`` only when some were). The daemon runs it daily, one instance at a
        time."""
        return self.locks.run("prune", self._prune) or {}

    def _prune(self) -> dict[str, int]:
        counts = self._prune_hints()
        retention = self.settings.privacy.payload_retention
        if not retention:
            return counts
        before = self.pipeline.clock() - timedelta(seconds=retention)
        with self.db.transaction() as conn:
            payloads = privacy.prune_payloads(conn, before)
        if any(payloads.values()):
            log.info("pruned raw payloads older than %s: %s", before.isoformat(), payloads)
        return {**counts, **payloads}

    def refresh_statistics(self) -> list[str]:
        """Analyse the state tables that grew faster than PostgreSQL's autovacuum analyses
        them (:mod:`syncd.state.statistics`); the names analysed. The daemon runs it every
        few seconds, one instance at a time; on SQLite it does nothing."""
        if self.db.dialect != "postgresql":
            return []
        return self.locks.run("statistics", self._refresh_statistics) or []

    def _refresh_statistics(self) -> list[str]:
        with self.db.transaction() as conn:
            names = statistics.refresh(conn)
        if names:
            log.debug("analysed %s: they grew faster than autovacuum analyses", ", ".join(names))
        return names

    def _prune_hints(self) -> dict[str, int]:
        """Webhook hints no poll will take, or taken long ago (:func:`syncd.state.hints.
        prune`): without it a source or account dropped from the configuration leaves its
        deliveries' rows for ever."""
        with self.db.transaction() as conn:
            gone = hints.prune(conn, self.pipeline.clock())
        if not gone:
            return {}
        log.info("pruned %d webhook hints taken long ago or never taken", gone)
        return {"webhook_hints": gone}

    def compliance(self) -> ComplianceReport:
        """Re-check recently written posts on their network and delete (or mark) the CRM
        records of those deleted there. The daemon runs it every ``[compliance] interval``;
        one instance at a time, lest two delete the same records (empty when skipped)."""
        report = self.locks.run("compliance", self._compliance)
        return ComplianceReport() if report is None else report

    def _compliance(self) -> ComplianceReport:
        c = self.settings.compliance
        report = run_compliance(
            self.db,
            self.settings.crm.name,
            self.crm,
            {name: source for name, (_, source) in self.sources.items()},
            horizon=timedelta(seconds=c.horizon),
            interval=timedelta(seconds=c.interval),
            action=c.action,
            now=self.pipeline.clock(),
            stopping=self.pipeline.stopping.is_set,
        )
        if report.checked or report.acted or report.failed:
            log.info(
                "compliance: %d post(s) checked, %d deleted on the network, %d CRM record(s) "
                "%s, %d refused",
                report.checked,
                report.deleted,
                report.acted,
                "deleted" if c.action == "delete" else "marked",
                report.failed,
            )
        for source, why in report.errors.items():
            log.warning("compliance: %s: posts not checked: %s", source, why)
        return report

    # -- parking -------------------------------------------------------------------------
    def park(self, name: str, reason: str, failures: int) -> None:
        with self.db.transaction() as conn:
            admin.park(conn, name, reason, failures, self.pipeline.clock())

    def parked(self) -> set[str]:
        with self.db.connect() as conn:
            return admin.parked_names(conn)

    def unpark_all(self) -> list[str]:
        with self.db.transaction() as conn:
            return admin.unpark(conn)

    def reconnect(self, source_name: str) -> None:
        """Build ``source_name``'s source again from its settings, its credentials read
        afresh: an account resumed after its admin replaced a refused token (a credential
        file, a systemd credential) polls with the new one, as after a reload. The old
        source is not closed: a poll of another of its accounts may still be using it."""
        settings, _ = self.sources[source_name]
        fresh = connectors.source_class(settings.type).from_settings(settings)
        self.sources[source_name] = (settings, fresh)
        self.pipeline.writer.sources = {name: source for name, (_, source) in self.sources.items()}
        self.guard.sources[source_name] = fresh

    def poll(self, job: Job, *, spacing: timedelta | None = None) -> PollResult:
        """Poll one stream; ``spacing``: a scheduled poll, left to another instance that
        began walking the stream less than this ago (several instances on PostgreSQL)."""
        _, source = self.sources[job.source]
        self.guard.before_poll(job.source)  # refused while capped; X's usage read when due
        try:
            result = self.pipeline.poll(
                job.source, source, job.account, job.stream, spacing=spacing
            )
        except UsageCapped as exc:  # the whole source waits for the cap's reset
            raise self.guard.capped(job.source, exc) from exc
        self.guard.review(job.source)
        return result

    def cycle(self, *, close_gaps: bool = True) -> CycleReport:
        """Poll every stream, resolve, write; collect failures instead of stopping at the first.

        The gaps in state are closed in the cycle, their posts resolved and written with the
        rest, and those left open reported (:meth:`close_gaps`). ``close_gaps=False`` only
        queues them, for the backfill job (what the daemon's jobs do).
        """
        started = self.pipeline.clock()
        report = CycleReport()
        jobs: list[Job] = []
        for name in self.sources:
            try:
                jobs += self.jobs(name)
            except UnknownAccounts as exc:
                report.errors[f"accounts:{name}"] = str(exc)
                jobs += exc.jobs
            except ExternalError as exc:
                report.errors[f"accounts:{name}"] = f"{type(exc).__name__}: {exc}"
        for job in jobs:
            try:
                report.polls[job.id] = self.poll(job)
            except ExternalError as exc:
                report.errors[job.id] = f"{type(exc).__name__}: {exc}"
                self.pipeline.record_poll_error(
                    job.source, job.account.handle, job.stream, str(exc)
                )
        if close_gaps:
            report.gaps = self.close_gaps(started)
        else:
            self.recover_gaps()
        try:
            # Asked every time: a Contact a rep just created gets its held history now.
            report.resolve = self.pipeline.resolve(check_crm=True)
            report.deliver = self.pipeline.deliver()
        except ExternalError as exc:
            report.errors["crm"] = f"{type(exc).__name__}: {exc}"
        return report
