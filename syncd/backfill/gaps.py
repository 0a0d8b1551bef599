"""Closing gaps: posts a live walk could not reach are read by an ordinary backfill job.

A gap is noticed in the page transaction that ends a cut walk (:mod:`syncd.state.horizon`).
Each pass here, run before the daemon's backfill work and by ``syncd poll --once`` (which then
reads the queued searches itself, :meth:`syncd.service.app.App.close_gaps`):

- settles gaps whose recovery job ended (closed, or open again if it failed);
- plans the open ones with their source (no network call): a gap something reaches becomes a
  queued backfill job, bounded by the gap's ids, that the backfill job machinery works like
  any other (same pacing, same lease, same pause); one nothing reaches is unclosable;
- plans again the recovery jobs still queued, since what search reaches moves with time;
- reports each unclosable gap in the log once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection

from syncd.contracts import GapCloser, Source
from syncd.model import Account, BackfillState, GapPlan, GapState, Stream
from syncd.state import backfills
from syncd.state import gaps as st
from syncd.state.db import Database
from syncd.state.ingest import stored_accounts

log = logging.getLogger("syncd.gaps")

# A queued recovery is planned again once its plan is this old: a source's plan must hold at
# least this long (X's recent search plans keep a 10-minute margin).
REPLAN_AFTER = timedelta(minutes=5)


@dataclass
class GapPass:
    queued: list[int] = field(default_factory=list)  # gaps given a recovery job
    closed: list[int] = field(default_factory=list)
    unclosable: list[int] = field(default_factory=list)  # newly reported
    # Gaps left open this pass, and why: too recent for search (until when), or no source.
    not_ready: dict[int, datetime] = field(default_factory=dict)
    no_source: list[int] = field(default_factory=list)


def recover(db: Database, sources: Mapping[str, Source], now: datetime) -> GapPass:
    """One pass over the gaps in state; see the module's docstring. Reads first: a write
    transaction (SQLite's one writer) is taken only when something changes."""
    done = GapPass()
    with db.connect() as conn:
        settling = st.settling(conn)
    if settling:
        with db.transaction() as conn:
            settled = st.settle(conn, now)
        for gap in settled:
            _said(gap)
            if gap.state == GapState.CLOSED:
                done.closed.append(gap.id)
    with db.connect() as conn:
        todo = st.listing(conn, (GapState.OPEN, GapState.CLOSING, GapState.UNCLOSABLE))
        jobs = {g.id: backfills.get(conn, g.backfill_id) for g in todo if g.backfill_id}
        accounts = {name: stored_accounts(conn, name) for name in {g.source for g in todo}}
    report = any(g.state == GapState.UNCLOSABLE and g.reported_at is None for g in todo)
    for gap in todo:
        source = sources.get(gap.source)
        account = accounts[gap.source].get(gap.account.lower())
        if source is None or account is None:
            done.no_source.append(gap.id)
            continue  # a source taken out of the config: its gaps wait for it
        job = jobs.get(gap.id)
        if gap.state == GapState.CLOSING and not _replannable(job, now):
            continue
        if gap.state == GapState.UNCLOSABLE and gap.backfill_id is not None:
            continue  # partly recovered already: the rest was out of reach
        plan = _plan(source, account, gap, now)
        if plan.ready_at is not None and not plan.segments:
            done.not_ready[gap.id] = plan.ready_at
            continue  # too recent for search yet
        if gap.state == GapState.UNCLOSABLE and not plan.segments:
            continue  # still out of reach (the config may change: it is planned each pass)
        try:
            with db.transaction() as conn:
                report |= _apply(conn, gap, job, account, plan, now, done)
        except _Taken:
            continue  # rolled back: the other instance's change stands
    if report:
        with db.transaction() as conn:
            told = st.take_unreported(conn, now)
        for gap in told:
            done.unclosable.append(gap.id)
            log.warning(
                "%s: posts of @%s's %s after id %s and before id %s (the walk read %d, near "
                "the timeline's horizon, so some may be missing) cannot be recovered: %s",
                gap.source, gap.account, gap.stream, gap.since_id, gap.until_id,
                gap.walk_seen, gap.reason,
            )  # fmt: skip
    return done


def _said(gap: st.Gap) -> None:
    if gap.state == GapState.CLOSED:
        log.info(
            "%s: gap %d in @%s's %s closed: %d post(s) recovered",
            gap.source, gap.id, gap.account, gap.stream, gap.recovered,
        )  # fmt: skip
    elif gap.state == GapState.OPEN:
        log.warning("%s: recovering gap %d failed; it will be tried again", gap.source, gap.id)


def _plan(source: Source, account: Account, gap: st.Gap, now: datetime) -> GapPlan:
    if not isinstance(source, GapCloser):
        return GapPlan(unreachable=f"the {gap.network} source {gap.source} cannot search")
    return source.plan_gap(account, Stream(gap.stream), gap.since_id, gap.until_id, now)


def _replannable(job: backfills.Job | None, now: datetime) -> bool:
    """A recovery job nobody started yet, whose plan may have gone stale."""
    return (
        job is not None
        and job.status == BackfillState.QUEUED
        and job.lease_owner is None
        and job.requests == 0
        and now - job.updated_at >= REPLAN_AFTER
    )


def _apply(
    conn: Connection,
    gap: st.Gap,
    job: backfills.Job | None,
    account: Account,
    plan: GapPlan,
    now: datetime,
    done: GapPass,
) -> bool:
    """Act on a gap's fresh plan; True when it became unclosable (to be reported)."""
    reason = plan.unreachable
    if not plan.segments:
        why = reason or "no configured access reaches it"
        # Its queued job reaches nothing any more (unless someone started it meanwhile).
        if job is not None and not backfills.withdraw(conn, job.id, why, now):
            raise _Taken()
        return st.give_up(conn, gap, why, now)
    streams = sorted({str(s.stream) for s in plan.segments})
    since = min(s.since for s in plan.segments)
    until = max(s.until for s in plan.segments)
    if job is not None:
        if backfills.replan(conn, job.id, plan.segments, since, until, now):
            st.replan(conn, gap, reason, now)
        return False
    job_id = backfills.create(
        conn,
        source=gap.source,
        network=gap.network,
        account=account.handle,
        since=since,
        until=until,
        streams=streams,
        plan=plan.segments,
        estimate=None,
        status=BackfillState.QUEUED,
        now=now,
    )
    if not st.start_recovery(conn, gap, job_id, reason, now):
        raise _Taken()  # and the job just made goes with the rollback
    done.queued.append(gap.id)
    log.info(
        "%s: gap %d in @%s's %s (the walk read %d posts, near the timeline's horizon, and "
        "may not have reached id %s): searching through backfill %d",
        gap.source, gap.id, gap.account, gap.stream, gap.walk_seen, gap.since_id, job_id,
    )  # fmt: skip
    return False


class _Taken(Exception):
    """Another instance moved the gap or its job meanwhile: this pass's change is dropped."""
