"""SocialPosts in an org whose SocialPost has no syncd key field (``social_post_match =
"query"``): the posts already there are found by ExternalPostId (with Provider and
MediaProvider, as Salesforce's own inbound handler finds them), updated by Id, and the others
created.

A write answered with an error after Salesforce applied it is sent again by the writer; the
query then finds what it made, so it is updated, not made twice. Two writers never write the
same post at once (each claims its deliveries), which the query alone could not ensure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from connectors.salesforce.identity.lookup import SOQL_URL_BUDGET, soql_quote, url_cost
from connectors.salesforce.records import SOCIAL_POST, parse_upsert_results, social_post_record
from connectors.salesforce.session import Budget, SalesforceSession
from connectors.salesforce.settings import SalesforceSettings
from syncd.model import HistoryRecord, WriteResult

_SELECT = "SELECT Id, Provider, MediaProvider, ExternalPostId FROM SocialPost WHERE "

Match = tuple[str | None, str | None, str | None]  # Provider, MediaProvider, ExternalPostId


def _match(entry: dict[str, Any]) -> Match:
    return entry.get("Provider"), entry.get("MediaProvider"), entry.get("ExternalPostId")


def in_queries(select: str, field: str, values: Sequence[str]) -> list[str]:
    """``<select><field> IN (…)`` queries, each within a query URL's budget."""
    out: list[str] = []
    chunk: list[str] = []
    used = url_cost(select)
    for quoted in (soql_quote(v) for v in dict.fromkeys(values)):
        if chunk and used + url_cost(quoted) > SOQL_URL_BUDGET:
            out.append(f"{select}{field} IN ({', '.join(chunk)})")
            chunk, used = [], url_cost(select)
        chunk.append(quoted)
        used += url_cost(quoted)
    if chunk:
        out.append(f"{select}{field} IN ({', '.join(chunk)})")
    return out


def write_by_query(
    session: SalesforceSession,
    settings: SalesforceSettings,
    records: Sequence[HistoryRecord],
    budget: Budget,
) -> list[WriteResult]:
    """Each record's SocialPost updated where it exists, else created; results in order."""
    entries = [social_post_record(r, settings, keyed=False) for r in records]
    found: dict[Match, str] = {}
    post_ids = [str(e["ExternalPostId"]) for e in entries]
    for soql in in_queries(_SELECT, "ExternalPostId", post_ids):
        for row in session.query("find SocialPost", soql, budget):
            # SOQL compares without case: a Bluesky rkey differing only in case is another post.
            found.setdefault(_match(row), str(row["Id"]))
    results: list[WriteResult | None] = [None] * len(records)
    updates = [i for i, e in enumerate(entries) if _match(e) in found]
    creates = [i for i, e in enumerate(entries) if _match(e) not in found]
    if updates:
        body = session.restful(
            f"update {SOCIAL_POST}",
            f"composite/sobjects/{SOCIAL_POST}/Id",
            budget,
            method="PATCH",
            json={
                "allOrNone": False,
                "records": [{**entries[i], "Id": found[_match(entries[i])]} for i in updates],
            },
        )
        answers = parse_upsert_results([records[i].external_id for i in updates], body)
        for i, answer in zip(updates, answers, strict=True):
            results[i] = replace(answer, created=False) if answer.ok else answer
    if creates:
        body = session.restful(
            f"create {SOCIAL_POST}",
            "composite/sobjects",
            budget,
            method="POST",
            json={"allOrNone": False, "records": [entries[i] for i in creates]},
        )
        answers = parse_upsert_results([records[i].external_id for i in creates], body)
        for i, answer in zip(creates, answers, strict=True):
            results[i] = replace(answer, created=True) if answer.ok else answer
    return [r for r in results if r is not None]
