"""Ingest and deliver: the two halves of the flow, each a loop around one transaction.

The pipeline owns state, retries and pacing; connectors only translate. Network calls never
happen inside a database transaction, so a slow API never holds a lock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import NoReturn, TypeVar

from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_when_event_set,
    wait_random_exponential,
)

from syncd.compliance import deleted as compliance
from syncd.contracts import Crm, KnownAuthors, Source, Starting
from syncd.errors import (
    ExternalError,
    MalformedAnswer,
    PaginationLoop,
    StreamParked,
    TransientError,
)
from syncd.model import Account, CrmRef, Cursor, Page, Stream, WriteResult
from syncd.pipeline.history import build_record
from syncd.resolver import stage
from syncd.resolver.stage import ResolveResult, ResolveSettings
from syncd.state import crm_keys, linking, outbox, privacy, profiles, suppression, usage, walks
from syncd.state import ingest as st
from syncd.state.coordination import owner_id, retry_conflicts, shared
from syncd.state.db import Database
from syncd.state.horizon import first_start

log = logging.getLogger("syncd.pipeline")

T = TypeVar("T")
Clock = Callable[[], datetime]

# Per-record CRM errors worth another try later; anything else unknown is dead-lettered.
RETRYABLE_RECORD_ERRORS = frozenset(
    {
        "UNABLE_TO_LOCK_ROW",
        "REQUEST_RUNNING_TOO_LONG",
        "SERVER_UNAVAILABLE",
        "API_TEMPORARILY_UNAVAILABLE",
    }
)
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
# The person the record points at is gone: resolve the author again instead of failing.
GONE_RECORD_ERRORS = frozenset({"ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY"})


def utcnow() -> datetime:
    return datetime.now(UTC)


def _counted(attempts: list[int], call: Callable[[], T]) -> T:
    attempts[0] += 1
    return call()


@dataclass(frozen=True)
class PipelineSettings:
    retries: int = 3  # extra attempts for a transient failure of an idempotent call
    retry_max_wait: float = 10.0  # seconds, cap of the jittered exponential backoff
    write_batch: int = 200  # records per CRM upsert call
    # Matchers, thresholds, the unmatched policy, the resolution back-off.
    resolve: ResolveSettings = field(default_factory=ResolveSettings)
    record_max_attempts: int = 8  # per-record retryable errors before the dead letter
    lease: float = 60.0  # seconds a claim on deliveries lasts (PostgreSQL, several instances)
    # A stored author profile younger than this is not read from the network again.
    profile_max_age: timedelta = timedelta(days=7)
    # Pages one poll of a stream reads at most ([daemon] max_pages_per_walk): X's deepest
    # timeline walk is 32 pages (3,200 posts, 100 a page), so only an API or proxy that
    # never ends a walk meets it; the walk goes on from its stored cursor next poll.
    max_pages_per_walk: int = 100
    # A delivery whose post was last seen standing longer ago than this is looked up on its
    # network before its write ([compliance] before_write; None: never), see
    # syncd.compliance.deleted.before_write.
    check_before_write: timedelta | None = None


@dataclass
class PollResult:
    pages: int = 0
    seen: int = 0
    new: int = 0
    queued: int = 0
    quarantined: int = 0
    warnings: list[str] = field(default_factory=list)
    stopped: str | None = None  # why the poll left its walk before the end (the page bound)


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


class Pipeline:
    def __init__(
        self,
        db: Database,
        crm_name: str,
        crm: Crm,
        settings: PipelineSettings | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self.db = db
        self.crm_name = crm_name
        self.crm = crm
        self.settings = settings or PipelineSettings()
        self.clock = clock
        # On PostgreSQL several instances write; each claims what it writes, as this process.
        self.claims = shared(db.dialect)
        self.owner = owner_id()
        # Set on shutdown: loops stop between pages and batches. Each page and batch is its
        # own transaction, so what was done is kept and the next start resumes from there.
        self.stopping = threading.Event()
        # The sources a delivery's post is looked up on before its write (set by the app).
        self.sources: Mapping[str, Source] = {}
        self._unchecked: set[str] = set()  # sources failing those look-ups (said once)

    # -- helpers -------------------------------------------------------------------------
    def _pause(self, seconds: float) -> None:
        self.stopping.wait(seconds)

    def retrying(self, call: Callable[[], T]) -> T:
        """Run an idempotent call, retrying transient failures with jittered backoff."""
        for attempt in Retrying(
            retry=retry_if_exception_type(TransientError),
            # Shutdown ends the back-off at once: a stopping daemon must not sit in a sleep.
            stop=stop_after_attempt(self.settings.retries + 1) | stop_when_event_set(self.stopping),
            wait=wait_random_exponential(multiplier=0.5, max=self.settings.retry_max_wait),
            sleep=self._pause,
            reraise=True,
        ):
            with attempt:
                return call()
        raise AssertionError("unreachable")  # pragma: no cover

    def known_authors(self, network: str) -> KnownAuthors:
        """Authors whose profiles state holds: a source reads only the others."""
        return profiles.known_authors(self.db, network, self.settings.profile_max_age, self.clock)

    # -- accounts ------------------------------------------------------------------------
    def accounts(
        self, source_name: str, source: Source, handles: Sequence[str]
    ) -> tuple[list[Account], list[str]]:
        """Brand accounts with their immutable ids (looked up once, then read from state),
        and the handles the network does not know."""
        with self.db.transaction() as conn:
            known = st.stored_accounts(conn, source_name)
        missing = [h for h in handles if h.lower() not in known]
        if missing:
            found = self.retrying(lambda: source.resolve_accounts(missing))
            with self.db.transaction() as conn:
                st.store_accounts(conn, source_name, found.values(), self.clock())
                known = st.stored_accounts(conn, source_name)
        return (
            [known[h.lower()] for h in handles if h.lower() in known],
            [h for h in handles if h.lower() not in known],
        )

    # -- ingest --------------------------------------------------------------------------
    def poll(
        self, source_name: str, source: Source, account: Account, stream: Stream
    ) -> PollResult:
        """Walk ``stream`` from the stored cursor to its end, one transaction per page, at
        most ``max_pages_per_walk`` pages (the walk goes on from there next poll). A page
        token met twice in the walk stops it with :class:`PaginationLoop`; a stream whose
        answers keep being unreadable is parked (:class:`StreamParked`)."""
        result = PollResult()
        with self.db.transaction() as conn:
            why = walks.parked_reason(conn, source_name, account.handle, stream)
            cursor = st.load_cursor(conn, source_name, account.handle, stream)
            if cursor.since_id is None and not cursor.in_walk and isinstance(source, Starting):
                # A first walk reads back to the configured start, kept should it be cut.
                now = self.clock()
                first = source.start_after(now)
                cursor = first_start(conn, source_name, account.handle, stream, first, now)
            # Brand accounts do not change during a walk: read once, not once per page.
            brand_ids = st.brand_user_ids(conn, source.network)
        if why is not None:
            name = walks.stream_name(source_name, account.handle, stream)
            raise StreamParked(
                f"{name} is parked ({why}); `syncd resume {name}` polls it again",
                name=name,
                system=source.network,
            )
        known = self.known_authors(source.network)
        restarted = False
        # A walk that went on from an earlier poll's token, or whose page needed a retry,
        # paused while posts kept arriving: its end is judged a suspected gap (horizon).
        stalled = cursor.in_walk
        attempts = [0]
        # Tokens this walk followed: one coming back would read the same pages again, billed,
        # for as long as the API (or a proxy) keeps sending it.
        followed = {cursor.pagination_token} - {None}
        while True:
            fetch = partial(self._fetch, source_name, source, account, stream, cursor, known)
            attempts[0] = 0
            try:
                page = self.retrying(partial(_counted, attempts, fetch))
            except ExternalError as exc:
                # A stored pagination token can expire; start the walk again from since_id.
                if exc.status == 400 and cursor.in_walk and not restarted:
                    log.warning(
                        "%s/%s/%s: pagination token refused, restarting the walk",
                        source_name,
                        account.handle,
                        stream,
                    )
                    with self.db.transaction() as conn:
                        st.reset_walk(conn, source_name, account.handle, stream, self.clock())
                        cursor = st.load_cursor(conn, source_name, account.handle, stream)
                    restarted = True
                    followed.clear()
                    stalled = False  # the walk starts again from since_id, all of it in reach
                    continue
                raise
            stalled = stalled or (attempts[0] > 1 and cursor.in_walk)  # not before page one
            token = page.next_cursor.pagination_token
            if token is not None and token in followed:
                self._loop(source_name, source, account, stream, page, brand_ids, result)
            stopped = None
            if not page.walk_complete and result.pages + 1 >= self.settings.max_pages_per_walk:
                stopped = (
                    f"walk stopped after {result.pages + 1} pages ([daemon] "
                    "max_pages_per_walk); it goes on from there next poll"
                )
            with self.db.transaction() as conn:
                stored = st.ingest_page(
                    conn,
                    source=source_name,
                    network=source.network,
                    account=account,
                    stream=stream,
                    page=page,
                    crms=[self.crm_name],
                    brand_ids=brand_ids,
                    now=self.clock(),
                    stalled=stalled,
                )
                usage.count(conn, source_name, source.network, page.reads, self.clock())
                walks.page_stored(conn, source_name, account.handle, stream, stopped)
            result.pages += 1
            result.seen += stored.seen
            result.new += stored.new
            result.queued += stored.queued
            result.quarantined += stored.quarantined
            result.warnings.extend(page.warnings)
            if stopped is not None:
                log.warning("%s/%s/%s: %s", source_name, account.handle, stream, stopped)
                result.stopped = stopped
                return result
            if page.walk_complete or self.stopping.is_set():
                return result
            cursor = page.next_cursor
            if token is not None:
                followed.add(token)

    def _fetch(
        self,
        source_name: str,
        source: Source,
        account: Account,
        stream: Stream,
        cursor: Cursor,
        known: KnownAuthors,
    ) -> Page:
        """One page; an unreadable answer is counted on the stream, which is parked when
        :data:`~syncd.state.walks.UNREADABLE_TO_PARK` came in a row (not retried then)."""
        try:
            return source.fetch(account, stream, cursor, known)
        except MalformedAnswer as exc:
            name = walks.stream_name(source_name, account.handle, stream)
            handle, now = account.handle, self.clock()
            with self.db.transaction() as conn:
                n = walks.count_unreadable(conn, source_name, handle, stream, now)
                reason = f"{n} unreadable answers in a row, the last: {exc}"
                if n >= walks.UNREADABLE_TO_PARK:
                    walks.park_stream(conn, source_name, handle, stream, reason, now)
            if n < walks.UNREADABLE_TO_PARK:
                raise  # counted (committed); retried, or tried again next poll
            raise StreamParked(
                f"{name} parked: {reason}; `syncd resume {name}` polls it again",
                name=name,
                system=source.network,
            ) from None

    def _loop(
        self,
        source_name: str,
        source: Source,
        account: Account,
        stream: Stream,
        page: Page,
        brand_ids: set[str],
        result: PollResult,
    ) -> NoReturn:
        """The page sent back a token this walk already followed: its posts are kept, the
        cursor stays where it was (nothing after it is skipped: the walk takes up there once
        the API answers sanely), and the walk stops with the error."""
        with self.db.transaction() as conn:
            stored = st.store_page(
                conn,
                source=source_name,
                network=source.network,
                account=account,
                page=page,
                crms=[self.crm_name],
                brand_ids=brand_ids,
                now=self.clock(),
            )
            usage.count(conn, source_name, source.network, page.reads, self.clock())
        result.seen += stored.seen
        result.new += stored.new
        result.queued += stored.queued
        raise PaginationLoop(
            f"the API sent a page token this walk already followed (after {result.pages + 1} "
            "pages): the walk stops at the page before, and is taken up there next poll",
            system=source.network,
        )

    def record_poll_error(self, source_name: str, account: str, stream: Stream, error: str) -> None:
        with self.db.transaction() as conn:
            st.record_poll_error(conn, source_name, account, stream, error, self.clock())

    # -- resolve -------------------------------------------------------------------------
    def resolve(
        self, gather: timedelta = timedelta(0), *, check_crm: bool | None = None
    ) -> ResolveResult:
        """Offer held authors to the resolver chain, in batches; see syncd.resolver.stage.
        ``gather``: new authors' candidate search may wait this long for a full batch
        (the daemon's, which runs again soon; a one-off cycle must not wait). ``check_crm``:
        ask the CRM which people changed now (True), when its interval passed (None), or
        not in this run (False)."""
        return stage.run(
            self.db,
            self.crm_name,
            self.crm,
            self.settings.resolve,
            self.clock,
            self.retrying,
            self.stopping.is_set,
            gather=gather,
            check_crm=check_crm,
        )

    # -- deliver -------------------------------------------------------------------------
    def deliver(self, max_batches: int | None = None) -> DeliverResult:
        """Drain ready deliveries to the CRM in batches, oldest first."""
        result = DeliverResult()
        batches = 0
        size = self.settings.write_batch
        while (max_batches is None or batches < max_batches) and not self.stopping.is_set():
            room = None if max_batches is None else max_batches - batches
            # Read before the take: a forget from now on is seen when the answers are stored.
            since = self._forgets()
            ready = self._take(size, room)
            if not ready:
                return result
            chunks = [ready[start : start + size] for start in range(0, len(ready), size)]
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
        return result

    def _take(self, size: int, room: int | None) -> list[outbox.ReadyDelivery]:
        """The next deliveries to write: read (SQLite), or claimed for this process."""
        now = self.clock()
        if not self.claims:
            # Read several batches at once: ordering the ready set oldest first costs one
            # sort of it per read, which per batch of 200 made a large backlog quadratic.
            with self.db.connect() as conn:
                return outbox.ready_deliveries(conn, self.crm_name, now, size * PREFETCH_BATCHES)
        limit = size * min(CLAIM_BATCHES, room or CLAIM_BATCHES)
        until = now + timedelta(seconds=self.settings.lease)
        with self.db.transaction() as conn:
            return outbox.claim(conn, self.crm_name, now, limit, self.owner, until)

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
        """Write batches in order, storing their answers every :data:`STORE_BATCHES` and
        before returning; stop early on shutdown, or when links changed under the rest
        (the caller reads again). Returns how many were written."""
        answered: list[_Answered] = []  # written to the CRM, not yet stored
        done = 0
        try:
            for chunk in chunks:
                if self.stopping.is_set():
                    break
                answered.append(self._write_batch(chunk))
                done += 1
                relink = answered[-1].relink
                if relink or len(answered) >= STORE_BATCHES:
                    stored, answered = answered, []
                    self._store_answers(stored, result, since=since)
                if relink:
                    break
        finally:
            # Also when a later batch failed: what the CRM took is noted, not sent again.
            self._store_answers(answered, result, since=since)
        return done

    def _write_batch(self, ready: Sequence[outbox.ReadyDelivery]) -> _Answered:
        """Write one batch; its answers, and where the people gone from the CRM went."""
        ready = self._still_posted(ready)
        if not ready:
            return _Answered((), (), {}, False)
        records = [build_record(d) for d in ready]
        # Safe to retry: every record is an upsert on its external id.
        answers = self.retrying(partial(self.crm.upsert_history, records))
        if len(answers) != len(records):
            raise RuntimeError(f"CRM returned {len(answers)} results for {len(records)} records")
        # A record whose person was merged away follows the survivor; the look-up is a
        # network call, so it is made before the transaction that stores the answers.
        gone = {
            d.who
            for d, a in zip(ready, answers, strict=True)
            if not a.ok and a.error_code in GONE_RECORD_ERRORS
        }
        moved = self.retrying(partial(self.crm.survivors, sorted(gone, key=str))) if gone else {}
        return _Answered(ready, answers, moved, bool(gone))

    def _still_posted(
        self, ready: Sequence[outbox.ReadyDelivery]
    ) -> Sequence[outbox.ReadyDelivery]:
        """The batch without the deliveries whose post was deleted on its network while they
        waited (held authors, a backlog): those are never written. Only posts last seen
        standing over ``check_before_write`` ago are asked about, a look-up per 100."""
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
        self, answered: Sequence[_Answered], result: DeliverResult, *, since: int | None = None
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
        failed: list[tuple[int, str | None, str, datetime | None]] = []
        gone: list[int] = []
        follow: dict[CrmRef, CrmRef] = {}
        moved = {k: v for batch in answered for k, v in batch.moved.items()}
        for d, a in ((d, a) for b in answered for d, a in zip(b.ready, b.answers, strict=True)):
            result.attempted += 1
            if a.ok:
                written.append((d.delivery_id, a.crm_id))
                sent.append((d.delivery_id, a.crm_id, d.text))
                continue
            message = a.error_message or "unknown error"
            retry_at: datetime | None = None  # None: dead letter
            if a.error_code in GONE_RECORD_ERRORS:
                # Due at once: written to the survivor of a merge on the next batch, or,
                # when the person was deleted, once the author is linked again.
                survivor = moved.get(d.who)
                if survivor is not None:
                    follow[d.who] = survivor
                else:
                    gone.append(d.identity_id)
                retry_at = now
                result.relinking += 1
            elif (
                a.error_code in RETRYABLE_RECORD_ERRORS
                and d.attempts + 1 < self.settings.record_max_attempts
            ):
                retry_at = now + timedelta(seconds=min(30 * 2**d.attempts, 3600))
                result.retrying += 1
            else:
                result.dead += 1
                log.warning(
                    "dead-lettered %s:%s: %s %s", d.network, d.post_id, a.error_code, message
                )
            failed.append((d.delivery_id, a.error_code, message, retry_at))
        owner = self.owner if self.claims else None

        def store() -> None:
            with self.db.transaction() as conn:
                # In id order, as mark_written goes: writers never wait on each other in
                # opposite orders.
                for delivery_id, code, message, retry_at in sorted(failed, key=lambda f: f[0]):
                    outbox.mark_failed(
                        conn,
                        delivery_id,
                        code=code,
                        message=message,
                        now=now,
                        retry_at=retry_at,
                        counted=code not in GONE_RECORD_ERRORS,
                        owner=owner,
                    )
                outbox.mark_written(conn, written, now, owner)
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
