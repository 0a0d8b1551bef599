"""Fault injection in the sandbox stand-ins: the Python API, the control endpoint, each kind.

Raw ``requests`` calls here, so what is checked is exactly what the servers send; that the real
clients turn each fault into the right syncd error is tests/test_fault_mapping.py.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from support.x_sandbox import TOKEN, get, spec

from sandbox.faults import FaultRule
from sandbox.salesforce.api import SalesforceSandbox
from sandbox.server import CONTROL_PATH, Request
from sandbox.x.api import ENDPOINTS, XSandbox

V = "61.0"
QUICK_STOP = 0.005  # seconds stop() may wait; a server per test adds up otherwise
FORM = {
    "grant_type": "password",
    "client_id": "sandbox-consumer-key",
    "client_secret": "sandbox-consumer-secret",
    "username": "integration@sandbox.example",
    "password": "sandbox-password",
}


@pytest.fixture
def x() -> Iterator[XSandbox]:
    sandbox = XSandbox(bearer_token=TOKEN)
    sandbox.poll_interval = QUICK_STOP
    with sandbox:
        yield sandbox


@pytest.fixture
def sf() -> Iterator[SalesforceSandbox]:
    sandbox = SalesforceSandbox()
    sandbox.poll_interval = QUICK_STOP
    with sandbox:
        yield sandbox


def brand(x: XSandbox) -> str:
    return str(x.add_user("acme")["id"])


def mentions(x: XSandbox, uid: str, timeout: float = 5) -> requests.Response:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    return requests.get(f"{x.url}/2/users/{uid}/mentions", headers=headers, timeout=timeout)


def session(sf: SalesforceSandbox) -> str:
    answer = requests.post(f"{sf.url}/services/oauth2/token", data=FORM, timeout=5)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def data(
    sf: SalesforceSandbox, sid: str, method: str, path: str, timeout: float = 5, **kw: Any
) -> requests.Response:
    url = f"{sf.url}/services/data/v{V}/{path}"
    headers = {"Authorization": f"Bearer {sid}"}
    return requests.request(method, url, headers=headers, timeout=timeout, **kw)


def tasks(*exts: str) -> dict[str, Any]:
    return {
        "allOrNone": False,
        "records": [
            {"attributes": {"type": "Task"}, "Social_Post_Id__c": e, "Subject": e} for e in exts
        ],
    }


def upsert(sf: SalesforceSandbox, sid: str, body: dict[str, Any], **kw: Any) -> requests.Response:
    return data(sf, sid, "PATCH", "composite/sobjects/Task/Social_Post_Id__c", json=body, **kw)


def stored(sf: SalesforceSandbox) -> list[str]:
    return sorted(t["Social_Post_Id__c"] for t in sf.records("Task"))


# What a client with a 0.25 s timeout hears when each common kind fires.
HEARD = [
    ("status", "503"),
    ("malformed", "200"),
    ("drop", "ConnectionError"),
    ("stall", "ReadTimeout"),
]


def fired(server: Any, n: int = 1) -> None:
    """Wait until ``n`` faults fired: an "after" fault fires once the handler is done."""
    deadline = time.monotonic() + 5
    while server.faults.injected < n and time.monotonic() < deadline:
        time.sleep(0.005)


def control(server: Any, method: str, payload: Any = None) -> requests.Response:
    return requests.request(method, server.url + CONTROL_PATH, json=payload, timeout=5)


# -- the registry ------------------------------------------------------------------------------
def test_endpoint_names_are_documented_and_stable(x: XSandbox, sf: SalesforceSandbox) -> None:
    assert x.faults.endpoints == set(ENDPOINTS.values()) >= {"mentions", "user_tweets", "users_by"}
    assert sf.faults.endpoints == {
        "login",
        "versions",
        "resources",
        "limits",
        "sobject",
        "query",
        "composite",
        "composite_request",
        "bulk2_create",
        "bulk2_list",
        "bulk2_upload",
        "bulk2_state",
        "bulk2_job",
        "bulk2_delete",
        "bulk2_results",
    }


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("explode", {}, "unknown fault kind"),
        ("status", {"endpoint": "nowhere"}, "unknown endpoint"),
        ("status", {"status": 404}, "5xx"),
        ("status", {"count": 0}, "at least 1"),
        ("status", {"count": 1.5}, "whole number"),
        ("status", {"rate": 1.5}, "rate must be in"),
        ("status", {"phase": "during"}, "phase"),
        ("status", {"seconds": 3}, "unknown options"),
        ("stall", {"seconds": -1}, "seconds"),
        ("rate_limit", {"phase": "after"}, "phase"),
        ("rate_limit", {"reset": "yes"}, "reset"),
    ],
)
def test_bad_rules_are_refused(
    x: XSandbox, kind: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        x.inject(kind, **options)
    assert x.faults.rules == []


def test_salesforce_kinds_apply_where_they_make_sense(sf: SalesforceSandbox) -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        sf.inject("rate_limit")
    with pytest.raises(ValueError, match="missing options"):
        sf.inject("record_error")
    with pytest.raises(ValueError, match="unknown endpoint 'query'"):
        sf.inject("record_error", endpoint="query", code="DUPLICATE_VALUE")
    with pytest.raises(ValueError, match="unknown endpoint 'login'"):
        sf.inject("session_expired", endpoint="login")
    with pytest.raises(ValueError, match="error code"):
        sf.inject("record_error", code="duplicate value")


def test_a_rule_defaults_to_the_next_request_and_reports_itself(x: XSandbox) -> None:
    uid = brand(x)
    rule = x.inject("status", endpoint="mentions")
    assert isinstance(rule, FaultRule)
    assert (rule.count, rule.rate, rule.status, rule.phase) == (1, None, 503, "before")
    assert rule.as_dict() == {
        "id": rule.id,
        "kind": "status",
        "endpoint": "mentions",
        "count": 1,
        "rate": None,
        "phase": "before",
        "status": 503,
        "fired": 0,
    }
    assert [mentions(x, uid).status_code for _ in range(2)] == [503, 200]
    assert (rule.count, rule.fired) == (0, 1) and x.faults.rules == []
    assert x.faults.injected == 1 and x.faults.injected_by_kind == {"status": 1}


# -- common kinds, on X -----------------------------------------------------------------------
@pytest.mark.parametrize("status", [500, 502, 503])
def test_status_count_hits_only_its_endpoint(x: XSandbox, status: int) -> None:
    uid = brand(x)
    x.inject("status", endpoint="mentions", count=2, status=status)
    assert get(x, f"/2/users/{uid}").status_code == 200  # another endpoint: untouched
    answers = [mentions(x, uid) for _ in range(3)]
    assert [a.status_code for a in answers] == [status, status, 200]
    problem = answers[0].json()
    assert problem["status"] == status and problem["type"] == "about:blank"
    assert spec("2.159").errors("/2/users/{id}/mentions", status, problem) == []
    assert x.faults.injected_by_kind == {"status": 2}


def test_rate_limit_with_and_without_reset(x: XSandbox) -> None:
    uid = brand(x)
    x.inject("rate_limit", endpoint="mentions", seconds=120)
    before = time.time()
    limited = mentions(x, uid)
    assert limited.status_code == 429
    assert spec("2.159").errors("/2/users/{id}/mentions", 429, limited.json()) == []
    assert limited.headers["x-rate-limit-limit"] == "450"
    assert limited.headers["x-rate-limit-remaining"] == "0"
    assert before + 119 <= int(limited.headers["x-rate-limit-reset"]) <= time.time() + 121
    x.inject("rate_limit", endpoint="*", reset=False)
    bare = get(x, f"/2/users/{uid}")
    assert bare.status_code == 429 and bare.json() == limited.json()
    assert not any(h.startswith("x-rate-limit") for h in bare.headers)


def test_malformed_before_and_after(x: XSandbox) -> None:
    uid = brand(x)
    x.inject("malformed", endpoint="mentions")
    x.inject("malformed", endpoint="user", phase="after")
    cut = mentions(x, uid)
    assert cut.status_code == 200
    with pytest.raises(ValueError):
        json.loads(cut.text)
    whole = get(x, f"/2/users/{uid}").text
    real = json.dumps({"data": {"id": uid, "name": "acme", "username": "acme"}})
    assert whole == real[: len(real) // 2] and whole.startswith('{"data"')


def test_drop_closes_without_an_answer(x: XSandbox) -> None:
    uid = brand(x)
    x.inject("drop", endpoint="mentions")
    with pytest.raises(requests.ConnectionError):
        mentions(x, uid)
    assert mentions(x, uid).status_code == 200


def test_a_stall_holds_no_lock_and_ends_in_a_timeout(x: XSandbox) -> None:
    uid = brand(x)
    x.inject("stall", endpoint="mentions", seconds=1.0)
    outcome: list[BaseException] = []

    def stalled() -> None:
        try:
            mentions(x, uid, timeout=0.6)
        except requests.RequestException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=stalled)
    thread.start()
    time.sleep(0.05)
    started = time.monotonic()
    assert get(x, f"/2/users/{uid}").status_code == 200  # served meanwhile
    assert time.monotonic() - started < 0.5
    thread.join()
    assert len(outcome) == 1 and isinstance(outcome[0], requests.Timeout)


def test_a_stall_after_answers_late(x: XSandbox) -> None:
    uid = brand(x)
    x.inject("stall", endpoint="mentions", seconds=0.2, phase="after")
    started = time.monotonic()
    assert mentions(x, uid).status_code == 200
    assert time.monotonic() - started >= 0.2


def test_rate_is_reproducible_with_a_seed(x: XSandbox) -> None:
    uid = brand(x)

    def run() -> list[int]:
        x.clear_faults()
        x.faults.seed = 7
        x.inject("status", endpoint="mentions", rate=0.4)
        return [mentions(x, uid).status_code for _ in range(20)]

    first, second = run(), run()
    assert first == second
    assert 0 < first.count(503) < 20
    x.clear_faults()
    x.faults.seed = 8
    x.inject("status", endpoint="mentions", rate=0.4)
    assert [mentions(x, uid).status_code for _ in range(20)] != first


def test_rate_with_count_stops_at_count(x: XSandbox) -> None:
    uid = brand(x)
    rule = x.inject("status", endpoint="mentions", rate=1.0, count=3)
    assert [mentions(x, uid).status_code for _ in range(4)] == [503, 503, 503, 200]
    assert rule.fired == 3


# -- the control endpoint ----------------------------------------------------------------------
def test_control_endpoint_round_trip(x: XSandbox) -> None:
    uid = brand(x)
    made = control(x, "POST", {"kind": "status", "endpoint": "mentions", "status": 502})
    assert made.status_code == 201
    assert made.json() == {
        "id": 1,
        "kind": "status",
        "endpoint": "mentions",
        "count": 1,
        "rate": None,
        "phase": "before",
        "status": 502,
        "fired": 0,
    }
    listed = control(x, "GET").json()
    assert [r["id"] for r in listed["rules"]] == [1] and listed["injected"] == 0
    assert "rate_limit" in listed["kinds"] and "mentions" in listed["endpoints"]
    counted = x.request_count
    assert mentions(x, uid).status_code == 502
    assert control(x, "GET").json()["injected_by_kind"] == {"status": 1}
    control(x, "POST", {"kind": "drop", "endpoint": "*", "rate": 1.0})
    assert control(x, "GET").status_code == 200  # never faulted itself
    cleared = control(x, "DELETE").json()
    assert cleared["rules"] == [] and cleared["injected"] == 1
    assert mentions(x, uid).status_code == 200
    assert x.request_count == counted + 2  # the two mentions calls, none of the control calls


def test_control_endpoint_refuses_nonsense(x: XSandbox) -> None:
    assert control(x, "POST", {"endpoint": "mentions"}).status_code == 400
    bad = control(x, "POST", {"kind": "status", "status": 200})
    assert bad.status_code == 400 and "5xx" in bad.json()["error"]
    assert control(x, "POST", {"kind": "status", "id": 9}).status_code == 400
    assert control(x, "POST", [1, 2]).status_code == 400
    assert control(x, "PUT", {}).status_code == 405
    assert control(x, "POST", {"seed": 11}).json()["seed"] == 11
    assert x.faults.seed == 11 and x.faults.rules == [] and x.request_count == 0


def test_control_endpoint_is_not_an_api_call(sf: SalesforceSandbox) -> None:
    sid = session(sf)
    control(sf, "POST", {"kind": "record_error", "code": "DUPLICATE_VALUE", "count": 1})
    control(sf, "GET")
    assert sf.api_calls == 0 and sf.request_count == 1  # the login only
    assert upsert(sf, sid, tasks("x:1")).json()[0]["errors"][0]["statusCode"] == "DUPLICATE_VALUE"


# -- hooks -------------------------------------------------------------------------------------
def test_hooks_run_before_and_after_the_handler(sf: SalesforceSandbox) -> None:
    sid = session(sf)
    seen: list[tuple[str, str, list[str]]] = []
    sf.on_request("composite", lambda r: seen.append(("before", r.endpoint, stored(sf))))
    sf.on_request("*", lambda r: seen.append(("after", r.endpoint, stored(sf))), phase="after")
    upsert(sf, sid, tasks("x:1"))
    assert seen == [("before", "composite", []), ("after", "composite", ["x:1"])]
    sf.remove_hooks()
    upsert(sf, sid, tasks("x:2"))
    assert len(seen) == 2
    with pytest.raises(ValueError, match="unknown endpoint"):
        sf.on_request("tasks", lambda r: None)


def test_a_hook_may_block_without_stopping_other_requests(x: XSandbox) -> None:
    uid = brand(x)
    release = threading.Event()

    def hold(req: Request) -> None:
        release.wait(5)

    x.on_request("mentions", hold)
    thread = threading.Thread(target=mentions, args=(x, uid))
    thread.start()
    time.sleep(0.05)
    assert get(x, f"/2/users/{uid}").status_code == 200
    release.set()
    thread.join()


# -- Salesforce kinds --------------------------------------------------------------------------
def test_session_expired_then_a_new_login_works(sf: SalesforceSandbox) -> None:
    sid = session(sf)
    sf.inject("session_expired", endpoint="query")
    assert data(sf, sid, "GET", "limits").status_code == 200
    refused = data(sf, sid, "GET", "query", params={"q": "SELECT Id FROM Contact"})
    assert refused.status_code == 401
    assert refused.json() == [
        {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
    ]
    assert data(sf, sid, "GET", "limits").status_code == 401  # the session is really gone
    fresh = session(sf)
    assert data(sf, fresh, "GET", "query", params={"q": "SELECT Id FROM Contact"}).ok


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [("request_limit", 403, "REQUEST_LIMIT_EXCEEDED"), ("lock_row", 400, "UNABLE_TO_LOCK_ROW")],
)
def test_refusals_have_salesforce_bodies(
    sf: SalesforceSandbox, kind: str, status: int, code: str
) -> None:
    sid = session(sf)
    sf.inject(kind, endpoint="composite")
    refused = upsert(sf, sid, tasks("x:1"))
    assert refused.status_code == status
    (error,) = refused.json()
    assert error["errorCode"] == code and error["message"]
    assert refused.headers["Sforce-Limit-Info"].startswith("api-usage=")
    assert stored(sf) == [] and upsert(sf, sid, tasks("x:1")).ok


def test_salesforce_status_bodies(sf: SalesforceSandbox) -> None:
    sid = session(sf)
    sf.inject("status", endpoint="query", status=500)
    sf.inject("status", endpoint="query", status=503)
    sf.inject("status", endpoint="query", status=502)
    q = {"q": "SELECT Id FROM Contact"}
    answers = [data(sf, sid, "GET", "query", params=q) for _ in range(3)]
    assert [a.status_code for a in answers] == [500, 503, 502]
    assert answers[0].json()[0]["errorCode"] == "UNKNOWN_EXCEPTION"
    assert answers[1].json()[0]["errorCode"] == "SERVER_UNAVAILABLE"
    assert answers[2].headers["Content-Type"].startswith("text/html")
    sf.inject("status", endpoint="login", status=500)
    sf.inject("status", endpoint="login", status=503)
    soap = requests.post(f"{sf.url}/services/Soap/u/{V}", data="<x/>", timeout=5)
    assert soap.status_code == 500 and "<sf:exceptionCode>UNKNOWN_EXCEPTION<" in soap.text
    oauth = requests.post(f"{sf.url}/services/oauth2/token", data=FORM, timeout=5)
    assert oauth.status_code == 503 and oauth.json()["error"] == "unknown_error"
    assert sf.api_calls == 0 and sf.logins == 1  # faulted before anything was processed


def test_record_errors_by_count_keep_all_or_none_false(sf: SalesforceSandbox) -> None:
    sid = session(sf)
    sf.inject("record_error", code="DUPLICATE_VALUE", count=2)
    first = upsert(sf, sid, tasks("x:1")).json()
    second = upsert(sf, sid, tasks("x:2", "x:3", "x:4")).json()
    assert first == [
        {
            "success": False,
            "errors": [
                {
                    "statusCode": "DUPLICATE_VALUE",
                    "message": "duplicate value found: Social_Post_Id__c duplicates value on "
                    "record with id: <unknown>",
                    "fields": [],
                }
            ],
        }
    ]
    assert [r["success"] for r in second] == [False, True, True]
    assert second[1]["created"] is True and second[1]["id"].startswith("00T")
    assert stored(sf) == ["x:3", "x:4"]


@pytest.mark.parametrize(
    "code",
    [
        "DUPLICATE_VALUE",
        "FIELD_CUSTOM_VALIDATION_EXCEPTION",
        "ENTITY_IS_DELETED",
        "INVALID_CROSS_REFERENCE_KEY",
        "UNABLE_TO_LOCK_ROW",
    ],
)
def test_each_record_code(sf: SalesforceSandbox, code: str) -> None:
    sid = session(sf)
    sf.inject("record_error", code=code, fields=["WhoId"], message="custom text")
    (result,) = upsert(sf, sid, tasks("x:1")).json()
    assert result == {
        "success": False,
        "errors": [{"statusCode": code, "message": "custom text", "fields": ["WhoId"]}],
    }


def test_record_errors_with_all_or_none_roll_back(sf: SalesforceSandbox) -> None:
    sid = session(sf)
    sf.inject("record_error", code="FIELD_CUSTOM_VALIDATION_EXCEPTION")
    results = upsert(sf, sid, {**tasks("x:1", "x:2"), "allOrNone": True}).json()
    assert results[0]["errors"][0]["statusCode"] == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    assert results[1]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert stored(sf) == []


def test_record_error_rate_is_per_record_and_reproducible(sf: SalesforceSandbox) -> None:
    sid = session(sf)
    exts = [f"x:{n}" for n in range(40)]

    def run() -> list[bool]:
        sf.clear_faults()
        sf.faults.seed = 3
        sf.inject("record_error", code="UNABLE_TO_LOCK_ROW", rate=0.25)
        return [r["success"] for r in upsert(sf, sid, tasks(*exts)).json()]

    first = run()
    assert 0 < first.count(False) < 40
    assert run() == first
    assert sf.faults.injected_by_kind == {"record_error": 2 * first.count(False)}


def test_create_collections_take_record_errors_too(sf: SalesforceSandbox) -> None:
    sid = session(sf)
    sf.inject("record_error", code="INVALID_CROSS_REFERENCE_KEY")
    body = {"allOrNone": False, "records": [{"attributes": {"type": "Account"}, "Name": "A"}] * 2}
    results = data(sf, sid, "POST", "composite/sobjects", json=body).json()
    assert [r["success"] for r in results] == [False, True]
    assert len(sf.records("Account")) == 1


@pytest.mark.parametrize(("kind", "heard"), HEARD)
def test_phase_after_really_stores(sf: SalesforceSandbox, kind: str, heard: str) -> None:
    sid = session(sf)
    options: dict[str, Any] = {"seconds": 0.5} if kind == "stall" else {}
    sf.inject(kind, endpoint="composite", phase="after", **options)
    try:
        answer = str(upsert(sf, sid, tasks("x:1"), timeout=0.25).status_code)
    except requests.RequestException as exc:
        answer = type(exc).__name__
    assert answer == heard
    fired(sf)  # a client that timed out may be ahead of the handler
    assert stored(sf) == ["x:1"] and sf.api_calls == 1


@pytest.mark.parametrize(("kind", "heard"), HEARD)
def test_phase_before_stores_nothing(sf: SalesforceSandbox, kind: str, heard: str) -> None:
    sid = session(sf)
    options: dict[str, Any] = {"seconds": 0.5} if kind == "stall" else {}
    sf.inject(kind, endpoint="composite", **options)
    try:
        answer = str(upsert(sf, sid, tasks("x:1"), timeout=0.25).status_code)
    except requests.RequestException as exc:
        answer = type(exc).__name__
    assert answer == heard
    assert stored(sf) == [] and sf.api_calls == 0


def test_deleted_and_purged_contacts_fail_their_tasks_naturally(sf: SalesforceSandbox) -> None:
    sid = session(sf)
    binned = sf.insert("Contact", {"LastName": "Binned"})
    purged = sf.insert("Contact", {"LastName": "Purged"})
    sf.delete("Contact", binned)
    sf.delete("Contact", purged, purge=True)
    body = tasks("x:1", "x:2")
    body["records"][0]["WhoId"], body["records"][1]["WhoId"] = binned, purged
    results = upsert(sf, sid, body).json()
    assert [r["errors"][0]["statusCode"] for r in results] == [
        "ENTITY_IS_DELETED",
        "INVALID_CROSS_REFERENCE_KEY",
    ]
    everything = data(sf, sid, "GET", "queryAll", params={"q": "SELECT Id FROM Contact"}).json()
    assert [r["Id"] for r in everything["records"]] == [binned]
    with pytest.raises(KeyError):
        sf.delete("Contact", purged)


def test_a_mix_fails_its_rate_each_kind_an_equal_share(x: XSandbox) -> None:
    """Six kinds sharing 30 % of the requests: each fails 5 % of them, the last drawn as
    often as the first (one rate for all had the last kind fail three quarters as many)."""
    menu: list[tuple[str, dict[str, Any]]] = [
        ("status", {"status": 500}),
        ("stall", {"phase": "after"}),
        ("drop", {}),
        ("malformed", {"phase": "after"}),
        ("rate_limit", {}),
        ("bad_item", {}),
    ]
    x.faults.seed = 3
    rules = x.inject_mix(menu, 0.3)
    requests_made = 40_000
    for _ in range(requests_made):  # as _handle draws: "before" first, "after" if none fired
        x.faults.draw("mentions", "before") or x.faults.draw("mentions", "after")
    shares = [r.fired / requests_made for r in rules]
    assert sum(shares) == pytest.approx(0.3, abs=0.01)
    assert all(share == pytest.approx(0.05, abs=0.005) for share in shares), shares
