"""A stateful stand-in for the Salesforce REST API that the real simple-salesforce talks to.

Logins (SOAP and OAuth, :mod:`.salesforce_auth`), records with external-id upserts
(:mod:`.salesforce_store`) and SOQL (:mod:`.soql`, :mod:`.soql_eval`, relationship fields
such as ``Account.Name`` in :mod:`.soql_paths`) behave as a real org
does, down to error codes and bodies, the ``Sforce-Limit-Info`` header, the daily API
allocation, query cursors with ``nextRecordsUrl``, and sessions that expire. Tests seed,
read, delete and merge records through :mod:`.salesforce_admin`. Faults and
their endpoint names live in :mod:`.salesforce_faults` and :mod:`.faults`.

Point simple-salesforce at it with ``domain="login"`` and a session carrying
``connectors._http.RewritingAdapter({"https://login.salesforce.com": sb.url,
f"https://127.0.0.1:{port}": sb.url})``: login answers with the sandbox's own
``http://127.0.0.1:PORT`` as the instance, which simple-salesforce turns into ``https://…``.
"""

from __future__ import annotations

import json
import secrets
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any, Self
from urllib.parse import unquote

from sandbox.salesforce import composite, meta
from sandbox.salesforce.admin import OrgAdmin
from sandbox.salesforce.auth import Authenticator, Credentials, Org
from sandbox.salesforce.bulk2 import Bulk2, parse_json
from sandbox.salesforce.collections import (
    create_many,
    delete_many,
    parse_collection,
    upsert_many,
)
from sandbox.salesforce.faults import OrgFaults, data_endpoint
from sandbox.salesforce.schema import API_VERSIONS, make_id
from sandbox.salesforce.soql import query as soql
from sandbox.salesforce.soql.bind import bind
from sandbox.salesforce.soql.evaluate import run
from sandbox.salesforce.soql.paths import PathSchema, paths_of, project, with_paths
from sandbox.salesforce.store import DmlError, RequestError, SalesforceStore, Table
from sandbox.server import Handler, Request, Response

NOT_FOUND = [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]
MAX_CURSORS = 10  # Salesforce keeps ten open query cursors per user, dropping the oldest
URI_AND_HEADERS = 16_384  # bytes of URI plus headers one REST call may carry
MAX_SOQL = 100_000  # characters of one SOQL statement


def _errors(status: int, code: str, message: str) -> Response:
    return Response.json([{"message": message, "errorCode": code}], status)


class SalesforceSandbox(OrgAdmin, OrgFaults):
    name = "salesforce"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        username: str = "integration@sandbox.example",
        password: str = "sandbox-password",
        security_token: str = "sandbox-token",
        consumer_key: str = "sandbox-consumer-key",
        consumer_secret: str = "sandbox-consumer-secret",
        jwt_public_key_pem: bytes | None = None,
        external_ids: dict[str, list[str]] | None = None,
        daily_api_limit: int = 100_000,
        messaging: bool = False,
        social: bool = True,
        latency: float = 0.0,
    ) -> None:
        super().__init__(host, port, latency=latency)
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)  # tests may move time
        self.daily_api_limit = daily_api_limit
        self.api_calls = 0  # REST calls counted against the daily limit (logins are free)
        self.logins = 0
        self.store = SalesforceStore(
            {"Task": ["Social_Post_Id__c"]} if external_ids is None else external_ids,
            clock=lambda: self.clock(),
            # Salesforce messaging set up: MessagingChannel and MessagingEndUser exist. Social
            # Customer Service on (the default: syncd's SocialPersona look-ups and SocialPost
            # history need it): SocialPost and SocialPersona exist; social=False is an org
            # without it.
            features=frozenset(
                name for name, on in (("messaging", messaging), ("social", social)) if on
            ),
        )
        self._sessions: set[str] = set()
        self._cursors: OrderedDict[str, tuple[list[dict[str, Any]], int]] = OrderedDict()
        self._cursor_serial = 0
        creds = Credentials(
            username, password, security_token, consumer_key, consumer_secret, jwt_public_key_pem
        )
        org = Org(self.store.org_id, self.store.user_id, lambda: self.url)
        self.auth = Authenticator(creds, org, self._issue)
        self.route("POST", "/services/Soap/u/{version}", self.auth.soap, "login")
        self.route("POST", "/services/oauth2/token", self.auth.oauth, "login")
        self.route("GET", "/services/data", self._versions, "versions")
        data = "/services/data/v{version}"
        for method, path, handler in (
            ("GET", "", self._resources),
            ("GET", "/limits", self._limits),
            ("GET", "/limits/recordCount", self._record_count),
            ("GET", "/sobjects", self._global_describe),
            ("GET", "/sobjects/{sobject}/describe", self._describe),
            ("GET", "/sobjects/{sobject}", self._sobject_info),
            ("POST", "/sobjects/{sobject}", self._create),
            ("GET", "/sobjects/{sobject}/{record_id}", self._get),
            ("PATCH", "/sobjects/{sobject}/{record_id}", self._update),
            ("DELETE", "/sobjects/{sobject}/{record_id}", self._delete),
            ("GET", "/sobjects/{sobject}/{field}/{value}", self._get_by_external_id),
            ("PATCH", "/sobjects/{sobject}/{field}/{value}", self._upsert_one),
            ("GET", "/query", lambda r: self._query(r, include_all=False)),
            ("GET", "/queryAll", lambda r: self._query(r, include_all=True)),
            ("GET", "/query/{locator}", self._query_more),
            ("GET", "/queryAll/{locator}", self._query_more),
            ("POST", "/composite/sobjects", self._create_collection),
            ("DELETE", "/composite/sobjects", self._delete_collection),
            ("PATCH", "/composite/sobjects/{sobject}/{field}", self._upsert_collection),
        ):
            self.route(method, data + path, self._data(handler), data_endpoint(path))
        # Not "composite": that is sObject Collections', whose per-record faults do not fit.
        self.route("POST", data + "/composite", self._data(self._composite), "composite_request")
        # Bulk API 2.0 ingest (:mod:`.bulk2`): every request is an API call like any other.
        self.bulk2 = Bulk2(self.store, lambda: self.clock(), lambda: self.store.user_id)
        ingest = data + "/jobs/ingest"
        for method, path, handler, name in (
            ("POST", "", self._bulk2_create, "bulk2_create"),
            ("GET", "", self._bulk2_list, "bulk2_list"),
            ("PUT", "/{job_id}/batches", self._bulk2_upload, "bulk2_upload"),
            ("PATCH", "/{job_id}", self._bulk2_state, "bulk2_state"),
            ("GET", "/{job_id}", self._bulk2_info, "bulk2_job"),
            ("DELETE", "/{job_id}", self._bulk2_delete, "bulk2_delete"),
            ("GET", "/{job_id}/successfulResults", self._bulk2_results, "bulk2_results"),
            ("GET", "/{job_id}/failedResults", self._bulk2_results, "bulk2_results"),
            # the guide spells it unprocessedrecords, simple-salesforce unprocessedRecords
            ("GET", "/{job_id}/unprocessedrecords", self._bulk2_results, "bulk2_results"),
            ("GET", "/{job_id}/unprocessedRecords", self._bulk2_results, "bulk2_results"),
        ):
            self.route(method, ingest + path, self._data(handler), name)

    def start(self) -> Self:
        super().start()
        return self

    def __enter__(self) -> Self:
        return self.start()

    def expire_sessions(self) -> None:
        """Invalidate every issued session: the next call gets 401 INVALID_SESSION_ID."""
        with self.lock:
            self._sessions.clear()

    # -- plumbing -------------------------------------------------------------------------
    def _issue(self) -> str:
        token = f"{self.store.org_id[:15]}!{secrets.token_urlsafe(72)}"
        with self.lock:
            self._sessions.add(token)
            self.logins += 1
        return token

    def _usage(self) -> dict[str, str]:
        return {"Sforce-Limit-Info": f"api-usage={self.api_calls}/{self.daily_api_limit}"}

    def _data(self, handler: Handler) -> Handler:
        """Session check, API allocation and real-shaped errors for /services/data/vXX.X."""

        def wrapped(req: Request) -> Response:
            auth = req.header("authorization") or ""
            token = auth[7:] if auth[:7].lower() == "bearer " else ""
            with self.lock:
                if token not in self._sessions:
                    resp = _errors(401, "INVALID_SESSION_ID", "Session expired or invalid")
                    resp.headers["WWW-Authenticate"] = "Token"
                    return resp
                if self.api_calls >= self.daily_api_limit:
                    resp = _errors(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
                elif req.params.get("version") not in API_VERSIONS:
                    self.api_calls += not req.subrequest
                    resp = Response.json(NOT_FOUND, 404)
                else:
                    self.api_calls += not req.subrequest
                    resp = self._guarded(handler, req)
                resp.headers.update(self._usage())
                return resp

        return wrapped

    def _guarded(self, handler: Handler, req: Request) -> Response:
        try:
            return handler(req)
        except soql.SoqlError as exc:
            return _errors(400, exc.error_code, exc.message)
        except RequestError as exc:
            return Response.json(exc.body(), exc.status)
        except DmlError as exc:
            deleted = any(e.status_code == "ENTITY_IS_DELETED" for e in exc.errors)
            return Response.json([e.rest() for e in exc.errors], 404 if deleted else 400)
        except json.JSONDecodeError as exc:
            return _errors(
                400,
                "JSON_PARSER_ERROR",
                f"Unexpected character: {exc.msg} at [line:{exc.lineno}, column:{exc.colno}]",
            )

    def dispatch(self, req: Request) -> Response:
        resp = super().dispatch(req)
        if resp.status == 405:  # the base class's body is not Salesforce's
            return _errors(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{req.method}' not allowed.")
        return resp

    def not_found(self, req: Request) -> Response:
        return Response.json(NOT_FOUND, 404)

    def _table(self, req: Request) -> Table:
        table = self.store.table(req.params["sobject"])
        if table is None:
            raise RequestError(404, "NOT_FOUND", "The requested resource does not exist")
        return table

    def _url(self, req: Request, *parts: str) -> str:
        return "/".join((f"/services/data/v{req.params['version']}", *parts))

    def _record_body(self, req: Request) -> dict[str, Any]:
        body = self._body(req)
        if not isinstance(body, dict):
            raise RequestError(400, "JSON_PARSER_ERROR", "Expected a JSON object for an sObject")
        return body

    def _body(self, req: Request) -> Any:
        if not req.body:
            raise RequestError(
                400,
                "JSON_PARSER_ERROR",
                "The HTTP entity body is required, but this request has no entity body.",
            )
        return json.loads(req.body)

    # -- metadata -------------------------------------------------------------------------
    def _versions(self, req: Request) -> Response:
        return Response.json(meta.versions())

    def _resources(self, req: Request) -> Response:
        names = ("sobjects", "query", "queryAll", "limits", "composite")
        return Response.json({n: self._url(req, n) for n in names})

    def _limits(self, req: Request) -> Response:
        batches = (self.bulk2.batch_limit, self.bulk2.batches_used)
        return Response.json(
            meta.limits(self.store, self.api_calls, self.daily_api_limit, bulk_batches=batches)
        )

    def _record_count(self, req: Request) -> Response:
        return Response.json(meta.record_counts(self.store, req.query.get("sObjects", "")))

    def _global_describe(self, req: Request) -> Response:
        return Response.json(meta.global_describe(self._url(req), self.store))

    def _sobject_info(self, req: Request) -> Response:
        info = meta.brief(self._url(req), self._table(req))
        return Response.json({"objectDescribe": info, "recentItems": []})

    def _describe(self, req: Request) -> Response:
        return Response.json(meta.describe(self._url(req), self._table(req), self.store))

    # -- single records -------------------------------------------------------------------
    def _full(self, req: Request, table: Table, rec: dict[str, Any]) -> dict[str, Any]:
        url = self._url(req, "sobjects", table.name, rec["Id"])
        names = list(table.types)
        if wanted := [f.strip() for f in req.query.get("fields", "").split(",") if f.strip()]:
            names = [table.fields.get(f.lower(), "") for f in wanted]
            if "" in names:
                bad = wanted[names.index("")]
                raise RequestError(
                    400,
                    "INVALID_FIELD",
                    f"No such column '{bad}' on entity "
                    f"'{table.name}'. If you are attempting to use a custom field, "
                    "be sure to append the '__c' after the custom field name.",
                )
        return {"attributes": {"type": table.name, "url": url}, **{n: rec.get(n) for n in names}}

    def _create(self, req: Request) -> Response:
        new_id = self.store.create(self._table(req).name, self._record_body(req))
        return Response.json({"id": new_id, "success": True, "errors": []}, 201)

    def _get(self, req: Request) -> Response:
        table = self._table(req)
        rec = self.store.live(table, req.params["record_id"])
        if rec is None:
            return Response.json(NOT_FOUND, 404)
        return Response.json(self._full(req, table, self.store.view(table, rec)))

    def _update(self, req: Request) -> Response:
        body = self._record_body(req)
        self.store.update(self._table(req).name, req.params["record_id"], body)
        return Response(204)

    def _delete(self, req: Request) -> Response:
        self.store.delete(self._table(req).name, req.params["record_id"])
        return Response(204)

    def _get_by_external_id(self, req: Request) -> Response:
        table = self._table(req)
        field = table.fields.get(req.params["field"].lower())
        if field is None or field not in table.external:
            return Response.json(NOT_FOUND, 404)
        found = table.exact[field].get(unquote(req.params["value"]))
        rec = self.store.live(table, found) if found else None
        if rec is None:
            return Response.json(NOT_FOUND, 404)
        return Response.json(self._full(req, table, self.store.view(table, rec)))

    def _upsert_one(self, req: Request) -> Response:
        table = self._table(req)
        key = table.fields.get(req.params["field"].lower(), req.params["field"])
        # the URL's value wins over one in the body, whatever case either spells the field in
        body = {k: v for k, v in self._record_body(req).items() if k.lower() != key.lower()}
        record = {**body, "attributes": {"type": table.name}, key: unquote(req.params["value"])}
        result = upsert_many(self.store, table.name, key, [record], True)[0]
        if not result["success"]:
            errors = [
                {"message": e["message"], "errorCode": e["statusCode"], "fields": e["fields"]}
                for e in result["errors"]
            ]
            return Response.json(errors, 400)
        return Response.json(result, 201 if result["created"] else 200)

    # -- SOQL -----------------------------------------------------------------------------
    def _query(self, req: Request, include_all: bool) -> Response:
        # Salesforce refuses a call whose URI and headers together pass 16,384 bytes (help
        # article 000386264): a query is the one call whose URI grows with its values.
        if req.target_bytes > URI_AND_HEADERS:
            return Response(414, b"URI Too Long", {"Content-Type": "text/plain"})
        if req.target_bytes + req.header_bytes > URI_AND_HEADERS:
            return Response(431, b"Request Header Fields Too Large", {"Content-Type": "text/plain"})
        text = req.query.get("q")
        if not text:
            raise RequestError(400, "MALFORMED_QUERY", "A query string has to be specified")
        if len(text) > MAX_SOQL:
            raise RequestError(
                400,
                "MALFORMED_QUERY",
                f"SOQL statements cannot be longer than {MAX_SOQL} characters",
            )
        query = bind(soql.parse(text), PathSchema(self.store))
        table = self.store.table(query.sobject)
        assert table is not None  # bind() checked it
        scanned, matched = self.store.scan(table, include_all, query.where)
        rows = run(
            query,
            with_paths(self.store, table, scanned, paths_of(query)),
            self.clock(),
            matched=matched,
        )
        if query.count_only:
            return Response.json({"totalSize": len(rows), "done": True, "records": []})
        url = partial(self._url, req, "sobjects")
        names = [f.name for f in query.fields]
        parents: dict[tuple[str, Any], Any] = {}
        records = [project(self.store, table, r, names, url, parents) for r in rows]
        self._cursor_serial += 1
        locator = make_id("01g", self._cursor_serial)
        self._cursors[locator] = (records, self._batch_size(req, 2000))
        while len(self._cursors) > MAX_CURSORS:
            self._cursors.popitem(last=False)
        endpoint = "queryAll" if include_all else "query"
        return self._page(req, locator, 0, endpoint)

    def _composite(self, req: Request) -> Response:
        subs = composite.parse(self._body(req), req.params["version"])
        # Under the (re-entrant) lock, like every data call: the subrequests run as one.
        return composite.run(subs, req, self.dispatch)

    def _query_more(self, req: Request) -> Response:
        locator, _, start = req.params["locator"].partition("-")
        if locator not in self._cursors or not start.isdigit():
            raise RequestError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        endpoint = "queryAll" if "/queryAll/" in req.path else "query"
        return self._page(req, locator, int(start), endpoint)

    def _batch_size(self, req: Request, default: int) -> int:
        for option in (req.header("sforce-query-options") or "").split(","):
            name, _, value = option.strip().partition("=")
            if name.lower() == "batchsize" and value.isdigit():
                return min(2000, max(200, int(value)))  # the documented bounds
        return default

    def _page(self, req: Request, locator: str, start: int, endpoint: str) -> Response:
        records, size = self._cursors[locator]
        size = self._batch_size(req, size)
        chunk = records[start : start + size]
        done = start + size >= len(records)
        body: dict[str, Any] = {"totalSize": len(records), "done": done, "records": chunk}
        if done:
            del self._cursors[locator]
        else:
            body["nextRecordsUrl"] = self._url(req, endpoint, f"{locator}-{start + size}")
        return Response.json(body)

    # -- sObject Collections --------------------------------------------------------------
    def _create_collection(self, req: Request) -> Response:
        records, all_or_none = parse_collection(self._body(req))
        write = partial(create_many, self.store)
        return Response.json(self.collection_results(records, all_or_none, write))

    def _upsert_collection(self, req: Request) -> Response:
        records, all_or_none = parse_collection(self._body(req))
        name, key = self._table(req).name, req.params["field"]
        write = partial(upsert_many, self.store, name, key)
        return Response.json(self.collection_results(records, all_or_none, write, key))

    def _delete_collection(self, req: Request) -> Response:
        ids = [i for i in (req.query.get("ids") or "").split(",") if i]
        if not ids:
            raise RequestError(400, "MISSING_ARGUMENT", "ids parameter is required")
        all_or_none = (req.query.get("allOrNone") or "false").lower() == "true"
        write = partial(delete_many, self.store)
        return Response.json(self.collection_results(ids, all_or_none, write))

    # -- Bulk API 2.0 ingest ----------------------------------------------------------------
    def _bulk2_create(self, req: Request) -> Response:
        return Response.json(self.bulk2.create(parse_json(req.body), req.params["version"]))

    def _bulk2_list(self, req: Request) -> Response:
        return Response.json(self.bulk2.listing())

    def _bulk2_upload(self, req: Request) -> Response:
        self.bulk2.upload(req.params["job_id"], req.body)
        return Response(201)

    def _bulk2_state(self, req: Request) -> Response:
        return Response.json(self.bulk2.set_state(req.params["job_id"], parse_json(req.body)))

    def _bulk2_info(self, req: Request) -> Response:
        return Response.json(self.bulk2.info(req.params["job_id"]))

    def _bulk2_delete(self, req: Request) -> Response:
        self.bulk2.delete(req.params["job_id"])
        return Response(204)

    def _bulk2_results(self, req: Request) -> Response:
        tail = req.path.rstrip("/").rsplit("/", 1)[1].lower()
        kind = {"successfulresults": "successful", "failedresults": "failed"}.get(tail)
        text = self.bulk2.results(req.params["job_id"], kind or "unprocessed")
        return Response.text(text, 200, "text/csv")
