"""``syncd forget``: one person out of state and (with ``--crm``) out of the CRM, for good.

The steps (state's side is :mod:`syncd.state.privacy`):

1. one transaction puts the person on the suppression list, marks their unwritten
   deliveries ``forgotten`` and redacts others' posts naming them. From its commit on, no
   poll or backfill stores them again and no writer takes one of their deliveries;
2. writes already under way are waited for. On PostgreSQL every write is claimed for the
   lease, so forget waits until the claims on the person's (and the redacted posts')
   deliveries are released or lapse, and holds the resolver's job lock so no Lead is being
   created for them meanwhile. A writer that stores an answer after this (past its lease,
   or on SQLite, where nothing is claimed) sees that someone was forgotten since it read
   its batch and deletes the record itself (:meth:`syncd.pipeline.deliver.Writer._store_answers`);
3. with the CRM: the records syncd wrote for them and the Lead it created for them are
   deleted, and others' records that named them are written again, redacted;
4. one transaction deletes every row of theirs, after checking that no writer stored a
   record id step 3 did not see (then step 3 runs again for it).

A CRM refusing a deletion stops at step 3: the person stays in state (suppressed), so
running the command again reaches the same records.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from syncd.contracts import Crm
from syncd.errors import UserError
from syncd.pipeline.history import build_record
from syncd.state import privacy, suppression
from syncd.state.coordination import JobLocks, shared
from syncd.state.db import Database

ATTEMPTS = 5  # rounds of step 3-4 when writers keep storing records meanwhile
RESOLVER_WAIT = 120.0  # seconds to wait for a resolver run to end (PostgreSQL)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Forgotten:
    person: privacy.Person
    removed: dict[str, int] = field(default_factory=dict)
    redacted: int = 0  # others' posts the person was redacted from
    crm_deleted: int = 0  # history records and Leads deleted in the CRM
    crm_rewritten: int = 0  # others' records written again without the person
    warnings: list[str] = field(default_factory=list)


def find(conn: Connection, network: str, user: str) -> privacy.Person:
    try:
        person = privacy.find(conn, network, user)
    except privacy.BrandAccount as exc:
        raise UserError(f"refusing to forget {user!r}: {exc}") from None
    if person is None:
        raise UserError(
            f"no {network} user {user!r} in state (by id, handle or former handle): "
            "nothing to forget"
        )
    return person


def forget(
    db: Database,
    network: str,
    user: str,
    *,
    crm_name: str,
    crm: Crm | None,
    lease: float,
    confirm: Callable[[privacy.Person, int], None] | None = None,
    progress: Callable[[str], None] = lambda _: None,
    clock: Callable[[], datetime] = utcnow,
    wait: Callable[[float], None] = time.sleep,
) -> Forgotten:
    """Forget one person (see the module). ``crm``: also delete and rewrite in the CRM.
    ``confirm`` is shown the person and the CRM records at stake before anything changes;
    ``progress`` is told each step (``marked`` once step 1 committed)."""
    with db.connect() as conn:
        person = find(conn, network, user)
        at_stake = len(privacy.crm_records(conn, person, crm_name)) + len(
            privacy.created_leads(conn, person, crm_name)
        )
    if confirm is not None:
        confirm(person, at_stake)
    with _resolver_paused(db, wait, progress):
        with db.transaction() as conn:
            person = find(conn, network, person.user_id)
            others = privacy.begin(conn, person, clock())
        progress("marked")
        _wait_for_writers(db, person, others, clock, wait, progress)
        return _finish(db, person, others, crm_name, crm, clock, progress)


def unsuppress(db: Database, network: str, user: str) -> int:
    """Lift the suppression of the person named by an id or any handle they had."""
    with db.transaction() as conn:
        return suppression.lift(conn, network, user)


@contextmanager
def _resolver_paused(
    db: Database, wait: Callable[[float], None], progress: Callable[[str], None]
) -> Iterator[None]:
    """Hold the resolver's job lock (PostgreSQL): no instance creates a Lead for the person
    between the moment forget lists the Leads and the moment it deletes their identity."""
    if not shared(db.dialect):
        yield
        return
    locks = JobLocks(db.url, db.engine_options)  # its timeouts, its hidden parameters
    try:
        waited = 0.0
        while True:
            with locks.hold("resolve") as mine:
                if mine or waited >= RESOLVER_WAIT:
                    if not mine:
                        progress("the resolver is still running; going on without waiting")
                    yield
                    return
            if waited == 0:
                progress("waiting for a resolver run to end")
            wait(0.5)
            waited += 0.5
    finally:
        locks.dispose()


def _wait_for_writers(
    db: Database,
    person: privacy.Person,
    others: Sequence[int],
    clock: Callable[[], datetime],
    wait: Callable[[float], None],
    progress: Callable[[str], None],
) -> None:
    """Until no writer claims one of the deliveries forget touched. Each claim ends when its
    answer is stored or at its lease; a forgotten delivery is never claimed again, so this
    ends within one lease."""
    told = False
    while True:
        with db.connect() as conn:
            until = privacy.claimed(conn, person, others, clock())
        if until is None:
            return
        if not told:
            progress("waiting for writes under way")
            told = True
        wait(min(max((until - clock()).total_seconds(), 0.05), 0.5))


def _finish(
    db: Database,
    person: privacy.Person,
    others: Sequence[int],
    crm_name: str,
    crm: Crm | None,
    clock: Callable[[], datetime],
    progress: Callable[[str], None],
) -> Forgotten:
    out = Forgotten(person, redacted=len(others))
    done: set[str] = set()
    for attempt in range(ATTEMPTS):
        if crm is not None:
            with db.connect() as conn:
                records = [r for r in privacy.crm_records(conn, person, crm_name) if r not in done]
                leads = [r for r in privacy.created_leads(conn, person, crm_name) if r not in done]
                again = privacy.rewrites(conn, crm_name, others) if attempt == 0 else []
            # History first: deleting a Lead takes its activities along, which would then
            # answer as already gone.
            out.crm_deleted += _delete(crm, records, "record")
            out.crm_deleted += _delete(crm, leads, "Lead")
            done.update(records, leads)
            out.crm_rewritten += _rewrite(crm, again, out.warnings)
        try:
            with db.transaction() as conn:
                now_person = privacy.find(conn, person.network, person.user_id)
                if now_person is None:  # another forget of them finished first
                    return out
                if crm is not None:
                    late = set(privacy.crm_records(conn, now_person, crm_name))
                    late |= set(privacy.created_leads(conn, now_person, crm_name))
                    if late - done:
                        progress("a writer stored a record meanwhile; deleting it too")
                        continue
                out.removed = privacy.forget(conn, now_person)
                return out
        except IntegrityError:
            # A page stored under way attached a post to them after this transaction read
            # theirs (PostgreSQL): read again.
            progress("state changed under way; going again")
    raise UserError(
        f"could not finish forgetting {person.shown} after {ATTEMPTS} rounds: writers kept "
        "storing records for them; they stay suppressed, run the command again"
    )


def _delete(crm: Crm, record_ids: Sequence[str], what: str) -> int:
    if not record_ids:
        return 0
    outcomes = crm.delete_history(record_ids)
    refused = [o for o in outcomes if not o.ok]
    if refused:
        shown = "; ".join(f"{o.record_id}: {o.error_code}: {o.error}" for o in refused[:5])
        more = f" (and {len(refused) - 5} more)" if len(refused) > 5 else ""
        raise UserError(
            f"the CRM refused to delete {len(refused)} of {len(record_ids)} {what}(s): "
            f"{shown}{more}; they stay in state (and suppressed), run the command again"
        )
    return len(outcomes)


def _rewrite(crm: Crm, ready: Sequence[Any], warnings: list[str]) -> int:
    """Write others' records naming the person again, with the redacted text."""
    if not ready:
        return 0
    answers = crm.upsert_history([build_record(d) for d in ready])
    failed = [(d, a) for d, a in zip(ready, answers, strict=True) if not a.ok]
    for d, a in failed[:5]:
        warnings.append(
            f"{d.network}:{d.post_id} names them and could not be written again "
            f"({a.error_code}: {a.error_message}); edit it in the CRM"
        )
    if len(failed) > 5:
        warnings.append(f"and {len(failed) - 5} more record(s) naming them")
    return len(ready) - len(failed)
