"""Polling: a stream's walk from its stored cursor, one transaction per page with its cursor.

Network calls never happen inside a database transaction, so a slow API never holds a lock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from typing import NoReturn, TypeVar

from syncd.contracts import KnownAuthors, Source, Starting, WebhookSource
from syncd.errors import (
    MalformedAnswer,
    PaginationExpired,
    PaginationLoop,
    StreamParked,
)
from syncd.model import Account, Cursor, Page, Stream, merge_marks
from syncd.pipeline.context import Context
from syncd.state import hints, profiles, usage, walks
from syncd.state import ingest as st
from syncd.state.coordination import shared
from syncd.state.horizon import first_start, suspect

log = logging.getLogger("syncd.pipeline")

T = TypeVar("T")


@dataclass
class PollResult:
    pages: int = 0
    seen: int = 0
    new: int = 0
    queued: int = 0
    quarantined: int = 0
    warnings: list[str] = field(default_factory=list)
    stopped: str | None = None  # why the poll left its walk before the end (the page bound)


def _counted(attempts: list[int], call: Callable[[], T]) -> T:
    attempts[0] += 1
    return call()


class Poller:
    """Reads brand accounts' streams into state for one pipeline."""

    def __init__(self, context: Context) -> None:
        self.db = context.db
        self.crm_name = context.crm_name
        self.targets = context.targets
        self.settings = context.settings
        self.clock = context.clock
        self.stopping = context.stopping
        self.retrying = context.retrying

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
        # An account configured by its bare id, stored without a name (before names were
        # kept), is asked again for the name its CRM history shows instead of the id.
        missing = [
            h
            for h in handles
            if (a := known.get(h.lower())) is None
            or (a.display_name is None and a.handle == a.user_id)
        ]
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
                started = first_start(conn, source_name, account.handle, stream, first, now)
                cursor = replace(started, marks=cursor.marks)
            if isinstance(source, WebhookSource):
                # Read at the walk's start; one delivery arriving mid-walk waits for the next.
                cursor = replace(cursor, hints=hints.untaken(conn, source_name, account.user_id))
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
        pace = _Pace()
        while True:
            pace.asking(self.clock())
            fetch = partial(self._fetch, source_name, source, account, stream, cursor, known)
            attempts[0] = 0
            try:
                page = self.retrying(partial(_counted, attempts, fetch))
            except PaginationExpired:
                # A stored pagination token can expire; start the walk again from since_id.
                if not cursor.in_walk or restarted:
                    raise
                log.warning(
                    "%s/%s/%s: pagination token refused, restarting the walk",
                    source_name,
                    account.handle,
                    stream,
                )
                with self.db.transaction() as conn:
                    st.reset_walk(conn, source_name, account.handle, stream, self.clock())
                    reloaded = st.load_cursor(conn, source_name, account.handle, stream)
                cursor = replace(reloaded, hints=cursor.hints)
                restarted = True
                followed.clear()
                stalled = False  # the walk starts again from since_id, all of it in reach
                pace = _Pace()
                continue
            stalled = stalled or (attempts[0] > 1 and cursor.in_walk)  # not before page one
            pace.add(page)
            if page.walk_complete and page.horizon is not None:
                stalled = stalled or pace.outran(page.horizon)
            token = page.next_cursor.pagination_token
            if token is not None and token in followed:
                self._loop(source_name, source, account, stream, page, brand_ids, result)
            stopped = None
            if not page.walk_complete and result.pages + 1 >= self.settings.max_pages_per_walk:
                stopped = (
                    f"walk stopped after {result.pages + 1} pages ([daemon] "
                    "max_pages_per_walk); it goes on from there next poll"
                )
            if shared(self.db.dialect) and page.interactions:
                with self.db.transaction(replayable=True) as conn:
                    st.store_authors(conn, network=source.network, page=page, now=self.clock())
            # Replayable: a page lost to a crash is lost with the cursor move stored with it,
            # so the stream reads the same page again from the cursor before it (X bills a
            # post once per UTC day, however often it is read). Nothing outside state acts
            # on a page before a commit that waited: the writer writes only deliveries it
            # claimed in such a commit (which made every page before it durable), and a Lead
            # for one of its authors is an upsert on the network's user id, found again.
            with self.db.transaction(replayable=True) as conn:
                stored = st.ingest_page(
                    conn,
                    source=source_name,
                    network=source.network,
                    account=account,
                    stream=stream,
                    page=page,
                    crms=[self.crm_name],
                    targets=self.targets,
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
            # The next page is asked with the marks as now stored: this page's changes on
            # those the walk began with (a source sets Page.marks, not next_cursor.marks).
            taken = set(page.taken_hints)
            # Likewise the hints: those this page took are stored as taken, not offered again.
            cursor = replace(
                page.next_cursor,
                marks=merge_marks(cursor.marks, page.marks),
                hints=tuple(h for h in cursor.hints if h not in taken),
            )
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
        the API answers sanely), and so do the stream's marks (the page is read again then),
        and the walk stops with the error."""
        with self.db.transaction() as conn:
            stored = st.store_page(
                conn,
                source=source_name,
                network=source.network,
                account=account,
                page=page,
                crms=[self.crm_name],
                targets=self.targets,
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


class _Pace:
    """How fast a walk's posts came, and how long it took from its first request to its
    last: posts arriving in between push its oldest ones out of a timeline's reach, as many
    as arrived. A walk slowed down (a busy state database, a slow network) while posts came
    fast ends at the horizon having seen far fewer than :func:`~syncd.state.horizon.suspect`
    asks; without this its gap went unrecorded and its posts were lost. A walk whose posts
    and those that came meanwhile (at the pace its own posts span) make a suspect walk is
    one. A walk of one page is judged by what it saw: nothing arrives inside one request."""

    def __init__(self) -> None:
        self.first: datetime | None = None  # when its first page was asked
        self.last: datetime | None = None  # when its latest page was asked
        self.returned = 0
        self.newest: datetime | None = None
        self.oldest: datetime | None = None

    def asking(self, now: datetime) -> None:
        self.first = self.first or now
        self.last = now

    def add(self, page: Page) -> None:
        self.returned += page.returned
        for item in page.interactions:
            if self.newest is None or item.created_at > self.newest:
                self.newest = item.created_at
            if self.oldest is None or item.created_at < self.oldest:
                self.oldest = item.created_at

    def outran(self, horizon: int) -> bool:
        if None in (self.first, self.last, self.newest, self.oldest):
            return False
        assert self.first and self.last and self.newest and self.oldest
        # At least a second: posts made within one would make any walk look a flood.
        span = max((self.newest - self.oldest).total_seconds(), 1.0)
        took = max((self.last - self.first).total_seconds(), 0.0)
        return suspect(self.returned + int(self.returned / span * took), horizon)
