"""A backfill before it reads: which source and account, which endpoints in what order (the
source's segments), what that costs (:mod:`.estimate`); then the job that reads it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from syncd.backfill.estimate import Estimate, estimate
from syncd.backfill.runner import BackfillSource
from syncd.contracts import ConnectorSettings, Source, SourceSettings
from syncd.errors import UserError
from syncd.model import Account, BackfillState, Segment, Stream
from syncd.pipeline import Pipeline
from syncd.state import backfills
from syncd.state.coordination import owner_id
from syncd.state.db import Database

PERSON_OBJECTS = 2  # when the CRM does not say: a contact and a lead, as most CRMs keep them


@dataclass(frozen=True)
class Plan:
    source_name: str
    source: BackfillSource
    account: Account
    streams: list[Stream]
    since: datetime
    until: datetime
    segments: list[Segment]
    estimate: Estimate


def source_settings(sources: Sequence[SourceSettings], name: str) -> SourceSettings:
    """The ``[[sources]]`` entry called ``name``."""
    found = next((s for s in sources if s.name == name), None)
    if found is None:
        names = ", ".join(s.name for s in sources)
        raise UserError(f"no source {name!r} in the config (sources: {names})")
    return found


def make(
    pipeline: Pipeline,
    source_name: str,
    source: Source,
    settings: SourceSettings,
    crm: ConnectorSettings,
    *,
    account: str,
    streams: Sequence[Stream],
    since: datetime,
    until: datetime,
    now: datetime,
    write_batch: int,
) -> Plan:
    """The plan of reading ``account``'s ``streams`` from ``since`` to ``until`` (UTC), with
    its estimate; the account is looked up on the network when state does not know it yet."""
    if not hasattr(source, "plan_backfill"):
        raise UserError(f"source {source_name!r} ({settings.type}) cannot backfill")
    bsource = cast(BackfillSource, source)
    found, unknown = pipeline.accounts(source_name, bsource, [account])
    if unknown:
        raise UserError(f"{source.network} knows no account {account!r}")
    brand = found[0]
    segments = bsource.plan_backfill(brand, streams, since, until, now)
    if not segments:
        raise UserError("nothing to read: the window is empty (or in the future)")
    # Optional settings of a connector: a price only where the network bills reads, and the
    # CRM objects a person may be, each searched on a look-up.
    price = float(getattr(settings, "price_per_post", 0.0))
    people = getattr(crm, "person_objects", None)
    objects = PERSON_OBJECTS if people is None else len(people)
    est = estimate(
        bsource,
        brand,
        segments,
        price_per_post=price,
        write_batch=write_batch,
        person_objects=objects,
    )
    return Plan(source_name, bsource, brand, list(streams), since, until, segments, est)


def create_job(db: Database, plan: Plan, *, queue: bool, now: datetime) -> int:
    """Store ``plan`` as a job: this process's own, or ``queue``d for the running daemon."""
    with db.transaction() as conn:
        return backfills.create(
            conn,
            source=plan.source_name,
            network=plan.source.network,
            account=plan.account.handle,
            since=plan.since,
            until=plan.until,
            streams=[str(s) for s in plan.streams],
            plan=plan.segments,
            estimate=plan.estimate.as_json(),
            status=BackfillState.QUEUED if queue else BackfillState.RUNNING,
            now=now,
            owner=None if queue else owner_id(),
        )
