"""Salesforce CRM: finds Contacts and Leads by social identity, upserts history as Tasks and/or
SocialPosts.

:class:`SalesforceCrm` is what the core sees (:class:`syncd.contracts.Crm`). It holds one
:class:`~connectors.salesforce.session.SalesforceSession` (login, the calls, the error table)
and the parts that call through it: identity resolution
(:mod:`connectors.salesforce.identity.identity`), deleting and marking history
(:mod:`connectors.salesforce.delete`) and ``check`` (:mod:`connectors.salesforce.setup.check`).
What needs no org lives beside them: SOQL and matching in
:mod:`connectors.salesforce.identity.lookup`, Task entries and upsert answers in
:mod:`connectors.salesforce.records`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Self

from connectors.salesforce import bulk, cases
from connectors.salesforce.delete import SalesforceRemoval
from connectors.salesforce.identity.identity import SalesforceIdentity
from connectors.salesforce.identity.lookup import key_chunks, lookup_soql, match_rows, settle
from connectors.salesforce.records import SYSTEM, task_columns, task_record
from connectors.salesforce.session import Budget, SalesforceSession
from connectors.salesforce.settings import SalesforceSettings
from connectors.salesforce.setup.check import SalesforceCheck
from connectors.salesforce.writes import HistoryWrite, write_by_steps
from syncd.contracts import BulkWriting, CaseFiling, CheckRow, ConnectorSettings, Crm, RecordOutcome
from syncd.model import (
    BulkProgress,
    CasePolicy,
    CaseRequest,
    CaseResult,
    CrmRef,
    HistoryRecord,
    IdentityKey,
    KeysPage,
    Match,
    PeopleChanges,
    PeopleQuery,
    PersonRecord,
    Profile,
    WriteResult,
)

__all__ = ["SalesforceCrm", "SalesforceSettings"]

log = logging.getLogger(__name__)


class SalesforceCrm:
    """Implements :class:`syncd.contracts.Crm`. Logs in lazily, on the first call."""

    Settings: ClassVar[type[ConnectorSettings]] = SalesforceSettings

    def __init__(self, settings: SalesforceSettings) -> None:
        self.settings = settings
        self.session = SalesforceSession(settings)
        self.identity = SalesforceIdentity(self.session, settings)
        self.removal = SalesforceRemoval(self.session, settings)
        self.checker = SalesforceCheck(self.session, settings)

    @classmethod
    def from_settings(cls, settings: Any) -> Self:
        if not isinstance(settings, SalesforceSettings):
            settings = SalesforceSettings.model_validate(settings)
        return cls(settings)

    def __repr__(self) -> str:
        s = self.settings
        user = f", username={s.username!r}" if s.username else ""
        return f"SalesforceCrm({s.name!r}, login_url={s.login_url!r}, auth={s.auth_method}{user})"

    # The service's metrics, the demo and the benches read these off the CRM.
    @property
    def api_calls(self) -> int:
        """REST calls made (logins excluded: they do not count against the allocation)."""
        return self.session.api_calls

    @property
    def api_usage(self) -> tuple[int, int] | None:
        """The org's last reported API usage (``Sforce-Limit-Info: api-usage=N/M``)."""
        return self.session.api_usage

    @property
    def logins(self) -> int:
        return self.session.logins

    # -- the Crm contract --------------------------------------------------------------------
    def lookup(self, keys: Sequence[IdentityKey]) -> dict[IdentityKey, Match]:
        budget = Budget()
        found: dict[IdentityKey, Match] = {}
        by_network: dict[str, list[IdentityKey]] = {}
        for key in dict.fromkeys(keys):
            by_network.setdefault(key.network, []).append(key)
        for network, pending in by_network.items():
            fields = self.settings.identity_fields.get(network)
            if fields is None:
                log.warning("%s: no identity_fields for network %r", SYSTEM, network)
                continue
            # Person objects in order: a Contact found settles the key, Leads are not asked
            # (unless the Contact holds the handle under another user id: see settle).
            for obj in self.settings.person_objects:
                undecided: list[IdentityKey] = []
                for chunk in key_chunks(pending, fields):
                    priority = self.settings.priority_column(obj)
                    soql = lookup_soql(obj, fields, chunk, priority)
                    rows = self.session.query(f"lookup {obj}", soql, budget)
                    decided = match_rows(obj, fields, chunk, rows, found, priority)
                    undecided += settle(found, chunk, decided)
                if not (pending := undecided):
                    break
        return found

    @property
    def history_targets(self) -> tuple[str, ...]:
        return tuple(self.settings.history)

    def upsert_history(self, records: Sequence[HistoryRecord]) -> list[WriteResult]:
        """Each target's records upserted on its object's key field, 200 a subrequest, as
        many subrequests a Composite call as their order allows (SocialPersonas before the
        SocialPosts naming them: see :mod:`connectors.salesforce.writes`); results in the
        order of ``records``. A target failing as a whole while another was written raises
        :class:`syncd.errors.PartialWrite` with the written target's answers."""
        if self.settings.social_post_match == "query":
            return write_by_steps(self.session, self.settings, records)
        return HistoryWrite(self.session, self.settings, records).run()

    @property
    def case_policy(self) -> CasePolicy | None:
        """How conversations become Cases ([crm.cases]); None: no Cases."""
        return cases.policy(self.settings.cases) if self.settings.cases is not None else None

    def file_cases(self, requests: Sequence[CaseRequest]) -> list[CaseResult]:
        """Each post's Case joined, reopened or opened (:mod:`connectors.salesforce.cases`)."""
        return cases.file_cases(self.session, self.settings, requests, Budget())

    # -- bulk jobs (Bulk API 2.0) ------------------------------------------------------------
    @property
    def bulk_targets(self) -> tuple[str, ...]:
        # Tasks only: a SocialPost names its author's persona, found or written per batch.
        return ("task",) if "task" in self.settings.history else ()

    def _bulk_job(self, job_id: str, target: str) -> bulk.BulkJob:
        if target != "task":
            raise ValueError(f"no bulk jobs for history target {target!r}")
        s = self.settings
        return bulk.BulkJob(job_id, s.history_object, s.external_id_field)

    def start_bulk(self, target: str) -> str:
        job = self._bulk_job("", target)
        return bulk.create(self.session, job.sobject, job.key_field, Budget()).id

    def send_bulk(self, job_id: str, target: str, records: Iterable[HistoryRecord]) -> int:
        """The records as one CSV upload, as many as it holds (100 MB), and the job closed."""
        job = self._bulk_job(job_id, target)
        data = bulk.Upload(task_columns(self.settings))
        for r in records:
            if not data.add(task_record(r, self.settings)):
                break
        bulk.upload(self.session, job, data, Budget())
        return data.records

    def bulk_progress(self, job_id: str, target: str) -> BulkProgress:
        status = bulk.poll(self.session, self._bulk_job(job_id, target), Budget())
        return BulkProgress(status.done, unsent=status.state == bulk.OPEN, error=status.error)

    def bulk_results(self, job_id: str, target: str) -> dict[str, WriteResult]:
        return bulk.results(self.session, self._bulk_job(job_id, target), Budget())

    def abort_bulk(self, job_id: str, target: str) -> None:
        bulk.abort(self.session, self._bulk_job(job_id, target), Budget())

    def query(self, soql: str, *, include_archived: bool = False) -> list[dict[str, Any]]:
        """Every record of a SOQL query (follows nextRecordsUrl).

        Closed Tasks dated over 365 days back are archived, invisible to a plain query (a
        backfill writes such Tasks): ``include_archived`` asks queryAll, which also answers
        deleted records, so filter ``IsDeleted = false`` where that matters.
        """
        return self.session.query("query", soql, Budget(), include_deleted=include_archived)

    # -- identity resolution -----------------------------------------------------------------
    def personas(self, keys: Sequence[IdentityKey]) -> dict[IdentityKey, list[CrmRef]]:
        return self.identity.personas(keys)

    def find_people(self, query: PeopleQuery) -> list[PersonRecord]:
        return self.identity.find_people(query)

    def people_changes(self, mark: str | None) -> PeopleChanges:
        return self.identity.people_changes(mark)

    def keys_on_file(self, after: str | None) -> KeysPage:
        return self.identity.keys_on_file(after)

    def survivors(self, refs: Sequence[CrmRef]) -> dict[CrmRef, CrmRef | None]:
        return self.identity.survivors(refs)

    def upsert_lead(self, profile: Profile) -> CrmRef:
        return self.identity.upsert_lead(profile)

    # -- removal and check -------------------------------------------------------------------
    def delete_history(self, record_ids: Sequence[str]) -> list[RecordOutcome]:
        return self.removal.delete_history(record_ids)

    def mark_history_deleted(self, record_ids: Sequence[str]) -> list[RecordOutcome]:
        return self.removal.mark_history_deleted(record_ids)

    def check(self) -> list[CheckRow]:
        return self.checker.check()

    def close(self) -> None:
        self.session.close()


if TYPE_CHECKING:  # the contract is structural: have mypy hold the class to it
    _CONTRACT: type[Crm] = SalesforceCrm
    _CASES: type[CaseFiling] = SalesforceCrm
    _BULK: type[BulkWriting] = SalesforceCrm
