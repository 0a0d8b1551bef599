"""Salesforce: deleting, or marking, history records syncd wrote.

Two reasons call for it: the post was deleted on the network (``syncd compliance``), or its
author asked to be forgotten (``syncd forget --crm``). Both go through sObject Collections,
200 records a call: DELETE ``composite/sobjects?ids=…`` and an update (upsert on ``Id``, which
never creates). A record that is already gone counts as done, so a retry after a crash
halfway through a batch is harmless.

Calls through the CRM's :class:`~connectors.salesforce.session.SalesforceSession` (error
mapping and one re-login per public call).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from connectors.salesforce.records import BATCH, SOCIAL_POST, collection_items, describe_errors
from connectors.salesforce.session import Budget, SalesforceSession
from connectors.salesforce.settings import SalesforceSettings
from syncd.contracts import RecordOutcome

# What a delete or an update of a record that is no longer there answers: in the recycle bin,
# purged (or never there), or (upsert on Id) not found. The goal is met either way.
GONE = frozenset({"ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY", "NOT_FOUND"})
SOCIAL_POST_PREFIX = "0ST"  # the key prefix of SocialPost record ids


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

    def __init__(self, session: SalesforceSession, settings: SalesforceSettings) -> None:
        self.session = session
        self.settings = settings

    def delete_history(self, record_ids: Sequence[str]) -> list[RecordOutcome]:
        budget, out = Budget(), []
        ids = list(dict.fromkeys(record_ids))
        for start in range(0, len(ids), BATCH):
            chunk = ids[start : start + BATCH]
            params = {"ids": ",".join(chunk), "allOrNone": "false"}
            body = self.session.restful(
                "delete history", "composite/sobjects", budget, method="DELETE", params=params
            )
            out += parse_outcomes(chunk, body, "delete history")
        by_id = {o.record_id: o for o in out}
        return [by_id[i] for i in record_ids]

    def mark_history_deleted(self, record_ids: Sequence[str]) -> list[RecordOutcome]:
        """A Task: set the post-status field to ``deleted_status`` and blank the Description
        (the post's text); it stays on the timeline, saying the post is gone. A SocialPost
        (told by its id's key prefix): Status ``DELETED``, the Content blanked."""
        s, budget, out = self.settings, Budget(), []
        by_object: dict[str, list[str]] = {}
        for record_id in dict.fromkeys(record_ids):
            social = record_id.startswith(SOCIAL_POST_PREFIX)
            by_object.setdefault(SOCIAL_POST if social else s.history_object, []).append(record_id)
        for obj, ids in by_object.items():
            marks: dict[str, Any] = (
                {"Status": "DELETED", "Content": None}
                if obj == SOCIAL_POST
                else {s.task_fields.post_status: s.deleted_status, "Description": None}
            )
            path = f"composite/sobjects/{obj}/Id"
            for start in range(0, len(ids), BATCH):
                chunk = ids[start : start + BATCH]
                records = [{"attributes": {"type": obj}, "Id": i, **marks} for i in chunk]
                payload = {"allOrNone": False, "records": records}
                body = self.session.restful(
                    "mark history", path, budget, method="PATCH", json=payload
                )
                out += parse_outcomes(chunk, body, "mark history")
        by_id = {o.record_id: o for o in out}
        return [by_id[i] for i in record_ids]
