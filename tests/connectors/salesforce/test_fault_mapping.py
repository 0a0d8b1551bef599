"""Each fault the stand-ins inject reaches syncd as the right error, through the real clients.

``XSource`` runs tweepy and ``SalesforceCrm`` runs simple-salesforce against the loopback
sandboxes, unmodified, with a short timeout so stalls stay cheap. Whatever the network does,
the runner must see one of: TransientError (retry later), RateLimited (come back at
``resume_at``), AuthError (park the account), or a failed WriteResult for one record.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support.salesforce import record, settings
from support.x_sandbox import TOKEN, Clock

from connectors.salesforce.crm import SalesforceCrm
from connectors.salesforce.session import RATE_LIMIT_PAUSE
from connectors.x.source import XSource
from sandbox.salesforce.api import SalesforceSandbox
from sandbox.x.api import XSandbox
from syncd.errors import AuthError, RateLimited, TransientError
from syncd.model import Account, Cursor, IdentityKey, Refusal, Stream

TIMEOUT = 0.8  # generous: a loaded CI machine must not time out a healthy call
QUICK_STOP = 0.005  # seconds stop() may wait; a server per test adds up otherwise
STALL = 2.0  # past TIMEOUT; the server ends stalls at once when it stops
SF_PASSWORD, SF_TOKEN = "sandbox-password", "sandbox-token"

# (kind, options) of the common kinds, each of which must come out as a TransientError.
COMMON = [
    ("status", {"status": 500}),
    ("status", {"status": 502}),
    ("status", {"status": 503}),
    ("stall", {"seconds": STALL}),
    ("drop", {}),
    ("malformed", {}),
    ("status", {"status": 503, "phase": "after"}),
    ("stall", {"seconds": STALL, "phase": "after"}),
    ("drop", {"phase": "after"}),
    ("malformed", {"phase": "after"}),
]


def label(case: tuple[str, dict[str, Any]]) -> str:
    kind, options = case
    return "-".join([kind, *(str(v) for v in options.values())])


# -- X ---------------------------------------------------------------------------------------
@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def x(clock: Clock) -> Iterator[XSandbox]:
    sandbox = XSandbox(bearer_token=TOKEN, clock=clock)
    sandbox.poll_interval = QUICK_STOP
    with sandbox:
        yield sandbox


@pytest.fixture
def acme(x: XSandbox) -> Account:
    brand = x.add_user("acme")
    fan = x.add_user("fan")
    x.add_post(fan["id"], "@acme hello")
    return Account("x", "acme", brand["id"])


@pytest.fixture
def source(x: XSandbox) -> Iterator[XSource]:
    src = XSource(TOKEN, api_base_url=x.url, timeout=TIMEOUT)
    yield src
    src.close()


def mentions(source: XSource, account: Account) -> int:
    return len(source.fetch(account, Stream.MENTIONS, Cursor()).interactions)


@pytest.mark.parametrize("case", COMMON, ids=label)
def test_x_common_faults_are_transient(
    x: XSandbox, source: XSource, acme: Account, case: tuple[str, dict[str, Any]]
) -> None:
    kind, options = case
    x.inject(kind, endpoint="mentions", **options)
    with pytest.raises(TransientError) as err:
        mentions(source, acme)
    assert err.value.system == "x"
    if kind == "status":
        assert err.value.status == options["status"]
    assert mentions(source, acme) == 1  # the next call goes through
    assert x.faults.injected == 1


@pytest.mark.parametrize("case", COMMON[:6], ids=label)
def test_x_faults_on_account_lookup_are_transient(
    x: XSandbox, source: XSource, acme: Account, case: tuple[str, dict[str, Any]]
) -> None:
    kind, options = case
    x.inject(kind, endpoint="users_by", **options)
    with pytest.raises(TransientError):
        source.resolve_accounts(["@acme"])
    assert source.resolve_accounts(["@acme"]) == {"@acme": acme}


def test_x_429_with_reset_resumes_at_the_header_time(
    x: XSandbox, source: XSource, acme: Account, clock: Clock
) -> None:
    x.inject("rate_limit", endpoint="mentions", seconds=300)
    with pytest.raises(RateLimited) as err:
        mentions(source, acme)
    # The sandbox's clock is fixed, so x-rate-limit-reset is exactly now + 300 s.
    assert err.value.resume_at == clock.now + timedelta(seconds=300)
    assert err.value.status == 429


def test_x_429_without_reset_waits_a_window(x: XSandbox, source: XSource, acme: Account) -> None:
    x.inject("rate_limit", endpoint="*", reset=False)
    before = datetime.now(UTC)
    with pytest.raises(RateLimited) as err:
        mentions(source, acme)
    window = timedelta(minutes=15)
    assert before + window <= err.value.resume_at <= datetime.now(UTC) + window


def test_x_faults_by_rate_classify_every_time(x: XSandbox, source: XSource, acme: Account) -> None:
    x.faults.seed = 5
    x.inject("status", endpoint="mentions", rate=0.5, status=502)
    outcomes: list[int | None] = []
    for _ in range(12):
        try:
            outcomes.append(mentions(source, acme))
        except TransientError as exc:
            outcomes.append(exc.status)
    assert set(outcomes) == {1, 502}
    assert outcomes.count(502) == x.faults.injected


# -- Salesforce --------------------------------------------------------------------------------
@pytest.fixture
def sf(monkeypatch: pytest.MonkeyPatch) -> Iterator[SalesforceSandbox]:
    monkeypatch.setenv("SF_PASSWORD", SF_PASSWORD)
    monkeypatch.setenv("SF_TOKEN", SF_TOKEN)
    sandbox = SalesforceSandbox()
    sandbox.poll_interval = QUICK_STOP
    with sandbox:
        yield sandbox


@pytest.fixture
def jack(sf: SalesforceSandbox) -> str:
    return sf.insert("Contact", {"LastName": "Dorsey", "X_User_Id__c": "12", "X_Handle__c": "jack"})


@pytest.fixture
def crm(sf: SalesforceSandbox) -> Iterator[SalesforceCrm]:
    client = SalesforceCrm.from_settings(settings(login_url=sf.url, timeout=TIMEOUT))
    yield client
    client.close()


KEY = IdentityKey(network="x", user_id="12", handle=None)


def stored(sf: SalesforceSandbox) -> list[str]:
    return sorted(t["Social_Post_Id__c"] for t in sf.records("Task"))


@pytest.mark.parametrize("case", COMMON, ids=label)
def test_salesforce_common_faults_on_upsert_are_transient(
    sf: SalesforceSandbox, crm: SalesforceCrm, jack: str, case: tuple[str, dict[str, Any]]
) -> None:
    kind, options = case
    sf.inject(kind, endpoint="composite", **options)
    with pytest.raises(TransientError) as err:
        crm.upsert_history([record(1, jack)])
    assert err.value.system == "salesforce"
    after = options.get("phase") == "after"
    deadline = time.monotonic() + 5  # a client that timed out may be ahead of the handler
    while after and not sf.faults.injected and time.monotonic() < deadline:
        time.sleep(0.005)
    assert stored(sf) == (["x:1399688059608702977"] if after else [])
    # The retry is an upsert on the external id: whatever the CRM already kept, no duplicate.
    (again,) = crm.upsert_history([record(1, jack)])
    assert again.ok and again.created is (not after)
    assert stored(sf) == ["x:1399688059608702977"]


@pytest.mark.parametrize("case", COMMON[:6], ids=label)
def test_salesforce_common_faults_on_query_are_transient(
    sf: SalesforceSandbox, crm: SalesforceCrm, jack: str, case: tuple[str, dict[str, Any]]
) -> None:
    kind, options = case
    sf.inject(kind, endpoint="query", **options)
    with pytest.raises(TransientError):
        crm.lookup([KEY])
    assert crm.lookup([KEY])[KEY].ref.id == jack


@pytest.mark.parametrize("case", COMMON[:6], ids=label)
def test_salesforce_login_faults_are_transient(
    sf: SalesforceSandbox, crm: SalesforceCrm, jack: str, case: tuple[str, dict[str, Any]]
) -> None:
    kind, options = case
    sf.inject(kind, endpoint="login", **options)
    with pytest.raises(TransientError):
        crm.lookup([KEY])
    assert crm.lookup([KEY])[KEY].ref.id == jack


@pytest.fixture(scope="module")
def rsa_pem() -> bytes:
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return private.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())


@pytest.mark.parametrize("case", COMMON[:6], ids=label)
def test_salesforce_oauth_login_faults_are_transient(
    sf: SalesforceSandbox,
    jack: str,
    tmp_path: Path,
    rsa_pem: bytes,
    case: tuple[str, dict[str, Any]],
) -> None:
    pem = tmp_path / "server.key"
    pem.write_bytes(rsa_pem)
    jwt_settings = settings(
        login_url=sf.url,
        timeout=TIMEOUT,
        password=None,
        security_token=None,
        consumer_key="sandbox-consumer-key",
        private_key_file=pem,
    )
    crm = SalesforceCrm.from_settings(jwt_settings)
    kind, options = case
    sf.inject(kind, endpoint="login", **options)
    with pytest.raises(TransientError):
        crm.lookup([KEY])
    assert crm.lookup([KEY])[KEY].ref.id == jack


def test_session_expired_costs_exactly_one_relogin(
    sf: SalesforceSandbox, crm: SalesforceCrm, jack: str
) -> None:
    assert crm.lookup([KEY])
    sf.inject("session_expired", endpoint="composite")
    (result,) = crm.upsert_history([record(1, jack)])
    assert result.ok and sf.logins == 2 and crm.logins == 2
    sf.inject("session_expired", endpoint="*")
    assert crm.lookup([KEY]) and sf.logins == 3


def test_a_session_that_keeps_dying_is_an_auth_error(
    sf: SalesforceSandbox, crm: SalesforceCrm, jack: str
) -> None:
    sf.inject("session_expired", endpoint="composite", count=2)
    with pytest.raises(AuthError, match="INVALID_SESSION_ID"):
        crm.upsert_history([record(1, jack)])
    assert sf.logins == 2 and stored(sf) == []


def test_request_limit_is_rate_limited(
    sf: SalesforceSandbox, crm: SalesforceCrm, jack: str
) -> None:
    sf.inject("request_limit", endpoint="*")
    before = datetime.now(UTC)
    with pytest.raises(RateLimited, match="REQUEST_LIMIT_EXCEEDED") as err:
        crm.upsert_history([record(1, jack)])
    assert before + RATE_LIMIT_PAUSE <= err.value.resume_at <= datetime.now(UTC) + RATE_LIMIT_PAUSE
    assert err.value.status == 403


@pytest.mark.parametrize("endpoint", ["composite", "query"])
def test_lock_row_is_transient(
    sf: SalesforceSandbox, crm: SalesforceCrm, jack: str, endpoint: str
) -> None:
    sf.inject("lock_row", endpoint=endpoint)
    with pytest.raises(TransientError, match="UNABLE_TO_LOCK_ROW") as err:
        if endpoint == "composite":
            crm.upsert_history([record(1, jack)])
        else:
            crm.lookup([KEY])
    assert err.value.status == 400


@pytest.mark.parametrize(
    ("code", "refusal"),
    [
        ("DUPLICATE_VALUE", Refusal.FINAL),
        ("FIELD_CUSTOM_VALIDATION_EXCEPTION", Refusal.FINAL),
        ("ENTITY_IS_DELETED", Refusal.GONE),
        ("INVALID_CROSS_REFERENCE_KEY", Refusal.GONE),
        ("UNABLE_TO_LOCK_ROW", Refusal.RETRY),
    ],
)
def test_record_errors_fail_only_their_record(
    sf: SalesforceSandbox, crm: SalesforceCrm, jack: str, code: str, refusal: Refusal
) -> None:
    records = [record(n, jack) for n in range(4)]
    sf.inject("record_error", code=code, count=2)
    sf.on_request("composite", lambda req: sf.clear_faults(), phase="after")  # first batch only
    results = crm.upsert_history(records)
    assert [r.ok for r in results] == [False, False, True, True]
    assert [r.external_id for r in results] == [r.external_id for r in records]
    failed = results[0]
    assert failed.error_code == code and failed.error_message and failed.crm_id is None
    assert failed.refusal is refusal  # what the writer does with it: the connector's to say
    assert stored(sf) == sorted(r.external_id for r in records[2:])


def test_record_errors_across_batches_of_200(
    sf: SalesforceSandbox, crm: SalesforceCrm, jack: str
) -> None:
    records = [record(n, jack) for n in range(250)]
    sf.faults.seed = 1
    sf.inject("record_error", code="FIELD_CUSTOM_VALIDATION_EXCEPTION", rate=0.1)
    results = crm.upsert_history(records)
    failed = [r for r in results if not r.ok]
    assert len(failed) == sf.faults.injected > 0
    assert {r.error_code for r in failed} == {"FIELD_CUSTOM_VALIDATION_EXCEPTION"}
    assert len(stored(sf)) == 250 - len(failed)


@pytest.mark.parametrize(
    ("purge", "code"), [(False, "ENTITY_IS_DELETED"), (True, "INVALID_CROSS_REFERENCE_KEY")]
)
def test_a_deleted_contact_fails_its_tasks_naturally(
    sf: SalesforceSandbox, crm: SalesforceCrm, jack: str, purge: bool, code: str
) -> None:
    gone = sf.insert("Contact", {"LastName": "Gone"})
    sf.delete("Contact", gone, purge=purge)
    results = crm.upsert_history([record(1, jack), record(2, gone), record(3, jack)])
    assert [(r.ok, r.error_code) for r in results] == [(True, None), (False, code), (True, None)]
    assert results[1].refusal is Refusal.GONE  # the author is resolved again
