"""Salesforce identity resolution, the calls: what the resolver asks a CRM beyond ``lookup``.

Calls through the CRM's :class:`~connectors.salesforce.session.SalesforceSession` (error
mapping and one re-login per public call). Queries and row reading are in
:mod:`connectors.salesforce.identity.people`; every method batches values 200 to a query at most.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any
from urllib.parse import quote

from simple_salesforce.api import Salesforce

from connectors.salesforce import composite
from connectors.salesforce.identity import keys, search, watch
from connectors.salesforce.identity.lookup import field, priority_of
from connectors.salesforce.identity.messaging import MessagingEndUsers
from connectors.salesforce.identity.people import (
    CANDIDATE_LIMIT,
    MAX_HOPS,
    SHAPES,
    handle_parents,
    held_soql,
    id18,
    id_chunks,
    identity_fields,
    lead_fields,
    lead_name,
    match_personas,
    next_hop,
    person_record,
    persona_chunks,
    persona_soql,
    survivor_soql,
)
from connectors.salesforce.records import SYSTEM, parse_upsert_results
from connectors.salesforce.session import Budget, SalesforceSession
from connectors.salesforce.settings import _API_NAME, IdentityFields, SalesforceSettings
from syncd.errors import ExternalError, TransientError
from syncd.model import (
    CrmRef,
    IdentityKey,
    KeysOnFile,
    KeysPage,
    PeopleChanges,
    PeopleQuery,
    PersonRecord,
    Profile,
    Refusal,
)

log = logging.getLogger("connectors.salesforce")

# A user id the single-record upsert URL carries as it is (X's numeric ids): anything else
# (a URI's "/", a DID's ":") goes in the body of a collections upsert instead.
_PATH_SAFE = re.compile(r"[A-Za-z0-9_-]+")
# How long a domain whose query alone filled the row cap is left out of candidate searches.
CROWDED_FOR = 24 * 3600.0


def _ask(
    sf: Salesforce,
    batch: Sequence[tuple[str, Sequence[search.Term]]],
    fields: IdentityFields | None,
    also: Mapping[str, Sequence[str]],
) -> list[composite.Answer]:
    """Candidate queries in one composite call (``also``: each object's more columns). An
    error is raised here, inside the call (so an expired session logs in again and the
    error is mapped), unless halving can help."""
    soqls = [search.people_soql(obj, fields, chunk, also.get(obj, ())) for obj, chunk in batch]
    answers = composite.query_many(sf, soqls)
    for (_, chunk), answer in zip(batch, answers, strict=True):
        if answer.error is not None:
            if len(chunk) > 1 and answer.error_code() == "QUERY_TOO_COMPLICATED":
                continue
            raise answer.error
    return answers


def _each(sf: Salesforce, soqls: Sequence[str]) -> list[list[dict[str, Any]]]:
    """Every query's rows, up to five queries a composite call; the first error raised."""
    rows: list[list[dict[str, Any]]] = []
    for start in range(0, len(soqls), composite.MAX_QUERIES):
        for answer in composite.query_many(sf, soqls[start : start + composite.MAX_QUERIES]):
            if answer.error is not None:
                raise answer.error
            rows.append(answer.rows)
    return rows


class SalesforceIdentity:
    """``personas``, ``find_people``, ``people_changes``, ``keys_on_file``, ``survivors`` and
    ``upsert_lead`` of the Crm contract."""

    def __init__(self, session: SalesforceSession, settings: SalesforceSettings) -> None:
        self.session = session
        self.settings = settings
        self.messaging = MessagingEndUsers(session, settings)
        self.clock = time.monotonic
        # (object, domain term) → when it may be asked again: a domain that alone fills the
        # row cap is shared by thousands of people (a mail provider no list names, a large
        # employer), as useless for telling them apart as gmail.com; asking it again for
        # every batch would cost a cascade of halved queries and 2,000 rows each time, for
        # an arbitrary 2,000 of its people (the answer is cut at the cap).
        self._crowded: dict[tuple[str, str], float] = {}
        # Per object, the rows a candidate term found in recent searches: the next batch's
        # terms are spread over as many queries as keep each answer under the cap, so the
        # search is one composite call, not one whose answer fills the cap, then its halves.
        self._rows_per_term: dict[str, float] = {}

    def _priority(self, obj: str) -> list[str]:
        """The customer's priority field as one more column of ``obj``'s queries."""
        column = self.settings.priority_column(obj)
        return [column] if column else []

    def personas(self, keys: Sequence[IdentityKey]) -> dict[IdentityKey, list[CrmRef]]:
        """The people the org's own persona records name for these authors: SocialPersona
        records (with ``social_personas``) and, for Facebook and Instagram authors where
        the org uses Salesforce messaging, MessagingEndUser records linked to a Contact
        (see :mod:`connectors.salesforce.identity.messaging`; ``messaging_end_users``)."""
        found = self._social_personas(keys) if self.settings.social_personas else {}
        if self.settings.messaging_end_users:
            for key, refs in self.messaging.people(keys).items():
                mine = found.setdefault(key, [])
                mine += [r for r in refs if r.id not in {m.id for m in mine}]
        return found

    def _social_personas(self, keys: Sequence[IdentityKey]) -> dict[IdentityKey, list[CrmRef]]:
        """SocialPersona records naming these authors, as their Contact/Lead parents.

        One query per chunk of at most 200 keys per network, ``Provider = 'Twitter' AND
        (ExternalId IN (…) OR Name IN (…))`` (a network the Provider picklist lacks:
        ``Provider = 'Other' AND MediaProvider = 'mastodon' AND …``; Facebook and Instagram
        have their own values, and a scoped id is also asked bare when its field names the
        scope); a key takes the personas with its user id, else those with its handle and
        no user id (see :func:`~connectors.salesforce.identity.people.match_personas`),
        whose parent holds no other user id of the network (one query per object for such
        parents).
        """
        budget, found = Budget(), {}
        by_network: dict[str, list[IdentityKey]] = {}
        for key in dict.fromkeys(keys):
            by_network.setdefault(key.network, []).append(key)
        for network, pending in by_network.items():
            objects, every = self.settings.person_objects, self.settings.identity_fields
            fields = every.get(network)
            user_id_field = fields.user_id if fields is not None else None
            for chunk in persona_chunks(pending, fields):
                soql = persona_soql(network, chunk, fields)
                rows = self.session.query("personas", soql, budget)
                held: dict[str, str] = {}
                for obj, ids in handle_parents(chunk, rows, objects, fields).items():
                    if user_id_field is None or fields is None:
                        break  # no field to hold another id in
                    for part in id_chunks(ids):
                        soql = held_soql(obj, user_id_field, part)
                        for row in self.session.query(f"persona parents {obj}", soql, budget):
                            other = fields.on_file(str(field(row, user_id_field) or ""))
                            if other:
                                held[id18(field(row, "Id")) or ""] = other
                found.update(match_personas(chunk, rows, objects, held, fields))
        return found

    def find_people(self, query: PeopleQuery) -> list[PersonRecord]:
        """Every Contact and Lead matching any value of ``query``, for scoring.

        Per person object, one query per chunk of values that fits the statement budget
        (see :mod:`connectors.salesforce.identity.search`): an OR of ``Email IN (…)``, phone
        patterns, name pairs, prefixes of one-word names and domains (e-mail and (Account)
        website). The queries go up to five to a composite call (a batch of 200 authors:
        one query per object, one call for both). Once earlier answers tell how many rows a
        value finds, a batch's values are spread over as many queries as keep each answer
        within three quarters of the cap, so a batch whose candidates are many is still one
        call. A query
        whose answer fills the 2,000-row cap, or that Salesforce finds too complicated, is
        asked again in halves, so no candidate is cut off; a single value that alone fills
        the cap is warned about.
        Rows a loose pattern let through are dropped. An empty query makes no call. A domain
        that alone fills the cap is scored this once (as far as the cap goes), then left out
        of this client's searches for :data:`CROWDED_FOR`.
        """
        if not query:
            return []
        now = self.clock()
        self._crowded = {k: until for k, until in self._crowded.items() if until > now}
        budget, fields = Budget(), identity_fields(self.settings)
        every = self.settings.identity_fields
        columns = keys.key_columns(every) if len(every) > 1 else []
        also = {obj: columns + self._priority(obj) for obj in self.settings.person_objects}
        found: dict[tuple[str, str], PersonRecord] = {}
        pending: list[tuple[str, list[search.Term]]] = []
        for obj in self.settings.person_objects:
            if obj not in SHAPES:
                log.warning("%s: find_people knows no fields of %s; skipped", SYSTEM, obj)
                continue
            crowded = {text for o, text in self._crowded if o == obj}
            rate = self._rows_per_term.get(obj, 0.0)
            pending += [(obj, chunk) for chunk in search.people_chunks(obj, query, crowded, rate)]
        seen: dict[str, list[int]] = {}  # per object: terms and rows of whole answers
        while pending:
            batch, pending = pending[: composite.MAX_QUERIES], pending[composite.MAX_QUERIES :]
            ask = partial(_ask, batch=batch, fields=fields, also=also)
            for (obj, chunk), answer in zip(
                batch, self.session.run("find people", ask, budget), strict=True
            ):
                if len(chunk) > 1 and (answer.error or len(answer.rows) >= CANDIDATE_LIMIT):
                    pending += [(obj, half) for half in search.halves(chunk)]
                    continue
                if answer.error is None and len(answer.rows) < CANDIDATE_LIMIT:
                    terms_rows = seen.setdefault(obj, [0, 0])
                    terms_rows[0] += len(chunk)
                    terms_rows[1] += len(answer.rows)
                if len(answer.rows) >= CANDIDATE_LIMIT and chunk[0].kind == "domain":
                    self._crowded[(obj, chunk[0].text)] = now + CROWDED_FOR
                    log.warning(
                        "%s: %d %ss share one e-mail or website domain, the cap: too many to "
                        "tell apart, some are not scored, and the domain is left out of "
                        "candidate searches for %d hours", SYSTEM, len(answer.rows), obj,
                        CROWDED_FOR // 3600,
                    )  # fmt: skip
                elif len(answer.rows) >= CANDIDATE_LIMIT:
                    log.warning(
                        "%s: %d %ss match one value of a candidate query, the cap: some are "
                        "not scored", SYSTEM, len(answer.rows), obj,
                    )  # fmt: skip
                for row in answer.rows:
                    person = person_record(
                        obj, fields, row, query, every, self.settings.priority_column(obj)
                    )
                    if person is not None:
                        found.setdefault((obj, person.ref.id), person)
        for obj, (n, rows) in seen.items():
            rate = rows / n
            self._rows_per_term[obj] = (self._rows_per_term.get(obj, rate) + rate) / 2
        return list(found.values())

    def people_changes(self, mark: str | None) -> PeopleChanges:
        """Contacts and (unconverted) Leads created or changed since ``mark``.

        Per object, one query for at most 2,000 rows by ``SystemModstamp``, oldest change
        first (see :mod:`connectors.salesforce.identity.watch`), all in ONE composite call (one API
        call a check: the daemon checks every few seconds while authors are held); when the
        cap is hit the answer is incomplete (``complete=False``) and the mark moves to the
        last row read. A watch with no mark reads only the newest stamp; an object with no
        rows starts from the epoch, so its first record counts.
        """
        budget, fields = Budget(), identity_fields(self.settings)
        every = self.settings.identity_fields
        seen = watch.read(mark) if mark is not None else None
        people: list[PersonRecord] = []
        on_file: list[KeysOnFile] = []
        complete, marks = True, {}
        asked: list[tuple[int, str, str, str, watch.Watermark | None]] = []
        for rank, obj in enumerate(self.settings.person_objects):
            if obj in SHAPES:
                since = seen.get(obj, watch.Watermark(watch.EPOCH)) if seen is not None else None
                asked.append((rank, obj, obj, "SystemModstamp", since))
            column = self.settings.priority_column(obj) or ""
            if obj in SHAPES and column.lower().startswith("account."):
                # The customer's priority on their Account: Accounts changed are watched
                # too, in the same call. A mark from before starts at the newest change.
                at = f"{obj}.Account"
                since = seen.get(at) if seen is not None else None
                asked.append((rank, obj, at, "Account.SystemModstamp", since))
        soqls = [
            watch.changes_soql(
                obj, fields, since, keys.key_columns(every) + self._priority(obj), stamp
            )
            for _, obj, _, stamp, since in asked
        ]
        answers = self.session.run("changes", partial(_each, soqls=soqls), budget) if soqls else []
        for (rank, obj, at, stamp, since), answer in zip(asked, answers, strict=True):
            rows = watch.restamped(answer, stamp)
            if since is None:
                marks[at] = watch.start_mark(rows)
                continue
            fresh, marks[at], whole = watch.advance(since, rows)
            complete = complete and whole
            priority = self.settings.priority_column(obj)
            people += [
                p
                for r in fresh
                if (p := person_record(obj, fields, r, every=every, priority=priority)) is not None
            ]
            if at == obj:  # an Account's stamp says nothing of the person's own keys
                on_file += [keys.keys_of(obj, rank, every, r, priority) for r in fresh]
        return PeopleChanges(tuple(people), watch.write(marks), complete, tuple(on_file))

    def keys_on_file(self, after: str | None) -> KeysPage:
        """One page of the Contacts and (unconverted) Leads with any network's user id or
        handle field set: at most 2,000 records, one query (see
        :mod:`connectors.salesforce.identity.keys`); objects follow one another in
        ``person_objects`` order, an object with none costing one query."""
        every = self.settings.identity_fields
        objects = [o for o in self.settings.person_objects if o in SHAPES]
        if not every or not objects:
            return KeysPage()  # no field to copy: an empty copy, complete
        budget = Budget()
        obj, after_id = keys.read_cursor(after, objects)
        while obj is not None:
            rank = self.settings.person_objects.index(obj)
            priority = self.settings.priority_column(obj)
            soql = keys.keys_soql(obj, every, after_id, priority)
            rows = self.session.query(f"keys {obj}", soql, budget)
            people = tuple(keys.keys_of(obj, rank, every, r, priority) for r in rows)
            if len(rows) >= keys.KEYS_PAGE:
                return KeysPage(people, keys.cursor(obj, people[-1].ref.id))
            following = objects[objects.index(obj) + 1 :]
            obj, after_id = (following[0] if following else None), None
            if people:
                return KeysPage(people, keys.cursor(obj, None) if obj else None)
        return KeysPage()

    def survivors(self, refs: Sequence[CrmRef]) -> dict[CrmRef, CrmRef | None]:
        """What became of people: absent while alive; else the record each was merged into
        (following chains of merges, up to :data:`MAX_HOPS`), or None when deleted or purged.

        One ``queryAll`` (deleted rows too) per object per chunk of at most 200 ids per hop:
        ``SELECT Id, Name, IsDeleted, MasterRecordId FROM Contact WHERE Id IN (…)``. A
        converted Lead is followed to its Contact, since a Task can no longer name it.
        """
        budget = Budget()
        result: dict[CrmRef, CrmRef | None] = {}
        pending: dict[tuple[str, str], list[CrmRef]] = {}
        for ref in dict.fromkeys(refs):
            rid = id18(ref.id)
            if rid is None or not _API_NAME.fullmatch(ref.object):
                result[ref] = None  # no such record can exist
            else:
                pending.setdefault((ref.object, rid), []).append(ref)
        for hop in range(MAX_HOPS + 1):
            if not pending:
                break
            following: dict[tuple[str, str], list[CrmRef]] = {}
            by_object: dict[str, list[str]] = {}
            for obj, rid in pending:
                by_object.setdefault(obj, []).append(rid)
            for obj, ids in by_object.items():
                rows: dict[str, Mapping[str, Any]] = {}
                for chunk in id_chunks(ids):
                    soql = survivor_soql(obj, chunk, self.settings.priority_column(obj))
                    action = f"survivors {obj}"
                    for hit in self.session.query(action, soql, budget, include_deleted=True):
                        rows[id18(hit.get("Id")) or ""] = hit
                for rid in ids:
                    origins, row = pending[(obj, rid)], rows.get(rid)
                    where = next_hop(obj, row)
                    if isinstance(where, tuple):
                        following.setdefault(where, []).extend(origins)
                    elif where is True and row is not None and hop > 0:
                        name = row.get("Name")
                        tier = priority_of(row, self.settings.priority_column(obj))
                        result.update((o, CrmRef(obj, rid, name, tier)) for o in origins)
                    elif where is not True:
                        result.update((o, None) for o in origins)
            pending = following
        for (obj, rid), origins in pending.items():
            log.warning(
                "%s: merges of %s go on past %s %s; treated as gone", SYSTEM, origins, obj, rid
            )
            result.update((o, None) for o in origins)
        return result

    def upsert_lead(self, profile: Profile) -> CrmRef:
        """The Lead for an author no CRM person matches, made or found by its user id.

        An upsert (PATCH ``sobjects/Lead/X_User_Id__c/<id>``) with the network's user-id
        field as the external id, never a create: a create retried after a lost answer (a
        timeout, a 5xx after the commit) makes a second Lead, where the upsert finds the
        first. The field must be marked External ID (and Unique) in the org. A second call
        updates the same Lead with the same values.
        """
        fields = self.settings.identity_fields.get(profile.key.network)
        if fields is None:
            raise ExternalError(
                f"salesforce upsert Lead: no identity_fields for network {profile.key.network!r}",
                system=SYSTEM,
            )
        budget = Budget()
        payload = lead_fields(profile, self.settings, fields)
        if not _PATH_SAFE.fullmatch(profile.key.user_id):
            return self._upsert_lead_by_body(fields.user_id, profile.key.user_id, payload, budget)
        path = f"sobjects/Lead/{fields.user_id}/{quote(profile.key.user_id, safe='')}"
        body = self.session.restful("upsert Lead", path, budget, method="PATCH", json=payload)
        lead_id = body.get("id") if isinstance(body, Mapping) else None
        if not lead_id:  # API versions before 46.0 answer an update with 204, no body
            found = self.session.restful("upsert Lead", path, budget, params={"fields": "Id"})
            lead_id = found.get("Id") if isinstance(found, Mapping) else None
        if not lead_id:
            raise ExternalError("salesforce upsert Lead: the answer names no Lead", system=SYSTEM)
        return CrmRef("Lead", str(lead_id), lead_name(payload))

    def _upsert_lead_by_body(
        self, id_field: str, user_id: str, payload: Mapping[str, Any], budget: Budget
    ) -> CrmRef:
        """The same upsert as an sObject Collections one (``PATCH
        composite/sobjects/Lead/<field>``), the user id in the body: for an id the URL path
        cannot carry, such as a Mastodon actor URI (Salesforce answers NOT_FOUND to a value
        with a "/" in the path, even encoded) or a DID."""
        record = {"attributes": {"type": "Lead"}, id_field: user_id, **payload}
        body = self.session.restful(
            "upsert Lead", f"composite/sobjects/Lead/{id_field}", budget, method="PATCH",
            json={"allOrNone": True, "records": [record]},
        )  # fmt: skip
        (result,) = parse_upsert_results([user_id], body)
        if not result.ok or not result.crm_id:
            code = result.error_code or "UNKNOWN_ERROR"
            why = result.error_message or "the answer names no Lead"
            kind = TransientError if result.refusal is Refusal.RETRY else ExternalError
            raise kind(f"salesforce upsert Lead: {code}: {why}", system=SYSTEM)
        return CrmRef("Lead", str(result.crm_id), lead_name(payload))
