"""Links with provenance, their history, and the review queue.

Every change to a link goes through here and leaves a ``link_events`` row: who or what made
it, by which matcher, with which score and reasons. Unlinking keeps the history; a rejected
candidate is remembered so the resolver never offers it for that author again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Connection, any_, bindparam, case, delete, or_, select, update
from sqlalchemy.dialects.postgresql import ARRAY

from syncd.model import Candidate, CrmRef, IdentityKey, Profile, ReviewState
from syncd.state.coordination import shared
from syncd.state.ingest import insert_for
from syncd.state.many import chunks, given_rows, insert_many, one_of
from syncd.state.tables import (
    PRIORITY_MAX,
    candidates,
    crm_keys,
    identities,
    identity_handles,
    link_events,
    links,
)


def _event_row(
    crm: str,
    identity_id: int,
    action: str,
    actor: str,
    now: datetime,
    c: Candidate | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    return {
        "identity_id": identity_id,
        "crm": crm,
        "action": action,
        "crm_object": c.ref.object if c else None,
        "crm_id": c.ref.id if c else None,
        "crm_name": c.ref.name if c else None,
        "matcher": c.matcher if c else None,
        "score": c.score if c else None,
        "reasons": list(c.reasons) if c else None,
        "actor": actor,
        "note": note,
        "at": now,
    }


def _event(
    conn: Connection,
    crm: str,
    identity_id: int,
    action: str,
    actor: str,
    now: datetime,
    *,
    c: Candidate | None = None,
    note: str | None = None,
) -> None:
    conn.execute(
        link_events.insert().values(**_event_row(crm, identity_id, action, actor, now, c, note))
    )


def stored_priority(ref: CrmRef) -> str | None:
    """A person's priority value as a row holds it: one too long to be any mapping's value is
    none (the record gets the default, as for an unmapped value)."""
    value = (ref.priority or "").strip()
    return value if value and len(value) <= PRIORITY_MAX else None


def as_candidate(r: Any) -> Candidate:
    """A link or candidate row as the resolver's Candidate."""
    ref = CrmRef(r.crm_object, r.crm_id, r.crm_name, r.crm_priority)
    return Candidate(ref, r.score or 0.0, r.matcher, tuple(r.reasons or ()))


# -- what the resolver reads ---------------------------------------------------------------
def profiles(conn: Connection, identity_ids: Sequence[int]) -> dict[int, Profile]:
    ids = list(identity_ids)
    if not ids:
        return {}
    past: dict[int, list[str]] = {}
    for i, handle in conn.execute(
        select(identity_handles.c.identity_id, identity_handles.c.handle)
        .where(identity_handles.c.identity_id.in_(ids))
        .order_by(identity_handles.c.first_seen_at)
    ):
        past.setdefault(i, []).append(handle)
    out: dict[int, Profile] = {}
    for r in conn.execute(select(identities).where(identities.c.id.in_(ids))):
        out[r.id] = Profile(
            key=IdentityKey(r.network, r.user_id, r.handle),
            display_name=r.display_name,
            description=r.description,
            location=r.location,
            url=r.url,
            past_handles=tuple(h for h in past.get(r.id, []) if h != r.handle),
        )
    return out


def rejected(conn: Connection, crm: str, identity_ids: Sequence[int]) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {}
    for i, crm_id in conn.execute(
        select(candidates.c.identity_id, candidates.c.crm_id).where(
            candidates.c.crm == crm,
            candidates.c.state == ReviewState.REJECTED,
            candidates.c.identity_id.in_(list(identity_ids)),
        )
    ):
        out.setdefault(i, set()).add(crm_id)
    return out


# -- links ---------------------------------------------------------------------------------
def link(
    conn: Connection,
    crm: str,
    identity_id: int,
    c: Candidate,
    actor: str,
    now: datetime,
    note: str | None = None,
) -> None:
    """Make ``c`` the identity's link (replacing any other), and close its review."""
    link_many(conn, crm, [(identity_id, c)], actor, now, note)


def link_many(
    conn: Connection,
    crm: str,
    pairs: Sequence[tuple[int, Candidate]],
    actor: str,
    now: datetime,
    note: str | None = None,
) -> int:
    """:func:`link` for many identities, in a handful of statements whatever their number
    (the resolver links up to a batch at once; one statement set per link cost more than
    the look-ups). Returns how many links changed."""
    wanted = dict(pairs)  # one candidate per identity: the last one given wins
    if not wanted:
        return 0
    current: dict[int, str] = {}
    ids = sorted(wanted)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        rows = conn.execute(
            select(links.c.identity_id, links.c.crm_id).where(
                links.c.crm == crm, links.c.identity_id.in_(chunk)
            )
        )
        current.update((i, crm_id) for i, crm_id in rows)
    todo = {i: c for i, c in sorted(wanted.items()) if current.get(i) != c.ref.id}
    if not todo:
        return 0
    replaced = [i for i in todo if i in current]
    for i in replaced:
        unlink(conn, crm, [i], actor, now, note=f"replaced by {todo[i].ref.id}")
    # Two jobs may link the same new author at once (the on-file linker and a resolver
    # run, on PostgreSQL in other instances): the first link stands, the other is no
    # change, and only the links made here are noted as made.
    ins = insert_for(conn, links)
    made = insert_many(
        conn,
        ins.on_conflict_do_nothing(index_elements=["identity_id", "crm"]).returning(
            links.c.identity_id
        ),
        [
            {
                "identity_id": i,
                "crm": crm,
                "crm_object": c.ref.object,
                "crm_id": c.ref.id,
                "crm_name": c.ref.name,
                "crm_priority": stored_priority(c.ref),
                "matcher": c.matcher,
                "score": c.score,
                "reasons": list(c.reasons),
                "created_by": actor,
                "created_at": now,
            }
            for i, c in todo.items()
        ],
    ).scalars()
    made_ids = set(made)
    todo = {i: c for i, c in todo.items() if i in made_ids}
    if not todo:
        return 0
    insert_many(
        conn,
        link_events.insert(),
        [_event_row(crm, i, "link", actor, now, c, note) for i, c in todo.items()],
    )
    # The linked candidate is accepted; the others are moot while this link stands.
    chosen = [{"ident": i, "chosen": c.ref.id} for i, c in todo.items()]
    given = given_rows(
        conn, chosen, {"ident": candidates.c.identity_id.type, "chosen": candidates.c.crm_id.type}
    )
    decide = (
        update(candidates)
        .where(
            candidates.c.identity_id == given["ident"],
            candidates.c.crm == crm,
            candidates.c.state == ReviewState.OPEN,
        )
        .values(
            state=case(
                (candidates.c.crm_id == given["chosen"], ReviewState.ACCEPTED),
                else_=ReviewState.STALE,
            ),
            decided_at=now,
            decided_by=actor,
        )
    )
    if shared(conn):
        # The ids again, as an array, for the same reason as outbox.mark_written's.
        deciding = bindparam("deciding", list(todo), type_=ARRAY(BigInteger))
        conn.execute(decide.where(candidates.c.identity_id == any_(deciding)))
    else:
        conn.execute(decide, chosen)
    return len(todo)


def unlink(
    conn: Connection,
    crm: str,
    identity_ids: Iterable[int],
    actor: str,
    now: datetime,
    note: str | None = None,
) -> list[int]:
    """Remove links (history kept) and make those identities due for resolution now."""
    ids = sorted(set(identity_ids))
    if not ids:
        return []
    rows = conn.execute(select(links).where(links.c.crm == crm, links.c.identity_id.in_(ids))).all()
    for r in rows:
        gone = as_candidate(r)
        _event(conn, crm, r.identity_id, "unlink", actor, now, c=gone, note=note)
    conn.execute(delete(links).where(links.c.crm == crm, links.c.identity_id.in_(ids)))
    conn.execute(
        update(identities)
        .where(identities.c.id.in_(ids))
        .values(resolve_after=None, resolve_attempts=0, updated_at=now)
    )
    return [r.identity_id for r in rows]


def priorities_held(conn: Connection, crm: str) -> bool:
    """Whether any link carries a priority value (the CRM reports customers' priorities)."""
    stmt = select(links.c.id).where(links.c.crm == crm, links.c.crm_priority.is_not(None))
    return conn.execute(stmt.limit(1)).first() is not None


def refresh_priorities(
    conn: Connection, crm: str, people: Iterable[CrmRef], *, copy: bool = True
) -> None:
    """Take the priority values the CRM reports for these people (the change watch's) into
    their links, review items and, with ``copy``, the local copy of CRM keys: every author
    linked to one person gets the new value, whatever network they write from."""
    latest = {ref.id: stored_priority(ref) for ref in people}  # a person given twice: the last
    if not latest:
        return
    columns = [
        (links.c.crm_id, links.c.crm_priority),
        (candidates.c.crm_id, candidates.c.crm_priority),
    ]
    if copy:
        columns.append((crm_keys.c.record_id, crm_keys.c.priority))
    for rid, value in columns:
        table = value.table
        # Read, then rewrite only the rows whose value changed, one statement per value: a
        # keys load gives thousands of people a page, most unchanged, and a statement per
        # person cost PostgreSQL a round trip each.
        changed: dict[str | None, set[str]] = {}
        for chunk in chunks(sorted(latest)):
            held = conn.execute(
                select(rid, value).where(table.c.crm == crm, one_of(conn, rid, chunk))
            )
            for record_id, old in held:
                if old != (new := latest[record_id]):
                    changed.setdefault(new, set()).add(record_id)
        for new, ids in sorted(changed.items(), key=lambda item: item[0] or ""):
            for chunk in chunks(sorted(ids)):
                conn.execute(
                    update(table)
                    .where(table.c.crm == crm, one_of(conn, rid, chunk))
                    .values({value.name: new})
                )


def follow(
    conn: Connection, crm: str, moves: Iterable[tuple[CrmRef, CrmRef]], now: datetime
) -> int:
    """Point every link at a merged-away record to the record it was merged into."""
    n = 0
    for old, new in moves:
        rows = conn.execute(
            select(links.c.identity_id).where(links.c.crm == crm, links.c.crm_id == old.id)
        ).all()
        for (identity_id,) in rows:
            conn.execute(
                update(links)
                .where(links.c.identity_id == identity_id, links.c.crm == crm)
                .values(
                    crm_object=new.object,
                    crm_id=new.id,
                    crm_name=new.name,
                    crm_priority=stored_priority(new),
                )
            )
            why = (f"{old.object} {old.id} was merged into {new.id}",)
            _event(
                conn, crm, identity_id, "merge", "writer", now, c=Candidate(new, 1.0, "merge", why)
            )
            n += 1
    return n


# -- the review queue ----------------------------------------------------------------------
def _candidate_row(
    identity_id: int, crm: str, c: Candidate, state: str, now: datetime
) -> dict[str, Any]:
    return {
        "identity_id": identity_id,
        "crm": crm,
        "crm_object": c.ref.object,
        "crm_id": c.ref.id,
        "crm_name": c.ref.name,
        "crm_priority": stored_priority(c.ref),
        "matcher": c.matcher,
        "score": c.score,
        "reasons": list(c.reasons),
        "state": state,
        "created_at": now,
    }


def queue(
    conn: Connection, crm: str, identity_id: int, found: Sequence[Candidate], now: datetime
) -> int:
    """Offer candidates for review; a candidate already decided stays decided."""
    if not found:
        return 0
    ins = insert_for(conn, candidates)
    stmt = ins.on_conflict_do_update(
        index_elements=["identity_id", "crm", "crm_id"],
        set_={
            "score": ins.excluded.score,
            "reasons": ins.excluded.reasons,
            "matcher": ins.excluded.matcher,
            "crm_name": ins.excluded.crm_name,
            "crm_priority": ins.excluded.crm_priority,
        },
        where=candidates.c.state == ReviewState.OPEN,
    )
    conn.execute(stmt, [_candidate_row(identity_id, crm, c, ReviewState.OPEN, now) for c in found])
    return len(found)


def candidate(conn: Connection, crm: str, candidate_id: int) -> tuple[int, Candidate, str] | None:
    r = conn.execute(
        select(candidates).where(candidates.c.id == candidate_id, candidates.c.crm == crm)
    ).first()
    if r is None:
        return None
    c = as_candidate(r)
    return r.identity_id, c, r.state


def reject(
    conn: Connection, crm: str, candidate_ids: Sequence[int], actor: str, now: datetime
) -> int:
    rows = conn.execute(
        select(candidates).where(
            candidates.c.crm == crm,
            candidates.c.id.in_(list(candidate_ids)),
            or_(candidates.c.state == ReviewState.OPEN, candidates.c.state == ReviewState.STALE),
        )
    ).all()
    for r in rows:
        c = as_candidate(r)
        _event(conn, crm, r.identity_id, "reject", actor, now, c=c)
    if rows:
        conn.execute(
            update(candidates)
            .where(candidates.c.id.in_([r.id for r in rows]))
            .values(state=ReviewState.REJECTED, decided_at=now, decided_by=actor)
        )
    return len(rows)


def forbid(
    conn: Connection,
    crm: str,
    identity_id: int,
    c: Candidate,
    actor: str,
    now: datetime,
    note: str | None = None,
) -> None:
    """Remember that ``c`` is not this author, whether or not it was ever offered: the
    resolver never proposes it again (an admin removing a wrong link, rejecting a search hit)."""
    ins = insert_for(conn, candidates)
    conn.execute(
        ins.on_conflict_do_update(
            index_elements=["identity_id", "crm", "crm_id"],
            set_={"state": ReviewState.REJECTED, "decided_at": now, "decided_by": actor},
        ),
        {
            **_candidate_row(identity_id, crm, c, ReviewState.REJECTED, now),
            "decided_at": now,
            "decided_by": actor,
        },
    )
    _event(conn, crm, identity_id, "reject", actor, now, c=c, note=note)
