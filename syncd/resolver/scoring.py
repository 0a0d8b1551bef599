"""How sure are we that a CRM person is this author? A score in [0, 1] and its reasons.

Exact identifiers decide on their own: the network user id on file is 1.0, a contact point
from the bio (e-mail, phone) 0.97 / 0.94, the handle on file 0.95 (0.94 when it is one the
author had before a rename). A name alone never does: a perfect name match is worth 0.78,
below the default auto-link threshold of 0.92, and only corroboration (the profile website's
domain, the company, the city) can lift it there. A record that holds *another* user id of
the same network is someone else, whatever the name says; when it holds the author's handle
(a handle X gave to a new account), it is shown for review at :data:`OTHER_OWNER`, with why,
and never linked.
"""

from __future__ import annotations

from dataclasses import dataclass

from rapidfuzz import fuzz

from syncd.model import PersonRecord, Profile
from syncd.resolver.evidence import (
    emails,
    fold,
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
DOMAIN_BONUS = 0.10
COMPANY_BONUS = 0.07
CITY_BONUS = 0.05


@dataclass(frozen=True)
class Scored:
    score: float
    matcher: str
    reasons: tuple[str, ...]


def contradicts(profile: Profile, person: PersonRecord) -> bool:
    """The record names another user of this network: it is not this author."""
    held = (person.user_id or "").strip()
    return bool(held) and held != profile.key.user_id


def score(profile: Profile, person: PersonRecord) -> Scored | None:
    """This author against one CRM person; None when nothing at all connects them."""
    if contradicts(profile, person):
        return None
    found: list[tuple[float, str, str]] = []  # (score, matcher, reason)
    if (person.user_id or "").strip() == profile.key.user_id:
        found.append((USER_ID, "crm_user_id", f"user id {profile.key.user_id} on file"))
    on_file = _bare(person.handle)
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
        found.append(name)
    if not found:
        return None
    best = max(found, key=lambda f: f[0])
    return Scored(round(best[0], 4), best[1], tuple(f[2] for f in sorted(found, reverse=True)))


def _name_score(profile: Profile, person: PersonRecord) -> tuple[float, str, str] | None:
    theirs = name_tokens(" ".join(filter(None, (person.first_name, person.last_name))))
    ours = name_tokens(profile.display_name)
    if not theirs or not ours:
        return None
    similarity = fuzz.token_sort_ratio(" ".join(ours), " ".join(theirs)) / 100
    if similarity < NAME_FLOOR:
        return None
    value = NAME_MAX * similarity
    why = [f"name {similarity:.0%} like {' '.join(theirs)}"]
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
    return min(value, 0.99), "fuzzy_name", "; ".join(why)


def _mentions(profile: Profile, company: str) -> bool:
    words = [w for w in name_tokens(company) if len(w) > 2 and w not in _COMPANY_NOISE]
    text = " " + " ".join(name_tokens(" ".join(filter(None, (profile.description, profile.url)))))
    return bool(words) and " " + " ".join(words) in text


_COMPANY_NOISE = frozenset({"inc", "ltd", "llc", "gmbh", "corp", "the", "and", "company", "co"})


def _bare(handle: str | None) -> str:
    return (handle or "").strip().removeprefix("@").casefold()
