"""The candidate search's SOQL: a batch's e-mails, phones, names and domains as few queries
per person object as the URL allows.

Each value becomes a :class:`Term`; a chunk of terms is one query, cut only by the
statement budget (:data:`~connectors.salesforce.composite.STATEMENT_BUDGET`: the queries
travel in a composite request's body, not in a URL). A query whose answer fills the row cap
is asked again in halves by the caller (:func:`halves`), so packing values tightly never
loses a candidate. Name pairs sharing a one-letter side are written once per
letter, ``(FirstName LIKE 'j%' AND (LastName LIKE 'smi%' OR LastName LIKE 'sco%'))``, which
nearly halves what a batch of names costs.
"""

from __future__ import annotations

import math
from collections.abc import Container, Iterator, Sequence
from dataclasses import dataclass

from connectors.salesforce.composite import STATEMENT_BUDGET
from connectors.salesforce.identity.lookup import askable, soql_quote
from connectors.salesforce.identity.people import (
    CANDIDATE_LIMIT,
    PERSON_PREFIXES,
    PHONE_TAIL,
    SHAPES,
    Shape,
    digits,
    id18,
    like,
    person_fields,
)
from connectors.salesforce.settings import IdentityFields
from syncd.model import PeopleQuery


@dataclass(frozen=True)
class Term:
    """One value's condition. E-mails and ids join one IN list each (``text`` is the quoted
    literal); a name pair is ``text`` under its ``group`` (the shared one-letter side)."""

    kind: str  # "email" | "id" | "phone" | "name" | "pair" | "domain"
    text: str
    group: str = ""


def _ids(query: PeopleQuery, obj: str) -> list[str]:
    """The query's record ids that can name an ``obj`` (by key prefix), in 18-char form."""
    full = (id18(i.strip()) for i in query.ids)
    return sorted({i for i in full if i and PERSON_PREFIXES.get(i[:3]) == obj})


def _pair(first: str, last: str) -> Term:
    """``(first, last)`` prefixes, grouped under the shorter (usually an initial)."""
    first_like = f"FirstName LIKE {like(first, after='%')}"
    last_like = f"LastName LIKE {like(last, after='%')}"
    if len(first) <= len(last):
        return Term("pair", last_like, first_like)
    return Term("pair", first_like, last_like)


def terms(query: PeopleQuery, shape: Shape, obj: str) -> list[Term]:
    """A term per value, in a stable order (pairs by group, so a chunk shares groups).

    Salesforce keeps phones as typed ("+1 (415) 555-0134"), so no text comparison finds
    digits. A phone is looked for by its last seven digits with a wildcard between each
    (``'%5%5%5%0%1%3%4'``): any punctuation matches, and the rows are checked again in
    Python against the numbers asked for. A name pair is one condition on both names:
    selective where a lone prefix (``LastName LIKE 'smi%'``) finds every Smith.
    """
    query = PeopleQuery(
        emails=frozenset(filter(askable, query.emails)),
        phones=query.phones,
        name_prefixes=frozenset(filter(askable, query.name_prefixes)),
        domains=frozenset(filter(askable, query.domains)),
        names=frozenset(n for n in query.names if askable(n[0]) and askable(n[1])),
        ids=query.ids,
    )  # a value no text field can hold matches nothing, and could overflow the URL
    out = [Term("email", soql_quote(e)) for e in sorted(query.emails)]
    out += [Term("id", soql_quote(i)) for i in _ids(query, obj)]
    for phone in sorted(query.phones):
        if len(tail := digits(phone)[-PHONE_TAIL:]) == PHONE_TAIL:
            pattern = "'%" + "%".join(tail) + "'"  # ASCII digits: nothing to escape
            out.append(Term("phone", f"Phone LIKE {pattern} OR MobilePhone LIKE {pattern}"))
    for prefix in sorted(p for p in query.name_prefixes if p):  # "" would be every row
        pattern = like(prefix, after="%")
        out.append(Term("name", f"FirstName LIKE {pattern} OR LastName LIKE {pattern}"))
    pairs = (_pair(first, last) for first, last in query.names if first and last)
    out += sorted(pairs, key=lambda t: (t.group, t.text))
    for domain in sorted(query.domains):
        site = like(domain, "%", "%")
        out.append(
            Term("domain", f"Email LIKE {like(domain, '%@')} OR {shape.website} LIKE {site}")
        )
    return out


def _cost(term: Term, groups: set[str]) -> int:
    """What ``term`` adds to a statement: itself and " OR ", and its group's first time."""
    extra = len(f"({term.group} AND ()) OR ") if term.group and term.group not in groups else 0
    return len(term.text) + 4 + extra


def people_chunks(
    obj: str, query: PeopleQuery, leave_out: Container[str] = (), rows_per_term: float = 0.0
) -> Iterator[list[Term]]:
    """The query's terms for ``obj`` (but those whose text is in ``leave_out``) in runs whose
    statement stays within budget. Given how many rows a term finds (``rows_per_term``, as
    earlier answers went), terms expected to fill the row cap are first dealt out to as
    many queries as keep each answer within three quarters of it (room for a batch that
    finds more than the last), every k-th term to one (the e-mails, which find one row
    each, and the name pairs, which find many, spread alike), so a batch is asked at once
    rather than in a query that fills the cap and is asked again in halves."""
    chosen = [t for t in terms(query, SHAPES[obj], obj) if t.text not in leave_out]
    expected = len(chosen) * rows_per_term
    parts = math.ceil(expected / (CANDIDATE_LIMIT * 3 // 4)) if expected >= CANDIDATE_LIMIT else 1
    for share in (chosen[i::parts] for i in range(min(parts, len(chosen)))):
        yield from _within_budget(share)


def _within_budget(chosen: Sequence[Term]) -> Iterator[list[Term]]:
    chunk: list[Term] = []
    size, groups = 0, set[str]()
    for term in chosen:
        if chunk and size + _cost(term, groups) > STATEMENT_BUDGET:
            yield chunk
            chunk, size, groups = [], 0, set()
        size += _cost(term, groups)
        chunk.append(term)
        groups.add(term.group)
    if chunk:
        yield chunk


def halves(chunk: Sequence[Term]) -> list[list[Term]]:
    """A chunk whose answer filled the row cap, split to be asked again."""
    mid = len(chunk) // 2
    return [list(chunk[:mid]), list(chunk[mid:])]


def people_soql(
    obj: str, fields: IdentityFields | None, chunk: Sequence[Term], also: Sequence[str] = ()
) -> str:
    """ONE candidate query for a chunk of terms against one person object; ``also``: more
    columns (every network's id and handle fields)."""
    shape = SHAPES[obj]
    emails = [t.text for t in chunk if t.kind == "email"]
    ids = [t.text for t in chunk if t.kind == "id"]
    parts = [f"Email IN ({', '.join(emails)})"] if emails else []
    parts += [f"Id IN ({', '.join(ids)})"] if ids else []
    grouped: dict[str, list[str]] = {}
    for t in chunk:
        if t.kind == "pair":
            grouped.setdefault(t.group, []).append(t.text)
        elif t.kind not in ("email", "id"):
            parts.append(t.text)
    for group, members in grouped.items():
        either = members[0] if len(members) == 1 else f"({' OR '.join(members)})"
        parts.append(f"({group} AND {either})")
    where = " OR ".join(parts)
    if shape.only:
        where = f"{shape.only} AND ({where})"
    select = person_fields(obj, fields, also)
    return f"SELECT {select} FROM {obj} WHERE {where} LIMIT {CANDIDATE_LIMIT}"


def people_queries(obj: str, fields: IdentityFields | None, query: PeopleQuery) -> Iterator[str]:
    """The candidate queries for one object, before any is split at the row cap."""
    for chunk in people_chunks(obj, query):
        yield people_soql(obj, fields, chunk)
