"""The bulk side of state: the CRM's bulk jobs and the deliveries each is writing.

A job is stored with its deliveries in the transaction after the CRM made it, before any
record is sent: a writer stopped at any later step finds it here (``made``: the records may
or may not have gone; ``sent``: the CRM was told to process it). The writer's batches never
take a delivery a job holds (:func:`syncd.state.outbox.ready_deliveries`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, func, select, update

from syncd.model import DeliveryState
from syncd.state.outbox import CLAIM, ReadyDelivery, as_written, rows
from syncd.state.tables import bulk_jobs, deliveries, interactions

MADE, SENT, DONE, ABANDONED = "made", "sent", "done", "abandoned"


@dataclass(frozen=True)
class Job:
    id: int  # the row's
    job_id: str  # the CRM's
    target: str
    state: str
    records: int


def open_jobs(conn: Connection, crm: str) -> list[Job]:
    """``crm``'s jobs not yet done, oldest first."""
    stmt = (
        select(bulk_jobs)
        .where(bulk_jobs.c.crm == crm, bulk_jobs.c.state.in_((MADE, SENT)))
        .order_by(bulk_jobs.c.id)
    )
    return [Job(r.id, r.job_id, r.target, r.state, r.records) for r in conn.execute(stmt)]


def ready_count(conn: Connection, crm: str, target: str, now: datetime) -> int:
    """How many deliveries of ``target`` are pending and due, whoever their author (an
    upper bound of what is ready: held authors' are counted too)."""
    stmt = select(func.count()).where(
        deliveries.c.crm == crm,
        deliveries.c.target == target,
        deliveries.c.state == DeliveryState.PENDING,
        deliveries.c.bulk_job_id.is_(None),
    )
    return int(conn.execute(stmt).scalar_one())


def store_job(
    conn: Connection,
    crm: str,
    target: str,
    job_id: str,
    delivery_ids: Sequence[int],
    now: datetime,
) -> Job:
    """A job the CRM made, holding these deliveries (only those still pending, in no other
    job, and claimed by no writer)."""
    row_id = conn.execute(
        bulk_jobs.insert()
        .values(
            crm=crm,
            target=target,
            job_id=job_id,
            state=MADE,
            records=len(delivery_ids),
            created_at=now,
            updated_at=now,
        )
        .returning(bulk_jobs.c.id)
    ).scalar_one()
    held = 0
    for start in range(0, len(delivery_ids), 1000):
        chunk = sorted(delivery_ids[start : start + 1000])
        held += conn.execute(
            update(deliveries)
            .where(
                deliveries.c.id.in_(chunk),
                deliveries.c.state == DeliveryState.PENDING,
                deliveries.c.bulk_job_id.is_(None),
                # Not one another instance's writer is writing in a batch now.
                CLAIM.free(now),
            )
            .values(bulk_job_id=row_id)
        ).rowcount
    conn.execute(update(bulk_jobs).where(bulk_jobs.c.id == row_id).values(records=held))
    return Job(int(row_id), job_id, target, MADE, held)


def held(conn: Connection, job: Job, after: int, limit: int) -> list[ReadyDelivery]:
    """Up to ``limit`` of the pending deliveries the job holds, as the writer sends them,
    in id order from after ``after`` (a job's are read a page at a time: its records would
    not all fit in memory at once)."""
    stmt = (
        as_written()
        .where(
            deliveries.c.bulk_job_id == job.id,
            deliveries.c.state == DeliveryState.PENDING,
            deliveries.c.id > after,
        )
        .order_by(deliveries.c.id)
        .limit(limit)
    )
    return rows(conn.execute(stmt))


def mark(conn: Connection, job: Job, state: str, now: datetime, error: str | None = None) -> None:
    conn.execute(
        update(bulk_jobs)
        .where(bulk_jobs.c.id == job.id)
        .values(state=state, error=error, updated_at=now)
    )


def release(conn: Connection, job: Job) -> int:
    """The job's deliveries free again for the writer's batches (their answers stored, or
    the job abandoned)."""
    return conn.execute(
        update(deliveries).where(deliveries.c.bulk_job_id == job.id).values(bulk_job_id=None)
    ).rowcount


def release_after(conn: Connection, job: Job, last: int) -> int:
    """The job's deliveries after ``last`` (by id) free again: its upload could not hold
    them."""
    freed = conn.execute(
        update(deliveries)
        .where(deliveries.c.bulk_job_id == job.id, deliveries.c.id > last)
        .values(bulk_job_id=None)
    ).rowcount
    if freed:
        conn.execute(
            update(bulk_jobs)
            .where(bulk_jobs.c.id == job.id)
            .values(records=bulk_jobs.c.records - freed)
        )
    return int(freed)


def unknown_posts(conn: Connection, keys: Sequence[str]) -> list[str]:
    """The keys (``<network>:<post id>``, as history records carry them) of posts state
    does not hold."""
    wanted: dict[str, set[str]] = {}
    for key in keys:
        network, _, post_id = key.partition(":")
        wanted.setdefault(network, set()).add(post_id)
    held: set[str] = set()
    for network, post_ids in wanted.items():
        ordered = sorted(post_ids)
        for start in range(0, len(ordered), 1000):
            stmt = select(interactions.c.post_id).where(
                interactions.c.network == network,
                interactions.c.post_id.in_(ordered[start : start + 1000]),
            )
            held.update(f"{network}:{p}" for p in conn.scalars(stmt))
    return [k for k in keys if k not in held]
