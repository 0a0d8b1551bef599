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
from dataclasses import replace
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

_SELECT = "SELECT Id, ParentId, Provider, MediaProvider, ExternalId FROM SocialPersona WHERE "

Match = tuple[str | None, str, str | None]  # Provider, MediaProvider (Other only), ExternalId


def _match(provider: str | None, media: str | None, external_id: str | None) -> Match:
    # MediaProvider is free text, compared without case as SOQL's "=" compares it.
    return provider, (media or "").casefold() if provider == OTHER else "", external_id


def _find(
    session: SalesforceSession, pending: dict[str, tuple[HistoryRecord, Persona]], budget: Budget
) -> dict[Match, dict[str, Any]]:
    user_ids = [author.user_id for _, author in pending.values()]
    found: dict[Match, dict[str, Any]] = {}
    for soql in in_queries(_SELECT, "ExternalId", user_ids):
        for row in session.query(f"find {SOCIAL_PERSONA}", soql, budget):
            match = _match(row.get("Provider"), row.get("MediaProvider"), row.get("ExternalId"))
            found.setdefault(match, row)
    return found


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
    create = (
        (
            "upsert",
            "PATCH",
            f"composite/sobjects/{SOCIAL_PERSONA}/{settings.social_persona_key_field}",
        )
        if keyed
        else ("create", "POST", "composite/sobjects")
    )
    ids: dict[str, str] = {}
    refused: dict[str, WriteResult] = {}
    if pending:
        found = _find(session, pending, budget)
        moves: list[tuple[str, dict[str, Any]]] = []
        creates: list[tuple[str, dict[str, Any]]] = []
        for key, (r, author) in pending.items():
            row = found.get(_match(*persona_provider(r.network), author.user_id))
            if row is None:
                creates.append((key, persona_record(r, author, settings, keyed=keyed)))
                continue
            ids[key] = str(row["Id"])
            if row.get("ParentId") != r.who.id:
                # Only its parent changes: the rest is the org's (or a person's) to keep.
                entry = {"attributes": {"type": SOCIAL_PERSONA}, "Id": ids[key]}
                moves.append((key, {**entry, "ParentId": r.who.id}))
        calls = (
            (("update", "PATCH", f"composite/sobjects/{SOCIAL_PERSONA}/Id"), moves),
            (create, creates),
        )
        for (action, method, path), entries in calls:
            if not entries:
                continue
            body = session.restful(
                f"{action} {SOCIAL_PERSONA}",
                path,
                budget,
                method=method,
                json={"allOrNone": False, "records": [e for _, e in entries]},
            )
            keys = [k for k, _ in entries]
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
