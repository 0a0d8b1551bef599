"""SocialPersonas: one per linked author, the account a SocialPost's PersonaId names.

A persona is written once per author: the writer keeps its id with the author's link and
sends it with the author's later records (:class:`syncd.model.Persona`), which then cost no
call. An author without one is looked for first as Salesforce's own inbound handler looks
(Provider + ExternalId; for Provider "Other", MediaProvider + ExternalId), so a persona the
org already has is reused, moved under the linked person where it is under another (a
relink, a merge, or the Contact the handler made); only an author with none gets a new
one, upserted on ``social_persona_key_field`` so that a write sent again (an error answered
after Salesforce applied it) updates what it made.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from connectors.salesforce.records import (
    OTHER,
    SOCIAL_PERSONA,
    parse_upsert_results,
    persona_key,
    persona_provider,
    persona_record,
)
from connectors.salesforce.session import Budget, SalesforceSession
from connectors.salesforce.settings import SalesforceSettings
from connectors.salesforce.social_posts import in_queries
from syncd.model import HistoryRecord, Persona, WriteResult

FIND_SOQL = "SELECT Id, ParentId, Provider, MediaProvider, ExternalId FROM SocialPersona WHERE "

Match = tuple[str | None, str, str | None]  # Provider, MediaProvider (Other only), ExternalId
Call = tuple[str, str, str]  # what it does, its method, its path


def matching(provider: str | None, media: str | None, external_id: str | None) -> Match:
    """How a persona is recognised: Provider, and MediaProvider for Provider "Other"."""
    # MediaProvider is free text, compared without case as SOQL's "=" compares it.
    return provider, (media or "").casefold() if provider == OTHER else "", external_id


def row_match(row: dict[str, Any]) -> Match:
    return matching(row.get("Provider"), row.get("MediaProvider"), row.get("ExternalId"))


def _find(
    session: SalesforceSession, pending: dict[str, tuple[HistoryRecord, Persona]], budget: Budget
) -> dict[Match, dict[str, Any]]:
    user_ids = [author.user_id for _, author in pending.values()]
    found: dict[Match, dict[str, Any]] = {}
    for soql in in_queries(FIND_SOQL, "ExternalId", user_ids):
        for row in session.query(f"find {SOCIAL_PERSONA}", soql, budget):
            found.setdefault(row_match(row), row)
    return found


@dataclass(frozen=True)
class Entries:
    """New authors' personas: the ids of those the org has under the right person, and the
    writes of the others (moves under the linked person, creates), each entry by its key."""

    ids: dict[str, str]
    calls: list[tuple[Call, list[tuple[str, dict[str, Any]]]]]


def persona_entries(
    settings: SalesforceSettings,
    pending: dict[str, tuple[HistoryRecord, Persona]],
    found: dict[str, dict[str, Any]],
    *,
    keyed: bool,
) -> Entries:
    """What to write for each new author (by persona key: its first record and author), given
    the persona rows found for some of them."""
    create: Call = (
        (
            "upsert",
            "PATCH",
            f"composite/sobjects/{SOCIAL_PERSONA}/{settings.social_persona_key_field}",
        )
        if keyed
        else ("create", "POST", "composite/sobjects")
    )
    ids: dict[str, str] = {}
    moves: list[tuple[str, dict[str, Any]]] = []
    creates: list[tuple[str, dict[str, Any]]] = []
    for key, (r, author) in pending.items():
        row = found.get(key)
        if row is None:
            creates.append((key, persona_record(r, author, settings, keyed=keyed)))
            continue
        if row.get("ParentId") != r.who.id:
            # Only its parent changes: the rest is the org's (or a person's) to keep.
            entry = {"attributes": {"type": SOCIAL_PERSONA}, "Id": str(row["Id"])}
            moves.append((key, {**entry, "ParentId": r.who.id}))
        else:
            ids[key] = str(row["Id"])
    update: Call = ("update", "PATCH", f"composite/sobjects/{SOCIAL_PERSONA}/Id")
    calls = [(call, entries) for call, entries in ((update, moves), (create, creates)) if entries]
    return Entries(ids, calls)


def with_personas(
    session: SalesforceSession,
    settings: SalesforceSettings,
    records: Sequence[HistoryRecord],
    budget: Budget,
) -> tuple[list[HistoryRecord], dict[int, WriteResult]]:
    """The records with their authors' persona ids, each persona found or written once; and,
    by index, the refusals of the records whose author's persona Salesforce refused."""
    # By persona key: the first record needing it, and its author.
    pending: dict[str, tuple[HistoryRecord, Persona]] = {}
    for r in records:
        if r.author is not None and r.author.persona_id is None and (key := persona_key(r)):
            pending.setdefault(key, (r, r.author))
    # An org without the posts' key field has none for personas either: they are created,
    # and one a create made before its answer was lost is found by the query above.
    keyed = settings.social_post_match == "key"
    ids: dict[str, str] = {}
    refused: dict[str, WriteResult] = {}
    if pending:
        rows = _find(session, pending, budget)
        found = {
            key: row
            for key, (r, author) in pending.items()
            if (row := rows.get(matching(*persona_provider(r.network), author.user_id)))
        }
        entries = persona_entries(settings, pending, found, keyed=keyed)
        ids.update(entries.ids)
        for (action, method, path), todo in entries.calls:
            body = session.restful(
                f"{action} {SOCIAL_PERSONA}",
                path,
                budget,
                method=method,
                json={"allOrNone": False, "records": [e for _, e in todo]},
            )
            keys = [k for k, _ in todo]
            for key, answer in zip(keys, parse_upsert_results(keys, body), strict=True):
                if answer.ok and answer.crm_id:
                    ids[key] = answer.crm_id
                else:
                    ids.pop(key, None)
                    refused[key] = answer
    out: list[HistoryRecord] = []
    failed: dict[int, WriteResult] = {}
    for i, r in enumerate(records):
        key = persona_key(r)
        if key in refused:
            failed[i] = replace(refused[key], external_id=r.external_id, crm_id=None)
        elif r.author is not None and key in ids:
            r = replace(r, author=replace(r.author, persona_id=ids[key]))
        out.append(r)
    return out, failed
