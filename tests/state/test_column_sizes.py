"""State columns fit what the other side can send (issue 16, item 9): a CRM text field holds
255 characters, so a Contact's X handle or user id of up to 255 is kept in the copy of the
CRM's keys; a longer one (a long text field mapped by mistake) is left out with a warning,
never failing the resolver's batch. Names from the config longer than their columns are a
config error naming the key. PostgreSQL enforces lengths; SQLite does not, but the refusal of
a longer value is the same on both."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support.crm_keys import k, linked_to, person, stage_on, x
from support.salesforce import crm

from sandbox.salesforce.api import SalesforceSandbox
from syncd.config import settings as config
from syncd.errors import ConfigError
from syncd.state import crm_keys
from syncd.state.db import Database
from syncd.state.tables import KEY_MAX, NAME_MAX, metadata

LONG = "h" * 115  # fits a Salesforce text field, not the 100 the copy once had
TOO_LONG = "t" * 300  # only a long text area holds this


def test_crm_keys_up_to_a_text_field_are_kept_and_longer_ones_left_out(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="syncd.resolver")
    people = [
        person("Contact", "003LONG", x(handle=LONG)),
        person("Contact", "003BOTH", x("9", TOO_LONG)),  # the id still matches, the handle not
        person("Contact", "003IDTOO", x("1" * 300)),
        person("Contact", "003FITS", x("2" * KEY_MAX)),
    ]
    with db.transaction() as conn:
        crm_keys.put(conn, "sf", people, datetime(2026, 12, 1, tzinfo=UTC))
    with db.connect() as conn:
        assert [p.ref.id for p in crm_keys.find(conn, "sf", [k("0", LONG.upper())])] == ["003LONG"]
        assert [p.ref.id for p in crm_keys.find(conn, "sf", [k("9")])] == ["003BOTH"]
        assert crm_keys.find(conn, "sf", [k("0", TOO_LONG)]) == []
        assert crm_keys.find(conn, "sf", [k("1" * 300)]) == []
        assert [p.ref.id for p in crm_keys.find(conn, "sf", [k("2" * KEY_MAX)])] == ["003FITS"]
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 2
    assert "003BOTH" in warned[0] and "300 characters" in warned[0] and "handle" in warned[0]
    assert "003IDTOO" in warned[1] and "user id" in warned[1]
    assert all(TOO_LONG not in m for m in warned)


def test_a_resolver_run_over_long_handles_in_the_crm_succeeds(
    db: Database,
    sb: SalesforceSandbox,
) -> None:
    long_one = sb.insert("Contact", {"LastName": "Long", "X_Handle__c": "@" + LONG})
    sb.insert("Contact", {"LastName": "TooLong", "X_Handle__c": TOO_LONG})
    alice = sb.insert("Contact", {"LastName": "Alice", "X_User_Id__c": "7"})
    p, _ = stage_on(db, crm(sb))
    r = p.resolve()  # loads the copy: one DataError here failed every run, on PostgreSQL
    assert r.linked == 1
    assert list(linked_to(db).values()) == [alice]
    with db.connect() as conn:
        assert [p.ref.id for p in crm_keys.find(conn, "sf", [k("0", LONG)])] == [long_one]


def test_key_columns_take_a_crm_text_field_and_names_their_config_bound() -> None:
    for table in metadata.tables.values():
        for column in table.columns:
            if column.name in ("source", "crm", "account"):
                assert column.type.length >= NAME_MAX, f"{table.name}.{column.name}"  # type: ignore[attr-defined]
    keys = metadata.tables["crm_keys"].c
    assert keys.user_id.type.length == keys.handle.type.length == KEY_MAX == 255  # type: ignore[attr-defined]


def test_config_refuses_names_longer_than_their_columns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("T", "P", "S"):
        monkeypatch.setenv(var, "a-secret-value")
    name, crm_name, handle = "s" * (NAME_MAX + 1), "c" * (NAME_MAX + 1), "a" * (NAME_MAX + 1)
    path = tmp_path / "config.toml"
    path.write_text(
        f"""
[[sources]]
name = "{name}"
type = "x"
bearer_token = "env:T"
accounts = ["acme", "{handle}"]

[crm]
type = "salesforce"
name = "{crm_name}"
username = "u@example.com"
password = "env:P"
security_token = "env:S"
"""
    )
    with pytest.raises(ConfigError) as raised:
        config.load(path)
    problems = dict(raised.value.problems)
    assert len(problems) == 3, problems
    assert problems["sources[0].name"] == f"must be at most {NAME_MAX} characters, not 101"
    assert "sources[0].accounts[1]" in problems and "sources[0].accounts[0]" not in problems
    assert problems["crm.name"] == f"must be at most {NAME_MAX} characters, not 101"
