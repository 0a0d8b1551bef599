"""The read budget in state: what each source's pages returned per UTC day, and per source the
network's own usage figures, the cap it answered and the thresholds already logged.

Several instances may share PostgreSQL, so every change is one statement that is right
whoever runs it concurrently: the day's count is an upsert that adds; a usage read, a cap, a
lifted cap and a threshold are conditional updates whose row count says which instance did
it (and so logs it, once).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, or_, select, update

from syncd.model import Budget, Ledger, ProjectUsage, ReadCounts, Reads, Standing, period
from syncd.model import standing as stand
from syncd.state.ingest import insert_for
from syncd.state.tables import api_reads, source_budgets


def count(conn: Connection, source: str, network: str, reads: Reads, now: datetime) -> None:
    """Add a page's resources to its source's count for the UTC day of ``now``. Run it last
    in the page's transaction: the day's row is then locked only until the commit."""
    if not (reads.posts or reads.expanded or reads.users):
        return
    added = {
        "posts": reads.expanded + (0 if reads.owned else reads.posts),
        "owned_posts": reads.posts if reads.owned else 0,
        "users": reads.users,
    }
    stmt = insert_for(conn, api_reads).values(
        source=source, day=_day(now), network=network, **added
    )
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["source", "day"],
            set_={k: api_reads.c[k] + stmt.excluded[k] for k in added},
        )
    )


def reads(conn: Connection, source: str, first: date, last: date) -> ReadCounts:
    """What ``source`` read from UTC day ``first`` to ``last``, both included."""
    row = conn.execute(
        select(
            *(func.coalesce(func.sum(api_reads.c[k]), 0) for k in ("posts", "users", "owned_posts"))
        ).where(api_reads.c.source == source, api_reads.c.day >= first, api_reads.c.day <= last)
    ).one()
    return ReadCounts(posts=int(row[0]), users=int(row[1]), owned_posts=int(row[2]))


def ledger(conn: Connection, source: str) -> Ledger:
    row = (
        conn.execute(select(source_budgets).where(source_budgets.c.source == source))
        .mappings()
        .first()
    )
    if row is None:
        return Ledger()
    return Ledger(**{k: v for k, v in row.items() if k not in ("source", "updated_at")})


def standing(
    conn: Connection, source: str, budget: Budget, now: datetime, kept: Ledger | None = None
) -> Standing:
    """Where ``source`` stands in its billing period at ``now`` (``kept``: its ledger, when
    the caller has just read it)."""
    kept = kept if kept is not None else ledger(conn, source)
    start, _ = period(now, kept.cap_reset_day)
    today = _day(now)
    return stand(
        source,
        budget,
        kept,
        reads(conn, source, today, today),
        reads(conn, source, start.date(), today),
        now,
    )


def claim_check(conn: Connection, source: str, now: datetime, interval: timedelta) -> bool:
    """Whether this caller may ask the network for its usage figures now: nobody asked in
    the last ``interval``. Taking the claim records the attempt, so a failed read waits too."""
    _ensure(conn, source, now)
    done = conn.execute(
        update(source_budgets)
        .where(source_budgets.c.source == source)
        .where(
            or_(
                source_budgets.c.checked_at.is_(None), source_budgets.c.checked_at <= now - interval
            )
        )
        .values(checked_at=now, updated_at=now)
    )
    return bool(done.rowcount)


def store_figures(conn: Connection, source: str, figures: ProjectUsage, now: datetime) -> None:
    _ensure(conn, source, now)
    conn.execute(
        update(source_budgets)
        .where(source_budgets.c.source == source)
        .values(
            read_at=now,
            project_posts=figures.posts,
            project_cap=figures.cap,
            cap_reset_day=figures.reset_day,
            project_day=figures.day,
            project_day_posts=figures.day_posts,
            updated_at=now,
        )
    )


def cap(conn: Connection, source: str, until: datetime, reason: str, now: datetime) -> bool:
    """Record that the network refuses ``source`` until ``until``. True for the caller that
    capped it (the one to log it); a later refusal only moves a cap that ends sooner."""
    _ensure(conn, source, now)
    values: dict[str, Any] = {"capped_until": until, "capped_reason": reason, "updated_at": now}
    began = conn.execute(
        update(source_budgets)
        .where(source_budgets.c.source == source)
        .where(or_(source_budgets.c.capped_until.is_(None), source_budgets.c.capped_until <= now))
        .values(**values)
    )
    if began.rowcount:
        return True
    conn.execute(
        update(source_budgets)
        .where(source_budgets.c.source == source, source_budgets.c.capped_until < until)
        .values(**values)
    )
    return False


def lift_cap(conn: Connection, source: str, now: datetime) -> bool:
    """Forget a cap whose time has come. True for the caller that lifted it."""
    done = conn.execute(
        update(source_budgets)
        .where(source_budgets.c.source == source, source_budgets.c.capped_until <= now)
        .values(capped_until=None, capped_reason=None, updated_at=now)
    )
    return bool(done.rowcount)


def move_alert(conn: Connection, source: str, seen: Ledger, level: int, now: datetime) -> bool:
    """Record ``level`` as the threshold reached at ``now``, if the ledger still holds what
    ``seen`` read. True for the one caller that moved it (and so says it)."""
    _ensure(conn, source, now)
    kept = source_budgets.c
    stmt = update(source_budgets).where(kept.source == source, kept.alert_level == seen.alert_level)
    if seen.alerted_at is None:
        stmt = stmt.where(kept.alerted_at.is_(None))
    else:
        stmt = stmt.where(kept.alerted_at == seen.alerted_at)
    done = conn.execute(stmt.values(alert_level=level, alerted_at=now, updated_at=now))
    return bool(done.rowcount)


def _ensure(conn: Connection, source: str, now: datetime) -> None:
    conn.execute(
        insert_for(conn, source_budgets)
        .values(source=source, updated_at=now)
        .on_conflict_do_nothing(index_elements=["source"])
    )


def _day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()
