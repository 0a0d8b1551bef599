"""Salesforce: deleting, or marking, history records syncd wrote.

Two reasons call for it: the post was deleted on the network (``syncd compliance``), or its
author asked to be forgotten (``syncd forget --crm``). Both go through sObject Collections,
200 records a call: DELETE ``composite/sobjects?ids=…`` and an update (upsert on ``Id``, which
never creates). A record that is already gone counts as done, so a retry after a crash
halfway through a batch is harmless.

Mixed into :class:`connectors.salesforce.crm.SalesforceCrm`, which owns the session (``_run``:
error mapping and one re-login per public call).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from simple_salesforce.api import Salesforce

from connectors.salesforce.records import BATCH, collection_items, describe_errors
from connectors.salesforce.settings import SalesforceSettings
from syncd.contracts import RecordOutcome

T = TypeVar("T")

# What a delete or an update of a record that is no longer there answers: in the recycle bin,
# purged (or never there), or (upsert on Id) not found. The goal is met either way.
GONE = frozenset({"ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY", "NOT_FOUND"})


def _delete(sf: Salesforce, ids: Sequence[str]) -> Any:
    params = {"ids": ",".join(ids), "allOrNone": "false"}
    return sf.restful("composite/sobjects", method="DELETE", params=params)


def _patch(sf: Salesforce, path: str, payload: dict[str, Any]) -> Any:
    return sf.restful(path, method="PATCH", json=payload)


def parse_outcomes(record_ids: Sequence[str], body: Any, action: str) -> list[RecordOutcome]:
    """One outcome per id from a collections answer (results come in request order)."""
    out = []
    for record_id, item in zip(record_ids, collection_items(record_ids, body, action), strict=True):
        if item.get("success") is True:
            out.append(RecordOutcome(record_id, True))
            continue
        code, message = describe_errors(item.get("errors") or [])
        if code in GONE:
            out.append(RecordOutcome(record_id, True, code))
        else:
            out.append(
                RecordOutcome(record_id, False, code or "UNKNOWN_ERROR", message or "no reason")
            )
    return out


class SalesforceRemoval:
    """``delete_history`` and ``mark_history_deleted`` of the Crm contract."""

    settings: SalesforceSettings

    if TYPE_CHECKING:

        def _run(self, action: str, op: Callable[[Salesforce], T], budget: Any) -> T: ...

        def _budget(self) -> Any: ...

    def delete_history(self, record_ids: Sequence[str]) -> list[RecordOutcome]:
        budget, out = self._budget(), []
        ids = list(dict.fromkeys(record_ids))
        for start in range(0, len(ids), BATCH):
            chunk = ids[start : start + BATCH]
            body = self._run("delete history", partial(_delete, ids=chunk), budget)
            out += parse_outcomes(chunk, body, "delete history")
        by_id = {o.record_id: o for o in out}
        return [by_id[i] for i in record_ids]

    def mark_history_deleted(self, record_ids: Sequence[str]) -> list[RecordOutcome]:
        """Set the post-status field to ``deleted_status`` and blank the Description (the
        post's text): the Task stays on the timeline, saying the post is gone."""
        s, budget, out = self.settings, self._budget(), []
        ids = list(dict.fromkeys(record_ids))
        path = f"composite/sobjects/{s.history_object}/Id"
        for start in range(0, len(ids), BATCH):
            chunk = ids[start : start + BATCH]
            records = [
                {
                    "attributes": {"type": s.history_object},
                    "Id": record_id,
                    s.task_fields.post_status: s.deleted_status,
                    "Description": None,
                }
                for record_id in chunk
            ]
            payload = {"allOrNone": False, "records": records}
            body = self._run("mark history", partial(_patch, path=path, payload=payload), budget)
            out += parse_outcomes(chunk, body, "mark history")
        by_id = {o.record_id: o for o in out}
        return [by_id[i] for i in record_ids]
