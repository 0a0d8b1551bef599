"""``syncd run`` as an operator meets it: one instance per state, SIGHUP reloads, parking.

Each test runs the real daemon as a child process against the loopback stand-ins.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from support.e2e import Daemon, World, config_text, make_world, tasks, wait_for

from sandbox.seed import seed
from syncd.cli import cli

pytestmark = pytest.mark.parametrize("state_url", ["sqlite"], indirect=True)


@pytest.fixture
def world(state_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with make_world(state_url, tmp_path, monkeypatch, accounts=("acme",)) as w:
        yield w


def written(world: World, post: dict[str, str]) -> bool:
    return f"x:{post['id']}" in tasks(world.sf)


def test_a_second_daemon_on_the_same_sqlite_state_refuses_to_start(
    world: World, state_url: str
) -> None:
    lock = Path(state_url.removeprefix("sqlite:///") + ".lock")
    first = Daemon(world.config)
    try:
        wait_for(lambda: lock.exists() and lock.read_text().strip().isdigit(), what="the lock")
        second = Daemon(world.config)
        assert second.stop(timeout=30, terminate=False) == 1
        assert f"pid {first.proc.pid}" in second.log
        assert "already running" in second.log and "Traceback" not in second.log
        assert first.proc.poll() is None  # the first one is unharmed
    finally:
        assert first.stop() == 0, first.log
    # The lock dies with its holder: a new daemon starts after the first one stopped.
    third = Daemon(world.config)
    wait_for(lambda: "syncd running" in third.log, what="the third daemon")
    assert third.stop() == 0, third.log


def test_sighup_reloads_the_config_and_keeps_the_old_one_when_invalid(
    world: World, state_url: str
) -> None:
    people = seed(world.x, world.sf, customers=6)
    linked = [c for c in people.customers if c.kind != "unknown"]
    daemon = Daemon(world.config, "--log-level", "INFO")
    try:
        first = world.x.add_post(linked[0].user_id, "@acme hello")
        wait_for(lambda: written(world, first), what="the first mention")

        # An invalid config is refused; the daemon goes on with the running one.
        good = world.config.read_text()
        world.config.write_text(good.replace("[crm]", "[crm]\nusernme = 'typo'"))
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: "config reload refused" in daemon.log, what="the refusal")
        assert "crm.usernme" in daemon.log
        second = world.x.add_post(linked[1].user_id, "@acme still there?")
        wait_for(lambda: written(world, second), what="a mention after the refusal")

        # A valid one: acmesupport starts, acme stops.
        world.config.write_text(
            config_text(state_url, world.x.url, world.sf.url, accounts=("acmesupport",))
        )
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in daemon.log, what="the reload")
        to_support = world.x.add_post(linked[2].user_id, "@acmesupport help")
        to_acme = world.x.add_post(linked[3].user_id, "@acme nobody listens now")
        wait_for(lambda: written(world, to_support), what="the new account's mention")
        after = world.x.add_post(linked[4].user_id, "@acmesupport one more")
        wait_for(lambda: written(world, after), what="a later mention")
        assert not written(world, to_acme)  # a removed account is no longer polled
    finally:
        code = daemon.stop()
    assert code == 0, daemon.log
    assert "Traceback" not in daemon.log


def test_auth_failures_park_the_crm_until_resumed(world: World, tmp_path: Path) -> None:
    people = seed(world.x, world.sf, customers=4)
    c = next(c for c in people.customers if c.kind != "unknown")
    password = tmp_path / "sf-password"
    password.write_text("wrong-password\n")
    world.config.write_text(
        world.config.read_text().replace("env:E2E_SF_PASSWORD", f"file:{password}")
    )
    post = world.x.add_post(c.user_id, "@acme is anyone there?")
    daemon = Daemon(world.config, "--log-level", "INFO")
    try:
        wait_for(lambda: "parked after 3 authentication failures" in daemon.log, what="parking")
        status = CliRunner().invoke(cli, ["--config", str(world.config), "status"])
        assert status.exit_code == 0, status.output
        assert "PARKED crm" in status.output and "syncd resume crm" in status.output
        time.sleep(0.5)  # a call already under way when it parked may still finish
        logins = world.sf.logins
        time.sleep(2.5)  # several resolver and writer intervals
        assert world.sf.logins == logins  # parked: no more login attempts

        password.write_text("sandbox-password\n")
        resumed = CliRunner().invoke(cli, ["--config", str(world.config), "resume", "crm"])
        assert resumed.exit_code == 0, resumed.output
        wait_for(lambda: written(world, post), what="the write after resuming")
        assert "crm resumed" in daemon.log
    finally:
        code = daemon.stop()
    assert code == 0, daemon.log
    assert daemon.log.count("parked after") == 1  # logged once, not per attempt
    assert "wrong-password" not in daemon.log and "sandbox-password" not in daemon.log


def test_sigterm_mid_batch_exits_0_within_10_s_and_loses_nothing(world: World) -> None:
    people = seed(world.x, world.sf, customers=4)
    c = next(c for c in people.customers if c.kind != "unknown")
    # The CRM hangs on the first Task batch far past any stop deadline.
    world.sf.inject("stall", endpoint="composite", seconds=25.0)
    post = world.x.add_post(c.user_id, "@acme hello?")
    daemon = Daemon(world.config, "--log-level", "INFO")
    try:
        wait_for(lambda: world.sf.faults.injected == 1, what="the stalled batch")
        asked = time.monotonic()
        code = daemon.stop(timeout=20)
        took = time.monotonic() - asked
    finally:
        daemon.stop()
    assert code == 0, daemon.log
    assert took < 10, f"took {took:.1f}s to stop"
    assert "Traceback" not in daemon.log
    assert not written(world, post)
    # What was in flight is redone by the next start.
    again = Daemon(world.config)
    try:
        wait_for(lambda: written(world, post), what="the write after restart")
    finally:
        assert again.stop() == 0, again.log
