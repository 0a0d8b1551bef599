"""Backfills end to end: `syncd backfill` as a child process against both stand-ins, killed
with SIGKILL mid-page and resumed; the live poller and overlapping windows share the posts."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from support.e2e import Daemon, World, make_world, poll_once, wait_for

from sandbox.seed import Customer, seed
from syncd.cli import cli

DAYS_AGO = 20


@pytest.fixture
def world(migrated_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with make_world(migrated_url, tmp_path, monkeypatch) as w:
        text = w.config.read_text().replace(
            "page_size = 20", 'page_size = 20\nsearch_access = "none"'
        )
        w.config.write_text(text)
        yield w


def old_mentions(world: World, n: int, *, days_ago: int = DAYS_AGO) -> list[str]:
    """``n`` mentions by linked customers, 7 minutes apart from ``days_ago`` days back,
    posted after a first live poll (which learns the brand accounts and reads nothing)."""
    people = seed(world.x, world.sf, customers=12)
    assert poll_once(world)[0] == 0
    linked = [c for c in people.customers if c.kind == "contact_by_id"]
    rng, start = random.Random(5), datetime.now(UTC) - timedelta(days=days_ago)
    return [
        str(world.x.add_post(_pick(rng, linked).user_id, f"@acme old {i}",
                             created_at=start + timedelta(minutes=7 * i))["id"])
        for i in range(n)
    ]  # fmt: skip


def _pick(rng: random.Random, people: list[Customer]) -> Customer:
    return rng.choice(people)


def since(days: int = DAYS_AGO + 1) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).strftime("%Y-%m-%d")


def syncd(world: World, *args: str, code: int | None = 0) -> str:
    result = CliRunner().invoke(cli, ["--config", str(world.config), *args])
    if code is not None:
        assert result.exit_code == code, result.output
    return result.output


def tasks_per_post(world: World) -> Counter[str]:
    return Counter(str(t["Social_Post_Id__c"]) for t in world.sf.records("Task"))


def child(world: World, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "syncd", "--config", str(world.config), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=os.environ.copy(),
    )


def test_killed_three_times_and_resumed_it_writes_each_interaction_once(world: World) -> None:
    posts = old_mentions(world, 450)

    # SIGKILL each child a few milliseconds after its 2nd timeline page left X: while it
    # parses and stores that page, or writes the ones before. Three children die so.
    proc: dict[str, subprocess.Popen[str]] = {}
    pages: Counter[int] = Counter()
    kills = [0]

    def kill_soon(_request: Any) -> None:
        target = proc.get("p")
        if target is None or kills[0] >= 3:
            return
        pages[target.pid] += 1
        if pages[target.pid] == 2:
            kills[0] += 1
            threading.Timer(0.003 * kills[0], lambda: _kill(target)).start()

    world.x.on_request("mentions", kill_soon, phase="after")
    args = ["backfill", "--source", "acme-x", "--account", "acme", "--since", since()]
    proc["p"] = child(world, *args, "--streams", "mentions", "--yes", "--json")
    outputs = [proc["p"].communicate(timeout=120)[0]]
    killed = 0
    while proc["p"].returncode == -signal.SIGKILL:
        killed += 1
        proc["p"] = child(world, "backfill", "resume", "1", "--json")
        outputs.append(proc["p"].communicate(timeout=120)[0])
    assert killed == 3, outputs
    assert proc["p"].returncode == 0, outputs[-1]
    world.x.remove_hooks()

    (job,) = json.loads(syncd(world, "backfill", "list", "--all", "--json"))
    assert job["status"] == "done" and job["held"] == 0 and job["new"] == len(posts)
    # The live poller now reads the same posts (they are newer than its cursor): one record
    # each all the same.
    assert poll_once(world)[0] == 0
    counts = tasks_per_post(world)
    assert all(n == 1 for n in counts.values()), [p for p, n in counts.items() if n > 1]
    assert set(counts) == {f"x:{p}" for p in posts}


def _kill(p: subprocess.Popen[str]) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGKILL)


def test_dry_run_estimates_and_reads_nothing(world: World) -> None:
    old_mentions(world, 120)
    out = syncd(world, "backfill", "--source", "acme-x", "--account", "acme", "--since",
                since(), "--streams", "mentions", "--dry-run", "--json")  # fmt: skip
    estimate = json.loads(out.splitlines()[0])["estimate"]
    assert estimate["posts"] > 0 and estimate["cost"] == pytest.approx(
        estimate["posts"] * 0.005, abs=0.01
    )
    assert estimate["segments"][0]["route"] == "mentions_timeline"
    assert "800" in " ".join(estimate["notes"])  # the timeline's reach is said out loud
    assert syncd(world, "backfill", "list", "--all", "--json").strip() == "[]"
    assert not world.sf.records("Task")


def test_the_printed_estimate_names_the_network_and_the_crm(world: World) -> None:
    old_mentions(world, 30)
    out = syncd(world, "backfill", "--source", "acme-x", "--account", "acme", "--since",
                since(), "--streams", "mentions", "--dry-run")  # fmt: skip
    assert "backfill acme-x @acme" in out
    assert "Salesforce calls: 1 writes of up to 200" in " ".join(out.split())
    assert "at X's rate limits" in " ".join(out.split())
    assert not world.sf.records("Task")


def test_over_the_threshold_it_asks_first(world: World) -> None:
    old_mentions(world, 60)
    text = world.config.read_text() + "\n[backfill]\nconfirm_above = 0.01\n"
    world.config.write_text(text)
    args = ["backfill", "--source", "acme-x", "--account", "acme", "--since", since()]
    result = CliRunner().invoke(cli, ["--config", str(world.config), *args], input="n\n")
    assert result.exit_code == 1 and "Go on?" in result.output
    assert syncd(world, "backfill", "list", "--all", "--json").strip() == "[]"


def test_queued_jobs_are_listed_cancelled_and_refused_when_unknown(world: World) -> None:
    old_mentions(world, 30)
    args = ["backfill", "--source", "acme-x", "--account", "acme", "--since", since()]
    assert "queued as backfill 1" in syncd(world, *args, "--yes", "--queue")
    (job,) = json.loads(syncd(world, "backfill", "list", "--json"))
    assert job["status"] == "queued" and job["read"] == 0
    assert "cancelled" in syncd(world, "backfill", "cancel", "1")
    assert "already cancelled" in syncd(world, "backfill", "cancel", "1", code=1)
    assert "no backfill 9" in syncd(world, "backfill", "resume", "9", code=1)
    assert "no source 'nope'" in syncd(world, "backfill", "--source", "nope", "--account",
                                       "acme", "--since", since(), code=1)  # fmt: skip
    assert "knows no account" in syncd(world, "backfill", "--source", "acme-x", "--account",
                                       "ghost", "--since", since(), code=1)  # fmt: skip


def test_the_daemon_works_a_queued_backfill_beside_live_polling(world: World) -> None:
    posts = old_mentions(world, 250)
    args = ["backfill", "--source", "acme-x", "--account", "acme", "--since", since()]
    syncd(world, *args, "--streams", "mentions", "--yes", "--queue")
    daemon = Daemon(world.config)
    try:

        def job() -> dict[str, Any]:
            found: list[dict[str, Any]] = json.loads(
                syncd(world, "backfill", "list", "--all", "--json")
            )
            return found[0]

        wait_for(lambda: job()["status"] == "done", 60, "the backfill to finish")
        # The live poller reads these posts too (they are newer than its cursor): whichever
        # stores one first, it is one interaction and one record.
        assert job()["read"] == len(posts)
        wait_for(lambda: len(tasks_per_post(world)) == len(posts), 60, "every post written")
    finally:
        assert daemon.stop() == 0, daemon.log
    counts = tasks_per_post(world)
    assert set(counts) == {f"x:{p}" for p in posts} and set(counts.values()) == {1}
    assert "backfill 1 done" in daemon.log
