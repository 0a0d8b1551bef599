"""The Salesforce CRM connector: recorded answers, look-up rules, Task mapping, errors, sessions."""

from __future__ import annotations

import html
import json
import re
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest
import requests
import vcr
from pydantic import ValidationError
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)
from support.salesforce import (
    API,
    CUMULUSCI,
    CumulusCIPersister,
    FakeOrg,
    FakeSf,
    cassette_body,
    crm_with,
    key,
    record,
    settings,
    sf_error,
    soql_literals,
)

from connectors import crm_class
from connectors.salesforce.crm import SalesforceCrm
from connectors.salesforce.identity.lookup import SOQL_URL_BUDGET, lookup_soql, soql_quote
from connectors.salesforce.records import parse_upsert_results, task_record
from connectors.salesforce.session import classify
from connectors.salesforce.settings import IdentityFields
from sandbox.server import Response
from syncd.errors import (
    AuthError,
    ExternalError,
    NotFound,
    RateLimited,
    TransientError,
)
from syncd.model import CrmRef, Direction, Match

PASSWORD, TOKEN, SESSION = "s3cr3t-Pa$$<word>", "TOKENabc123xyz", "00D5e000000CASSETTE!session"
X = IdentityFields(user_id="X_User_Id__c", handle="X_Handle__c")


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SF_PASSWORD", PASSWORD)
    monkeypatch.setenv("SF_TOKEN", TOKEN)
    monkeypatch.setenv("SF_SESSION", SESSION)


# -- CumulusCI's recorded org --------------------------------------------------------------------


@pytest.fixture
def cassettes() -> vcr.VCR:
    recorder = vcr.VCR(
        record_mode="none",
        match_on=["method", "scheme", "host", "port", "path", "query"],
        cassette_library_dir=str(CUMULUSCI),
    )
    recorder.register_persister(CumulusCIPersister)
    return recorder


def recorded_org(**overrides: Any) -> SalesforceCrm:
    """The connector on CumulusCI's org, with a session (its cassettes hold no login)."""
    values: dict[str, Any] = {
        "username": None,
        "password": None,
        "security_token": None,
        "instance_url": "https://orgname.my.salesforce.com",
        "session_id": "env:SF_SESSION",
        "api_version": API,
    }
    return SalesforceCrm.from_settings(settings(**{**values, **overrides}))


def test_cassette_upsert_creates_then_updates(cassettes: vcr.VCR) -> None:
    crm = recorded_org(history_object="Contact", external_id_field="Email")
    first = [record(n, "0037e00001WZ30qAAD") for n in range(16)]
    again = [record(n, "0037e00001WZ30qAAD") for n in range(100, 104)]
    with cassettes.use_cassette("TestUpsert.test_upsert__rest.yaml") as cassette:
        created = crm.upsert_history(first)
        updated = crm.upsert_history(again)
        accounts = crm.query("select Name from Account")
    assert cassette.play_count == 3
    assert [r.external_id for r in created] == [r.external_id for r in first]
    assert all(r.ok and r.created is True for r in created)
    assert created[0].crm_id == "0037e00001WZ30qAAD"
    assert created[-1].crm_id == "0037e00001WZ315AAD"
    # Nichael, George Oscar and Lindsay existed (matched by Email); Annyong was new.
    assert [(r.crm_id, r.created) for r in updated] == [
        ("0037e00001WZ310AAD", False),
        ("0037e00001WZ312AAD", False),
        ("0037e00001WZ30qAAD", False),
        ("0037e00001WZ316AAD", True),
    ]
    assert [a["Name"] for a in accounts] == ["Sitwell-Bluth"]
    assert crm.api_calls == 3 and crm.logins == 0


def test_cassette_upsert_on_id_and_repeated_query(cassettes: vcr.VCR) -> None:
    crm = recorded_org(history_object="Account", external_id_field="Id")
    name = "TestUpsert.test_upsert_complex_external_id_field_rest__duplicate_error.yaml"
    with cassettes.use_cassette(name):
        (account,) = crm.upsert_history([record(1, "0017e00001W4GYRAA3")])
        before = crm.query("select Id,AccountNumber from Account")
        crm.settings = crm.settings.model_copy(update={"history_object": "Contact"})
        contacts = crm.upsert_history([record(n, "0017e00001W4GYRAA3") for n in range(16)])
        after = crm.query("select Id,AccountNumber from Account")
    assert (account.ok, account.crm_id, account.created) == (True, "0015500001QdQWaAAN", True)
    assert [c.crm_id for c in contacts][:2] == ["0035500001H9cakAAB", "0035500001H9calAAB"]
    assert contacts[-1].crm_id == "0035500001H9cazAAB" and all(c.created for c in contacts)
    # The "duplicate error" of this cassette is CumulusCI's own: two Accounts share "420".
    assert before == []
    assert [(a["Id"], a["AccountNumber"]) for a in after] == [
        ("0015500001QdQWaAAN", "420"),
        ("0015500001QdQWfAAN", "420"),
    ]


def _composite_failures(name: str) -> Iterator[Exception]:
    """Each failed subrequest of a recorded composite call, raised as simple-salesforce would."""
    from simple_salesforce.util import exception_handler

    for sub in cassette_body(name, 0)["compositeResponse"]:
        if sub["httpStatusCode"] < 300:
            continue
        response = requests.Response()
        response.status_code = sub["httpStatusCode"]
        response._content = json.dumps(sub["body"]).encode()
        response.url = f"https://orgname.my.salesforce.com/services/data/v{API}/x"
        try:
            exception_handler(response, name="composite")
        except Exception as exc:
            yield exc


def test_cassette_composite_errors_are_classified() -> None:
    (invalid_type,) = _composite_failures("TestCountSObjects.test_count_sobjects__errors.yaml")
    mapped = classify(invalid_type, "query")
    assert type(mapped) is ExternalError and mapped.status == 400
    assert "INVALID_TYPE" in str(mapped)
    assert "sObject type 'XYZZY' is not supported" in str(mapped)
    (missing,) = _composite_failures("TestCompositeParallelSalesforce.test_errors.yaml")
    mapped = classify(missing, "query")
    assert isinstance(mapped, NotFound) and mapped.status == 404
    assert "NOT_FOUND: The requested resource does not exist" in str(mapped)


def test_cassette_error_bodies_as_per_record_errors() -> None:
    # The REST API names the code errorCode where sObject Collections say statusCode.
    sub = cassette_body("TestCountSObjects.test_count_sobjects__errors.yaml", 0)
    body = [{"success": False, "errors": sub["compositeResponse"][1]["body"]}]
    (result,) = parse_upsert_results(["x:1"], body)
    assert (result.ok, result.error_code) == (False, "INVALID_TYPE")
    assert "sObject type 'XYZZY' is not supported" in (result.error_message or "")


# -- SOQL literals -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "quoted"),
    [
        ("jack", "'jack'"),
        ("' OR Name != '", r"'\' OR Name != \''"),
        ("back\\slash\\", r"'back\\slash\\'"),
        ("\\' OR Id != null --", r"'\\\' OR Id != null --'"),
        ('say "hi"', r"'say \"hi\"'"),
        ("a\nb\rc\td\be\ff", r"'a\nb\rc\td\be\ff'"),
        ("under_score 100%", "'under_score 100%'"),
    ],
)
def test_soql_quote(raw: str, quoted: str) -> None:
    assert soql_quote(raw) == quoted


def test_soql_quote_like_escapes_wildcards() -> None:
    assert soql_quote("a_b%c", like=True) == r"'a\_b\%c'"


def test_lookup_soql_survives_injection() -> None:
    soql_mod = pytest.importorskip("sandbox.salesforce.soql.query")
    hostile = ["' OR Name != '", "x\\' OR Id != null OR Name = \\'", "new\nline"]
    soql = lookup_soql("Contact", X, [key(h, handle=h) for h in hostile])
    query = soql_mod.parse(soql)
    assert query.sobject == "Contact"
    by_id, by_handle = query.where.operands
    assert by_id.field == "X_User_Id__c" and by_id.op == "IN"
    assert [v.value for v in by_id.values] == hostile
    assert [v.value for v in by_handle.values] == [v for h in hostile for v in (h, "@" + h)]


# -- look-up -------------------------------------------------------------------------------------


def person(
    id_: str, name: str, user_id: str | None = None, handle: str | None = None
) -> dict[str, Any]:
    return {"Id": id_, "Name": name, "X_User_Id__c": user_id, "X_Handle__c": handle}


def test_lookup_batches_400_keys_into_two_queries_per_object() -> None:
    fake = FakeSf({})
    crm = crm_with(fake)
    assert crm.lookup([key(str(1000 + i), f"user{i}") for i in range(400)]) == {}
    assert (fake.asked("Contact"), fake.asked("Lead")) == (2, 2)
    assert crm.api_calls == 0  # the fake is not HTTP; the counter is tested over HTTP below


def test_lead_is_asked_only_for_keys_contacts_did_not_match() -> None:
    contacts = [person(f"003C{i:05d}", f"C {i}", str(1000 + i)) for i in range(250)]
    leads = [person(f"00QL{i:05d}", f"L {i}", str(1000 + i)) for i in range(400)]
    fake = FakeSf({"Contact": contacts, "Lead": leads})
    found = crm_with(fake).lookup([key(str(1000 + i)) for i in range(400)])
    assert len(found) == 400
    assert (fake.asked("Contact"), fake.asked("Lead")) == (2, 1)
    (lead_query,) = [q for o, q in fake.queries if o == "Lead"]
    assert set(soql_literals(lead_query)) == {str(1000 + i) for i in range(250, 400)}
    assert found[key("1000")] == Match(CrmRef("Contact", "003C00000", "C 0"), "crm_user_id")
    assert found[key("1399")] == Match(CrmRef("Lead", "00QL00399", "L 399"), "crm_user_id")


def test_long_values_split_a_chunk_below_the_url_limit() -> None:
    fake = FakeSf({})
    keys = [key("9" * 19 + str(i), "h" * 15 + str(i)) for i in range(200)]
    crm_with(fake, person_objects=["Contact"]).lookup(keys)
    assert fake.asked("Contact") == 2
    assert all(len(quote_plus(q)) < SOQL_URL_BUDGET + 500 for _, q in fake.queries)


def test_user_id_beats_handle_and_handles_compare_loosely() -> None:
    fake = FakeSf(
        {
            "Contact": [
                person("003HANDLE", "By Handle", handle="@Jack"),
                person("003USERID", "By Id", user_id="12"),
                person("003OTHER", "Other", handle="dorsey"),
            ]
        }
    )
    found = crm_with(fake).lookup([key("12", "jack"), key("13", "@JACK"), key("14", "Dorsey")])
    assert found[key("12", "jack")] == Match(CrmRef("Contact", "003USERID", "By Id"), "crm_user_id")
    assert found[key("13", "@JACK")].matcher == "crm_handle"
    assert found[key("13", "@JACK")].ref.id == "003HANDLE"
    assert found[key("14", "Dorsey")].ref.id == "003OTHER"
    # Both spellings are asked, whatever the key carried.
    assert {"jack", "@jack", "JACK", "@JACK"} <= set(soql_literals(fake.queries[0][1]))


def test_contact_beats_lead_even_by_handle() -> None:
    fake = FakeSf(
        {
            "Contact": [person("003C", "Contact", handle="jack")],
            "Lead": [person("00QL", "Lead", user_id="12")],
        }
    )
    found = crm_with(fake).lookup([key("12", "jack")])
    assert found[key("12", "jack")] == Match(CrmRef("Contact", "003C", "Contact"), "crm_handle")
    assert fake.asked("Lead") == 0


@pytest.mark.parametrize(
    "contacts",
    [
        [person("003A", "A", user_id="12"), person("003B", "B", user_id="12")],
        [person("003A", "A", handle="jack"), person("003B", "B", handle="@Jack")],
    ],
    ids=["two-by-user-id", "two-by-handle"],
)
def test_ambiguous_keys_are_never_guessed(contacts: list[dict[str, Any]]) -> None:
    fake = FakeSf({"Contact": contacts, "Lead": [person("00QL", "Lead", user_id="12")]})
    assert crm_with(fake).lookup([key("12", "jack")]) == {}
    assert fake.asked("Lead") == 0  # the person exists as a Contact: a Lead would be a guess


def test_one_user_id_match_settles_a_handle_tie() -> None:
    contacts = [
        person("003A", "A", user_id="12"),
        person("003B", "B", handle="jack"),
        person("003C", "C", handle="jack"),
    ]
    found = crm_with(FakeSf({"Contact": contacts})).lookup([key("12", "jack")])
    assert found[key("12", "jack")].ref.id == "003A"


def test_lookup_field_casing_networks_and_duplicates() -> None:
    row = {"Id": "003A", "Name": "A", "x_user_id__c": "12", "X_HANDLE__C": None}
    fake = FakeSf({"Contact": [row]})
    crm = crm_with(
        fake, identity_fields={"x": {"user_id": "x_user_id__c", "handle": "X_HANDLE__C"}}
    )
    found = crm.lookup([key("12"), key("12"), key("12", network="mastodon")])
    assert list(found) == [key("12")]
    assert fake.asked("Contact") == 1
    assert " OR " not in fake.queries[0][1]  # no handles, no handle clause


# -- Task records --------------------------------------------------------------------------------


def test_task_record_fields() -> None:
    rec = record(
        1,
        "003WHO",
        handle="jack",
        direction=Direction.OUTBOUND,
        subject="X reply from @brand to @jack",
        occurred_at=datetime(2024, 5, 1, 21, 30, tzinfo=timezone(timedelta(hours=-5))),
    )
    assert task_record(rec, settings()) == {
        "attributes": {"type": "Task"},
        "Social_Post_Id__c": "x:1399688059608702977",
        "Subject": "X reply from @brand to @jack",
        "Description": "post number 1\n\nhttps://x.com/jack/status/1399688059608702977",
        "ActivityDate": "2024-05-02",  # the UTC day
        "Status": "Completed",
        "WhoId": "003WHO",
        "Social_Network__c": "x",
        "Social_Direction__c": "Outbound",
        "Social_Handle__c": "@jack",
        "Social_Post_URL__c": "https://x.com/jack/status/1399688059608702977",
        "Social_Conversation_Id__c": "1399688059608702976",
    }


def test_task_record_custom_names_and_missing_values() -> None:
    s = settings(
        history_object="Activity__c",
        external_id_field="Post__c",
        task_status="Done",
        task_fields={"network": "Net__c", "handle": "Who_Handle__c"},
    )
    rec = record(2, "00QLEAD", handle=None, conversation_id=None)
    task = task_record(rec, s)
    assert task["attributes"] == {"type": "Activity__c"} and task["Post__c"] == rec.external_id
    assert (task["Status"], task["Net__c"], task["Who_Handle__c"]) == ("Done", "x", None)
    assert task["Social_Direction__c"] == "Inbound" and task["Social_Conversation_Id__c"] is None
    assert task_record(record(3, "003", handle="@@jack"), s)["Who_Handle__c"] == "@@jack"


def test_task_record_truncates_in_salesforce_characters() -> None:
    url = "https://x.com/jack/status/1"
    rec = record(1, "003", subject="😀" * 200, description="x" * 40_000, url=url)
    task = task_record(rec, settings())
    subject = task["Subject"]
    assert len(subject.encode("utf-16-le")) // 2 <= 255 and subject.endswith("…")
    assert subject.startswith("😀" * 127)
    assert task["Description"].endswith("…\n\n" + url)
    assert len(task["Description"]) == 32_000


def test_parse_upsert_results() -> None:
    body = [
        {"id": "00T1", "success": True, "errors": [], "created": True},
        {
            "id": None,
            "success": False,
            "errors": [
                {"statusCode": "ENTITY_IS_DELETED", "message": "entity is deleted", "fields": []},
                {"statusCode": "FIELD_INTEGRITY_EXCEPTION", "message": "bad", "fields": ["WhoId"]},
            ],
        },
        {"id": "00T3", "success": True, "errors": [], "created": False},
    ]
    ok, failed, updated = parse_upsert_results(["x:1", "x:2", "x:3"], body)
    assert (ok.ok, ok.crm_id, ok.created) == (True, "00T1", True)
    assert (failed.ok, failed.external_id, failed.error_code) == (False, "x:2", "ENTITY_IS_DELETED")
    assert failed.error_message == "entity is deleted; bad (fields: WhoId)"
    assert (updated.crm_id, updated.created) == ("00T3", False)
    with pytest.raises(TransientError, match="expected 3 results, got 1"):
        parse_upsert_results(["x:1", "x:2", "x:3"], body[:1])


# -- settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"password": None, "security_token": None}, "no Salesforce auth method configured"),
        ({"session_id": "env:SF_SESSION"}, "auth methods are mixed"),
        ({"username": None}, "missing: username"),
        ({"password": None}, "missing: password"),
        (
            {
                "username": None,
                "password": None,
                "security_token": None,
                "session_id": "env:SF_SESSION",
            },
            "instance_url + session_id auth is missing: instance_url",
        ),
        (
            {"password": None, "security_token": None, "consumer_key": "3MVG9"},
            "username + consumer_key + private_key_file auth is missing: private_key_file",
        ),
    ],
)
def test_settings_auth_combinations(given: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)) as err:
        settings(**given)
    assert PASSWORD not in str(err.value) and TOKEN not in str(err.value)


def test_settings_auth_messages_name_the_keys() -> None:
    with pytest.raises(ValidationError) as err:
        settings(session_id="env:SF_SESSION")
    text = str(err.value)
    for name in ("password", "security_token", "session_id", "username", "instance_url"):
        assert name in text


def test_settings_accept_each_method_and_reject_bad_names(tmp_path: Path) -> None:
    assert settings(security_token=None).auth_method == "password"
    session = settings(
        username=None, password=None, security_token=None,
        instance_url="http://127.0.0.1:9/", session_id="env:SF_SESSION",
    )  # fmt: skip
    assert (session.auth_method, session.instance_url) == ("session", "http://127.0.0.1:9")
    pem = tmp_path / "key.pem"
    pem.write_text("not used here")
    jwt_settings = settings(
        password=None, security_token=None, consumer_key="3MVG9", private_key_file=pem
    )
    assert jwt_settings.auth_method == "jwt"
    for bad in (
        {"history_object": "Task WHERE"},
        {"person_objects": ["Contact", "Lead--"]},
        {"identity_fields": {"x": {"user_id": "X_User_Id__c) OR (Id", "handle": "H__c"}}},
        {"login_url": "login.salesforce.com"},
        {"api_version": "v61.0"},
        {"unknown_key": 1},
    ):
        with pytest.raises(ValidationError):
            settings(**bad)
    assert crm_class("salesforce") is SalesforceCrm


def test_repr_never_shows_a_secret() -> None:
    s = settings()
    crm = SalesforceCrm.from_settings(s)
    for text in (repr(s), str(s), repr(crm), str(s.model_dump())):
        assert PASSWORD not in text and TOKEN not in text
    assert "env:SF_PASSWORD" in repr(s)
    assert repr(crm) == (
        "SalesforceCrm('salesforce', login_url='https://login.salesforce.com', "
        "auth=password, username='integration@sandbox.example')"
    )


def test_login_domains_and_rewrites() -> None:
    def routed(url: str) -> tuple[str, dict[str, str]]:
        crm = SalesforceCrm.from_settings(settings(login_url=url))
        return crm.session.domain, crm.session.adapter.rewrites

    assert routed("https://login.salesforce.com") == ("login", {})
    assert routed("https://test.salesforce.com/") == ("test", {})
    assert routed("https://acme.my.salesforce.com") == ("acme.my", {})
    assert routed("http://127.0.0.1:8443") == (
        "login",
        {"https://login.salesforce.com": "http://127.0.0.1:8443"},
    )
    assert routed("https://proxy.example/sf") == (
        "login",
        {"https://login.salesforce.com": "https://proxy.example/sf"},
    )


# -- the one error table -------------------------------------------------------------------------


def _exc(cls: type[Exception], status: int, content: Any) -> Exception:
    return cls("https://x.my.salesforce.com/services/data/v61.0/query/", status, "query", content)


@pytest.mark.parametrize(
    ("exc", "expected", "status"),
    [
        (SalesforceAuthenticationFailed("INVALID_LOGIN", "Invalid username"), AuthError, None),
        (SalesforceAuthenticationFailed(503, "<html>Down</html>"), TransientError, 503),
        (SalesforceAuthenticationFailed("LOGIN_RATE_EXCEEDED", "slow down"), RateLimited, None),
        (
            _exc(SalesforceExpiredSession, 401, [{"errorCode": "INVALID_SESSION_ID"}]),
            AuthError,
            401,
        ),
        (
            _exc(
                SalesforceRefusedRequest,
                403,
                [
                    {
                        "message": "TotalRequests Limit exceeded.",
                        "errorCode": "REQUEST_LIMIT_EXCEEDED",
                    }
                ],
            ),
            RateLimited,
            403,
        ),
        (
            _exc(
                SalesforceRefusedRequest,
                403,
                '[{"errorCode":"REQUEST_LIMIT_EXCEEDED","message":"x"}]',
            ),
            RateLimited,
            403,
        ),
        (
            _exc(SalesforceRefusedRequest, 403, [{"errorCode": "INSUFFICIENT_ACCESS"}]),
            AuthError,
            403,
        ),
        (
            _exc(SalesforceMalformedRequest, 400, [{"errorCode": "UNABLE_TO_LOCK_ROW"}]),
            TransientError,
            400,
        ),
        (
            _exc(
                SalesforceMalformedRequest,
                400,
                [
                    {
                        "errorCode": "INVALID_FIELD",
                        "message": "No such column 'X_User_Id__c' on entity 'Contact'",
                    }
                ],
            ),
            ExternalError,
            400,
        ),
        (
            _exc(SalesforceMalformedRequest, 400, [{"errorCode": "MALFORMED_QUERY"}]),
            ExternalError,
            400,
        ),
        (_exc(SalesforceResourceNotFound, 404, [{"errorCode": "NOT_FOUND"}]), NotFound, 404),
        (_exc(SalesforceGeneralError, 503, "Service Unavailable"), TransientError, 503),
        (_exc(SalesforceGeneralError, 431, "Request Header Fields Too Large"), ExternalError, 431),
        (requests.ConnectionError("refused"), TransientError, None),
        (requests.ReadTimeout("slow"), TransientError, None),
        (requests.exceptions.JSONDecodeError("Expecting value", "<html>", 0), TransientError, None),
    ],
)
def test_classify(exc: Exception, expected: type[ExternalError], status: int | None) -> None:
    mapped = classify(exc, "query")
    assert type(mapped) is expected
    assert mapped.status == status and mapped.system == "salesforce"
    if isinstance(mapped, RateLimited):
        assert mapped.resume_at - datetime.now(UTC) > timedelta(minutes=59)


def test_classify_leaves_bugs_alone() -> None:
    assert classify(KeyError("records"), "query") is None
    assert "No such column 'X_User_Id__c'" in str(
        classify(
            _exc(
                SalesforceMalformedRequest,
                400,
                [{"errorCode": "INVALID_FIELD", "message": "No such column 'X_User_Id__c'"}],
            ),
            "lookup",
        )
    )


# -- over HTTP: a scriptable org -----------------------------------------------------------------


@pytest.fixture(scope="module")
def _org_server() -> Iterator[FakeOrg]:
    server = FakeOrg(PASSWORD, TOKEN)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def org(_org_server: FakeOrg) -> FakeOrg:
    _org_server.reset(PASSWORD, TOKEN)
    return _org_server


def on(org: FakeOrg, **overrides: Any) -> SalesforceCrm:
    return SalesforceCrm.from_settings(settings(login_url=org.url, **overrides))


def test_soap_login_is_lazy_and_counts_calls(org: FakeOrg) -> None:
    crm = on(org)
    assert org.logins == 0
    org.rows = [{"Id": "003A", "Name": "A", "X_User_Id__c": "12", "X_Handle__c": "jack"}]
    found = crm.lookup([key("12", "jack")])
    assert found[key("12", "jack")].ref == CrmRef("Contact", "003A", "A")
    assert (org.logins, crm.logins, crm.api_calls) == (1, 1, 1)
    assert crm.api_usage is not None and crm.api_usage[1] == 15000
    assert org.queries[0].startswith("SELECT Id, Name, X_User_Id__c, X_Handle__c FROM Contact")
    crm.close()


def test_password_without_token_logs_in(org: FakeOrg) -> None:
    org.token = ""  # an IP-allow-listed org; Salesforce(username, password) would not even try
    crm = on(org, security_token=None)
    assert crm.query("SELECT Id FROM Contact") == []
    assert org.logins == 1


def test_query_follows_next_records_url(org: FakeOrg) -> None:
    org.rows = [{"Id": f"00T{i}"} for i in range(5)]
    org.page_size = 2
    crm = on(org)
    assert [r["Id"] for r in crm.query("SELECT Id FROM Task")] == [f"00T{i}" for i in range(5)]
    assert crm.api_calls == 3


def test_upsert_sends_collections_of_200(org: FakeOrg) -> None:
    crm = on(org)
    results = crm.upsert_history([record(n, "003WHO") for n in range(450)])
    assert [len(batch) for _, batch in org.upserts] == [200, 200, 50]
    assert {obj for obj, _ in org.upserts} == {"Task"}
    assert [r.external_id for r in results] == [record(n, "003WHO").external_id for n in range(450)]
    assert all(r.ok for r in results) and results[200].crm_id == "00T5e0000000000000AAA"
    assert org.upserts[0][1][0]["Social_Post_Id__c"] == results[0].external_id
    assert crm.upsert_history([]) == [] and len(org.upserts) == 3


def test_expired_session_logs_in_once_more(org: FakeOrg) -> None:
    crm = on(org)
    crm.query("SELECT Id FROM Task")
    org.sessions.clear()  # expired server-side
    crm.upsert_history([record(1, "003WHO")])
    assert org.logins == 2 and len(org.upserts) == 1


def test_dead_session_gives_auth_error_after_one_relogin(org: FakeOrg) -> None:
    org.revoke_every_session = True
    crm = on(org)
    with pytest.raises(AuthError, match="INVALID_SESSION_ID") as err:
        crm.upsert_history([record(n, "003WHO") for n in range(300)])
    assert org.logins == 2 and crm.logins == 2
    for secret in (PASSWORD, TOKEN, *org.sessions):
        assert secret not in str(err.value)
    assert err.value.__cause__ is None and err.value.__suppress_context__
    with pytest.raises(AuthError):  # a new call may try once more, never more
        crm.lookup([key("12")])
    assert org.logins == 3


def test_session_id_auth_never_logs_in(org: FakeOrg) -> None:
    crm = SalesforceCrm.from_settings(
        settings(
            username=None, password=None, security_token=None,
            instance_url=org.url, session_id="env:SF_SESSION",
        )
    )  # fmt: skip
    with pytest.raises(AuthError, match="Session expired or invalid") as err:
        crm.query("SELECT Id FROM Task")
    assert org.logins == 0 and SESSION not in str(err.value)
    org.sessions.add(SESSION)
    assert crm.query("SELECT Id FROM Task") == []


def test_wrong_password_is_auth_error_without_secrets(org: FakeOrg) -> None:
    org.password = "something else"
    with pytest.raises(AuthError, match="INVALID_LOGIN") as err:
        on(org).lookup([key("12")])
    assert PASSWORD not in str(err.value) and TOKEN not in str(err.value)


@pytest.mark.parametrize(
    "page",
    ["<html>bad gateway for {secret}</html>", "<html><p>bad gateway<br>{secret}</p></html>"],
    ids=["parses-as-xml", "not-xml"],
)
def test_a_login_outage_is_transient_and_scrubbed(org: FakeOrg, page: str) -> None:
    # A proxy that echoes the request into its error page puts the password into the text
    # simple-salesforce raises; none of it may reach our message.
    echo = page.format(secret=html.escape(PASSWORD) + TOKEN)
    org.login_faults.append(Response.text(echo, 502, "text/html"))
    with pytest.raises(TransientError, match="502") as err:
        on(org).query("SELECT Id FROM Task")
    text = str(err.value)
    assert PASSWORD not in text and html.escape(PASSWORD) not in text and TOKEN not in text
    assert "***" in text


@pytest.mark.parametrize(
    ("fault", "expected", "text"),
    [
        (
            sf_error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."),
            RateLimited,
            "REQUEST_LIMIT_EXCEEDED",
        ),
        (sf_error(403, "INSUFFICIENT_ACCESS", "no Task access"), AuthError, "no Task access"),
        (
            sf_error(400, "UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access"),
            TransientError,
            "LOCK",
        ),
        (
            sf_error(400, "INVALID_FIELD", "No such column 'Social_Post_Id__c' on entity 'Task'"),
            ExternalError,
            "No such column 'Social_Post_Id__c'",
        ),
        (
            sf_error(404, "NOT_FOUND", "The requested resource does not exist"),
            NotFound,
            "NOT_FOUND",
        ),
        (sf_error(503, "SERVER_UNAVAILABLE", "down"), TransientError, "503"),
    ],
)
def test_http_errors_are_classified(
    org: FakeOrg, fault: Any, expected: type[ExternalError], text: str
) -> None:
    crm = on(org)
    org.queued.append(fault)
    with pytest.raises(expected, match=text) as err:
        crm.upsert_history([record(1, "003WHO")])
    assert type(err.value) is expected and err.value.status == fault.status
    assert org.logins == 1


def test_unreadable_answers_are_transient(org: FakeOrg) -> None:
    crm = on(org)
    org.queued.append(Response.text("<html>maintenance</html>", 200, "text/html"))
    with pytest.raises(TransientError, match="unreadable response"):
        crm.query("SELECT Id FROM Task")
    org.queued.append(Response.json({"not": "a list"}))
    with pytest.raises(TransientError, match="expected 1 results, got dict"):
        crm.upsert_history([record(1, "003WHO")])


def test_a_silent_org_times_out() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        port = silent.getsockname()[1]
        crm = SalesforceCrm.from_settings(
            settings(
                username=None, password=None, security_token=None, timeout=0.2,
                instance_url=f"http://127.0.0.1:{port}", session_id="env:SF_SESSION",
            )
        )  # fmt: skip
        with pytest.raises(TransientError, match="Timeout"):
            crm.query("SELECT Id FROM Task")


def test_unreachable_org_is_transient() -> None:
    crm = SalesforceCrm.from_settings(settings(login_url="http://127.0.0.1:9"))
    with pytest.raises(TransientError, match="ConnectionError"):
        crm.query("SELECT Id FROM Task")


def test_missing_secret_at_login_is_auth_error(
    org: FakeOrg, monkeypatch: pytest.MonkeyPatch
) -> None:
    crm = on(org)
    monkeypatch.delenv("SF_TOKEN")
    with pytest.raises(AuthError, match="environment variable SF_TOKEN is not set"):
        crm.query("SELECT Id FROM Task")


@pytest.fixture(scope="module")
def rsa_key() -> tuple[bytes, bytes]:
    """A private key (PKCS#8 PEM) and its public key (PEM) for the JWT bearer flow."""
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return (
        private.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()),
        private.public_key().public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo),
    )


def test_jwt_bearer_login(org: FakeOrg, tmp_path: Path, rsa_key: tuple[bytes, bytes]) -> None:
    pem = tmp_path / "server.key"
    pem.write_bytes(rsa_key[0])
    org.jwt_key = rsa_key[1]
    crm = on(
        org, password=None, security_token=None, consumer_key="3MVG9.key", private_key_file=pem
    )
    assert crm.query("SELECT Id FROM Task") == []
    assert org.logins == 1 and org.jwt_claims["iss"] == "3MVG9.key"
    assert org.jwt_claims["sub"] == "integration@sandbox.example"
    pem.write_text("-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n")
    org.sessions.clear()
    with pytest.raises(AuthError, match=r"private_key_file .* cannot sign a JWT") as err:
        crm.query("SELECT Id FROM Task")
    assert "garbage" not in str(err.value)


# -- end to end: the shared Salesforce stand-in --------------------------------------------------

SB_PASSWORD, SB_TOKEN = "sandbox-password", "sandbox-token"


@pytest.fixture
def make_sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Any]]:
    api = pytest.importorskip("sandbox.salesforce.api")
    monkeypatch.setenv("SF_PASSWORD", SB_PASSWORD)
    monkeypatch.setenv("SF_TOKEN", SB_TOKEN)
    started: list[Any] = []

    def make(**kw: Any) -> Any:
        sb = api.SalesforceSandbox(
            username="integration@sandbox.example",
            password=SB_PASSWORD,
            security_token=SB_TOKEN,
            external_ids={"Task": ["Social_Post_Id__c"]},
            **kw,
        )
        started.append(sb.start())
        return sb

    yield make
    for sb in started:
        sb.stop()


@pytest.fixture
def sandbox(make_sandbox: Callable[..., Any]) -> Any:
    return make_sandbox()


def seeded(sb: Any) -> dict[str, str]:
    """Two Contacts and a Lead, with the identity fields as CRM data entry left them."""
    return {
        "jack": sb.insert(
            "Contact",
            {
                "LastName": "Dorsey",
                "FirstName": "Jack",
                "X_User_Id__c": "12",
                "X_Handle__c": "@Jack",
            },
        ),
        "ev": sb.insert(
            "Contact", {"LastName": "Williams", "X_User_Id__c": None, "X_Handle__c": "ev"}
        ),
        "biz": sb.insert(
            "Lead",
            {"LastName": "Stone", "Company": "Obvious", "X_User_Id__c": "13", "X_Handle__c": None},
        ),
    }


def test_sandbox_lookup_and_idempotent_upsert(sandbox: Any) -> None:
    ids = seeded(sandbox)
    crm = SalesforceCrm.from_settings(settings(login_url=sandbox.url))
    found = crm.lookup([key("12", "jack"), key("99", "EV"), key("13"), key("' OR Name != '", "x")])
    assert found == {
        key("12", "jack"): Match(CrmRef("Contact", ids["jack"], "Jack Dorsey"), "crm_user_id"),
        key("99", "EV"): Match(CrmRef("Contact", ids["ev"], "Williams"), "crm_handle"),
        key("13"): Match(CrmRef("Lead", ids["biz"], "Stone"), "crm_user_id"),
    }
    today = datetime.now(UTC)
    records = [record(n, ids["jack"], handle="jack", occurred_at=today) for n in range(3)]
    first = crm.upsert_history(records)
    second = crm.upsert_history(records)
    assert all(r.ok and r.created is True for r in first)
    assert all(r.ok and r.created is False for r in second)
    assert [r.crm_id for r in first] == [r.crm_id for r in second]
    tasks = sandbox.records("Task")
    assert sorted(t["Social_Post_Id__c"] for t in tasks) == sorted(r.external_id for r in records)
    task = next(t for t in tasks if t["Id"] == first[0].crm_id)
    assert (task["WhoId"], task["Social_Handle__c"], task["Status"]) == (
        ids["jack"],
        "@jack",
        "Completed",
    )
    timeline = crm.query(
        f"SELECT Subject, Social_Direction__c FROM Task WHERE WhoId = {soql_quote(ids['jack'])}"
    )
    assert {t["Social_Direction__c"] for t in timeline} == {"Inbound"} and len(timeline) == 3
    # A backfilled Task over a year old is archived at once: only queryAll still sees it.
    (old,) = crm.upsert_history([record(9, ids["jack"], occurred_at=today - timedelta(days=400))])
    soql = f"SELECT Id FROM Task WHERE Id = {soql_quote(old.crm_id or '')}"
    assert crm.query(soql) == [] and len(crm.query(soql, include_archived=True)) == 1
    assert sandbox.logins == 1 and crm.api_calls == sandbox.api_calls
    assert crm.api_usage == (sandbox.api_calls, 100_000)


def test_sandbox_expired_sessions_mid_run(sandbox: Any) -> None:
    ids = seeded(sandbox)
    crm = SalesforceCrm.from_settings(settings(login_url=sandbox.url))
    assert crm.lookup([key("12")])
    sandbox.expire_sessions()
    (result,) = crm.upsert_history([record(1, ids["jack"])])
    assert result.ok and sandbox.logins == 2
    sandbox.expire_sessions()
    assert crm.lookup([key("12")]) and sandbox.logins == 3


def test_sandbox_permanently_dead_session(sandbox: Any) -> None:
    ids = seeded(sandbox)
    crm = SalesforceCrm.from_settings(settings(login_url=sandbox.url))

    def kill_new_sessions(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        if "/services/Soap/" in response.url:  # every session dies the moment it is issued
            sandbox.expire_sessions()

    crm.session.http.hooks["response"].append(kill_new_sessions)
    with pytest.raises(AuthError, match="INVALID_SESSION_ID"):
        crm.upsert_history([record(1, ids["jack"])])
    assert sandbox.logins == 2 and sandbox.records("Task") == []


def test_sandbox_per_record_errors(sandbox: Any) -> None:
    ids = seeded(sandbox)
    sandbox.delete("Contact", ids["ev"])
    crm = SalesforceCrm.from_settings(settings(login_url=sandbox.url))
    results = crm.upsert_history(
        [record(1, ids["jack"]), record(2, ids["ev"]), record(3, ids["jack"])]
    )
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error_code in ("ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY")
    assert results[1].error_message and results[1].external_id == record(2, "").external_id
    assert len(sandbox.records("Task")) == 2


def test_sandbox_wrong_password_and_rate_limit(
    sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    seeded(sandbox)
    monkeypatch.setenv("SF_PASSWORD", "not-the-password")
    with pytest.raises(AuthError, match="INVALID_LOGIN") as err:
        SalesforceCrm.from_settings(settings(login_url=sandbox.url)).lookup([key("12")])
    assert "not-the-password" not in str(err.value) and SB_TOKEN not in str(err.value)
    monkeypatch.setenv("SF_PASSWORD", SB_PASSWORD)
    crm = SalesforceCrm.from_settings(settings(login_url=sandbox.url))
    sandbox.daily_api_limit = sandbox.api_calls + 1
    crm.lookup([key("12")])
    with pytest.raises(RateLimited, match="REQUEST_LIMIT_EXCEEDED") as limited:
        crm.lookup([key("12")])
    assert limited.value.resume_at > datetime.now(UTC) + timedelta(minutes=59)


def test_sandbox_missing_identity_field_is_a_setup_error(sandbox: Any) -> None:
    seeded(sandbox)
    crm = SalesforceCrm.from_settings(
        settings(
            login_url=sandbox.url,
            identity_fields={"x": {"user_id": "Twitter_Id__c", "handle": "X_Handle__c"}},
        )
    )
    with pytest.raises(ExternalError) as err:
        crm.lookup([key("12")])
    assert type(err.value) is ExternalError and err.value.status == 400
    assert "Twitter_Id__c" in str(err.value)


def test_sandbox_long_query_errors_keep_their_point(sandbox: Any) -> None:
    seeded(sandbox)
    crm = SalesforceCrm.from_settings(
        settings(login_url=sandbox.url, person_objects=["Contact", "Opportunity"])
    )
    with pytest.raises(ExternalError) as err:
        crm.lookup([key(str(10**15 + i), f"someone_{i}") for i in range(200)])
    text = str(err.value)
    assert len(text) < 1100 and "X_User_Id__c" in text and "Opportunity" in text


def test_sandbox_jwt_bearer(
    make_sandbox: Callable[..., Any], tmp_path: Path, rsa_key: tuple[bytes, bytes]
) -> None:
    pem = tmp_path / "server.key"
    pem.write_bytes(rsa_key[0])
    sandbox = make_sandbox(jwt_public_key_pem=rsa_key[1])
    ids = seeded(sandbox)
    crm = SalesforceCrm.from_settings(
        settings(
            login_url=sandbox.url, password=None, security_token=None,
            consumer_key="sandbox-consumer-key", private_key_file=pem,
        )
    )  # fmt: skip
    assert crm.lookup([key("12")])[key("12")].ref.id == ids["jack"]
    sandbox.expire_sessions()
    assert crm.lookup([key("13")])[key("13")].ref.id == ids["biz"]
    assert sandbox.logins == 2 and crm.logins == 2
