"""Salesforce identity resolution, the pure half: SOQL for personas, candidate people and
survivors of merges, the rows read back as domain objects, and the Lead made for an unknown
author. Tested without an org; :mod:`connectors.salesforce.identity.identity` runs them.

Every author-derived string reaches SOQL through :func:`soql_quote` (``like=True`` inside a
LIKE pattern, so ``%`` and ``_`` stay literal); object and field names come from validated
settings. Query rows are then checked again here, in Python, against the exact values asked
for, so a loose pattern (the phone one) never lets a record through that no value names.
Names compare as the resolver folds them (case and accents dropped); Salesforce's LIKE
ignores case but not accents, so the resolver sends a name's prefixes as typed too.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from connectors.salesforce.identity.lookup import (
    chunks,
    field,
    handle_values,
    id_values,
    key_chunks,
    priority_of,
    soql_quote,
    url_cost,
)
from connectors.salesforce.records import bare_handle, clip, persona_provider
from connectors.salesforce.settings import IdentityFields, SalesforceSettings
from syncd.contracts.text import fold
from syncd.model import CrmRef, IdentityKey, KeyOnFile, PeopleQuery, PersonRecord, Profile

# Key prefixes of the person objects a persona's ParentId may name.
PERSON_PREFIXES = {"003": "Contact", "00Q": "Lead"}
CANDIDATE_LIMIT = 2000  # rows per candidate query: more is a too-vague query, not a person
PHONE_TAIL = 7  # digits of a phone number a query looks for (the subscriber number)
MAX_HOPS = 5  # merge chains followed this far (each hop is one more query)
# Lead field lengths (UTF-16 units), so a 1,000-character display name is cut, not refused.
_LEAD_MAX = {"FirstName": 40, "LastName": 80, "Company": 255, "Description": 32_000}
_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")  # fullmatch: "$" would take "…\n"
_CHECKSUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def id18(value: object) -> str | None:
    """The 18-character form of a record id (answers use it; refs may hold 15), else None."""
    if not isinstance(value, str) or not _ID.fullmatch(value):
        return None
    suffix = ""
    for start in (0, 5, 10):
        bits = sum(1 << i for i, c in enumerate(value[start : start + 5]) if "A" <= c <= "Z")
        suffix += _CHECKSUM[bits]
    full = value[:15] + suffix
    return full if len(value) == 15 or value == full else None


def _text(value: Any) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text or None


def like(value: str, before: str = "", after: str = "") -> str:
    """A LIKE pattern literal: ``value`` escaped (its ``%`` and ``_`` literal), wildcards
    ``before`` and ``after`` it."""
    return f"'{before}{soql_quote(value, like=True)[1:-1]}{after}'"


def in_list(name: str, values: Sequence[str]) -> str:
    return f"{name} IN ({', '.join(map(soql_quote, values))})"


# -- SocialPersona ---------------------------------------------------------------------------
def persona_soql(
    network: str, keys: Sequence[IdentityKey], fields: IdentityFields | None = None
) -> str:
    """ONE query for a chunk of one network's keys: personas by external user id (and the
    bare id of a scoped one, given the network's ``fields`` with a scope) or by handle."""
    ids = list(dict.fromkeys(v for k in keys for v in id_values(k, fields)))
    names = list(dict.fromkeys(v for k in keys for v in handle_values(k)))
    parts = [in_list("ExternalId", ids)] if ids else []
    parts += [in_list("Name", names)] if names else []
    where = " OR ".join(parts)
    provider, media = persona_provider(network)
    which = f"Provider = {soql_quote(provider)}"
    if media is not None:
        which += f" AND MediaProvider = {soql_quote(media)}"
    return (
        "SELECT Id, Name, ExternalId, ParentId, Parent.Name, IsDefault FROM SocialPersona "
        f"WHERE {which} AND ({where})"
    )


def persona_chunks(
    keys: Sequence[IdentityKey], fields: IdentityFields | None = None
) -> Iterator[list[IdentityKey]]:
    return key_chunks(keys, fields)  # a persona is asked by the values a look-up asks by


def match_personas(
    keys: Sequence[IdentityKey],
    rows: Sequence[Mapping[str, Any]],
    objects: Sequence[str],
    held: Mapping[str, str] | None = None,
    fields: IdentityFields | None = None,
) -> dict[IdentityKey, list[CrmRef]]:
    """The people each key's personas belong to: by ExternalId; failing that, by handle, but
    only personas with no ExternalId (one with another id is another user, who had the handle
    before) and, given ``held`` (parent id → the user id of the network the parent record
    holds), only parents holding no other user id. Default personas first; only Contact and
    Lead parents among ``objects``."""
    found: dict[IdentityKey, list[CrmRef]] = {}
    for key, (hits, by_handle) in _persona_hits(keys, rows, fields).items():
        refs: dict[str, CrmRef] = {}
        for row in hits:
            parent = id18(field(row, "ParentId"))
            obj = PERSON_PREFIXES.get((parent or "")[:3])
            if not (parent and obj and obj in objects) or parent in refs:
                continue
            other = (held or {}).get(parent)
            if by_handle and other and other != key.user_id.strip():
                continue  # the parent holds another user id: never a handle match
            refs[parent] = CrmRef(obj, parent, _text(field(row, "Parent.Name")))
        if refs:
            found[key] = list(refs.values())
    return found


def handle_parents(
    keys: Sequence[IdentityKey],
    rows: Sequence[Mapping[str, Any]],
    objects: Sequence[str],
    fields: IdentityFields | None = None,
) -> dict[str, list[str]]:
    """Per object, the parents of personas that match a key by handle only: whether they
    hold another user id is asked before they count (see :func:`match_personas`)."""
    out: dict[str, list[str]] = {}
    for hits, by_handle in _persona_hits(keys, rows, fields).values():
        for row in hits if by_handle else ():
            parent = id18(field(row, "ParentId"))
            obj = PERSON_PREFIXES.get((parent or "")[:3])
            if parent and obj and obj in objects and parent not in out.get(obj, ()):
                out.setdefault(obj, []).append(parent)
    return out


def held_soql(obj: str, user_id_field: str, ids: Sequence[str]) -> str:
    """ONE query for the network user id a chunk of person records holds."""
    return f"SELECT Id, {user_id_field} FROM {obj} WHERE {in_list('Id', ids)}"


def _persona_hits(
    keys: Sequence[IdentityKey],
    rows: Sequence[Mapping[str, Any]],
    fields: IdentityFields | None = None,
) -> dict[IdentityKey, tuple[list[Mapping[str, Any]], bool]]:
    """Each key's persona rows (default first), and whether they matched by handle only. A
    bare ExternalId of a scoped network is read in the fields' scope, as a field's is."""
    by_id: dict[str, list[Mapping[str, Any]]] = {}
    by_name: dict[str, list[Mapping[str, Any]]] = {}
    for row in sorted(rows, key=lambda r: field(r, "IsDefault") is not True):
        external = _text(field(row, "ExternalId"))
        if external and fields is not None:
            external = fields.on_file(external)
        if external:
            by_id.setdefault(external, []).append(row)
        elif name := bare_handle(_text(field(row, "Name"))):
            by_name.setdefault(name.casefold(), []).append(row)
    out: dict[IdentityKey, tuple[list[Mapping[str, Any]], bool]] = {}
    for key in keys:
        handle = bare_handle(key.handle)
        if hits := by_id.get(key.user_id.strip(), []):
            out[key] = (hits, False)
        elif hits := by_name.get(handle.casefold(), []) if handle else []:
            out[key] = (hits, True)
    return out


# -- candidate people ------------------------------------------------------------------------
@dataclass(frozen=True)
class Shape:
    """Where a person object keeps what the resolver scores."""

    city: str
    company: str
    website: str
    only: str = ""  # a condition every row must meet


SHAPES = {
    "Contact": Shape("MailingCity", "Account.Name", "Account.Website"),
    # A converted Lead is read-only history: its person is the Contact it became.
    "Lead": Shape("City", "Company", "Website", "IsConverted = false"),
}


def identity_fields(settings: SalesforceSettings) -> IdentityFields | None:
    """The network fields read into PersonRecord.user_id / handle: X's, else the first."""
    fields = settings.identity_fields
    return fields.get("x") or next(iter(fields.values()), None)


def digits(text: object) -> str:
    return re.sub(r"[^0-9]", "", str(text or ""))


def person_fields(obj: str, fields: IdentityFields | None, also: Sequence[str] = ()) -> str:
    shape = SHAPES[obj]
    names = ["Id", "Name", "FirstName", "LastName", "Email", "Phone", "MobilePhone"]
    names += [shape.city, shape.company, shape.website]
    names += [n for n in (fields.user_id, fields.handle) if n] if fields else []
    names += also
    unique: dict[str, str] = {}
    for name in names:  # a configured field may repeat a standard one in another casing
        unique.setdefault(name.lower(), name)
    return ", ".join(unique.values())


def _host(url: str | None) -> str | None:
    host = re.sub(r"^[a-z][a-z0-9+.-]*://", "", (url or "").strip().lower())
    host = re.split(r"[/:?#]", host, maxsplit=1)[0].removeprefix("www.")
    return host or None


def _same_phone(stored: str, wanted: str) -> bool:
    """Digits of one number, with or without country code: "02079460958" (a trunk 0,
    national) is "442079460958"; equal, or the longer ends with the shorter (7+ digits)."""
    short, long_ = sorted((stored.lstrip("0"), wanted.lstrip("0")), key=len)
    return short == long_ or (len(short) >= PHONE_TAIL and long_.endswith(short))


def _phone_key(number: str) -> str:
    """The digits two numbers share when :func:`_same_phone` says they are one."""
    return number.lstrip("0")[-PHONE_TAIL:]


class Wanted:
    """A query's values as rows are checked against them, prepared once per query (a query
    reads up to 2,000 rows a time): ids in 18-character form, phones by their last digits,
    name prefixes and pairs folded and grouped by length, so a row costs a few look-ups."""

    def __init__(self, query: PeopleQuery) -> None:
        self.ids = {i for i in (id18(v.strip()) for v in query.ids) if i}
        self.emails = query.emails
        self.domains = query.domains
        self.phones: dict[str, list[str]] = {}
        for number in filter(None, map(digits, query.phones)):
            self.phones.setdefault(_phone_key(number), []).append(number)
        self.prefixes: dict[int, set[str]] = {}
        for prefix in filter(None, map(fold, query.name_prefixes)):
            self.prefixes.setdefault(len(prefix), set()).add(prefix)
        self.pairs: dict[tuple[int, int], set[tuple[str, str]]] = {}
        for first, last in ((fold(f), fold(la)) for f, la in query.names):
            if first and last:
                self.pairs.setdefault((len(first), len(last)), set()).add((first, last))

    def phone(self, number: str) -> bool:
        """Whether a stored phone is one of the numbers asked for."""
        stored = digits(number)
        return bool(stored) and any(
            _same_phone(stored, w) for w in self.phones.get(_phone_key(stored), ())
        )

    def matches(self, person: PersonRecord, phones: Sequence[str]) -> bool:
        """Whether a record really matches a value (not just a loose pattern)."""
        if self.ids and id18(person.ref.id) in self.ids:
            return True
        email = (person.email or "").strip().lower()
        if email and email in self.emails:
            return True
        if any(self.phone(p) for p in phones):
            return True
        if self.prefixes or self.pairs:
            first, last = fold(person.first_name or ""), fold(person.last_name or "")
            if any(
                first[:n] in wanted or last[:n] in wanted for n, wanted in self.prefixes.items()
            ):
                return True
            if any((first[:f], last[:la]) in pairs for (f, la), pairs in self.pairs.items()):
                return True
        host, domain = _host(person.website), email.rpartition("@")[2]
        return any(
            domain == d or (host and (host == d or host.endswith("." + d))) for d in self.domains
        )


@functools.lru_cache(maxsize=8)
def prepared(query: PeopleQuery) -> Wanted:
    """:class:`Wanted` for ``query``, built once however many rows it is asked about."""
    return Wanted(query)


def row_matches(person: PersonRecord, query: PeopleQuery, phones: Sequence[str]) -> bool:
    """Whether a record really matches a value of ``query`` (not just a loose pattern)."""
    return prepared(query).matches(person, phones)


def keys_held(every: Mapping[str, IdentityFields], row: Mapping[str, Any]) -> tuple[KeyOnFile, ...]:
    """Each network's user id and handle a row holds (networks with neither left out)."""
    keys = []
    for network, f in sorted(every.items()):
        user_id = f.on_file(_text(field(row, f.user_id)))
        handle = bare_handle(_text(field(row, f.handle))) if f.handle else None
        if user_id or handle:
            keys.append(KeyOnFile(network, user_id, handle))
    return tuple(keys)


def person_record(
    obj: str,
    fields: IdentityFields | None,
    row: Mapping[str, Any],
    query: PeopleQuery | None = None,
    every: Mapping[str, IdentityFields] | None = None,
    priority: str | None = None,
) -> PersonRecord | None:
    """A row as the resolver scores it; with a ``query``, None when no value of it really
    matches the row (and the phone shown is the one that matched). Given ``every`` network's
    fields, and more than one, the record carries each network's keys, so an author is scored
    on its own network's (a Contact holding an X user id is no other Mastodon user).
    ``priority``: the field holding the customer's priority value, carried by the ref."""
    shape = SHAPES[obj]
    phones = [p for p in (_text(field(row, "Phone")), _text(field(row, "MobilePhone"))) if p]
    wanted = prepared(query) if query is not None else None
    matched = [p for p in phones if wanted and wanted.phone(p)]
    person = PersonRecord(
        ref=CrmRef(
            obj, str(field(row, "Id")), _text(field(row, "Name")), priority_of(row, priority)
        ),
        first_name=_text(field(row, "FirstName")),
        last_name=_text(field(row, "LastName")),
        email=_text(field(row, "Email")),
        phone=next(iter(matched or phones), None),
        city=_text(field(row, shape.city)),
        company=_text(field(row, shape.company)),
        website=_text(field(row, shape.website)),
        user_id=fields.on_file(_text(field(row, fields.user_id))) if fields else None,
        handle=bare_handle(_text(field(row, fields.handle))) if fields and fields.handle else None,
        keys=keys_held(every, row) if every and len(every) > 1 else (),
    )
    return person if wanted is None or wanted.matches(person, matched) else None


# -- merges ----------------------------------------------------------------------------------
SURVIVOR_FIELDS = {
    "Contact": "Id, Name, IsDeleted, MasterRecordId",
    "Account": "Id, Name, IsDeleted, MasterRecordId",
    "Lead": "Id, Name, IsDeleted, MasterRecordId, IsConverted, ConvertedContactId",
}


def survivor_soql(obj: str, ids: Sequence[str], priority: str | None = None) -> str:
    """ONE queryAll for a chunk of ids: deleted rows too, with the record they merged into
    (and the customer's ``priority`` field, which a survivor's links take)."""
    select = SURVIVOR_FIELDS.get(obj, "Id, IsDeleted") + (f", {priority}" if priority else "")
    return f"SELECT {select} FROM {obj} WHERE {in_list('Id', ids)}"


def id_chunks(ids: Sequence[str]) -> Iterator[list[str]]:
    return chunks(ids, lambda i: url_cost(soql_quote(i)))


def next_hop(obj: str, row: Mapping[str, Any] | None) -> tuple[str, str] | bool | None:
    """Where a record went: ``(object, id)`` to follow, ``None`` when it is gone for good,
    ``True`` when it is alive. A converted Lead lives on as its Contact."""
    if row is None:
        return None  # purged: not even queryAll sees it
    if field(row, "IsDeleted") is True:
        master = id18(field(row, "MasterRecordId"))
        return (obj, master) if master else None
    contact = id18(field(row, "ConvertedContactId"))
    if obj == "Lead" and field(row, "IsConverted") is True and contact:
        return ("Contact", contact)
    return True


# -- the Lead for an unknown author ----------------------------------------------------------
def lead_fields(
    profile: Profile, settings: SalesforceSettings, fields: IdentityFields
) -> dict[str, Any]:
    """The Lead upserted for ``profile`` (without its external id, which the URL carries).

    Salesforce requires LastName and Company: the display name's last word (or the handle,
    or the user id), and the configured ``lead_company``. Lengths are cut to the fields'.
    """
    handle = bare_handle(profile.key.handle)
    words = (profile.display_name or "").split()
    last = words[-1] if words else handle or profile.key.user_id
    payload: dict[str, Any] = {
        "FirstName": " ".join(words[:-1]) or None,
        "LastName": last,
        "Company": settings.lead_company,
        "LeadSource": settings.lead_source,
        "Description": profile.description or None,
    }
    if fields.handle:
        payload[fields.handle] = handle
    payload = {
        k: clip(v, _LEAD_MAX.get(k, 255)) if isinstance(v, str) else v for k, v in payload.items()
    }
    if profile.url and len(profile.url) <= 255:  # a cut URL is a wrong URL: leave it out
        payload["Website"] = profile.url
    return payload


def lead_name(payload: Mapping[str, Any]) -> str | None:
    """The Name Salesforce computes for a Lead: first and last name."""
    return " ".join(p for p in (payload.get("FirstName"), payload.get("LastName")) if p) or None
