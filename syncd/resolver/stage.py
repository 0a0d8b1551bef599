"""The resolve stage of the pipeline: held authors in, links and review candidates out.

Network calls (the look-ups, creating Leads) never run inside a database transaction; each
round reads a batch, asks the CRM, then stores every decision in one transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Literal

from syncd.connector import Crm
from syncd.model import CrmRef
from syncd.resolver.chain import Candidate, Policy, resolve
from syncd.state import linking, outbox
from syncd.state.db import Database

log = logging.getLogger("syncd.resolver")

Unmatched = Literal["hold", "lead", "skip"]
UNMATCHED: tuple[Unmatched, ...] = ("hold", "lead", "skip")


@dataclass(frozen=True)
class ResolveSettings:
    policy: Policy = field(default_factory=Policy)
    # Per network: what to do with an author no CRM person matches (and no candidate either).
    unmatched: Mapping[str, Unmatched] = field(default_factory=dict)
    policies: Mapping[str, Policy] = field(default_factory=dict)  # per-network overrides
    batch: int = 200
    backoff: timedelta = timedelta(minutes=5)
    max_backoff: timedelta = timedelta(hours=6)

    def policy_for(self, network: str) -> Policy:
        return self.policies.get(network, self.policy)


@dataclass
class ResolveResult:
    looked_up: int = 0
    linked: int = 0
    review: int = 0  # authors with candidates waiting for a person
    leads: int = 0  # Leads created for unmatched authors (unmatched = "lead")
    skipped: int = 0  # authors whose interactions are kept but never written
    unmatched: int = 0  # held: asked again later


def run(
    db: Database,
    crm_name: str,
    crm: Crm,
    settings: ResolveSettings,
    clock: Callable[[], datetime],
    retrying: Callable[[Callable[[], Any]], Any],
    stopping: Callable[[], bool],
) -> ResolveResult:
    result = ResolveResult()
    while not stopping():
        with db.transaction() as conn:
            todo = outbox.identities_to_resolve(conn, crm_name, clock(), settings.batch)
            ids = [u.identity_id for u in todo]
            profiles = linking.profiles(conn, ids)
            rejected = linking.rejected(conn, crm_name, ids)
        if not todo:
            return result
        decisions = {}
        for network in sorted({p.key.network for p in profiles.values()}):
            mine = {i: p for i, p in profiles.items() if p.key.network == network}
            decisions.update(
                retrying(partial(resolve, crm, mine, settings.policy_for(network), rejected))
            )
        # Leads for authors nobody matched, where the network's policy says so. An upsert on
        # the network user id: a retry after a lost answer finds the same Lead.
        leads: dict[int, CrmRef] = {}
        for i, d in sorted(decisions.items()):
            p = profiles[i]
            if not d.link and not d.review and settings.unmatched.get(p.key.network) == "lead":
                leads[i] = retrying(partial(crm.upsert_lead, p))
        now = clock()
        held: list[int] = []
        with db.transaction() as conn:
            for i, d in sorted(decisions.items()):  # in identity order: stable histories
                network = profiles[i].key.network
                if d.link is not None:
                    linking.link(conn, crm_name, i, d.link, "resolver", now)
                    result.linked += 1
                elif i in leads:
                    why = ("no CRM person matched; a Lead was created (unmatched = lead)",)
                    made = Candidate(leads[i], 1.0, "lead_created", why)
                    linking.link(conn, crm_name, i, made, "resolver", now)
                    result.leads += 1
                elif d.review:
                    linking.queue(conn, crm_name, i, d.review, now)
                    result.review += 1
                    held.append(i)
                elif settings.unmatched.get(network) == "skip":
                    outbox.skip(conn, crm_name, i, now)
                    result.skipped += 1
                else:
                    held.append(i)
                    result.unmatched += 1
            outbox.defer_resolution(conn, held, now, settings.backoff, settings.max_backoff)
        result.looked_up += len(todo)
    return result
