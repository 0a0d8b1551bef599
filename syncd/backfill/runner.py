"""Working a backfill job: one request per step, each page stored with the job's position.

The same :class:`Runner` serves ``syncd backfill`` (a foreground loop that also resolves and
writes, with progress) and the daemon (a step at a time between live polls). Pacing follows
the rate headers: a route whose limit live polls share (the source's ``shared_routes``) is
left a reserve.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Protocol

from syncd.budget.guard import BudgetGuard
from syncd.budget.ledger import BudgetHeld
from syncd.contracts import Backfiller, Source
from syncd.errors import (
    ExternalError,
    MalformedAnswer,
    NotFound,
    PaginationExpired,
    PaginationLoop,
    UsageCapped,
)
from syncd.model import Account, BackfillState, Page, Segment
from syncd.pipeline import Pipeline
from syncd.state import backfills, usage
from syncd.state import ingest as st
from syncd.state.backfills import Job, LeaseLost
from syncd.state.coordination import owner_id
from syncd.state.walks import UNREADABLE_TO_PARK

log = logging.getLogger("syncd.backfill")


class BackfillSource(Source, Backfiller, Protocol):
    pass


@dataclass(frozen=True)
class Step:
    job: Job
    done: bool = False
    read: int = 0
    new: int = 0
    wait: float = 0.0  # seconds before the next request may go


class Runner:
    def __init__(
        self,
        pipeline: Pipeline,
        source_name: str,
        source: BackfillSource,
        job_id: int,
        *,
        owner: str | None = None,
        reserve: float = 0.2,
        guard: BudgetGuard | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.db = pipeline.db
        self.source_name = source_name
        self.source = source
        self.job_id = job_id
        self.owner = owner or owner_id()
        self.reserve = reserve
        self.guard = guard  # the read budget: refuses a step once it is nearly spent
        self._account: Account | None = None
        self._brand_ids: set[str] | None = None
        self._known = pipeline.known_authors(source.network)
        # The page tokens followed in the segment being read (its index first): a token
        # coming back would read the same pages, billed, for as long as the API sends it.
        self._followed: tuple[int, set[str]] = (-1, set())
        self._unreadable = 0  # answers in a row that could not be read; paused at a bound

    @property
    def clock(self) -> Callable[[], datetime]:
        return self.pipeline.clock

    def claim(self, *, paused_too: bool = False) -> bool:
        with self.db.transaction() as conn:
            return backfills.claim(
                conn, self.job_id, self.owner, self.clock(), paused_too=paused_too
            )

    def release(self, status: str, error: str | None = None) -> None:
        with self.db.transaction() as conn:
            backfills.finish(conn, self.job_id, status, self.clock(), owner=self.owner, error=error)

    def job(self) -> Job:
        with self.db.connect() as conn:
            job = backfills.get(conn, self.job_id)
        if job is None or job.status != BackfillState.RUNNING or job.lease_owner != self.owner:
            raise LeaseLost(f"backfill {self.job_id} is not held by this process")
        return job

    def account(self, job: Job) -> Account:
        if self._account is None:
            with self.db.connect() as conn:
                known = st.stored_accounts(conn, self.source_name)
                self._brand_ids = st.brand_user_ids(conn, self.source.network)
            found = known.get(job.account.lower())
            if found is None:
                raise NotFound(
                    f"{self.source_name}: account {job.account} is not known yet (run "
                    "`syncd poll --once` or the daemon first)",
                    system=self.source.network,
                )
            self._account = found
        return self._account

    def step(self) -> Step:
        """Read and store the job's next page; finish the job after its last segment."""
        job = self.job()
        segment = job.current
        if segment is None:
            self.release(BackfillState.DONE)
            return Step(job, done=True)
        account = self.account(job)
        if self.guard is not None:  # at 90 % of the budget, or capped: BudgetHeld
            try:
                self.guard.before_backfill(self.source_name)
            except BudgetHeld as held:
                raise self._hold(held) from None
        started = time.monotonic()
        try:
            page = self.pipeline.retrying(partial(self._fetch, job, account, segment))
        except ExternalError as exc:
            if isinstance(exc, UsageCapped) and self.guard is not None:
                raise self._hold(self.guard.backfill_capped(self.source_name, exc)) from exc
            if not isinstance(exc, PaginationExpired) or job.token is None:
                raise
            # An expired page token: read the segment again from its start; stored posts
            # are not stored twice.
            log.warning("backfill %d: page token refused, restarting segment", job.id)
            with self.db.transaction() as conn:
                backfills.restart_segment(conn, job, self.owner, self.clock())
            self._followed = (-1, set())  # the walk again: its tokens may be the same
            return Step(job)
        read = len(page.interactions) + len(page.quarantined)
        token = page.next_cursor.pagination_token
        if self._followed[0] != job.segment:
            self._followed = (job.segment, set())
        followed = self._followed[1]
        if job.token is not None:
            followed.add(job.token)
        looped = token is not None and token in followed
        with self.db.transaction() as conn:
            stored = st.store_page(
                conn,
                source=self.source_name,
                network=self.source.network,
                account=account,
                page=page,
                crms=[self.pipeline.crm_name],
                targets=self.pipeline.context.targets,
                brand_ids=self._brand_ids or set(),
                now=self.clock(),
                backfill_id=job.id,
            )
            usage.count(conn, self.source_name, self.source.network, page.reads, self.clock())
            if looped:
                # The page's posts are kept; the job stays at the page before, paused with
                # the reason (`syncd backfill resume` takes it up there).
                error = (
                    f"backfill {job.id}: the API sent a page token this segment already "
                    "followed; paused at the page before"
                )
                backfills.finish(
                    conn, job.id, BackfillState.PAUSED, self.clock(), owner=self.owner, error=error
                )
            else:
                job = backfills.advance(
                    conn,
                    job,
                    self.owner,
                    token=token,
                    read=read,
                    new=stored.new,
                    now=self.clock(),
                )
                if job.current is None:
                    backfills.finish(
                        conn, job.id, BackfillState.DONE, self.clock(), owner=self.owner
                    )
        if looped:
            raise PaginationLoop(error, system=self.source.network)
        wait = self.pacing(segment, page, time.monotonic() - started)
        return Step(job, job.current is None, read, stored.new, wait)

    def _fetch(self, job: Job, account: Account, segment: Segment) -> Page:
        """One page of the job; answers unreadable :data:`UNREADABLE_TO_PARK` times in a row
        pause the job with the reason (`syncd backfill resume` tries again), instead of
        asking for the same broken page every second for ever."""
        try:
            page = self.source.fetch_segment(account, segment, job.token, self._known)
        except MalformedAnswer as exc:
            self._unreadable += 1
            if self._unreadable < UNREADABLE_TO_PARK:
                raise
            self._unreadable = 0
            error = (
                f"backfill {job.id}: {UNREADABLE_TO_PARK} unreadable answers in a row, the "
                f"last: {exc}; paused"
            )
            self.release(BackfillState.PAUSED, error)
            raise ExternalError(error, system=self.source.network) from None
        self._unreadable = 0
        return page

    def _hold(self, held: BudgetHeld) -> BudgetHeld:
        """Back to the queue, where the daemon takes the job up once the budget allows."""
        self.release(BackfillState.QUEUED)
        return held

    def pacing(self, segment: Segment, page: Page, spent: float = 0.0) -> float:
        """Seconds to wait before the next request: what is left of the endpoint's spacing
        after ``spent``, or until the rate window resets once only the reserve (of a rate
        limit live polls share) is left."""
        wait = segment.min_interval - spent
        rate = page.rate
        if rate is None or rate.remaining is None or rate.reset_at is None:
            return wait
        shared = segment.route in self.source.shared_routes
        floor = math.ceil((rate.limit or 0) * self.reserve) if shared else 0
        if rate.remaining <= floor:
            wait = max(wait, (rate.reset_at - self.clock()).total_seconds())
        return max(wait, 0.0)
