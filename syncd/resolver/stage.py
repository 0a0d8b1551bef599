"""The resolve stage of the pipeline: held authors in, links and review candidates out.

Network calls (the look-ups, creating Leads) never run inside a database transaction; each
round reads a batch, asks the CRM, then stores every decision in one transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Literal

from syncd.contracts import Crm
from syncd.errors import AuthError, ExternalError
from syncd.model import Candidate, CrmRef, PeopleChanges, Profile
from syncd.resolver import on_file
from syncd.resolver.chain import Lookup, Policy, affected, resolve
from syncd.state import crm_keys, linking, outbox, privacy
from syncd.state.db import Database

log = logging.getLogger("syncd.resolver")

Unmatched = Literal["hold", "lead", "skip"]
UNMATCHED: tuple[Unmatched, ...] = ("hold", "lead", "skip")
WATCH_BATCH = 1000  # held authors read per transaction when CRM people changed
ON_FILE_MATCHERS = ("crm_user_id", "crm_handle")  # the matchers the local copy answers


@dataclass(frozen=True)
class ResolveSettings:
    policy: Policy = field(default_factory=Policy)
    # Per network: what to do with an author no CRM person matches (and no candidate either).
    unmatched: Mapping[str, Unmatched] = field(default_factory=dict)
    policies: Mapping[str, Policy] = field(default_factory=dict)  # per-network overrides
    batch: int = 200
    backoff: timedelta = timedelta(minutes=5)
    max_backoff: timedelta = timedelta(hours=6)
    # How often to ask the CRM which people changed (zero: never; held authors then wait
    # for their back-off). The daemon asks on this cadence while authors are held; a run
    # may be told to ask now, or not at all (``run``'s ``check_crm``).
    crm_check: timedelta = timedelta(seconds=10)

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
    woken: int = 0  # held authors asked again early because CRM people changed


def run(
    db: Database,
    crm_name: str,
    crm: Crm,
    settings: ResolveSettings,
    clock: Callable[[], datetime],
    retrying: Callable[[Callable[[], Any]], Any],
    stopping: Callable[[], bool],
    *,
    gather: timedelta = timedelta(0),
    check_crm: bool | None = None,
    on_file_first: bool = True,
) -> ResolveResult:
    """Offer due authors to the resolver chain. ``check_crm``: ask the CRM which people
    changed first, now (True), once ``crm_check`` has passed since the last time (None), or
    not in this run (False: the daemon asks on a cadence of its own); never when the
    interval is zero. ``on_file_first``: link every due author the copy knows before any
    search; the daemon's on-file linker (:func:`link_on_file`) has tried the new ones, and
    the chain asks the copy first for the rest anyway."""
    result = ResolveResult()
    lookup = None
    if settings.crm_check:  # the copy is only as current as the watch keeps it
        if check_crm is not False:
            result.woken = watch(
                db, crm_name, crm, settings.crm_check, clock, retrying, at_once=bool(check_crm)
            )
        if on_file.refresh(db, crm_name, crm, clock, retrying, stopping):
            lookup = on_file.lookup(db, crm_name)
    on_file_after = 0  # identities above this id have not yet been tried against the copy
    while not stopping():
        if lookup is not None and on_file_first:
            # Authors the copy knows are linked before anyone waits on a candidate search
            # (a network call per batch): new authors' posts go out within seconds, however
            # many unknown authors queue for the search behind them.
            on_file_after = _link_on_file(
                db, crm_name, crm, settings, clock, lookup, on_file_after, result
            )
        with db.connect() as conn:  # a read: no write lock held while others write
            todo = outbox.identities_to_resolve(conn, crm_name, clock(), settings.batch)
            ids = [u.identity_id for u in todo]
            profiles = linking.profiles(conn, ids)
            rejected = linking.rejected(conn, crm_name, ids)
        # Without the copy every author waits on the search: nobody is kept waiting for it.
        if not todo or (lookup is not None and _gathering(todo, settings.batch, clock(), gather)):
            return result
        decisions = {}
        # One chain run for every network that shares a policy (the usual case: all of
        # them): its look-ups and candidate search are then one set of batched CRM calls for
        # the whole batch, not one set per network. The chain scores each author against
        # its own network's ids, so mixing networks in one run links no one differently.
        by_policy: dict[Policy, dict[int, Profile]] = {}
        for i, p in profiles.items():
            by_policy.setdefault(settings.policy_for(p.key.network), {})[i] = p
        for policy, mine in by_policy.items():
            decisions.update(retrying(partial(resolve, crm, mine, policy, rejected, lookup)))
        # Leads for authors nobody matched, where the network's policy says so. An upsert on
        # the network user id: a retry after a lost answer finds the same Lead.
        leads: dict[int, CrmRef] = {}
        for i, d in sorted(decisions.items()):
            p = profiles[i]
            if not d.link and not d.review and settings.unmatched.get(p.key.network) == "lead":
                leads[i] = retrying(partial(crm.upsert_lead, p))
        now = clock()
        held: list[int] = []
        linked: list[tuple[int, Candidate]] = []
        with db.transaction() as conn:
            # Someone forgotten (`syncd forget`) while the CRM was asked is gone from state:
            # not linked nor queued, and a Lead just made for them is deleted below.
            gone = privacy.vanished(conn, list(decisions))
            orphaned = [leads[i].id for i in sorted(gone) if i in leads]
            for i, d in sorted(decisions.items()):  # in identity order: stable histories
                if i in gone:
                    continue
                network = profiles[i].key.network
                if d.link is not None:
                    linked.append((i, d.link))
                    result.linked += 1
                elif i in leads:
                    why = ("no CRM person matched; a Lead was created (unmatched = lead)",)
                    linked.append((i, Candidate(leads[i], 1.0, "lead_created", why)))
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
            linking.link_many(conn, crm_name, linked, "resolver", now)
            outbox.defer_resolution(conn, held, now, settings.backoff, settings.max_backoff)
        if orphaned:
            retrying(partial(crm.delete_history, orphaned))
        result.looked_up += len(todo)
    return result


ON_FILE_BATCH = 2000  # authors tried against the local copy per transaction
# The on-file linker starts each run this many identities below the highest it tried: on
# PostgreSQL concurrent page transactions take identity ids in one order and may commit in
# another, so an author stored a moment late can sit below ids already tried. Further
# below, such an author is the resolver's (within its search's gathering time).
LATE_IDS = 1000


def link_on_file(
    db: Database,
    crm_name: str,
    crm: Crm,
    settings: ResolveSettings,
    clock: Callable[[], datetime],
    after: int = 0,
) -> tuple[ResolveResult, int]:
    """Link the due authors from a little below ``after`` (:data:`LATE_IDS`) up that the local copy
    of the CRM's ids and handles knows, and nothing else; returns the highest identity id
    tried, which the next run starts from. No network call, so a new author's posts need not
    wait behind the CRM calls of a resolver run (its change check, the copy's reload, a
    candidate search), which can take seconds. An author tried and not found waits for the
    resolver, whose chain asks the copy first (the change watch may have brought their
    person since), as does one stored too late for this (see :data:`LATE_IDS`). Until the
    copy is loaded the resolver does it all."""
    result = ResolveResult()
    if not settings.crm_check:  # the copy is only as current as the watch keeps it
        return result, after
    with db.connect() as conn:
        loaded = crm_keys.load_state(conn, crm_name).loaded_at is not None
    if not loaded:
        return result, after
    lookup = on_file.lookup(db, crm_name)
    start = max(0, after - LATE_IDS)
    return result, max(
        after, _link_on_file(db, crm_name, crm, settings, clock, lookup, start, result)
    )


def _gathering(todo: list[outbox.Unresolved], batch: int, now: datetime, gather: timedelta) -> bool:
    """Wait for more authors before searching: the batch is not full, and every author in
    it is new (a retry is due by its back-off) and arrived within ``gather``. One call then
    serves a batch, not the few authors each poll brings; their posts are held until a link
    anyway, and the authors the copy knows are already linked."""
    return len(todo) < batch and all(
        u.attempts == 0 and u.first_seen_at is not None and now - u.first_seen_at < gather
        for u in todo
    )


def _link_on_file(
    db: Database,
    crm_name: str,
    crm: Crm,
    settings: ResolveSettings,
    clock: Callable[[], datetime],
    lookup: Lookup,
    after: int,
    result: ResolveResult,
) -> int:
    """Link every due author above ``after`` whose user id or handle the copy holds, by
    the chain's own id and handle step (no network call); the rest stay due for the full
    chain. Returns the highest identity id tried."""
    while True:
        with db.connect() as conn:
            todo = outbox.identities_to_resolve(conn, crm_name, clock(), ON_FILE_BATCH, after=after)
            ids = [u.identity_id for u in todo]
            profiles = linking.profiles(conn, ids)
            rejected = linking.rejected(conn, crm_name, ids)
        if not todo:
            return after
        after = ids[-1]
        linked: list[tuple[int, Candidate]] = []
        for network in sorted({p.key.network for p in profiles.values()}):
            mine = {i: p for i, p in profiles.items() if p.key.network == network}
            policy = settings.policy_for(network)
            local = replace(
                policy, matchers=tuple(m for m in policy.matchers if m in ON_FILE_MATCHERS)
            )
            if not local.matchers:
                continue
            decided = resolve(crm, mine, local, rejected, lookup)
            linked += [(i, d.link) for i, d in sorted(decided.items()) if d.link is not None]
        if linked:
            with db.transaction() as conn:
                gone = privacy.vanished(conn, [i for i, _ in linked])  # forgotten meanwhile
                linked = [(i, c) for i, c in linked if i not in gone]
                linking.link_many(conn, crm_name, linked, "resolver", clock())
            result.linked += len(linked)
            result.looked_up += len(linked)


def check_wanted(db: Database, crm_name: str, now: datetime) -> bool:
    """Whether asking the CRM which people changed can do any good now: some held author
    waits for a later retry (a new person could be them), a link carries the person's
    priority value (a change to it is what their next records carry), or the watch has not
    started (its first answer is where it starts from). The daemon's cadence asks only then,
    so a CRM is not asked every few seconds for nobody."""
    with db.connect() as conn:
        mark, _ = outbox.crm_mark(conn, crm_name)
        if mark is None or linking.priorities_held(conn, crm_name):
            return True
        return bool(outbox.held_waiting(conn, crm_name, now, 0, 1))


def watch(
    db: Database,
    crm_name: str,
    crm: Crm,
    every: timedelta,
    clock: Callable[[], datetime],
    retrying: Callable[[Callable[[], Any]], Any],
    *,
    at_once: bool = False,
) -> int:
    """At most every ``every`` (``at_once``: now, whenever it last asked): ask the CRM which
    people changed, and make the held authors they could be due now, instead of at the end
    of their back-off. Returns how many."""
    with db.connect() as conn:
        mark, checked_at = outbox.crm_mark(conn, crm_name)
    now = clock()
    if not at_once and checked_at is not None and now - checked_at < every:
        return 0
    try:
        changes: PeopleChanges = retrying(partial(crm.people_changes, mark))
    except AuthError:
        raise  # the CRM is unusable: the resolve round fails and the CRM may be parked
    except ExternalError as exc:
        # Only an early wake-up is lost: the held authors' own retries still come.
        log.warning("could not ask the CRM which people changed (next try in %s): %s", every, exc)
        with db.transaction() as conn:
            outbox.store_crm_mark(conn, crm_name, mark, now)
        return 0
    woken = 0
    if mark is not None and (changes.people or not changes.complete):
        after = 0
        while True:
            with db.transaction() as conn:
                ids = outbox.held_waiting(conn, crm_name, now, after, WATCH_BATCH)
                if not ids:
                    break
                after = ids[-1]
                if changes.complete:
                    ids = sorted(affected(linking.profiles(conn, ids), changes.people))
                woken += outbox.wake(conn, ids)
    with db.transaction() as conn:
        crm_keys.put(conn, crm_name, changes.on_file, now)
        # A changed person's priority value is what their authors' next records carry.
        linking.refresh_priorities(
            conn, crm_name, [p.ref for p in changes.people] + [k.ref for k in changes.on_file]
        )
        outbox.store_crm_mark(conn, crm_name, changes.mark, now)
    if not changes.complete:
        on_file.reload_soon(db, crm_name, now)  # faster than many watch rounds
    if woken:
        why = (
            "many CRM people changed"
            if not changes.complete
            else (f"{len(changes.people)} CRM people changed")
        )
        log.info("%s: %d held author(s) asked again now", why, woken)
    return woken
