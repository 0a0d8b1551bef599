"""End to end: sandbox X and Salesforce over real HTTP → ``syncd poll --once`` → Tasks.

Nothing here is faked: tweepy and simple-salesforce talk to the loopback stand-ins through the
URL-rewriting adapter, exactly as they would talk to api.x.com and a Salesforce org.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from support.e2e import World, make_world, poll_once, tasks

from sandbox.seed import seed
from syncd.cli import cli


@pytest.fixture
def world(state_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with make_world(state_url, tmp_path, monkeypatch) as w:
        yield w


def test_poll_once_writes_one_task_per_linked_interaction(world: World) -> None:
    x, sf = world.x, world.sf
    people = seed(x, sf, customers=40)
    brand = people.brand_ids
    linked = [c for c in people.customers if c.kind != "unknown"]
    unknown = next(c for c in people.customers if c.kind == "unknown")
    expected: dict[str, str] = {}  # external id → the CRM person it must land on
    for i, c in enumerate(linked):
        p = x.add_post(c.user_id, f"@acme order {i} is late")
        assert c.crm_id
        expected[f"x:{p['id']}"] = c.crm_id
        if i % 3 == 0:
            r = x.add_post(brand["acmesupport"], "We're on it!", in_reply_to=p["id"])
            expected[f"x:{r['id']}"] = c.crm_id
    both = x.add_post(linked[0].user_id, "@acme @acmesupport hello?")  # mentions both brands
    assert linked[0].crm_id
    expected[f"x:{both['id']}"] = linked[0].crm_id
    held = x.add_post(unknown.user_id, "@acme who am I?")
    x.add_post(brand["acme"], "@acmesupport internal note")  # brand to brand: no history

    code, output = poll_once(world)
    assert code == 0, output
    got = tasks(sf)
    assert set(got) == set(expected)
    for ext, who in expected.items():
        assert got[ext]["WhoId"] == who
    sample = got[f"x:{both['id']}"]
    assert sample["Subject"] == f"X mention from @{linked[0].handle}"
    assert sample["Social_Direction__c"] == "Inbound"
    assert sample["Status"] == "Completed"
    replies = [t for t in got.values() if t["Social_Direction__c"] == "Outbound"]
    assert replies and all(
        str(t["Subject"]).startswith("X reply from @acmesupport to @") for t in replies
    )

    # Again: nothing new is read as new, nothing is written twice.
    calls_before = sf.api_calls
    code, output = poll_once(world)
    assert code == 0, output
    assert set(tasks(sf)) == set(expected)
    assert sf.api_calls - calls_before <= 2  # a look-up for the held author at most

    # The unknown author gets a Contact; the held mention is written on the next cycle.
    unknown.crm_id = sf.insert(
        "Contact", {"LastName": unknown.last, "X_User_Id__c": unknown.user_id}
    )
    time.sleep(1.1)  # past the resolver's back-off
    code, output = poll_once(world)
    assert code == 0, output
    assert tasks(sf)[f"x:{held['id']}"]["WhoId"] == unknown.crm_id


def test_status_reports_streams_and_held_authors(world: World) -> None:
    people = seed(world.x, world.sf, customers=10)
    unknown = next(c for c in people.customers if c.kind == "unknown")
    world.x.add_post(unknown.user_id, "@acme anyone?")
    poll_once(world)
    result = CliRunner().invoke(cli, ["--config", str(world.config), "status", "--json"])
    assert result.exit_code == 0, result.output
    assert '"held_identities": 1' in result.output
    assert result.output.count('"stream":') == 4  # 2 accounts × 2 streams


def test_poll_once_fails_visibly_when_the_crm_refuses_login(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    people = seed(world.x, world.sf, customers=5)
    c = next(c for c in people.customers if c.kind != "unknown")
    world.x.add_post(c.user_id, "@acme hi")
    monkeypatch.setenv("E2E_SF_PASSWORD", "wrong-password")
    code, output = poll_once(world)
    assert code == 1
    assert "AuthError" in output
    assert "wrong-password" not in output
    monkeypatch.setenv("E2E_SF_PASSWORD", "sandbox-password")
    code, output = poll_once(world)
    assert code == 0, output
    assert len(tasks(world.sf)) == 1


@pytest.mark.parametrize("state_url", ["sqlite"], indirect=True)
def test_daemon_runs_and_stops_cleanly_on_sigterm(world: World) -> None:
    people = seed(world.x, world.sf, customers=5)
    c = next(c for c in people.customers if c.kind != "unknown")
    proc = subprocess.Popen(
        [sys.executable, "-m", "syncd", "--config", str(world.config), "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    try:
        post = world.x.add_post(c.user_id, "@acme are you there?")
        deadline = time.monotonic() + 30
        while f"x:{post['id']}" not in tasks(world.sf) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert f"x:{post['id']}" in tasks(world.sf)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
