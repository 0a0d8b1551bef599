"""Faults of the Salesforce stand-in: its own kinds, and bodies shaped like the real org's.

:class:`OrgFaults` is the base of :class:`~sandbox.salesforce.api.SalesforceSandbox`;
the kinds and endpoint names are listed in :mod:`.faults`. Error bodies follow what the REST
API sends: ``[{"message", "errorCode"}]`` for a refused request, ``{"success": false, "errors":
[{"statusCode", "message", "fields"}]}`` for one record of an sObject Collections call. What
reaches Salesforce's edge but not the org (a 502, a maintenance 503 on login) is an HTML page,
as a load balancer sends it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from sandbox.faults import FaultRule, Kind, kinds, reason
from sandbox.salesforce.auth import soap_fault
from sandbox.salesforce.collections import ROLLED_BACK, check_size
from sandbox.server import Handler, Request, Response, SandboxServer

# Every endpoint that needs a session; "login" and "versions" do not.
BULK2_ENDPOINTS = frozenset(
    {
        "bulk2_create",
        "bulk2_list",
        "bulk2_upload",
        "bulk2_state",
        "bulk2_job",
        "bulk2_delete",
        "bulk2_results",
    }
)
DATA_ENDPOINTS = (
    frozenset({"resources", "limits", "sobject", "query", "composite", "composite_request"})
    | BULK2_ENDPOINTS
)
KINDS = kinds(
    {
        "session_expired": Kind(endpoints=DATA_ENDPOINTS),
        "request_limit": Kind(endpoints=DATA_ENDPOINTS),
        "lock_row": Kind(endpoints=DATA_ENDPOINTS),
        "record_error": Kind(
            frozenset({"code", "message", "fields"}),
            per_record=True,
            endpoints=frozenset({"composite"}),
            required=frozenset({"code"}),
        ),
    }
)
# The messages a real org sends with these codes (a validation rule's text is the admin's).
RECORD_MESSAGES = {
    "DUPLICATE_VALUE": "duplicate value found: {key} duplicates value on record with id: <unknown>",
    "FIELD_CUSTOM_VALIDATION_EXCEPTION": "Social history cannot be logged on this record.",
    "ENTITY_IS_DELETED": "entity is deleted",
    "INVALID_CROSS_REFERENCE_KEY": "invalid cross reference id",
    "UNABLE_TO_LOCK_ROW": "unable to obtain exclusive access to this record",
}
_UNEXPECTED = (
    "An unexpected error occurred. Please include this ErrorId if you contact support: "
    "1938256371-11498 (-1136465421)"
)
_XML = "text/xml; charset=utf-8"


def data_endpoint(path: str) -> str:
    """The endpoint name of a route pattern below ``/services/data/vXX.X``."""
    head = path.strip("/").split("/", 1)[0]
    return {"": "resources", "queryAll": "query", "sobjects": "sobject"}.get(head, head)


def _refused(status: int, code: str, message: str) -> Response:
    return Response.json([{"message": message, "errorCode": code}], status)


def _html(status: int) -> Response:
    phrase = reason(status)
    page = (
        f"<html><head><title>{status} {phrase}</title></head><body><h1>{phrase}</h1></body></html>"
    )
    return Response.text(page, status, "text/html; charset=utf-8")


def record_failure(rule: FaultRule, key: str | None) -> dict[str, Any]:
    code = rule.code or "UNKNOWN_EXCEPTION"
    message = rule.message or RECORD_MESSAGES.get(code, _UNEXPECTED).format(key=key or "<unknown>")
    error = {"statusCode": code, "message": message, "fields": list(rule.fields or [])}
    return {"success": False, "errors": [error]}


class OrgFaults(SandboxServer):
    """Salesforce's fault kinds and bodies; the subclass supplies sessions and usage."""

    fault_kinds: ClassVar[Mapping[str, Kind]] = KINDS

    def expire_sessions(self) -> None:
        raise NotImplementedError

    def _usage(self) -> dict[str, str]:
        return {}

    def fault_response(
        self, rule: FaultRule, req: Request, handler: Handler, answered: Response | None
    ) -> Response:
        if rule.kind == "session_expired":
            self.expire_sessions()
            return handler(req)  # the session check answers 401 INVALID_SESSION_ID
        if rule.kind == "request_limit":
            resp = _refused(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
        elif rule.kind == "lock_row":
            resp = _refused(400, "UNABLE_TO_LOCK_ROW", RECORD_MESSAGES["UNABLE_TO_LOCK_ROW"])
        else:
            return super().fault_response(rule, req, handler, answered)
        resp.headers.update(self._usage())
        return resp

    def status_response(self, status: int, req: Request) -> Response:
        if req.path.startswith("/services/Soap/"):
            if status == 500:  # the SOAP API reports its own failures as faults
                return soap_fault("UNKNOWN_EXCEPTION", _UNEXPECTED, "UnexpectedErrorFault")
            return _html(status)
        if req.path.startswith("/services/oauth2/"):
            body = {"error": "unknown_error", "error_description": "retry your request"}
            return Response.json(body, status)
        if status == 500:
            return _refused(500, "UNKNOWN_EXCEPTION", _UNEXPECTED)
        if status == 503:
            return _refused(503, "SERVER_UNAVAILABLE", "Server is unavailable; try again later.")
        return _html(status)

    def malformed_response(self, req: Request) -> Response:
        if req.path.startswith("/services/Soap/"):
            cut = '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv='
            return Response.text(cut, 200, _XML)
        if req.endpoint == "query":
            cut = '{"totalSize":1,"done":true,"records":[{"attributes":{"type":"Conta'
        else:
            cut = '[{"id":"00T5e00000AbCdEAAA","success":true,"errors":[],"crea'
        return Response.text(cut, 200, "application/json;charset=UTF-8")

    def collection_results(
        self,
        records: Sequence[Any],
        all_or_none: bool,
        write: Callable[[Sequence[Any], bool], list[dict[str, Any]]],
        key: str | None = None,
    ) -> list[dict[str, Any]]:
        """``write(records, all_or_none)``, with record_error rules applied to the records.

        Hit records are never written. With ``allOrNone`` nothing is, and every other record
        reports ALL_OR_NONE_OPERATION_ROLLED_BACK.
        """
        check_size(records)  # an oversized request is refused before any record is drawn
        picks = self._fault_rules.draw_records("composite", len(records))
        if not any(picks):
            return write(records, all_or_none)
        kept = [r for r, pick in zip(records, picks, strict=True) if pick is None]
        # write([]) still refuses a request that is wrong as a whole (an unknown key field).
        written = iter(write([] if all_or_none else kept, False))
        results = []
        for pick in picks:
            if pick is not None:
                results.append(record_failure(pick, key))
            elif all_or_none:
                results.append({"success": False, "errors": [ROLLED_BACK.result()]})
            else:
                results.append(next(written))
        return results
