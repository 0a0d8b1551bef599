"""The read model: what ``syncd status`` (and the demo) and ``/metrics`` say about state.

Both read through the functions here, so a stream's last success, an active backfill's
progress, a parked name or a gap count is one query whichever of them shows it, and the two
can never disagree. Deliveries are the one figure each counts its own way, both defined here:
``syncd status`` by state, from the ``(crm, state)`` index alone; ``/metrics`` by network and
direction too, which joins every delivery to its interaction (6.5 s at a million,
bench/growth.py): a cost the daemon's cached snapshot pays, a status command need not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Connection, func, select

from syncd.model import Budget, DeliveryState, GapState, Standing
from syncd.state import backfills, usage
from syncd.state import gaps as gap_state
from syncd.state.admin import Parked, parked_list
from syncd.state.authors import review_count
from syncd.state.coordination import shared
from syncd.state.outbox import CLAIM, held_count
from syncd.state.tables import cases as cases_table
from syncd.state.tables import cursors, deliveries, interactions, quarantine

StreamKey = tuple[str, str, str]  # (source, account, stream)
DeliveryKey = tuple[str, str, str, str]  # (crm, network, direction, state)


@dataclass(frozen=True)
class StreamStatus:
    source: str
    account: str
    stream: str
    since_id: str | None
    in_walk: bool
    last_success_at: datetime | None
    last_attempt_at: datetime | None
    last_error: str | None
    # Why the last poll left its walk before the end (the page bound), None when it did not.
    walk_stopped: str | None = None
    unreadable: int = 0  # answers in a row that could not be read (parked at a bound)


@dataclass(frozen=True)
class BackfillStatus:
    id: int
    source: str
    account: str
    since: datetime
    until: datetime
    status: str
    read: int
    new: int
    estimated: int | None
    written: int
    held: int
    lease_owner: str | None
    error: str | None = None  # why it was paused (e.g. the API repeated a page token)


@dataclass(frozen=True)
class GapStatus:
    id: int
    source: str
    account: str
    stream: str
    since_id: str
    until_id: str
    state: str  # open, closing, unclosable (closed ones are only counted)
    reason: str | None
    backfill_id: int | None
    recovered: int
    detected_at: datetime


@dataclass(frozen=True)
class Gaps:
    unclosed: list[GapStatus]
    closed: int
    recovered: int  # posts the recovery of every gap stored


@dataclass(frozen=True)
class Withheld:
    """Interactions of one source whose author the network withheld: stored, never linked to
    anyone nor written to a CRM (see :class:`syncd.model.Interaction`)."""

    source: str
    network: str
    interactions: int


@dataclass(frozen=True)
class Status:
    streams: list[StreamStatus]
    interactions: int
    deliveries: dict[str, int]  # state → count, for the configured CRM
    held_identities: int
    review: int  # of the held, those with candidates a person must decide
    quarantined: int
    parked: list[Parked]
    backfills: list[BackfillStatus]
    claims: dict[str, int]  # owner → deliveries it is writing now (PostgreSQL only)
    gaps: Gaps
    # Per source billed per resource: reads today and this period, cost, budget, cap.
    budgets: list[Standing] = field(default_factory=list)
    withheld: list[Withheld] = field(default_factory=list)  # sources with any, by name
    # The configured CRM's deliveries by history target, then state (Crm.history_targets).
    targets: dict[str, dict[str, int]] = field(default_factory=dict)
    cases: int = 0  # conversations syncd opened a case for in the configured CRM


def status(
    conn: Connection,
    crm: str,
    budgets: Mapping[str, Budget] | None = None,
    now: datetime | None = None,
) -> Status:
    """Everything ``syncd status`` shows."""
    by_state = {state: n for (c, state), n in delivery_counts(conn).items() if c == crm}
    return Status(
        streams=streams(conn),
        interactions=int(conn.execute(select(func.count()).select_from(interactions)).scalar_one()),
        deliveries=by_state,
        held_identities=held_count(conn, crm),
        review=review_count(conn, crm),
        quarantined=int(conn.execute(select(func.count()).select_from(quarantine)).scalar_one()),
        parked=parked_list(conn),
        backfills=active_backfills(conn, crm),
        claims=_claims(conn, crm),
        gaps=_gaps(conn),
        budgets=standings(conn, budgets or {}, now or datetime.now(UTC)),
        withheld=withheld(conn),
        targets=by_target(conn, crm),
        cases=int(
            conn.execute(
                select(func.count()).select_from(cases_table).where(cases_table.c.crm == crm)
            ).scalar_one()
        ),
    )


def by_target(conn: Connection, crm: str) -> dict[str, dict[str, int]]:
    """``crm``'s deliveries by (target, state)."""
    d = deliveries
    stmt = (
        select(d.c.target, d.c.state, func.count())
        .where(d.c.crm == crm)
        .group_by(d.c.target, d.c.state)
    )
    out: dict[str, dict[str, int]] = {}
    for target, state, n in conn.execute(stmt):
        out.setdefault(target, {})[state] = int(n)
    return out


@dataclass(frozen=True)
class Snapshot:
    """What ``/metrics`` (and the sd_notify status line) shows of state, as of ``taken``."""

    taken: datetime
    deliveries: dict[DeliveryKey, int]
    last_success: dict[StreamKey, datetime | None]
    backfills: list[BackfillStatus] = field(default_factory=list)
    parked: set[str] = field(default_factory=set)
    gaps: gap_state.Counts = field(default_factory=lambda: gap_state.Counts({}, {}))
    withheld: list[Withheld] = field(default_factory=list)

    def pending(self, crm: str) -> int:
        return sum(
            n
            for (c, _, _, state), n in self.deliveries.items()
            if c == crm and state == DeliveryState.PENDING
        )

    def latest_success(self) -> datetime | None:
        return max((t for t in self.last_success.values() if t is not None), default=None)


def snapshot(conn: Connection, crm: str, now: datetime) -> Snapshot:
    """Everything ``/metrics`` reads from state at once."""
    return Snapshot(
        taken=now,
        deliveries=deliveries_by_kind(conn),
        last_success={(s.source, s.account, s.stream): s.last_success_at for s in streams(conn)},
        backfills=active_backfills(conn, crm),
        parked={p.name for p in parked_list(conn)},
        gaps=gap_state.counts(conn),
        withheld=withheld(conn),
    )


# -- the parts -----------------------------------------------------------------------------
def streams(conn: Connection) -> list[StreamStatus]:
    return [
        StreamStatus(
            source=r.source,
            account=r.account,
            stream=r.stream,
            since_id=r.since_id,
            in_walk=r.pagination_token is not None,
            last_success_at=r.last_success_at,
            last_attempt_at=r.last_attempt_at,
            last_error=r.last_error,
            walk_stopped=r.walk_stopped,
            unreadable=r.unreadable,
        )
        for r in conn.execute(
            select(cursors).order_by(cursors.c.source, cursors.c.account, cursors.c.stream)
        )
    ]


def delivery_counts(conn: Connection) -> dict[tuple[str, str], int]:
    """Deliveries by (crm, state)."""
    stmt = select(deliveries.c.crm, deliveries.c.state, func.count()).group_by(
        deliveries.c.crm, deliveries.c.state
    )
    return {(crm, state): int(n) for crm, state, n in conn.execute(stmt)}


def deliveries_by_kind(conn: Connection) -> dict[DeliveryKey, int]:
    """Deliveries by (crm, network, direction, state)."""
    d, i = deliveries, interactions
    stmt = (
        select(d.c.crm, i.c.network, i.c.direction, d.c.state, func.count())
        .join(i, i.c.id == d.c.interaction_id)
        .group_by(d.c.crm, i.c.network, i.c.direction, d.c.state)
    )
    return {(c, n, dr, s): int(k) for c, n, dr, s, k in conn.execute(stmt)}


def withheld(conn: Connection) -> list[Withheld]:
    """Interactions whose author the network withheld, per source and network (from the
    counterpart index: only those rows are read)."""
    i = interactions
    stmt = (
        select(i.c.source, i.c.network, func.count())
        .where(i.c.counterpart_identity_id.is_(None))
        .group_by(i.c.source, i.c.network)
        .order_by(i.c.source, i.c.network)
    )
    return [Withheld(source, network, int(n)) for source, network, n in conn.execute(stmt)]


def active_backfills(conn: Connection, crm: str) -> list[BackfillStatus]:
    return [_backfill(conn, crm, j) for j in backfills.jobs(conn, active_only=True)]


def standings(conn: Connection, budgets: Mapping[str, Budget], now: datetime) -> list[Standing]:
    """Where each metered source stands in its billing period, by source name."""
    return [usage.standing(conn, name, budget, now) for name, budget in sorted(budgets.items())]


def _gaps(conn: Connection) -> Gaps:
    counts = gap_state.counts(conn)
    unclosed = [
        GapStatus(**{f: getattr(g, f) for f in GapStatus.__dataclass_fields__})
        for g in gap_state.listing(conn, (GapState.OPEN, GapState.CLOSING, GapState.UNCLOSABLE))
    ]
    closed = sum(n for (*_, state), n in counts.by_state.items() if state == GapState.CLOSED)
    return Gaps(unclosed, closed, sum(counts.recovered.values()))


def _claims(conn: Connection, crm: str) -> dict[str, int]:
    if not shared(conn):  # SQLite never claims: no need to read every delivery for it
        return {}
    stmt = (
        select(CLAIM.owner, func.count())
        .where(deliveries.c.crm == crm, CLAIM.held(func.now()))
        .group_by(CLAIM.owner)
    )
    return {owner: int(n) for owner, n in conn.execute(stmt)}


def _backfill(conn: Connection, crm: str, job: backfills.Job) -> BackfillStatus:
    p = backfills.progress(conn, crm, job.id)
    estimated = (job.estimate or {}).get("posts")
    return BackfillStatus(
        job.id, job.source, job.account, job.since, job.until, job.status, job.read, job.new,
        estimated if isinstance(estimated, int) else None, p.written, p.held, job.lease_owner,
        job.error,
    )  # fmt: skip
