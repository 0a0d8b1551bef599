"""Issue 16, item 15: names and ids are matched whole. With ``re.match`` and ``$``, a value
ending in a newline passed ("Task\\n"): ``$`` also matches before a final newline."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from connectors.salesforce.identity.people import id18
from connectors.salesforce.settings import SalesforceSettings

BASE = {
    "type": "salesforce",
    "login_url": "https://login.salesforce.com",
    "username": "u@example.com",
    "password": "env:HOME",
}


@pytest.mark.parametrize(
    "extra",
    [
        {"history_object": "Task\n"},
        {"external_id_field": "Social_Post_Id__c\n"},
        {"person_objects": ["Contact", "Lead\n"]},
        {"task_fields": {"network": "Social_Network__c\n"}},
        {"identity_fields": {"x": {"user_id": "X_User_Id__c\n", "handle": "X_Handle__c"}}},
        {"api_version": "61.0\n"},
    ],
)
def test_a_salesforce_name_ending_in_a_newline_is_refused(extra: dict[str, object]) -> None:
    SalesforceSettings.model_validate(BASE)  # the same without the newline is fine
    with pytest.raises(ValidationError):
        SalesforceSettings.model_validate({**BASE, **extra})


def test_a_record_id_ending_in_a_newline_is_no_record_id() -> None:
    assert id18("003000000000001") == "003000000000001AAA"
    assert id18("003000000000001\n") is None
    assert id18("003000000000001AAA\n") is None
