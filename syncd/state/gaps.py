"""Gaps in state after their detection (:mod:`syncd.state.horizon`): read for status and
metrics, and moved from open to closed (or unclosable) through a backfill job."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, or_, select, update

from syncd.model import BackfillState, GapState
from syncd.state import backfills
from syncd.state.tables import backfills as backfills_table
from syncd.state.tables import gaps


@dataclass(frozen=True)
class Gap:
    id: int
    source: str
    network: str
    account: str
    stream: str
    since_id: str
    until_id: str
    walk_seen: int
    state: str
    reason: str | None
    backfill_id: int | None
    recovered: int
    reported_at: datetime | None
    detected_at: datetime
    updated_at: datetime
    closed_at: datetime | None


def _gap(row: Any) -> Gap:
    return Gap(**dict(row._mapping))


# -- reading -------------------------------------------------------------------------------
def listing(conn: Connection, states: Sequence[str] = tuple(GapState)) -> list[Gap]:
    rows = conn.execute(select(gaps).where(gaps.c.state.in_(states)).order_by(gaps.c.id))
    return [_gap(r) for r in rows]


@dataclass(frozen=True)
class Counts:
    by_state: dict[tuple[str, str, str, str], int]  # (source, account, stream, state) → gaps
    recovered: dict[tuple[str, str, str], int]  # (source, account, stream) → posts


def counts(conn: Connection) -> Counts:
    key = (gaps.c.source, gaps.c.account, gaps.c.stream)
    by_state = {
        (s, a, t, state): int(n)
        for s, a, t, state, n in conn.execute(
            select(*key, gaps.c.state, func.count()).group_by(*key, gaps.c.state)
        )
    }
    recovered = {
        (s, a, t): int(n)
        for s, a, t, n in conn.execute(select(*key, func.sum(gaps.c.recovered)).group_by(*key))
    }
    return Counts(by_state, recovered)


# -- recovery ------------------------------------------------------------------------------
def _move(
    conn: Connection, gap: Gap, now: datetime, *, states: Sequence[str], **values: Any
) -> bool:
    """Change a gap still in one of ``states`` (another instance may have moved it)."""
    done = conn.execute(
        update(gaps)
        .where(gaps.c.id == gap.id, gaps.c.state.in_(states))
        .values(updated_at=now, **values)
    )
    return bool(done.rowcount)


def start_recovery(
    conn: Connection, gap: Gap, job_id: int, unreachable: str | None, now: datetime
) -> bool:
    """The gap is being read by backfill ``job_id``; ``unreachable``: the part it cannot read."""
    return _move(
        conn,
        gap,
        now,
        states=(GapState.OPEN, GapState.UNCLOSABLE),
        state=GapState.CLOSING,
        backfill_id=job_id,
        reason=unreachable,
        reported_at=None,
    )


def replan(conn: Connection, gap: Gap, unreachable: str | None, now: datetime) -> bool:
    return _move(conn, gap, now, states=(GapState.CLOSING,), reason=unreachable)


def give_up(conn: Connection, gap: Gap, reason: str, now: datetime) -> bool:
    """No configured access reaches the gap: it stays, reported (and is planned again each
    pass, should the configuration change)."""
    return _move(
        conn,
        gap,
        now,
        states=(GapState.OPEN, GapState.CLOSING),
        state=GapState.UNCLOSABLE,
        reason=reason,
        backfill_id=None,
    )


def settling(conn: Connection) -> bool:
    """Whether some gap's recovery job ended (or is gone) and the gap must follow."""
    row = conn.execute(
        select(gaps.c.id)
        .select_from(gaps.outerjoin(backfills_table, backfills_table.c.id == gaps.c.backfill_id))
        .where(
            gaps.c.state == GapState.CLOSING,
            or_(backfills_table.c.id.is_(None), backfills_table.c.status.in_(backfills.ENDED)),
        )
        .limit(1)
    ).first()
    return row is not None


def settle(conn: Connection, now: datetime) -> list[Gap]:
    """Gaps whose recovery job ended: closed (or unclosable when part of it was out of reach)
    once the job is done, open again if it failed, unclosable if an admin cancelled it."""
    changed: list[Gap] = []
    for gap in listing(conn, (GapState.CLOSING,)):
        job = backfills.get(conn, gap.backfill_id) if gap.backfill_id is not None else None
        status = job.status if job is not None else BackfillState.CANCELLED
        if status == BackfillState.DONE and job is not None:
            state = GapState.UNCLOSABLE if gap.reason else GapState.CLOSED
            values: dict[str, Any] = {"state": state, "recovered": job.new, "closed_at": now}
        elif status == BackfillState.FAILED:
            values = {"state": GapState.OPEN, "backfill_id": None}
        elif status == BackfillState.CANCELLED:
            why = f"its recovery (backfill {gap.backfill_id}) was cancelled"
            values = {
                "state": GapState.UNCLOSABLE,
                "reason": why,
                "recovered": job.new if job else 0,
            }
        else:
            continue
        if _move(conn, gap, now, states=(GapState.CLOSING,), **values):
            changed.append(_gap(conn.execute(select(gaps).where(gaps.c.id == gap.id)).one()))
    return changed


def take_unreported(conn: Connection, now: datetime) -> list[Gap]:
    """Unclosable gaps not yet reported, now marked reported: each is told once, by one
    instance."""
    out = []
    for gap in listing(conn, (GapState.UNCLOSABLE,)):
        if gap.reported_at is not None:
            continue
        done = conn.execute(
            update(gaps)
            .where(
                gaps.c.id == gap.id,
                gaps.c.state == GapState.UNCLOSABLE,
                gaps.c.reported_at.is_(None),
            )
            .values(reported_at=now)
        )
        if done.rowcount:
            out.append(gap)
    return out
