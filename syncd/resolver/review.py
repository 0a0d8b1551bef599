"""What a person decides about links: accept or reject a candidate, link by hand, unlink, and
search the CRM for the right record.

A decision only changes state. What was held for the author is released by the link itself
(readiness is the outbox join): the writer sends it on its next round, oldest first.
"""

from __future__ import annotations

import getpass
import re
from dataclasses import dataclass
from datetime import datetime

from rapidfuzz import fuzz
from sqlalchemy import Connection

from syncd.contracts import Crm
from syncd.contracts.text import fold
from syncd.errors import UserError
from syncd.model import Candidate, CrmRef, PeopleQuery, PersonRecord, ReviewState
from syncd.resolver.evidence import emails, phone_digits
from syncd.state import authors, linking

MANUAL = "manual"  # the matcher of a link a person made by picking the record
_RECORD_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")  # fullmatch, never "$" + "\n"
_WORD = re.compile(r"[^\W\d_]{3,}")
SEARCH_RESULTS = 10


def actor() -> str:
    """Who made a decision, for the link history: the operating-system user."""
    try:
        return f"admin:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (a container's random uid)
        return "admin"


@dataclass(frozen=True)
class Decided:
    identity_id: int
    candidate: Candidate
    held: int  # interactions this link releases to the writer


def identity(conn: Connection, who: str) -> int:
    found = authors.find_identity(conn, who)
    if found is None:
        raise UserError(
            f"no author {who!r} in state: give '@handle' (current or former), the network "
            "user id, or '#row' from `syncd links list`"
        )
    return found


def _held(conn: Connection, crm: str, identity_id: int) -> int:
    shown = authors.author(conn, crm, identity_id, posts=0)
    return shown.held if shown else 0


def accept(
    conn: Connection, crm: str, candidate_id: int, who: str, now: datetime, note: str | None
) -> Decided:
    """Link the author to a candidate from the review queue (an open or a stale one)."""
    found = linking.candidate(conn, crm, candidate_id)
    if found is None:
        raise UserError(f"no candidate {candidate_id} (see `syncd links list --review`)")
    identity_id, c, state = found
    if state == ReviewState.REJECTED:
        raise UserError(
            f"candidate {candidate_id} was rejected; to link that record anyway use "
            f"`syncd links add #{identity_id} {c.ref.id}`"
        )
    linking.link(conn, crm, identity_id, c, who, now, note=note or "accepted in review")
    return Decided(identity_id, c, _held(conn, crm, identity_id))


def reject(
    conn: Connection, crm: str, candidate_ids: list[int], who: str, now: datetime
) -> list[int]:
    """Reject candidates for good; returns the given ids that were not open (or stale)."""
    undecided = []
    for i in candidate_ids:
        found = linking.candidate(conn, crm, i)
        if found is not None and found[2] in (ReviewState.OPEN, ReviewState.STALE):
            undecided.append(i)
    linking.reject(conn, crm, undecided, who, now)
    return sorted(set(candidate_ids) - set(undecided))


def add(
    conn: Connection,
    crm: str,
    identity_id: int,
    person: PersonRecord,
    who: str,
    now: datetime,
    note: str | None,
) -> Decided:
    """Link by hand to a record the CRM confirmed exists (see :func:`record`)."""
    why = (f"linked by hand by {who}",) + ((note,) if note else ())
    c = Candidate(person.ref, 1.0, MANUAL, why)
    linking.link(conn, crm, identity_id, c, who, now, note=note)
    return Decided(identity_id, c, _held(conn, crm, identity_id))


def remove(
    conn: Connection,
    crm: str,
    identity_id: int,
    who: str,
    now: datetime,
    note: str | None,
    *,
    forget_record: bool = True,
) -> Candidate:
    """Unlink an author; unless told otherwise, the record is also rejected for that author
    so the resolver does not link it again on its next round."""
    (current,) = authors.links_list(conn, crm, [identity_id]) or (None,)
    if current is None:
        raise UserError(f"author #{identity_id} has no link to remove")
    linking.unlink(conn, crm, [identity_id], who, now, note=note)
    if forget_record:
        linking.forbid(conn, crm, identity_id, current.link, who, now, note="removed by hand")
    return current.link


# -- the CRM side ----------------------------------------------------------------------------
def query_for(text: str) -> PeopleQuery:
    """What a person types to find a record: names, an e-mail, a phone or a record id."""
    words = text.split()
    ids = {w for w in words if _RECORD_ID.fullmatch(w) and any(c.isdigit() for c in w)}
    mails = {w for w in words if "@" in w}
    rest = " ".join(w for w in words if w not in ids and w not in mails)
    return PeopleQuery(
        emails=frozenset(emails(" ".join(mails))),
        phones=frozenset(phone_digits(rest)),
        name_prefixes=frozenset(fold(m) for m in _WORD.findall(rest)),
        ids=frozenset(ids),
    )


def search(crm: Crm, text: str, limit: int = SEARCH_RESULTS) -> list[PersonRecord]:
    """CRM people matching ``text``, best first (exact ids and e-mails, then closest names)."""
    query = query_for(text)
    if not query:
        raise UserError("search for a name (3+ letters), an e-mail, a phone number or a record id")
    wanted = fold(text)

    def rank(p: PersonRecord) -> tuple[int, float]:
        exact = p.ref.id in query.ids or (p.email or "").lower() in query.emails
        name = fold(" ".join(filter(None, (p.first_name, p.last_name))))
        return (0 if exact else 1, -fuzz.token_sort_ratio(wanted, name))

    return sorted(crm.find_people(query), key=rank)[:limit]


def record(crm: Crm, record_id: str) -> PersonRecord:
    """The CRM person with this id, or a UserError saying it is not one."""
    rid = record_id.strip()
    if not _RECORD_ID.fullmatch(rid):
        raise UserError(f"{record_id!r} is not a CRM record id (15 or 18 letters and digits)")
    found = [p for p in crm.find_people(PeopleQuery(ids=frozenset({rid}))) if _same(p.ref, rid)]
    if not found:
        raise UserError(
            f"the CRM has no person {rid} (a Contact or an unconverted Lead syncd can write to)"
        )
    return found[0]


def _same(ref: CrmRef, rid: str) -> bool:
    # 15-character ids are the case-sensitive prefix of the 18-character form.
    return ref.id == rid or ref.id[:15] == rid[:15]
