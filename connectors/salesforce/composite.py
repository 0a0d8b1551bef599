"""Several SOQL queries in ONE Salesforce call, through the Composite resource.

A query sent as ``GET /query?q=…`` must fit, with the headers, in 16,384 bytes: about 100
authors' names, URL-encoded. Inside a composite request the query travels in the JSON body,
where only the SOQL statement limit (100,000 characters) applies, which is how Salesforce
advises sending long queries (help article 000386264). One composite carries up to five
queries, and counts as one call against the org's daily API allocation. The same call also
carries sObject Collections writes (:mod:`connectors.salesforce.writes`): at most five query
and collections subrequests together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import quote

from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceMoreThanOneRecord,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

MAX_QUERIES = 5  # query subrequests one composite request may carry
# Characters of values one composite query carries: a third of the statement limit, since a
# long statement can still fail QUERY_TOO_COMPLICATED once Salesforce expands it.
STATEMENT_BUDGET = 30_000
_ERRORS: dict[int, type[SalesforceError]] = {
    300: SalesforceMoreThanOneRecord,
    400: SalesforceMalformedRequest,
    401: SalesforceExpiredSession,
    403: SalesforceRefusedRequest,
    404: SalesforceResourceNotFound,
}


@dataclass(frozen=True)
class Answer:
    """One query's rows, or the error Salesforce answered it with (as simple-salesforce
    would have raised it for the query on its own)."""

    rows: list[dict[str, Any]]
    error: SalesforceError | None = None

    def error_code(self) -> str | None:
        content = self.error.content if self.error is not None else None
        if isinstance(content, list) and content and isinstance(content[0], dict):
            code = content[0].get("errorCode")
            return str(code) if code else None
        return None


def answers(sf: Salesforce, subs: Sequence[dict[str, Any]]) -> list[tuple[int, Any]]:
    """One composite call: each subrequest's HTTP status and body, in order. A subrequest
    left unanswered makes the call unreadable (retried), never matched up by guess."""
    body = sf.restful("composite", method="POST", json={"compositeRequest": list(subs)})
    by_ref = {r.get("referenceId"): r for r in (body or {}).get("compositeResponse") or []}
    out: list[tuple[int, Any]] = []
    for sub in subs:
        answer = by_ref.get(sub["referenceId"])
        if not isinstance(answer, dict):
            raise SalesforceGeneralError(sub["url"], 502, "composite", b"no answer for a query")
        out.append((int(answer.get("httpStatusCode") or 0), answer.get("body")))
    return out


def error(url: str, status: int, name: str, content: Any) -> SalesforceError:
    """A failed subrequest as simple-salesforce raises the same request failing on its own:
    the answer's parsed JSON as content, whatever its annotation says."""
    return _ERRORS.get(status, SalesforceGeneralError)(url, status, name, cast(bytes, content))


def query_many(sf: Salesforce, soqls: Sequence[str]) -> list[Answer]:
    """Run up to :data:`MAX_QUERIES` queries in one call; answers in the same order. A query
    whose answer has more rows than one batch is followed with ``queryMore`` (one more call
    per batch): the queries here carry LIMIT 2000, which one batch holds."""
    if not 1 <= len(soqls) <= MAX_QUERIES:
        raise ValueError(f"1 to {MAX_QUERIES} queries per composite, not {len(soqls)}")
    base = f"/services/data/v{sf.sf_version}/query?q="
    subs = [
        {"method": "GET", "url": base + quote(soql, safe=""), "referenceId": f"q{i}"}
        for i, soql in enumerate(soqls)
    ]
    out = []
    for sub, (status, content) in zip(subs, answers(sf, subs), strict=True):
        if status != 200 or not isinstance(content, dict):
            out.append(Answer([], error(sub["url"], status, "query", content)))
            continue
        rows = list(content.get("records") or [])
        while not content.get("done", True) and content.get("nextRecordsUrl"):
            content = sf.query_more(content["nextRecordsUrl"], identifier_is_url=True)
            rows += content.get("records") or []
        out.append(Answer(rows))
    return out
