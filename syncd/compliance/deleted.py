"""Posts deleted on the network must not stand in the CRM as if they had not been.

One run re-checks the posts written to the CRM within ``horizon`` that were not checked (or
written) in the last ``interval`` (the network asked in batches of its source's
``post_check_batch``), then
applies ``action`` to the CRM records of those found deleted: ``delete`` them, or ``mark``
them (a status field says "Deleted", the text is blanked). Each check is stored
(:mod:`syncd.state.post_checks`, which holds every statement of this job) in its own
transaction, so a run cut short resumes where it stopped; a
post found deleted is never asked again, and once its CRM record is dealt with it is never
touched again. Its text and raw payload are emptied in state too.

The daemon runs :func:`run` on a schedule (``App.compliance``); ``syncd compliance run``
runs it once.

Before a write, :func:`before_write` asks the same of deliveries whose post was last seen
standing longer ago than ``[compliance] before_write`` (a held author's, a backlog's): a post
deleted meanwhile is never written (its delivery ends ``deleted``, with the reason, and its
check is recorded as acted on). Fresh ones are written as read: a post deleted in the
minutes after it was read is found by :func:`run` after its write, like any other.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, TypeVar

from syncd.contracts import Crm, RecordOutcome, Source
from syncd.errors import ExternalError
from syncd.state import post_checks
from syncd.state.db import Database
from syncd.state.post_checks import DuePost

log = logging.getLogger("syncd.compliance")

Action = Literal["delete", "mark"]


@dataclass
class ComplianceReport:
    checked: int = 0  # posts asked about
    deleted: int = 0  # of them, found deleted on the network
    undecided: int = 0  # of them, neither found nor reported deleted (asked again later)
    acted: int = 0  # CRM records deleted or marked
    failed: int = 0  # CRM records the CRM refused (tried again next run)
    errors: dict[str, str] = field(default_factory=dict)  # source → why it was not asked


_D = TypeVar("_D", bound=DuePost)


def run(
    db: Database,
    crm_name: str,
    crm: Crm,
    sources: Mapping[str, Source],
    *,
    horizon: timedelta,
    interval: timedelta,
    action: Action,
    now: datetime,
    stopping: Callable[[], bool] = lambda: False,
) -> ComplianceReport:
    """Check due posts, then act on every post found deleted and not yet acted on."""
    report = ComplianceReport()
    after = 0
    while not stopping():
        with db.connect() as conn:
            due = post_checks.due(conn, crm_name, now - horizon, now - interval, after)
        if not due:
            break
        after = due[-1].interaction_id
        for source_name, posts in _by_source(due, sources).items():
            source = sources.get(source_name)
            if source is None:
                report.errors.setdefault(source_name, "no configured source for its network")
                continue
            size = source.post_check_batch
            for start in range(0, len(posts), size):
                batch = posts[start : start + size]
                try:
                    alive, deleted = _lookup(source, batch)
                except ExternalError as exc:  # one source failing must not stop the others
                    report.errors[source_name] = f"{type(exc).__name__}: {exc}"
                    break
                gone = [p.interaction_id for p in batch if p.post_id in deleted]
                report.checked += len(batch)
                report.deleted += len(gone)
                report.undecided += sum(p.post_id not in (alive | deleted) for p in batch)
                with db.transaction() as conn:
                    post_checks.record(conn, [p.interaction_id for p in batch], set(gone), now)
    _act(db, crm_name, crm, action, now, report)
    return report


def _lookup(source: Source, posts: Sequence[DuePost]) -> tuple[set[str], set[str]]:
    """The source asked about ``posts``, with the refs of those read with one (a post of
    another server known where it was read by an id its key does not tell)."""
    refs = {p.post_id: p.ref for p in posts if p.ref is not None}
    ids = [p.post_id for p in posts]
    return source.lookup_posts(ids, refs) if refs else source.lookup_posts(ids)


def _by_source(due: Sequence[_D], sources: Mapping[str, Source]) -> dict[str, list[_D]]:
    """Each post goes to the source that read it, or to one of the same network if that
    source is gone from the config (any can look a post up)."""
    networks: dict[str, str] = {}
    for name, source in sources.items():
        networks.setdefault(source.network, name)
    out: dict[str, list[_D]] = defaultdict(list)
    for post in due:
        name = post.source if post.source in sources else networks.get(post.network, post.source)
        out[name].append(post)
    return out


def _act(
    db: Database, crm_name: str, crm: Crm, action: Action, now: datetime, report: ComplianceReport
) -> None:
    with db.connect() as conn:
        rows = post_checks.unacted(conn, crm_name)
    records = {r.crm_record_id: r.interaction_id for r in rows if r.crm_record_id}
    unrecorded = [r.interaction_id for r in rows if not r.crm_record_id]
    apply = crm.delete_history if action == "delete" else crm.mark_history_deleted
    ids = list(records)
    # A post written to several targets (a Task and a SocialPost) is acted on once all its
    # records are: its records left to answer, and the posts one of whose was refused.
    left = Counter(records.values())
    held: set[int] = set()
    for start in range(0, len(ids), 200):
        outcomes: Sequence[RecordOutcome] = apply(ids[start : start + 200])
        refused = [
            (records[o.record_id], f"{o.error_code}: {o.error}") for o in outcomes if not o.ok
        ]
        left.subtract(records[o.record_id] for o in outcomes)
        held.update(iid for iid, _ in refused)
        answered = dict.fromkeys(records[o.record_id] for o in outcomes)
        done = [iid for iid in answered if left[iid] == 0 and iid not in held]
        report.acted += sum(o.ok for o in outcomes)
        report.failed += len(refused)
        with db.transaction() as conn:
            post_checks.acted(conn, done, action, now)
            for iid, why in refused:
                post_checks.refused(conn, iid, why)
    if unrecorded:  # written without a record id: nothing in the CRM to reach
        with db.transaction() as conn:
            post_checks.acted(conn, unrecorded, action, now)
    if report.failed:
        log.warning("compliance: the CRM refused %d record(s); retried next run", report.failed)


# -- before a write ------------------------------------------------------------------------


def before_write(
    db: Database,
    sources: Mapping[str, Source],
    delivery_ids: Sequence[int],
    *,
    seen_before: datetime,
    now: datetime,
    owner: str | None = None,
    failing: set[str] | None = None,
) -> set[int]:
    """Of ``delivery_ids`` (about to be written), those not to write: their post was found
    deleted on the network. Asked only for posts last seen standing (read, or checked)
    before ``seen_before``, batched as each source takes them; each is recorded as a compliance
    check would be, and the deleted ones' deliveries end ``deleted`` with the reason (only
    while ``owner`` still claims them, on PostgreSQL). A source that cannot answer decides
    nothing: its posts are written, and :func:`run` deals with them after; ``failing`` (the
    caller's, kept between calls) holds such sources, so it is said once while it lasts."""
    failing = set() if failing is None else failing
    with db.connect() as conn:
        due = post_checks.pending(conn, delivery_ids, seen_before)
    if not due:
        return set()
    gone = [p for p in due if p.deleted]
    checked: list[int] = []
    found: set[int] = set()
    for source_name, posts in _by_source(due, sources).items():
        source = sources.get(source_name)
        ask = [p for p in posts if not p.deleted]
        if source is None or not ask:
            continue
        try:
            _, deleted = _lookup(source, ask)
        except ExternalError as exc:
            if source_name not in failing:  # said once while it lasts, not per batch
                failing.add(source_name)
                log.warning(
                    "%s: posts not checked before their write (%s): written as read, and "
                    "checked after by the compliance job",
                    source_name,
                    exc,
                )
            continue
        if source_name in failing:
            failing.discard(source_name)
            log.info("%s: posts are checked before their write again", source_name)
        checked += [p.interaction_id for p in ask]
        hit = [p for p in ask if p.post_id in deleted]
        found |= {p.interaction_id for p in hit}
        gone += hit
    with db.transaction() as conn:
        if checked:
            post_checks.record(conn, checked, found, now)
        post_checks.unwritten(conn, gone, now, owner)
    if gone:
        log.info("%d post(s) deleted on the network before their write: not written", len(gone))
    return {p.delivery_id for p in gone}
