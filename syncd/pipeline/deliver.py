"""Delivering: ready deliveries written to the CRM in batches, and the CRM's answers stored.

What a refused record means (try again, re-resolve its author, or dead-letter it) is the CRM
connector's to say (:class:`~syncd.model.Refusal`); the writer acts on it. Network calls never
happen inside a database transaction, so a slow CRM never holds a lock.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from syncd.compliance import deleted as compliance
from syncd.contracts import BulkWriting, CaseFiling, Crm, Source
from syncd.errors import AuthError, ExternalError, PartialWrite, RateLimited, TransientError
from syncd.model import CrmRef, Refusal, WriteResult
from syncd.pipeline.bulk import MAX_RECORDS, BulkJobs
from syncd.pipeline.context import Context
from syncd.pipeline.history import build_record
from syncd.state import crm_keys, linking, outbox, privacy, suppression
from syncd.state.coordination import owner_id, retry_conflicts, shared

log = logging.getLogger("syncd.pipeline")

PREFETCH_BATCHES = 25  # write batches read from the outbox at once (SQLite)
# Write batches whose answers are stored in one transaction. Each store waits its turn for
# the database's one writer; per batch of 200, the backfill's writer waited on the page
# fetcher most of its time. A crash loses only the note of what was written: the records
# are upserts on their external ids, and are sent again.
STORE_BATCHES = 5
# Write batches claimed at once on PostgreSQL, where several instances write: one store's
# worth, so a claim ends in the one transaction that stores its answers. Fewer than
# PREFETCH_BATCHES: a claim must be written well within the lease (5 CRM calls, seconds,
# against the default 60 s), and a backlog is shared out in bites the other instances can
# take beside it; re-sorting the ready set per 5 batches is cheap on PostgreSQL's indexes.
CLAIM_BATCHES = STORE_BATCHES
# Write batches handed to the CRM in one upsert_history call: a CRM that writes several
# targets whose writes depend on each other (Salesforce: SocialPersonas, then the
# SocialPosts naming them) overlaps one batch's later steps with the next one's earlier
# ones, in fewer calls than batch by batch. What a call answered before a part of it failed
# is kept (PartialWrite), and only the rest is sent again.
CALL_BATCHES = STORE_BATCHES

# How far back a claim looks for replies another writer noted waiting while this one stored
# the posts they answer (see Writer._take): the two stores overlap by a transaction's length;
# a minute also covers hosts' clocks apart by less.
REPLY_RACE = timedelta(minutes=1)


@dataclass(frozen=True)
class _Answered:
    """A batch written to the CRM, with its answers, and where each person the CRM said was
    gone went (None: deleted)."""

    ready: Sequence[outbox.ReadyDelivery]
    answers: Sequence[WriteResult]
    moved: Mapping[CrmRef, CrmRef | None]
    relink: bool  # some person was gone: links change once the answers are stored


@dataclass
class DeliverResult:
    attempted: int = 0
    written: int = 0
    retrying: int = 0
    dead: int = 0
    relinking: int = 0


def _batches(
    ready: Sequence[outbox.ReadyDelivery], size: int
) -> list[Sequence[outbox.ReadyDelivery]]:
    """Write batches of up to ``size`` deliveries of each history target, oldest first: the
    n-th batch holds each target's n-th ``size``, so an interaction's records of every
    target travel together (a CRM writes each target to its own object, and may carry
    several objects' writes in one call)."""
    batches: list[list[outbox.ReadyDelivery]] = []
    taken: dict[str, int] = {}  # deliveries of each target placed so far
    for d in ready:
        n = taken[d.target] = taken.get(d.target, 0) + 1
        while len(batches) < -(-n // size):
            batches.append([])
        batches[(n - 1) // size].append(d)
    return list(batches)


class Writer:
    """Takes ready deliveries, writes them to one CRM in batches, stores the CRM's answers,
    and deletes what was written for someone forgotten meanwhile."""

    def __init__(self, context: Context, crm: Crm) -> None:
        self.db = context.db
        self.crm_name = context.crm_name
        self.crm = crm
        self.settings = context.settings
        self.clock = context.clock
        self.stopping = context.stopping
        self.retrying = context.retrying
        # On PostgreSQL several instances write; each claims what it writes, as this process.
        self.claims = shared(self.db.dialect)
        self.owner = owner_id()
        # The CRM works conversations as cases: only deliveries whose case is decided
        # (syncd.pipeline.cases) are written.
        self.cases = isinstance(crm, CaseFiling) and crm.case_policy is not None
        # The sources a delivery's post is looked up on before its write (set by the app).
        self.sources: Mapping[str, Source] = {}
        self._unchecked: set[str] = set()  # sources failing those look-ups (said once)
        # A large backlog of a target the CRM writes in bulk jobs goes there (its own
        # module: a job lives across runs).
        self.bulk: BulkJobs | None = None
        self._bulk_result = DeliverResult()  # where a run's bulk answers are counted
        # Set by a large backfill while it fetches: its records wait for bulk jobs of the
        # most one job takes, rather than going out in batches as they come.
        self.bulk_first = False
        if isinstance(crm, BulkWriting) and self.settings.bulk_threshold > 0:
            self.bulk = BulkJobs(
                context,
                crm,
                self.settings.bulk_threshold,
                self._store_bulk,
                crm.delete_history,
                cases=self.cases,
            )
        # A process of this host that died holding claims (killed mid-batch) is seen on the
        # first claim: its deliveries are taken now, not after its lease. Once is enough:
        # a death later is rare and its lease lapses anyway.
        self._swept = False

    def deliver(self, max_batches: int | None = None) -> DeliverResult:
        """Drain ready deliveries to the CRM in batches, oldest first."""
        result = DeliverResult()
        self._bulk_result = result
        # Read once a run: a backfill ending (bulk_first cleared by another thread) must not
        # turn this run's batches onto the records its last round sends as a job.
        bulk_first = self.bulk_first
        skip = self._for_bulk(bulk_first)
        if self.bulk is not None and not self.stopping.is_set():
            self.bulk.run(at_least=MAX_RECORDS if bulk_first else None)
        batches = 0
        size = self.settings.write_batch
        waited = False
        while (max_batches is None or batches < max_batches) and not self.stopping.is_set():
            room = None if max_batches is None else max_batches - batches
            # Read before the take: a forget from now on is seen when the answers are stored.
            since = self._forgets()
            ready = self._take(size, room, skip)
            if not ready:
                break
            # A bounded run (the daemon's) holds back a partial call while its records are
            # newly queued, once: a run writing everything (poll --once, a backfill) never
            # waits.
            if max_batches is not None and not waited and (pause := self._young(ready)) > 0:
                waited = True
                if self.claims:
                    self._release(ready)
                if self.stopping.wait(pause):
                    break
                continue
            chunks = _batches(ready, size)
            if room is not None:
                chunks = chunks[:room]
            done = 0
            try:
                done = self._write_batches(chunks, result, since=since)
            finally:
                if self.claims and done < len(chunks):
                    # Stopping, a failure, or links changed under the rest: what was not
                    # stored is handed back for others to take now, not after the lease.
                    self._release(ready)
            batches += done
        if max_batches is None and self.bulk is not None:
            # A run that writes everything waits for its bulk jobs' answers too.
            self.bulk.drain()
        return result

    def _take(
        self, size: int, room: int | None, skip: tuple[str, ...] = ()
    ) -> list[outbox.ReadyDelivery]:
        """The next deliveries to write: read (SQLite), or claimed for this process."""
        now = self.clock()
        if not self.claims:
            # Read several batches at once: ordering the ready set oldest first costs one
            # sort of it per read, which per batch of 200 made a large backlog quadratic.
            with self.db.connect() as conn:
                return outbox.ready_deliveries(
                    conn,
                    self.crm_name,
                    now,
                    size * PREFETCH_BATCHES,
                    cases=self.cases,
                    skip_targets=skip,
                )
        limit = size * min(CLAIM_BATCHES, room or CLAIM_BATCHES)
        until = now + timedelta(seconds=self.settings.lease)
        with self.db.transaction() as conn:
            if not self._swept:
                self._swept = True
                if freed := outbox.release_dead_claims(conn, now):
                    log.info("took over %d deliveries claimed by a process that died", freed)
            # Another writer's store of the posts they answer may have run beside the one
            # that noted these waiting, each blind to the other's uncommitted rows.
            outbox.rewrite_answered(conn, now, written_since=now - REPLY_RACE)
            return outbox.claim(
                conn,
                self.crm_name,
                now,
                limit,
                self.owner,
                until,
                cases=self.cases,
                skip_targets=skip,
            )

    def _young(self, ready: Sequence[outbox.ReadyDelivery]) -> float:
        """Seconds to wait for more records before writing ``ready``: while it is less than
        one CRM call carries (:data:`CALL_BATCHES` full batches) and its oldest record was
        queued less than ``batch_wait`` ago, until it was queued that long ago. A busy
        stream's records then go out in full calls rather than a call per poll, and no
        record is held past ``batch_wait`` from its queueing. Timed from the queueing, on
        this host's clock, not from the post: a post reaches the writer a poll interval or
        more after it was made, so a wait timed from it would seldom hold anything, and a
        network's clock or its whole-second stamps would decide it."""
        wait = self.settings.batch_wait
        if wait <= 0 or len(ready) >= self.settings.write_batch * CALL_BATCHES:
            return 0.0
        oldest = min(d.queued_at or d.created_at for d in ready)
        age = (self.clock() - oldest).total_seconds()
        return min(wait, max(0.0, wait - age))

    def _for_bulk(self, bulk_first: bool) -> tuple[str, ...]:
        """The targets batches leave to bulk jobs (see :attr:`bulk_first`)."""
        if bulk_first and isinstance(self.crm, BulkWriting):
            return tuple(self.crm.bulk_targets)
        return ()

    def _release(self, ready: Sequence[outbox.ReadyDelivery]) -> None:
        try:
            with self.db.transaction() as conn:
                outbox.release(conn, [d.delivery_id for d in ready], self.owner)
        except Exception:  # harmless: the claims lapse with the lease instead
            log.debug("claimed deliveries not handed back", exc_info=True)

    def _forgets(self) -> int:
        with self.db.connect() as conn:
            return suppression.generation(conn)

    def _write_batches(
        self,
        chunks: Sequence[Sequence[outbox.ReadyDelivery]],
        result: DeliverResult,
        *,
        since: int | None = None,
    ) -> int:
        """Write batches in order, :data:`CALL_BATCHES` to a CRM call, storing their answers
        after each call; stop early on shutdown, or when links changed under the rest (the
        caller reads again). Returns how many were written."""
        answered: list[_Answered] = []  # written to the CRM, not yet stored
        done = 0
        # A target the CRM failed to take (its object missing, a call failing past its
        # retries) holds back no other target: their records go on, the failed target's are
        # left out of the next calls, and the first failure is raised once they are written.
        failures: dict[str, ExternalError] = {}
        targets = {d.target for chunk in chunks for d in chunk}
        try:
            for start in range(0, len(chunks), CALL_BATCHES):
                if self.stopping.is_set():
                    break
                group = chunks[start : start + CALL_BATCHES]
                batch = [d for chunk in group for d in chunk if d.target not in failures]
                if not batch:
                    continue
                try:
                    written, failed = self._write_batch(batch)
                except ExternalError as exc:
                    written, failed = None, dict.fromkeys({d.target for d in batch}, exc)
                if written is not None:
                    answered.append(written)
                    done += len(group) if not failed else 0
                for target, error in failed.items():
                    failures.setdefault(target, error)
                    log.warning("%s history not written this round: %s", target, error)
                # Refused credentials or a rate limit stop the CRM as a whole.
                stop: list[ExternalError] = [
                    e for e in failed.values() if isinstance(e, AuthError | RateLimited)
                ]
                if stop or (failed and failures.keys() >= targets):
                    raise (stop or list(failed.values()))[0]
                stored, answered = answered, []
                self._store_answers(stored, result, since=since)
                if written is not None and written.relink:
                    break
        finally:
            # Also when a later call failed: what the CRM took is noted, not sent again.
            self._store_answers(answered, result, since=since)
        if failures:
            raise next(iter(failures.values()))
        return done

    def _write_batch(
        self, ready: Sequence[outbox.ReadyDelivery]
    ) -> tuple[_Answered, dict[str, ExternalError]]:
        """Write one batch; its answers, where the people gone from the CRM went, and the
        targets the CRM failed to take (their records unanswered, left out of the answers).
        Raises when nothing was answered."""
        ready = self._still_posted(ready)
        if not ready:
            return _Answered((), (), {}, False), {}
        records = [build_record(d) for d in ready]
        answers: list[WriteResult | None] = [None] * len(records)
        failed: dict[str, ExternalError] = {}

        def write() -> None:
            # Safe to retry: every record is an upsert on its external id. Only what is
            # still unanswered goes again.
            todo = [i for i, a in enumerate(answers) if a is None]
            failed.clear()
            partial_write: PartialWrite | None = None
            try:
                got: Sequence[WriteResult | None] = self.crm.upsert_history(
                    [records[i] for i in todo]
                )
            except PartialWrite as exc:
                got, partial_write = exc.results, exc
                failed.update(exc.failures)
            if len(got) != len(todo):
                raise RuntimeError(f"CRM returned {len(got)} results for {len(todo)} records")
            for i, a in zip(todo, got, strict=True):
                answers[i] = a
            if partial_write is not None and partial_write.transient:
                raise TransientError(
                    str(partial_write), system=partial_write.system, status=partial_write.status
                )

        try:
            self.retrying(write)
        except ExternalError as exc:
            if not any(a is not None for a in answers) or isinstance(exc, AuthError | RateLimited):
                raise
            # Some targets answered before the rest failed past their retries.
            pending = {records[i].target for i, a in enumerate(answers) if a is None}
            failed = {t: failed.get(t, exc) for t in pending}
        pairs = [(d, a) for d, a in zip(ready, answers, strict=True) if a is not None]
        return self._answered([d for d, _ in pairs], [a for _, a in pairs]), failed

    def _answered(
        self, ready: Sequence[outbox.ReadyDelivery], answers: Sequence[WriteResult]
    ) -> _Answered:
        # A record whose person was merged away follows the survivor; the look-up is a
        # network call, so it is made before the transaction that stores the answers.
        gone = {
            d.who
            for d, a in zip(ready, answers, strict=True)
            if not a.ok and a.refusal is Refusal.GONE
        }
        moved = self.retrying(partial(self.crm.survivors, sorted(gone, key=str))) if gone else {}
        return _Answered(ready, answers, moved, bool(gone))

    def _store_bulk(
        self, ready: Sequence[outbox.ReadyDelivery], answers: Sequence[WriteResult]
    ) -> None:
        """A bulk job's answers, stored as a batch's are (no claims: the job held them)."""
        self._store_answers([self._answered(ready, answers)], self._bulk_result, owned=False)

    def _still_posted(
        self, ready: Sequence[outbox.ReadyDelivery]
    ) -> Sequence[outbox.ReadyDelivery]:
        """The batch without the deliveries whose post was deleted on its network while they
        waited (held authors, a backlog): those are never written. Only posts last seen
        standing over ``check_before_write`` ago are asked about, in their source's batches."""
        age = self.settings.check_before_write
        if age is None or not self.sources or not ready:
            return ready
        now = self.clock()
        skip = compliance.before_write(
            self.db,
            self.sources,
            [d.delivery_id for d in ready],
            seen_before=now - age,
            now=now,
            owner=self.owner if self.claims else None,
            failing=self._unchecked,
        )
        return [d for d in ready if d.delivery_id not in skip] if skip else ready

    def _store_answers(
        self,
        answered: Sequence[_Answered],
        result: DeliverResult,
        *,
        since: int | None = None,
        owned: bool = True,
    ) -> None:
        """Store the answers to written batches, in one transaction. Only the last batch
        may have met people gone from the CRM (the writer stores as soon as one does).
        ``since``: the count of forgets before the batches were read; when someone was
        forgotten meanwhile, records written for them are deleted here (see
        :func:`syncd.state.privacy.after_write`)."""
        if not answered:
            return
        now = self.clock()
        written: list[tuple[int, str | None]] = []
        sent: list[tuple[int, str | None, str]] = []  # written, with the text written
        orphans: list[str] = []  # records written for someone forgotten meanwhile
        # Each refusal with its code, message, when it is due again (None: dead letter), and
        # whether it counts as an attempt (a person gone does not: the record was fine).
        failed: list[tuple[int, str | None, str, datetime | None, bool]] = []
        gone: list[int] = []
        personas: list[tuple[int, str, str]] = []  # (identity, persona, its parent)
        awaiting: list[int] = []  # written without the record of the post they answer
        follow: dict[CrmRef, CrmRef] = {}
        moved = {k: v for batch in answered for k, v in batch.moved.items()}
        for d, a in ((d, a) for b in answered for d, a in zip(b.ready, b.answers, strict=True)):
            result.attempted += 1
            if a.ok:
                written.append((d.delivery_id, a.crm_id))
                sent.append((d.delivery_id, a.crm_id, d.text))
                if a.persona_id is not None and a.persona_id != d.persona_id:
                    personas.append((d.identity_id, a.persona_id, d.who.id))
                if a.awaits_reply_to:
                    awaiting.append(d.delivery_id)
                continue
            message = a.error_message or "unknown error"
            retry_at: datetime | None = None  # None: dead letter
            if a.refusal is Refusal.GONE:
                # Due at once: written to the survivor of a merge on the next batch, or,
                # when the person was deleted, once the author is linked again.
                survivor = moved.get(d.who)
                if survivor is not None:
                    follow[d.who] = survivor
                else:
                    gone.append(d.identity_id)
                retry_at = now
                result.relinking += 1
            elif a.refusal is Refusal.RETRY and d.attempts + 1 < self.settings.record_max_attempts:
                retry_at = now + timedelta(seconds=min(30 * 2**d.attempts, 3600))
                result.retrying += 1
            else:
                result.dead += 1
                log.warning(
                    "dead-lettered %s:%s: %s %s", d.network, d.post_id, a.error_code, message
                )
            failed.append(
                (d.delivery_id, a.error_code, message, retry_at, a.refusal is not Refusal.GONE)
            )
        # A bulk job's deliveries were held by the job, not claimed (owned=False).
        owner = self.owner if self.claims and owned else None

        def store() -> None:
            with self.db.transaction() as conn:
                # In id order, as mark_written goes: writers never wait on each other in
                # opposite orders.
                for delivery_id, code, message, retry_at, counted in sorted(
                    failed, key=lambda f: f[0]
                ):
                    outbox.mark_failed(
                        conn,
                        delivery_id,
                        code=code,
                        message=message,
                        now=now,
                        retry_at=retry_at,
                        counted=counted,
                        owner=owner,
                    )
                outbox.mark_written(conn, written, now, owner)
                outbox.remember_personas(conn, self.crm_name, personas)
                outbox.await_replies(conn, awaiting)
                # Answers written before the posts they answer: again, now with them.
                outbox.rewrite_replies(conn, (d for d, _ in written), now)
                # Answers read before an earlier call's store wrote the posts they answer.
                outbox.rewrite_answered(conn, now, ids=awaiting)
                if since is not None and suppression.generation(conn) != since:
                    orphans[:] = privacy.after_write(conn, sent, now)
                linking.follow(conn, self.crm_name, follow.items(), now)
                # The resolver's copy of ids and handles must not link anyone to them again.
                crm_keys.forget(conn, self.crm_name, (ref.id for ref in moved))
                linking.unlink(
                    conn, self.crm_name, gone, "writer", now, note="the CRM record was deleted"
                )

        retry_conflicts(store)  # nothing outside the database happens in it: safe to redo
        result.written += len(written)
        if orphans:
            self._delete_forgotten(orphans)

    def _delete_forgotten(self, record_ids: Sequence[str]) -> None:
        """Delete records just written for people forgotten while they were being written:
        ``syncd forget`` may already have returned (it waits for claims it can see, not for
        a writer past its lease, nor on SQLite, where nothing is claimed)."""
        try:
            outcomes = self.retrying(partial(self.crm.delete_history, record_ids))
        except ExternalError as exc:
            log.error(
                "%d record(s) written for a person forgotten meanwhile could not be deleted"
                " (%s): delete %s in the CRM",
                len(record_ids),
                exc,
                ", ".join(record_ids),
            )
            return
        refused = [o.record_id for o in outcomes if not o.ok]
        if refused:
            log.error(
                "the CRM refused to delete %d record(s) written for a person forgotten"
                " meanwhile: delete %s in the CRM",
                len(refused),
                ", ".join(refused),
            )
        if done := len(record_ids) - len(refused):
            log.info("deleted %d record(s) written for a person forgotten meanwhile", done)
