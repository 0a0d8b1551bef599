"""The resolver chain: matchers in order, each one batched, each author decided once sure.

Every matcher runs once per batch of authors, only for the authors still undecided, so a
page of N authors costs at most a few batched CRM queries however the authors are spread
over the matchers. An author is linked only when the best candidate scores at least
``auto_link`` and beats the next by ``margin``; otherwise candidates above ``review_floor``
go to the review queue, and an author with none is unmatched (see the unmatched policy).
A record that holds the author's handle under another user id of the network is never
linked, whatever else points at it: it goes to the review queue with the reason. A review
item must be worth a person's look: candidates found by a name and nothing else are shown
only when no other candidate has evidence and at most :data:`NAMESAKES` share the name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Literal

from syncd.contracts import Crm
from syncd.contracts.text import fold, label
from syncd.model import (
    Candidate,
    CrmRef,
    Decision,
    IdentityKey,
    Match,
    PeopleQuery,
    PersonRecord,
    Profile,
)
from syncd.resolver import scoring
from syncd.resolver.evidence import (
    emails,
    name_search,
    own_domain,
    phone_digits,
    typed_tokens,
)

Matcher = Literal["crm_user_id", "crm_handle", "social_persona", "contact_points", "fuzzy_name"]
MATCHERS: tuple[Matcher, ...] = (
    "crm_user_id",
    "crm_handle",
    "social_persona",
    "contact_points",
    "fuzzy_name",
)


@dataclass(frozen=True)
class Policy:
    matchers: tuple[str, ...] = MATCHERS
    auto_link: float = 0.92
    margin: float = 0.1
    review_floor: float = 0.6
    max_candidates: int = 5


@dataclass
class _Pool:
    """Candidates found so far for one author, by CRM record id."""

    by_id: dict[str, Candidate] = field(default_factory=dict)

    def add(self, c: Candidate) -> None:
        """Keep the best-scored finding of each record with every reason; a record found
        holding another owner's id stays a question (capped, its reason first), whatever
        other matcher finds it."""
        old = self.by_id.get(c.ref.id)
        if old is None:
            best, other = c, None
        elif c.review_only != old.review_only:
            best, other = (c, old) if c.review_only else (old, c)
        else:
            best, other = (c, old) if c.score > old.score else (old, c)
        extra = tuple(r for r in (other.reasons if other else ()) if r not in best.reasons)
        score = min(best.score, scoring.OTHER_OWNER) if best.review_only else best.score
        alone = best.name_only and (other is None or other.name_only)
        self.by_id[c.ref.id] = Candidate(
            best.ref, score, best.matcher, best.reasons + extra, best.review_only, alone
        )

    def ranked(self) -> list[Candidate]:
        return sorted(self.by_id.values(), key=lambda c: (-c.score, c.ref.id))


def decide(pool: Iterable[Candidate], policy: Policy) -> Decision:
    ranked = sorted(pool, key=lambda c: (-c.score, c.ref.id))
    if not ranked:
        return Decision()
    best = ranked[0]
    runner_up = ranked[1].score if len(ranked) > 1 else 0.0
    sure = best.score >= policy.auto_link and best.score - runner_up >= policy.margin
    if sure and not best.review_only:
        return Decision(link=best)
    worth = [c for c in ranked if c.score >= policy.review_floor or c.review_only]
    alone = sum(c.name_only for c in worth)
    if alone > NAMESAKES or 0 < alone < len(worth):
        # Beside a candidate with evidence, a bare namesake is noise; among many bare
        # namesakes (a common name), a person could only guess.
        worth = [c for c in worth if not c.name_only]
    return Decision(review=tuple(worth)[: policy.max_candidates])


NAMESAKES = 2  # more CRM people found by a name alone than this: none of them is shown


def resolve(
    crm: Crm,
    profiles: Mapping[int, Profile],
    policy: Policy,
    rejected: Mapping[int, set[str]] | None = None,
    lookup: Lookup | None = None,
) -> dict[int, Decision]:
    """Decide every author of ``profiles`` (identity id → profile). The id and handle
    matchers ask ``lookup`` when given (a local copy of what the CRM has on file), else the
    CRM."""
    rejected = rejected or {}
    pools = {i: _Pool() for i in profiles}
    todo = dict(profiles)

    def offer(identity_id: int, c: Candidate) -> None:
        if c.ref.id not in rejected.get(identity_id, set()):
            pools[identity_id].add(c)

    def settle() -> None:
        for i in list(todo):
            if decide(pools[i].by_id.values(), policy).link is not None:
                del todo[i]

    for step in _steps(policy.matchers, lookup or crm.lookup):
        if not todo:
            break
        step(crm, todo, offer)
        settle()
    return {i: decide(pools[i].by_id.values(), policy) for i in profiles}


Offer = Callable[[int, Candidate], None]
Lookup = Callable[[Sequence[IdentityKey]], Mapping[IdentityKey, Match]]
Step = Callable[[Crm, Mapping[int, Profile], Offer], None]


def _steps(matchers: Sequence[str], lookup: Lookup) -> list[Step]:
    """The configured matchers as look-up steps, in order. The user-id and handle fields are
    read by one look-up, and contact points and names by one search, at the position of the
    first of each pair: fewer queries, the same candidates."""
    on = set(matchers)
    steps: list[Step] = []
    placed: set[str] = set()
    for m in matchers:
        if m in ("crm_user_id", "crm_handle") and "fields" not in placed:
            kinds = on & {"crm_user_id", "crm_handle"}
            steps.append(partial(_by_fields, kinds=kinds, lookup=lookup))
            placed.add("fields")
        elif m == "social_persona" and m not in placed:
            steps.append(_by_persona)
            placed.add(m)
        elif m in ("contact_points", "fuzzy_name") and "people" not in placed:
            contact, names = "contact_points" in on, "fuzzy_name" in on
            steps.append(partial(_by_people, contact=contact, names=names))
            placed.add("people")
    return steps


def _by_fields(
    crm: Crm, todo: Mapping[int, Profile], offer: Offer, *, kinds: set[str], lookup: Lookup
) -> None:
    keys: dict[IdentityKey, tuple[int, float]] = {}
    for i, p in todo.items():
        keys[p.key] = (i, scoring.HANDLE)
        for old in p.past_handles:
            if old.casefold() != (p.key.handle or "").casefold():
                keys[IdentityKey(p.key.network, p.key.user_id, old)] = (i, scoring.PAST_HANDLE)
    if not keys:
        return
    for key, match in lookup(list(keys)).items():
        if match.matcher not in kinds or key not in keys:
            continue
        identity_id, handle_score = keys[key]
        held = (match.held_user_id or "").strip()
        if match.matcher == "crm_handle" and held and held != key.user_id.strip():
            offer(identity_id, _other_owner(match.ref, key, held))
        elif match.matcher == "crm_user_id":
            offer(
                identity_id,
                Candidate(
                    match.ref, scoring.USER_ID, match.matcher, (f"user id {key.user_id} on file",)
                ),
            )
        else:
            offer(
                identity_id,
                Candidate(
                    match.ref,
                    handle_score,
                    match.matcher,
                    (f"handle @{(key.handle or '').lstrip('@')} on file",),
                ),
            )


def _other_owner(ref: CrmRef, key: IdentityKey, held: str) -> Candidate:
    """The record holds this handle under another user id: the handle changed owners (X
    hands a released handle to anyone), or the record is wrong. Never a link; a person
    decides, told why."""
    why = (
        f"holds {label(key.network)} user id {held}, not this author's {key.user_id}: "
        f"the handle @{(key.handle or '').lstrip('@')} may have changed owners"
    )
    return Candidate(ref, scoring.OTHER_OWNER, "crm_handle", (why,), review_only=True)


def _by_persona(crm: Crm, todo: Mapping[int, Profile], offer: Offer) -> None:
    by_key = {p.key: i for i, p in todo.items()}
    for key, refs in crm.personas(list(by_key)).items():
        if key in by_key:
            for ref in refs:
                offer(
                    by_key[key],
                    Candidate(ref, scoring.PERSONA, "social_persona", ("social persona record",)),
                )


def _by_people(
    crm: Crm, todo: Mapping[int, Profile], offer: Offer, *, contact: bool, names: bool
) -> None:
    wanted = {i: _wants(p, names=names) for i, p in todo.items()}
    query = PeopleQuery(
        emails=frozenset(v for w in wanted.values() for v in w.emails),
        phones=frozenset(v for w in wanted.values() for v in w.phones),
        name_prefixes=frozenset(v for w in wanted.values() for v in w.name_prefixes),
        domains=frozenset(v for w in wanted.values() for v in w.domains),
        names=frozenset(v for w in wanted.values() for v in w.names),
    )
    if not query:
        return
    people = crm.find_people(query)
    index = _Index(people)
    for i, p in todo.items():
        for person in index.near(wanted[i]):
            s = scoring.score(p, person)
            if s is None:
                continue
            if (s.matcher == "fuzzy_name" and not names) or (
                s.matcher == "contact_points" and not contact
            ):
                continue
            offer(i, Candidate(person.ref, s.score, s.matcher, s.reasons, name_only=s.name_only))


def _wants(p: Profile, *, names: bool) -> PeopleQuery:
    bio = " ".join(filter(None, (p.description, p.url)))
    domains = {d for d in (own_domain(p.url), *(own_domain(e) for e in emails(bio))) if d}
    prefixes, pairs = name_search(p.display_name) if names else (set(), set())
    return PeopleQuery(
        emails=frozenset(emails(bio)),
        phones=frozenset(phone_digits(bio)),
        name_prefixes=frozenset(prefixes),
        domains=frozenset(domains) if names else frozenset(),
        names=frozenset(pairs),
    )


def affected(profiles: Mapping[int, Profile], people: Sequence[PersonRecord]) -> set[int]:
    """The authors some of these (new or changed) CRM people could now match: same user
    id or handle on file, or a value the candidate search would find them by."""
    index = _Index(people)
    # Every network's ids and handles the records hold (one network's when they say no more).
    held = [(k.user_id, k.handle) for p in people for k in p.keys] + [
        (p.user_id, p.handle) for p in people if not p.keys
    ]
    ids = {u for u, _ in held if u}
    handles = {h.casefold() for _, h in held if h}
    out: set[int] = set()
    for i, prof in profiles.items():
        own = {h.casefold() for h in (prof.key.handle, *prof.past_handles) if h}
        if prof.key.user_id in ids or own & handles or index.near(_wants(prof, names=True)):
            out.add(i)
    return out


class _Index:
    """CRM people by what a profile can share with them, so each author is scored only
    against the people its own query values found, not the whole batch's."""

    def __init__(self, people: Sequence[PersonRecord]) -> None:
        self.by: dict[tuple[str, ...], list[PersonRecord]] = {}
        for person in people:
            for k in self._keys(person):
                self.by.setdefault(k, []).append(person)

    @staticmethod
    def _keys(person: PersonRecord) -> set[tuple[str, ...]]:
        """Keys as folded (case, accents) as :meth:`near` folds the query's: a person is
        near every name prefix and pair the candidate search could find them by (and some
        more: any word's prefix, any later word as the last name)."""
        keys: set[tuple[str, ...]] = set()
        if person.email:
            keys.add(("email", person.email.lower()))
        for digits in phone_digits(person.phone):
            keys.add(("phone", digits[-9:]))
        full = " ".join(filter(None, (person.first_name, person.last_name)))
        for word in typed_tokens(full):
            keys |= {("name", fold(p)) for p in name_search(word)[0]}
        keys |= {("pair", fold(f), fold(last)) for f, last in name_search(full, None)[1]}
        for d in (own_domain(person.website), own_domain(person.email)):
            if d:
                keys.add(("domain", d))
        return keys

    def near(self, wants: PeopleQuery) -> list[PersonRecord]:
        keys: list[tuple[str, ...]] = [("email", e) for e in wants.emails]
        keys += [("phone", p[-9:]) for p in wants.phones]
        keys += [("name", fold(n)) for n in wants.name_prefixes]
        keys += [("pair", fold(f), fold(last)) for f, last in wants.names]
        keys += [("domain", d) for d in wants.domains]
        seen: dict[str, PersonRecord] = {}
        for k in keys:
            for person in self.by.get(k, ()):
                seen.setdefault(person.ref.id, person)
        return list(seen.values())
