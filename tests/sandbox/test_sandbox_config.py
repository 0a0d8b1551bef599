"""The sandbox as syncd sees it: the one configuration for the stand-ins, and the composite
that runs them all for ``syncd demo`` and ``syncd sandbox``."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from sandbox.config import STANDINS, Secrets, syncd_config
from sandbox.run import Sandbox
from syncd.config.settings import load


def render(**options: Any) -> str:
    return syncd_config(
        state_url="sqlite:///state.db",
        x_url="http://127.0.0.1:1",
        salesforce_url="http://127.0.0.1:2",
        accounts=("acme", "acmesupport"),
        **options,
    )


def test_values_and_tables_are_toml() -> None:
    text = render(
        source={
            "start": 'a "quoted" \\ näme',
            "page_size": 20,
            "user_auth": {"acme": {"type": "oauth1", "access_token": "env:T"}},
        },
        crm={"timeout": "2.0s"},
        tables={"daemon": {"jitter": "0s"}, "writer": {"retries": 3}, "logging": {"x": True}},
    )
    doc = tomllib.loads(text)
    assert list(doc) == ["state", "daemon", "writer", "logging", "sources", "crm"]
    (source,) = doc["sources"]
    assert source["start"] == 'a "quoted" \\ näme'
    assert source["page_size"] == 20
    assert source["accounts"] == ["acme", "acmesupport"]
    assert source["user_auth"] == {"acme": {"type": "oauth1", "access_token": "env:T"}}
    assert doc["writer"] == {"retries": 3} and doc["logging"] == {"x": True}
    assert doc["crm"]["timeout"] == "2.0s"
    # [crm] comes last: what a test appends to the text belongs to it.
    assert tomllib.loads(text + 'api_version = "60.0"\n')["crm"]["api_version"] == "60.0"


def test_secrets_are_named_not_written() -> None:
    secrets = Secrets(prefix="T", x_bearer="b", salesforce_password="p", salesforce_token="t")
    doc = tomllib.loads(render(secrets=secrets))
    assert doc["sources"][0]["bearer_token"] == "env:T_X_BEARER"
    assert doc["crm"]["password"] == "env:T_SF_PASSWORD"
    assert doc["crm"]["security_token"] == "env:T_SF_TOKEN"
    assert secrets.environ() == {"T_X_BEARER": "b", "T_SF_PASSWORD": "p", "T_SF_TOKEN": "t"}
    assert "sandbox-password" not in repr(Secrets()) and "sandbox-x-bearer" not in repr(Secrets())


def test_syncd_loads_the_sandbox_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Sandbox() as sandbox:
        for name, value in sandbox.environ().items():
            monkeypatch.setenv(name, value)
        path = tmp_path / "config.toml"
        path.write_text(
            sandbox.config(
                f"sqlite:///{tmp_path}/state.db",
                source={"interval": "1s", "start": "1m"},
                tables={"daemon": {"jitter": "100ms"}},
            )
        )
        settings = load(path)
    assert settings.daemon.jitter == pytest.approx(0.1)
    assert len(settings.sources) == 1


def test_the_composite_runs_every_declared_standin() -> None:
    with Sandbox() as sandbox:
        assert set(sandbox.servers) == {s.name for s in STANDINS}
        described = sandbox.describe()
        for s in STANDINS:
            assert f"{s.title} stand-in {sandbox.servers[s.name].url}" in described
    with pytest.raises(ValueError, match="no stand-in"):
        Sandbox(ports={"nowhere": 1})


def test_read_back_is_a_query_of_the_crm() -> None:
    with Sandbox() as sandbox:
        world = sandbox.seed(4)
        who = next(c for c in world.customers if c.crm_id)
        sandbox.salesforce.insert(
            "Task",
            {
                "WhoId": who.crm_id,
                "Subject": "X mention",
                "Description": "first  line\nsecond",
                "ActivityDate": "2026-01-02",
                "Social_Post_Id__c": "x:12",
                "Social_Direction__c": "Inbound",
            },
        )
        calls = sandbox.salesforce.api_calls
        back = sandbox.readback()
        assert sandbox.salesforce.api_calls == calls + 1  # one SOQL query, as an admin's
    assert (back.records, back.duplicates) == (1, 0)
    (timeline,) = back.timelines
    assert timeline.record_id == who.crm_id and who.handle in timeline.title
    (entry,) = timeline.entries
    assert (entry.date, entry.outbound, entry.text) == ("2026-01-02", False, "first line")
