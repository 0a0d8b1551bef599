"""Bulk jobs: a large backlog of one history target written through the CRM's bulk API, at a
few calls per job where batches cost one per write batch (a CRM with BulkWriting).

When a target's ready backlog reaches ``bulk_threshold`` (a backfill, a writer that was down)
the writer has the CRM make a job, stores it with the deliveries it takes before sending
anything, sends their records and closes the job; later runs ask how it stands (at most
every :data:`POLL_EVERY`), and once it is done store each record's answer as a batch's are
stored (written, retried, dead-lettered, re-resolved). The deliveries go back to the writer's
batches afterwards: what was refused for a moment is retried there.

A writer stopped at any step resumes from state: a job stored but never closed is aborted
and its deliveries freed (their records go out again: upserts on their keys, so never
twice); a closed one is followed to its results.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial

from syncd.contracts import BulkWriting, RecordOutcome
from syncd.errors import ExternalError
from syncd.model import HistoryRecord, Refusal, WriteResult
from syncd.pipeline.context import Context
from syncd.pipeline.history import build_record
from syncd.state import bulk as state
from syncd.state import outbox

log = logging.getLogger("syncd.pipeline")

# Seconds before the first look at a job sent, doubled after each look that finds it still
# processing, up to POLL_EVERY: a small job is answered soon, a large one costs few looks.
FIRST_LOOK, POLL_EVERY = 1.0, 15.0
# Records one job takes (the CRM may send fewer: see send_bulk). A job's CSV is held in
# memory a few times over while it is uploaded (about 40 MB per 100,000 Tasks): 50,000 keeps
# a 200,000-record backfill near its memory target at 6 calls a job (24 per 200,000).
MAX_RECORDS = 50_000
PAGE = 2_000  # deliveries read at once to send a job's records or store its answers

Store = Callable[[Sequence[outbox.ReadyDelivery], Sequence[WriteResult]], None]


def not_processed(key: str) -> WriteResult:
    """The answer for a record a finished job did not process: sent again later."""
    return WriteResult(
        key, False, None, None, "NOT_PROCESSED", "the bulk job did not process it", Refusal.RETRY
    )


class BulkJobs:
    """One CRM's bulk jobs: started for a large backlog, followed to their results."""

    def __init__(
        self,
        context: Context,
        crm: BulkWriting,
        threshold: int,
        store: Store,
        delete: Callable[[Sequence[str]], Sequence[RecordOutcome]],
        *,
        cases: bool = False,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = context.db
        self.crm_name = context.crm_name
        self.crm = crm
        self.threshold = threshold
        self.store = store  # stores answers as the writer stores a batch's
        self.delete = delete  # the CRM's delete_history
        self.cases = cases
        self.clock = context.clock
        self.retrying = context.retrying
        self.monotonic = monotonic
        self.stopping = context.stopping
        # Job row → (when it may be asked about next, the wait after that).
        self._next: dict[int, tuple[float, float]] = {}

    def run(self, at_least: int | None = None) -> int:
        """Follow the open jobs, then start one per target whose backlog is large enough
        (``at_least`` records, else the threshold). Returns how many records' answers were
        stored."""
        stored = 0
        with self.db.connect() as conn:
            jobs = state.open_jobs(conn, self.crm_name)
        for job in jobs:
            try:
                stored += self._follow(job)
            except ExternalError as exc:  # asked again on the next run
                log.warning("bulk job %s (%s): %s", job.job_id, job.target, exc)
        if any(j.state == state.SENT for j in jobs):
            return stored  # one job at a time: the next waits for this one's answers
        for target in self.crm.bulk_targets:
            self._start(target, at_least or self.threshold)
        return stored

    def drain(self) -> int:
        """Wait for the open jobs' answers (a run that writes everything: ``syncd poll
        --once``, a backfill's last round); returns how many records' answers were stored.
        Ends early on shutdown: the jobs are followed on the next start."""
        stored = 0
        while not self.stopping.is_set():
            with self.db.connect() as conn:
                jobs = state.open_jobs(conn, self.crm_name)
            if not jobs:
                break
            due = min(self._next.get(j.id, (0.0, FIRST_LOOK))[0] for j in jobs)
            self.stopping.wait(max(0.0, due - self.monotonic()))
            stored += self.run()
        return stored

    def _follow(self, job: state.Job) -> int:
        now = self.monotonic()
        due, wait = self._next.get(job.id, (0.0, FIRST_LOOK))
        if now < due:
            return 0
        self._next[job.id] = (now + wait, min(2 * wait, POLL_EVERY))
        progress = self.retrying(partial(self.crm.bulk_progress, job.job_id, job.target))
        if progress.unsent:
            # Stopped before the records were sent and the job closed: another job sends them.
            self.retrying(partial(self.crm.abort_bulk, job.job_id, job.target))
            with self.db.transaction() as conn:
                state.release(conn, job)
                state.mark(conn, job, state.ABANDONED, self.clock(), "never sent: aborted")
            log.info("bulk job %s (%s) was never sent: aborted", job.job_id, job.target)
            return 0
        if job.state == state.MADE:
            with self.db.transaction() as conn:
                state.mark(conn, job, state.SENT, self.clock())
        if not progress.done:
            return 0
        answers = self.retrying(partial(self.crm.bulk_results, job.job_id, job.target))
        # A page at a time: a job's records would not all fit in memory at once. A page
        # stored before a stop is not read again (only pending deliveries are).
        stored = written = 0
        after = 0
        seen: set[str] = set()
        while page := self._page(job, after):
            after = page[-1].delivery_id
            keys = [build_record(d).external_id for d in page]
            seen.update(keys)
            results = [answers.get(key) or not_processed(key) for key in keys]
            self.store(page, results)
            stored += len(results)
            written += sum(a.ok for a in results)
        self._forgotten_meanwhile(job, answers, seen)
        with self.db.transaction() as conn:
            state.release(conn, job)
            state.mark(conn, job, state.DONE, self.clock(), progress.error)
        self._next.pop(job.id, None)
        log.info(
            "bulk job %s (%s): %d of %d records written", job.job_id, job.target, written, stored
        )
        return stored

    def _forgotten_meanwhile(
        self, job: state.Job, answers: Mapping[str, WriteResult], seen: set[str]
    ) -> None:
        """Records the job wrote for posts state no longer holds: their person was forgotten
        (``syncd forget``) while the job ran, and nothing names the records but the job's
        answers. They are deleted now; a delete the CRM refuses is logged with the ids."""
        # Written, not in this run's pages: stored before a stop (held), or forgotten.
        rest = {k: a.crm_id for k, a in answers.items() if a.ok and a.crm_id and k not in seen}
        if not rest:
            return
        with self.db.connect() as conn:
            gone = state.unknown_posts(conn, list(rest))
        ids = [rest[k] for k in gone if rest[k]]
        if not ids:
            return
        try:
            outcomes = self.retrying(partial(self.delete, ids))
        except ExternalError as exc:
            log.error(
                "bulk job %s wrote %d record(s) for people forgotten meanwhile and they could "
                "not be deleted (%s): delete %s in the CRM",
                job.job_id,
                len(ids),
                exc,
                ", ".join(i for i in ids if i),
            )
            return
        refused = [o.record_id for o in outcomes if not o.ok]
        if refused:
            log.error(
                "the CRM refused to delete %d record(s) written for people forgotten meanwhile:"
                " delete %s in the CRM",
                len(refused),
                ", ".join(refused),
            )
        log.info("bulk job %s: deleted %d record(s) of people forgotten meanwhile", job.job_id,
                 len(ids) - len(refused))  # fmt: skip

    def _page(self, job: state.Job, after: int) -> list[outbox.ReadyDelivery]:
        with self.db.connect() as conn:
            return state.held(conn, job, after, PAGE)

    def _records(self, job: state.Job, handed: list[int]) -> Iterator[HistoryRecord]:
        """The job's records, a page of deliveries read at a time; ``handed`` collects
        the deliveries whose record was taken, in order."""
        after = 0
        while page := self._page(job, after):
            after = page[-1].delivery_id
            for d in page:
                handed.append(d.delivery_id)
                yield build_record(d)

    def _start(self, target: str, threshold: int) -> None:
        now = self.clock()
        with self.db.connect() as conn:
            if state.ready_count(conn, self.crm_name, target, now) < threshold:
                return
            ids = outbox.ready_ids(
                conn, self.crm_name, now, MAX_RECORDS, target=target, cases=self.cases
            )
        if len(ids) < threshold:
            return  # the backlog is mostly held authors': batches take the rest
        job_id = self.retrying(partial(self.crm.start_bulk, target))
        with self.db.transaction() as conn:
            job = state.store_job(conn, self.crm_name, target, job_id, ids, now)
        # Not retried: a send that failed after the CRM took the records could not be sent
        # again to the same job. The job stays "made"; the next run aborts it and frees them.
        handed: list[int] = []
        sent = self.crm.send_bulk(job_id, target, self._records(job, handed))
        with self.db.transaction() as conn:
            # What one upload could not hold goes back to the batches (or the next job).
            state.release_after(conn, job, handed[sent - 1] if sent else 0)
            state.mark(conn, job, state.SENT, self.clock())
        self._next[job.id] = (self.monotonic() + FIRST_LOOK, 2 * FIRST_LOOK)
        log.info("bulk job %s (%s): %d records sent", job_id, target, sent)
