"""How sure are we that a CRM person is this author? A score in [0, 1] and its reasons.

Exact identifiers decide on their own: the network user id on file is 1.0, a contact point
from the bio (e-mail, phone) 0.97 / 0.94, the handle on file 0.95 (0.94 when it is one the
author had before a rename). A name alone never does: a perfect name match is worth 0.78,
below the default auto-link threshold of 0.92, and only corroboration (the profile website's
domain, the company, the city) can lift it there. Names compare word by word
(:func:`name_similarity`): a different word or number is another name, not a weaker match,
and a name alone from a profile located elsewhere than the CRM's city is not worth a review.
A record that holds *another* user id of the same network is someone else, whatever the name
says; when it holds the author's handle (a handle X gave to a new account), it is shown for
review at :data:`OTHER_OWNER`, with why, and never linked.
"""

from __future__ import annotations

from dataclasses import dataclass

from rapidfuzz import fuzz
from rapidfuzz.distance import OSA

from syncd.contracts.text import fold
from syncd.model import PersonRecord, Profile
from syncd.resolver.evidence import (
    emails,
    name_initials,
    name_numbers,
    name_tokens,
    own_domain,
    phone_digits,
    same_phone,
)

USER_ID = 1.0
EMAIL = 0.97
HANDLE = 0.95
PAST_HANDLE = 0.94
PHONE = 0.94
PERSONA = 0.97
OTHER_OWNER = 0.5  # the handle on a record holding another user id: a question, not a match
NAME_MAX = 0.78  # a perfect name match, uncorroborated
NAME_FLOOR = 0.80  # name similarity below this is not a candidate at all
NAME_ELSEWHERE = 0.5  # a name alone, the profile located elsewhere: below review
DOMAIN_BONUS = 0.10
COMPANY_BONUS = 0.07
CITY_BONUS = 0.05


@dataclass(frozen=True)
class Scored:
    score: float
    matcher: str
    reasons: tuple[str, ...]
    name_only: bool = False  # a name and nothing else connects them


def contradicts(profile: Profile, person: PersonRecord) -> bool:
    """The record names another user of this network: it is not this author."""
    held = (person.own(profile.key.network)[0] or "").strip()
    return bool(held) and held != profile.key.user_id


def score(profile: Profile, person: PersonRecord) -> Scored | None:
    """This author against one CRM person; None when nothing at all connects them."""
    if contradicts(profile, person):
        return None
    found: list[tuple[float, str, str]] = []  # (score, matcher, reason)
    user_id, handle = person.own(profile.key.network)
    if (user_id or "").strip() == profile.key.user_id:
        found.append((USER_ID, "crm_user_id", f"user id {profile.key.user_id} on file"))
    on_file = _bare(handle)
    if on_file:
        if on_file == _bare(profile.key.handle):
            found.append((HANDLE, "crm_handle", f"handle @{on_file} on file"))
        elif on_file in {_bare(h) for h in profile.past_handles}:
            found.append((PAST_HANDLE, "crm_handle", f"former handle @{on_file} on file"))
    bio = " ".join(filter(None, (profile.description, profile.url)))
    if person.email and person.email.lower() in emails(bio):
        found.append((EMAIL, "contact_points", f"e-mail {person.email} in the profile"))
    if person.phone:
        crm_digits = next(iter(phone_digits(person.phone)), "")
        if any(same_phone(p, crm_digits) for p in phone_digits(bio)):
            found.append((PHONE, "contact_points", f"phone {person.phone} in the profile"))
    name = _name_score(profile, person)
    if name is not None:
        found.append(name[:3])
    if not found:
        return None
    best = max(found, key=lambda f: f[0])
    alone = name is not None and not name[3] and len(found) == 1
    reasons = tuple(f[2] for f in sorted(found, reverse=True))
    return Scored(round(best[0], 4), best[1], reasons, alone)


def _name_score(profile: Profile, person: PersonRecord) -> tuple[float, str, str, bool] | None:
    """The name's score, reason and whether anything (website, company, city) corroborates
    it."""
    full = " ".join(filter(None, (person.first_name, person.last_name)))
    similarity = name_similarity(profile.display_name, full)
    if similarity is None or similarity < NAME_FLOOR:
        return None
    value = NAME_MAX * similarity
    why = [f"name {similarity:.0%} like {' '.join(name_tokens(full))}"]
    site = own_domain(profile.url)
    crm_domains = {own_domain(person.website), own_domain(person.email)} - {None}
    if site and site in crm_domains:
        value += DOMAIN_BONUS
        why.append(f"website {site} matches the CRM")
    if person.company and _mentions(profile, person.company):
        value += COMPANY_BONUS
        why.append(f"profile mentions {person.company}")
    if person.city and profile.location and fold(person.city) in fold(profile.location):
        value += CITY_BONUS
        why.append(f"located in {person.city}")
    elif len(why) == 1 and person.city and name_tokens(profile.location):
        # A name and nothing else, from someone who says they live elsewhere: a namesake,
        # as a rule (bench/resolver.py). Not worth a person's look; no contradiction, it is.
        value = min(value, NAME_ELSEWHERE)
        why.append(f"but the profile's location is not {person.city}")
        return min(value, 0.99), "fuzzy_name", "; ".join(why), False
    return min(value, 0.99), "fuzzy_name", "; ".join(why), len(why) > 1


def name_similarity(ours: str | None, theirs: str | None) -> float | None:
    """How alike an author's name (``ours``) and a CRM name are, in [0, 1]; None when they
    cannot be one person's. Word by word, typos, nicknames, case, accents and word order
    aside: every word of the shorter name must be a word of the other or one typo (an edit,
    a swap) from it, and neither numbers nor initials may disagree. "Customer 33" is not
    "Customer 21", nor "Christine Powell" "Christian Powell"; "Jon Smiht" can be "John
    Smith" (about 0.9), and words only one name has lower the similarity."""
    a, b = name_tokens(ours), name_tokens(theirs)
    if not a or not b:
        return None
    short, left = (a, list(b)) if len(a) <= len(b) else (b, list(a))
    partners: list[str] = []
    for word in short:
        near = [w for w in left if w == word] or [
            w for w in left if max(len(w), len(word)) >= 3 and OSA.distance(w, word) <= 1
        ]
        if not near:
            return None
        partners.append(near[0])
        left.remove(near[0])
    # A number the CRM holds is part of the name ("Customer 33"); one only the profile has
    # is decoration ("Jane Doe 24/7"). Initials disagree only when both sides have some.
    numbers, initials = name_numbers(theirs), (name_initials(ours), name_initials(theirs))
    if (numbers and numbers != name_numbers(ours)) or (all(initials) and len(set(initials)) > 1):
        return None
    return fuzz.ratio(" ".join(short), " ".join(partners + left)) / 100


def _mentions(profile: Profile, company: str) -> bool:
    words = [w for w in name_tokens(company) if len(w) > 2 and w not in _COMPANY_NOISE]
    text = " " + " ".join(name_tokens(" ".join(filter(None, (profile.description, profile.url)))))
    return bool(words) and " " + " ".join(words) in text


_COMPANY_NOISE = frozenset({"inc", "ltd", "llc", "gmbh", "corp", "the", "and", "company", "co"})


def _bare(handle: str | None) -> str:
    return (handle or "").strip().removeprefix("@").casefold()
