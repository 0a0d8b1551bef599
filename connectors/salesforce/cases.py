"""Cases: each social conversation one Case, opened, joined or reopened as Social Customer
Service's inbound handler did (research/salesforce-social.md §3, step 7).

The core decides which conversation a post belongs to (:class:`syncd.model.CasePolicy`);
here a post's request is answered against the org: a Case given is joined while open, or
when it closed after the post was made; reopened when the post came within the reopen
window of its closing; else a new Case is opened under the post's key. New Cases are
upserted on ``[crm.cases] key_field``, so a create answered with an error after Salesforce
applied it, sent again, updates what it made instead of making a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from simple_salesforce.api import Salesforce

from connectors.salesforce import composite
from connectors.salesforce.identity.watch import parse_stamp
from connectors.salesforce.records import (
    BATCH,
    DESCRIPTION_MAX,
    SUBJECT_MAX,
    clip,
    parse_upsert_results,
    persona_provider,
)
from connectors.salesforce.session import Budget, SalesforceSession
from connectors.salesforce.settings import CaseSettings, SalesforceSettings
from connectors.salesforce.social_posts import in_queries
from syncd.contracts.text import label
from syncd.model import (
    CaseOpening,
    CaseOutcome,
    CasePolicy,
    CaseRequest,
    CaseResult,
    WriteResult,
)

__all__ = ["CASE", "case_origin", "case_record", "file_cases", "policy"]

CASE = "Case"
_SELECT = "SELECT Id, IsClosed, ClosedDate FROM Case WHERE "


def policy(cases: CaseSettings) -> CasePolicy:
    # A Case names a Contact (ContactId); Leads have no place on it.
    return CasePolicy(
        CaseOpening(cases.open), timedelta(seconds=cases.join_window), frozenset({"Contact"})
    )


def case_origin(network: str, cases: CaseSettings) -> str:
    """Case.Origin of a Case opened from ``network``: ``[crm.cases] origin``'s value, else
    the network's SocialPost Provider where it has one (as the inbound handler set it),
    else its name (Mastodon, Bluesky), which reports can tell apart where Other could not."""
    if network in cases.origin:
        return cases.origin[network]
    provider, media = persona_provider(network)
    return provider if media is None else label(network)


def case_record(
    request: CaseRequest, cases: CaseSettings, settings: SalesforceSettings
) -> dict[str, Any]:
    """The sObject Collections entry of a Case opened by a post, upserted on its key."""
    suffix = f"\n\n{request.url}" if request.url else ""
    entry: dict[str, Any] = {
        "attributes": {"type": CASE},
        cases.key_field: request.key,
        "Subject": clip(request.subject, SUBJECT_MAX),
        "Description": clip(request.description, DESCRIPTION_MAX - len(suffix)) + suffix,
        "Origin": case_origin(request.network, cases),
        "ContactId": request.who.id,
    }
    # From who the customer is, the same on every network.
    if (priority := settings.case_priority(request.who.priority)) is not None:
        entry["Priority"] = priority
    return entry


@dataclass(frozen=True)
class _State:
    closed: bool
    closed_at: datetime | None


def _states(session: SalesforceSession, ids: Sequence[str], budget: Budget) -> dict[str, _State]:
    found: dict[str, _State] = {}
    for soql in in_queries(_SELECT, "Id", ids):
        for row in session.query(f"find {CASE}", soql, budget):
            stamp = row.get("ClosedDate")
            closed_at = parse_stamp(stamp) if isinstance(stamp, str) and stamp else None
            # Ids come back 18 characters long; the core may hold the 15-character form.
            state = _State(bool(row.get("IsClosed")), closed_at)
            found[str(row["Id"])] = found[str(row["Id"])[:15]] = state
    return found


def _refused(request: CaseRequest, answer: WriteResult) -> CaseResult:
    return CaseResult(
        request.key,
        False,
        error_code=answer.error_code,
        error_message=answer.error_message,
        refusal=answer.refusal,
    )


def file_cases(
    session: SalesforceSession,
    settings: SalesforceSettings,
    requests: Sequence[CaseRequest],
    budget: Budget,
) -> list[CaseResult]:
    """Each request's Case: joined, reopened or opened; results in request order."""
    cases = settings.cases
    if cases is None:
        raise ValueError("no [crm.cases] configured")
    reopen_within = timedelta(seconds=cases.reopen_window)
    given = [r.case_id for r in requests if r.case_id is not None]
    states = _states(session, given, budget) if given else {}
    results: list[CaseResult | None] = [None] * len(requests)
    reopen: list[int] = []
    opens: list[int] = []
    for i, r in enumerate(requests):
        state = states.get(r.case_id) if r.case_id is not None else None
        if state is None:
            # None given, or the Case is gone (deleted in the org): one is opened.
            opens.append(i)
        elif not state.closed or (state.closed_at is not None and r.occurred_at <= state.closed_at):
            results[i] = CaseResult(r.key, True, r.case_id, CaseOutcome.JOINED)
        elif state.closed_at is not None and r.occurred_at <= state.closed_at + reopen_within:
            reopen.append(i)
        else:
            opens.append(i)
    for start in range(0, len(reopen), BATCH):
        part = reopen[start : start + BATCH]
        body = session.restful(
            f"reopen {CASE}",
            f"composite/sobjects/{CASE}/Id",
            budget,
            method="PATCH",
            json={
                "allOrNone": False,
                "records": [
                    {"attributes": {"type": CASE}, "Id": requests[i].case_id,
                     "Status": cases.reopen_status}
                    for i in part
                ],
            },
        )  # fmt: skip
        keys = [requests[i].key for i in part]
        for i, answer in zip(part, parse_upsert_results(keys, body), strict=True):
            r = requests[i]
            results[i] = (
                CaseResult(r.key, True, r.case_id, CaseOutcome.REOPENED)
                if answer.ok
                else _refused(r, answer)
            )
    entries = [case_record(requests[i], cases, settings) for i in opens]
    answers = _upsert(session, cases.key_field, [requests[i].key for i in opens], entries, budget)
    for i, answer in zip(opens, answers, strict=True):
        r = requests[i]
        results[i] = (
            CaseResult(r.key, True, answer.crm_id, CaseOutcome.OPENED)
            if answer.ok and answer.crm_id
            else _refused(r, answer)
        )
    return [r for r in results if r is not None]


def _upsert(
    session: SalesforceSession,
    key_field: str,
    keys: Sequence[str],
    entries: Sequence[dict[str, Any]],
    budget: Budget,
) -> list[WriteResult]:
    """Cases upserted on their key, 200 a collection and up to five collections a Composite
    call (one call against the allocation); answers in order. A collection the call could
    not carry fails the call, which is sent again whole: upserts on their keys."""
    chunks = [
        range(start, min(start + BATCH, len(entries))) for start in range(0, len(entries), BATCH)
    ]
    out: list[WriteResult] = []
    for first in range(0, len(chunks), composite.MAX_QUERIES):
        group = chunks[first : first + composite.MAX_QUERIES]
        if len(group) == 1:  # one collection: a plain request
            body = session.restful(
                f"upsert {CASE}",
                f"composite/sobjects/{CASE}/{key_field}",
                budget,
                method="PATCH",
                json={"allOrNone": False, "records": [entries[i] for i in group[0]]},
            )
            out += parse_upsert_results([keys[i] for i in group[0]], body)
            continue
        out += session.run(
            f"upsert {CASE}", partial(_composite, key_field, keys, entries, group), budget
        )
    return out


def _composite(
    key_field: str,
    keys: Sequence[str],
    entries: Sequence[dict[str, Any]],
    group: Sequence[range],
    sf: Salesforce,
) -> list[WriteResult]:
    url = f"/services/data/v{sf.sf_version}/composite/sobjects/{CASE}/{key_field}"
    subs = [
        {
            "method": "PATCH",
            "url": url,
            "referenceId": f"cases{n}",
            "body": {"allOrNone": False, "records": [entries[i] for i in chunk]},
        }
        for n, chunk in enumerate(group)
    ]
    out: list[WriteResult] = []
    for chunk, (status, body) in zip(group, composite.answers(sf, subs), strict=True):
        if status != 200:
            raise composite.error(url, status, f"upsert {CASE}", body)
        out += parse_upsert_results([keys[i] for i in chunk], body)
    return out
