"""The pipeline of one of several ``syncd run`` sharing PostgreSQL state.

A stream's walk owns its cursor, the resolver may create Leads, and one linker trying the new
authors against the copy of the CRM's keys is enough: each runs in one instance at a time,
under a job lock (:class:`~syncd.state.coordination.JobLocks`). An instance finding
one held skips that run empty-handed, quietly, and tries again at its next interval. On SQLite
(single-instance) every lock is granted. The writer needs no lock: it claims deliveries row by
row (``syncd.state.outbox``). A deadlock that escapes any of them fails that run as a transient
error, not as the bug that would stop the daemon.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import partial

from syncd.contracts import Crm, Source
from syncd.model import Account, Stream
from syncd.pipeline import (
    CasesResult,
    Clock,
    DeliverResult,
    Pipeline,
    PipelineSettings,
    PollResult,
    utcnow,
)
from syncd.resolver.stage import ResolveResult
from syncd.state import walks
from syncd.state.coordination import JobLocks, conflicts_transient, owner_id
from syncd.state.db import Database

log = logging.getLogger("syncd.pipeline")


class CoordinatedPipeline(Pipeline):
    """A Pipeline whose polls, resolver, on-file linker and case filing take their job lock
    first (the writer: retries a conflict as transient). A subclass, not a holder: the app,
    the daemon and the backfill runner use the rest of the pipeline (stop flag, clock,
    accounts, retries, its stages) as it is."""

    def __init__(
        self,
        db: Database,
        crm_name: str,
        crm: Crm,
        settings: PipelineSettings | None = None,
        clock: Clock = utcnow,
        *,
        locks: JobLocks,
        owner: str | None = None,
    ) -> None:
        super().__init__(db, crm_name, crm, settings, clock)
        self.locks = locks
        self.owner = owner or owner_id()  # which instance this is, to the others

    def poll(
        self,
        source_name: str,
        source: Source,
        account: Account,
        stream: Stream,
        *,
        spacing: timedelta | None = None,
    ) -> PollResult:
        walk_stream = partial(super().poll, source_name, source, account, stream)

        def walk() -> PollResult:
            if spacing is not None:
                # Replayable: a mark lost to a crash costs one walk another instance makes.
                with self.db.transaction(replayable=True) as conn:
                    turn = walks.take_turn(
                        conn,
                        source_name,
                        account.handle,
                        stream,
                        self.clock(),
                        owner=self.owner,
                        spacing=spacing,
                    )
                if not turn:
                    log.debug("%s %s: another instance walks it", account.handle, stream)
                    return PollResult()
            return walk_stream()

        result = self.locks.run(f"poll:{source_name}:{account.handle}:{stream}", walk)
        return PollResult() if result is None else result

    def resolve(
        self,
        gather: timedelta = timedelta(0),
        *,
        check_crm: bool | None = None,
        on_file_first: bool = True,
    ) -> ResolveResult:
        run = partial(super().resolve, gather, check_crm=check_crm, on_file_first=on_file_first)
        result = self.locks.run("resolve", run)
        return ResolveResult() if result is None else result

    def link_on_file(self) -> ResolveResult:
        # One instance at a time, beside the resolver's own runs (links are made once
        # whichever of them gets there first: see syncd.state.linking.link_many).
        result = self.locks.run("link", super().link_on_file)
        return ResolveResult() if result is None else result

    def deliver(self, max_batches: int | None = None) -> DeliverResult:
        return conflicts_transient(partial(super().deliver, max_batches))

    def file_cases(self) -> CasesResult:
        # One instance decides at a time: two deciding the same customer's posts at once
        # could each open a case for one conversation.
        result = self.locks.run("cases", super().file_cases)
        return CasesResult() if result is None else result
