"""CrmContract, run against the Salesforce connector on the Salesforce stand-in and against the
in-memory CRM the other tests use (tests/support/fake_crm.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

import pytest
from support.fake_crm import FakeCrm, Fault
from support.salesforce import settings

from connectors.salesforce.crm import SalesforceCrm
from connectors.salesforce.settings import IDENTITY_DEFAULTS
from sandbox.salesforce.api import SalesforceSandbox
from sandbox.seed import set_up_org
from syncd.contracts import Crm
from syncd.model import CrmRef, PersonRecord

from .crm import CrmContract


class SalesforceWorld:
    """The Salesforce stand-in (sandbox/salesforce/), set up as an admin does for syncd, and
    written to by the real connector, configured as for sources reading ``network``: its
    people carry that network's identity fields, by their documented defaults."""

    faults = frozenset({"rate_limit", "transient"})

    def __init__(self, sandbox: SalesforceSandbox, network: str = "x") -> None:
        self.sandbox = sandbox
        self.network = network
        self.fields = IDENTITY_DEFAULTS[network]

    def make_crm(self, *, valid_credentials: bool = True) -> Crm:
        password = "env:SF_PASSWORD" if valid_credentials else "env:SF_WRONG_PASSWORD"
        configured = settings(login_url=self.sandbox.url, password=password)
        return SalesforceCrm.from_settings(configured.for_networks([self.network]))

    def add_person(
        self,
        last: str,
        *,
        first: str | None = None,
        email: str | None = None,
        user_id: str | None = None,
        handle: str | None = None,
    ) -> CrmRef:
        values = {
            "LastName": last, "FirstName": first, "Email": email, self.fields.user_id: user_id,
        }  # fmt: skip
        if self.fields.handle:
            values[self.fields.handle] = handle
        fields = {k: v for k, v in values.items() if v is not None}
        return CrmRef("Contact", self.sandbox.insert("Contact", fields))

    def delete_person(self, ref: CrmRef) -> None:
        self.sandbox.delete(ref.object, ref.id)

    def history_count(self, external_id: str) -> int:
        tasks = self.sandbox.records("Task")
        return sum(1 for t in tasks if t.get("Social_Post_Id__c") == external_id)

    def fail_next(self, fault: str) -> None:
        if fault == "rate_limit":
            self.sandbox.inject("request_limit", endpoint="query", count=1)
        else:
            self.sandbox.inject("status", endpoint="query", count=1, status=503)


class TestSalesforceCrm(CrmContract):
    network = "x"

    @pytest.fixture
    def crm_world(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[SalesforceWorld]:
        monkeypatch.setenv("SF_PASSWORD", "sandbox-password")
        monkeypatch.setenv("SF_TOKEN", "sandbox-token")
        monkeypatch.setenv("SF_WRONG_PASSWORD", "not-the-password")
        lead_key = IDENTITY_DEFAULTS[self.network].user_id
        sandbox = SalesforceSandbox(
            external_ids={"Task": ["Social_Post_Id__c"], "Lead": [lead_key]}
        )
        set_up_org(sandbox)
        with sandbox:
            yield SalesforceWorld(sandbox, self.network)


class TestSalesforceCrmMastodon(TestSalesforceCrm):
    """The same contract for authors of Mastodon, by its own person fields."""

    network = "mastodon"


class TestSalesforceCrmBluesky(TestSalesforceCrm):
    """The same contract for authors of Bluesky, by its own person fields."""

    network = "bluesky"


class FakeCrmWorld:
    """support.fake_crm.FakeCrm: upserts by external id, knows people by user id and by
    handle, answers ENTITY_IS_DELETED for a deleted person."""

    network = "x"
    faults = frozenset({"rate_limit", "transient"})

    def __init__(self) -> None:
        self.crm = FakeCrm()

    def make_crm(self, *, valid_credentials: bool = True) -> Crm:
        # One org: every instance with valid credentials is the same object.
        return self.crm if valid_credentials else FakeCrm(refuse_login=True)

    def add_person(
        self,
        last: str,
        *,
        first: str | None = None,
        email: str | None = None,
        user_id: str | None = None,
        handle: str | None = None,
    ) -> CrmRef:
        ref = CrmRef("Contact", f"003{len(self.crm.person_records):015d}")
        if user_id is not None:
            self.crm.people[user_id] = ref
        elif handle is not None:  # the handle field matches only where no user id is on file
            self.crm.handles[handle.lower()] = ref
        self.crm.person_records.append(
            PersonRecord(ref, first, last, email, user_id=user_id, handle=handle)
        )
        return ref

    def delete_person(self, ref: CrmRef) -> None:
        self.crm.people = {u: p for u, p in self.crm.people.items() if p != ref}
        self.crm.deleted.add(ref.id)
        self.crm.merged[ref.id] = None

    def history_count(self, external_id: str) -> int:
        return int(external_id in self.crm.records)

    def fail_next(self, fault: str) -> None:
        assert fault in self.faults
        self.crm.faults.append(cast(Fault, fault))


class TestFakeCrm(CrmContract):
    @pytest.fixture
    def crm_world(self) -> FakeCrmWorld:
        return FakeCrmWorld()
