"""Helpers for the Salesforce connector tests.

- :class:`CumulusCIPersister` replays CumulusCI's recorded Salesforce cassettes with vcrpy.
- :class:`FakeSf` stands in for a logged-in ``simple_salesforce.Salesforce`` in unit tests of
  the look-up logic: it answers the connector's IN-list queries from a small directory.
- :class:`FakeOrg` is a scriptable loopback org (SOAP/OAuth login, query, collections upsert,
  injected faults) for the HTTP paths the shared stand-in may not fault on demand.
"""

from __future__ import annotations

import html
import json
import re
import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from simple_salesforce.api import Salesforce
from vcr.request import Request as VcrRequest
from vcr.serializers import compat

from connectors._http import RewritingAdapter, mount
from connectors.salesforce.crm import SalesforceCrm
from connectors.salesforce.settings import SalesforceSettings
from sandbox.salesforce import composite
from sandbox.salesforce.api import SalesforceSandbox
from sandbox.server import Request, Response, SandboxServer
from support import FIXTURES
from syncd.model import (
    CrmRef,
    Direction,
    HistoryRecord,
    IdentityKey,
)

API = "61.0"
CUMULUSCI = FIXTURES / "cumulusci"


# -- CumulusCI cassettes -----------------------------------------------------------------------


class CumulusCIPersister:
    """Loads CumulusCI's cassettes as vcrpy expects them.

    CumulusCI records with its own vcr extensions: ``include_file`` entries (shared describe
    calls; those not shipped here are dropped, none is one of ours), the API version elided as
    ``vxx.0`` (rewritten to :data:`API`) and response headers elided as ``Others: Elided`` or
    nested under ``Response-Headers`` (flattened to the real ``Content-Type``).
    """

    @classmethod
    def load_cassette(
        cls, cassette_path: str, serializer: Any
    ) -> tuple[list[VcrRequest], list[dict[str, Any]]]:
        interactions = []
        for item in _load_yaml(Path(cassette_path))["interactions"]:
            if "include_file" in item:
                included = Path(cassette_path).parent / item["include_file"]
                if not included.exists():
                    continue
                item = _load_yaml(included)
            response = dict(item["response"])
            headers: dict[str, Any] = response.get("headers") or {}
            headers = headers.get("Response-Headers", headers)
            response["headers"] = {k: v for k, v in headers.items() if isinstance(v, list)}
            interactions.append((item["request"], response))
        requests = [VcrRequest._from_dict(req) for req, _ in interactions]
        responses = [compat.convert_to_bytes(resp) for _, resp in interactions]
        return requests, responses

    @staticmethod
    def save_cassette(cassette_path: str, cassette_dict: Any, serializer: Any) -> None:
        raise AssertionError("the CumulusCI cassettes are recorded fixtures, never rewritten")


def _load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8").replace("/vxx.0/", f"/v{API}/"))


def cassette_body(name: str, index: int) -> Any:
    """The decoded JSON body of the ``index``-th interaction of a cassette."""
    return json.loads(
        _load_yaml(CUMULUSCI / name)["interactions"][index]["response"]["body"]["string"]
    )


# -- building blocks ---------------------------------------------------------------------------


def settings(**overrides: Any) -> SalesforceSettings:
    """Username-password settings; secrets come from SF_PASSWORD / SF_TOKEN (set them first)."""
    values: dict[str, Any] = {
        "type": "salesforce",
        "username": "integration@sandbox.example",
        "password": "env:SF_PASSWORD",
        "security_token": "env:SF_TOKEN",
        "timeout": 5,
    }
    values.update(overrides)
    return SalesforceSettings.model_validate({k: v for k, v in values.items() if v is not None})


def record(n: int, who: str, *, handle: str | None = "customer", **kw: Any) -> HistoryRecord:
    values: dict[str, Any] = {
        "external_id": f"x:{1399688059608702976 + n}",
        "who": CrmRef("Contact", who),
        "network": "x",
        "direction": Direction.INBOUND,
        "subject": f"X mention from @{handle}",
        "description": f"post number {n}",
        "occurred_at": datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
        "handle": handle,
        "url": f"https://x.com/{handle}/status/{1399688059608702976 + n}",
        "conversation_id": "1399688059608702976",
    }
    values.update(kw)
    return HistoryRecord(**values)


def key(user_id: str, handle: str | None = None, network: str = "x") -> IdentityKey:
    return IdentityKey(network=network, user_id=user_id, handle=handle)


# -- a logged-in client, without HTTP ----------------------------------------------------------

_QUERY = re.compile(
    r"^SELECT Id, Name, (\w+), (\w+) FROM (\w+) "
    r"WHERE (\w+) IN \((.*?)\)(?: OR (\w+) IN \((.*)\))?$",
    re.S,
)
_LITERAL = re.compile(r"'((?:\\.|[^'\\])*)'")


def soql_literals(text: str) -> list[str]:
    return [re.sub(r"\\(.)", r"\1", m) for m in _LITERAL.findall(text)]


class FakeSf:
    """Answers the connector's look-up queries from ``people[object]`` rows."""

    def __init__(self, people: dict[str, list[dict[str, Any]]]) -> None:
        self.people = people
        self.queries: list[tuple[str, str]] = []  # (object, soql)

    def query_all(self, soql: str, include_deleted: bool = False) -> dict[str, Any]:
        assert not include_deleted  # look-ups never want deleted people
        m = _QUERY.match(soql)
        assert m, soql
        uid_field, handle_field, obj, _, ids, _, handles = m.groups()
        self.queries.append((obj, soql))
        wanted_ids = set(soql_literals(ids))
        wanted_handles = {h.lower() for h in soql_literals(handles or "")}
        rows = [
            row
            for row in self.people.get(obj, [])
            if row.get(uid_field) in wanted_ids
            or str(row.get(handle_field) or "").lower() in wanted_handles
        ]
        return {"records": rows, "totalSize": len(rows), "done": True}

    def asked(self, obj: str) -> int:
        return sum(1 for o, _ in self.queries if o == obj)


def crm_with(fake: FakeSf, **overrides: Any) -> SalesforceCrm:
    crm = SalesforceCrm.from_settings(settings(**overrides))
    crm.session._sf = fake  # type: ignore[assignment]  # skip the login: the fake is "logged in"
    return crm


# -- a scriptable loopback org -----------------------------------------------------------------

SOAP_OK = """<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
 xmlns="urn:partner.soap.sforce.com"><soapenv:Body><loginResponse><result>
<serverUrl>{server}/services/Soap/u/{ver}/00D5e000000FAKE</serverUrl>
<sessionId>{session}</sessionId></result></loginResponse></soapenv:Body></soapenv:Envelope>"""

SOAP_FAULT = """<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
 xmlns:sf="urn:fault.partner.soap.sforce.com"
 xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><soapenv:Fault>
<faultcode>sf:INVALID_LOGIN</faultcode><faultstring>INVALID_LOGIN: Invalid username, password,
 security token; or user locked out.</faultstring><detail><sf:LoginFault xsi:type="sf:LoginFault">
<sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode><sf:exceptionMessage>Invalid username,
 password, security token; or user locked out.</sf:exceptionMessage></sf:LoginFault></detail>
</soapenv:Fault></soapenv:Body></soapenv:Envelope>"""


def sf_error(status: int, code: str, message: str) -> Response:
    return Response.json([{"message": message, "errorCode": code}], status)


class FakeOrg(SandboxServer):
    """Login, query and collections upsert, plus faults queued in :attr:`queued`.

    A queued fault answers the next data request (login requests are never faulted unless
    :attr:`login_faults` holds one). ``revoke_every_session`` makes every session die at once.
    """

    name = "fake-salesforce"

    def __init__(self, password: str, token: str) -> None:
        super().__init__()
        self.reset(password, token)
        self.route("POST", "/services/Soap/u/{ver}", self._soap_login)
        self.route("POST", "/services/oauth2/token", self._oauth)
        self.route("GET", "/services/data/{ver}/query", self._query)
        self.route("GET", "/services/data/{ver}/query/{locator}", self._query_more)
        self.route("PATCH", "/services/data/{ver}/composite/sobjects/{obj}/{field}", self._upsert)
        self.route("POST", "/services/data/{ver}/composite", self._composite)

    def reset(self, password: str, token: str) -> None:
        """Forget every session, fault and call: one server serves a whole test module."""
        self.password, self.token = password, token
        self.logins = 0
        self.sessions: set[str] = set()
        self.revoke_every_session = False
        self.queued: list[Response | Callable[[Request], Response]] = []
        self.login_faults: list[Response] = []
        self.queries: list[str] = []
        self.upserts: list[tuple[str, list[dict[str, Any]]]] = []
        self.pages: dict[str, list[dict[str, Any]]] = {}  # query locator → remaining records
        self.rows: list[dict[str, Any]] = []  # what every query answers
        self.page_size = 2000
        self.jwt_key: Any = None  # public key to check JWT assertions with
        self.jwt_claims: dict[str, Any] = {}

    def _new_session(self) -> str:
        self.logins += 1
        session = "00D5e000000FAKE!" + secrets.token_urlsafe(24)
        self.sessions.add(session)
        return session

    def _soap_login(self, req: Request) -> Response:
        if self.login_faults:
            return self.login_faults.pop(0)
        body = req.body.decode()
        user = re.search(r"<\w+:username>(.*?)</", body)
        password = re.search(r"<\w+:password>(.*?)</", body)
        if (
            not user
            or not password
            or html.unescape(password.group(1)) != self.password + self.token
        ):
            return Response(500, SOAP_FAULT.encode(), {"Content-Type": "text/xml"})
        xml = SOAP_OK.format(server=self.url, ver=API, session=self._new_session())
        return Response(200, xml.encode(), {"Content-Type": "text/xml; charset=utf-8"})

    def _oauth(self, req: Request) -> Response:
        from urllib.parse import parse_qs

        import jwt

        form = {k: v[0] for k, v in parse_qs(req.body.decode()).items()}
        try:
            claims = jwt.decode(
                form["assertion"], self.jwt_key, algorithms=["RS256"],
                audience="https://login.salesforce.com",
            )  # fmt: skip
        except (KeyError, jwt.PyJWTError) as exc:
            return Response.json({"error": "invalid_grant", "error_description": str(exc)}, 400)
        self.jwt_claims = dict(claims)
        return Response.json({"access_token": self._new_session(), "instance_url": self.url})

    def _guard(self, req: Request) -> Response | None:
        auth = (req.header("Authorization") or "").removeprefix("Bearer ")
        if self.revoke_every_session or auth not in self.sessions:
            return sf_error(401, "INVALID_SESSION_ID", "Session expired or invalid")
        if self.queued:
            fault = self.queued.pop(0)
            return fault(req) if callable(fault) else fault
        return None

    def _limits(self, resp: Response) -> Response:
        resp.headers["Sforce-Limit-Info"] = f"api-usage={self.request_count}/15000"
        return resp

    def _page(self, records: list[dict[str, Any]], ver: str) -> Response:
        head, rest = records[: self.page_size], records[self.page_size :]
        body: dict[str, Any] = {"totalSize": len(records), "done": not rest, "records": head}
        if rest:
            locator = f"01gFAKE-{len(self.pages)}"
            self.pages[locator] = rest
            body["nextRecordsUrl"] = f"/services/data/{ver}/query/{locator}"
        return self._limits(Response.json(body))

    def _query(self, req: Request) -> Response:
        if (refused := self._guard(req)) is not None:
            return refused
        self.queries.append(req.query["q"])
        return self._page(list(self.rows), req.params["ver"])

    def _query_more(self, req: Request) -> Response:
        if (refused := self._guard(req)) is not None:
            return refused
        return self._page(self.pages.pop(req.params["locator"]), req.params["ver"])

    def _composite(self, req: Request) -> Response:
        """Subrequests one after the other, as the stand-in runs them (each may be faulted)."""
        if (refused := self._guard(req)) is not None:
            return refused
        subs = composite.parse(req.json(), req.params["ver"].removeprefix("v"))
        return self._limits(composite.run(subs, req, self.dispatch))

    def _upsert(self, req: Request) -> Response:
        if (refused := self._guard(req)) is not None:
            return refused
        records = req.json()["records"]
        self.upserts.append((req.params["obj"], records))
        answer = [
            {"id": f"00T5e00000{i:08d}AAA", "success": True, "errors": [], "created": True}
            for i, _ in enumerate(records)
        ]
        return self._limits(Response.json(answer))


V = "61.0"


USER, PASSWORD, TOKEN = "integration@sandbox.example", "sandbox-password", "sandbox-token"


def session_for(sandbox: SalesforceSandbox) -> requests.Session:
    port = sandbox.url.rsplit(":", 1)[1]
    session = requests.Session()
    mount(
        session,
        RewritingAdapter(
            {"https://login.salesforce.com": sandbox.url, f"https://127.0.0.1:{port}": sandbox.url},
            timeout=10,
        ),
    )
    return session


def login(sandbox: SalesforceSandbox, **kw: Any) -> Any:  # Any: the library's hints are loose
    args: dict[str, Any] = {"username": USER, "password": PASSWORD, "security_token": TOKEN}
    return Salesforce(**{**args, **kw}, domain="login", session=session_for(sandbox), version=V)


def raw(sandbox: SalesforceSandbox, sf: Any, method: str, path: str, **kw: Any) -> Any:
    """A request the way simple-salesforce sends it, without its exception mapping."""
    headers = {"Authorization": f"Bearer {sf.session_id}", **kw.pop("headers", {})}
    url = f"{sandbox.url}/services/data/v{V}/{path}"
    return requests.request(method, url, headers=headers, timeout=10, **kw)


@pytest.fixture
def sb(monkeypatch: pytest.MonkeyPatch) -> Iterator[SalesforceSandbox]:
    monkeypatch.setenv("SF_PASSWORD", "sandbox-password")
    monkeypatch.setenv("SF_TOKEN", "sandbox-token")
    sandbox = SalesforceSandbox(
        external_ids={"Task": ["Social_Post_Id__c"], "Lead": ["X_User_Id__c"]}
    )
    for obj in ("Contact", "Lead"):
        for name in ("X_User_Id__c", "X_Handle__c"):
            sandbox.add_field(obj, name)
    sandbox.start()
    yield sandbox
    sandbox.stop()


def crm(sb: SalesforceSandbox, **overrides: Any) -> SalesforceCrm:
    return SalesforceCrm.from_settings(settings(login_url=sb.url, **overrides))
