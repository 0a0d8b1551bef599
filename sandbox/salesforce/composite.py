"""``POST /services/data/vXX.X/composite``: up to 25 subrequests in one call, as Salesforce
answers them.

Each subrequest is dispatched like a call of its own (hooks and faults see it, so a test can
count the queries inside) but the composite is one call against the daily API allocation.
A subrequest's URL sits in the JSON body, not the request line, so the 16 KB limit on URI and
headers does not bind it (Salesforce's advice for long queries, help article 000386264);
the SOQL statement limit of 100,000 characters still does. Recorded answers of a real org:
``tests/fixtures/cumulusci/TestCompositeParallelSalesforce.*``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sandbox.salesforce.store import RequestError
from sandbox.server import Request, Response

MAX_SUBREQUESTS = 25
MAX_QUERIES = 5  # query, queryAll and sObject Collections subrequests per composite
_QUERY_PATHS = ("/query", "/queryAll", "/composite/sobjects")


def parse(body: Any, version: str) -> list[dict[str, Any]]:
    """The subrequests, checked as Salesforce checks them; RequestError when refused."""
    if not isinstance(body, dict) or not isinstance(body.get("compositeRequest"), list):
        raise RequestError(400, "JSON_PARSER_ERROR", "compositeRequest is required")
    subs = body["compositeRequest"]
    if not 1 <= len(subs) <= MAX_SUBREQUESTS:
        raise RequestError(
            400, "INVALID_COMPOSITE_REQUEST", f"A composite request holds 1 to {MAX_SUBREQUESTS}"
        )
    refs: set[str] = set()
    for sub in subs:
        ref, url = sub.get("referenceId"), sub.get("url")
        if not isinstance(ref, str) or not ref or not isinstance(url, str) or not sub.get("method"):
            raise RequestError(
                400, "JSON_PARSER_ERROR", "Each subrequest needs method, url and referenceId"
            )
        if ref in refs:
            raise RequestError(400, "INVALID_COMPOSITE_REQUEST", f"Duplicate referenceId {ref}")
        refs.add(ref)
    queries = sum(
        any(
            urlsplit(s["url"]).path.startswith(f"/services/data/v{version}{p}")
            for p in _QUERY_PATHS
        )
        for s in subs
    )
    if queries > MAX_QUERIES:
        raise RequestError(
            400,
            "INVALID_COMPOSITE_REQUEST",
            f"A composite request holds at most {MAX_QUERIES} query or collection subrequests",
        )
    return list(subs)


def run(
    subs: list[dict[str, Any]], outer: Request, dispatch: Callable[[Request], Response]
) -> Response:
    """Every subrequest in order, each answered in ``compositeResponse``."""
    answers = []
    for sub in subs:
        parts = urlsplit(sub["url"])
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        body, own = sub.get("body"), sub.get("httpHeaders") or {}
        inner = Request(
            method=str(sub["method"]).upper(),
            path=parts.path,
            query=query,
            headers={**outer.headers, **{k.lower(): str(v) for k, v in own.items()}},
            body=json.dumps(body).encode() if body is not None else b"",
            subrequest=True,
        )
        resp = dispatch(inner)
        try:
            payload = json.loads(resp.body) if resp.body else None
        except ValueError:
            payload = resp.body.decode("utf-8", "replace")
        answers.append(
            {
                "body": payload,
                "httpHeaders": {},
                "httpStatusCode": resp.status,
                "referenceId": sub["referenceId"],
            }
        )
    return Response.json({"compositeResponse": answers})
