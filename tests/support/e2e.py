"""A loopback world for end-to-end tests: both stand-ins, a config file, CLI helpers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from sandbox.config import Secrets, TomlValue, syncd_config
from sandbox.salesforce.api import SalesforceSandbox
from sandbox.x.api import XSandbox
from syncd.cli import cli

# The tests' own secret names: tests set and break them one by one (a wrong password, a
# secret from a file), so they are part of what the tests say.
SECRETS = Secrets(prefix="E2E", x_bearer="e2e-bearer")


@dataclass
class World:
    x: XSandbox
    sf: SalesforceSandbox
    config: Path


@contextmanager
def make_world(
    state_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    accounts: tuple[str, ...] = ("acme", "acmesupport"),
    messaging: bool = False,
) -> Iterator[World]:
    """``messaging``: the org uses Salesforce messaging (has MessagingEndUser)."""
    for name, value in SECRETS.environ().items():
        monkeypatch.setenv(name, value)
    with (
        XSandbox(bearer_token=SECRETS.x_bearer) as x,
        SalesforceSandbox(messaging=messaging) as sf,
    ):
        assert isinstance(x, XSandbox) and isinstance(sf, SalesforceSandbox)
        path = tmp_path / "config.toml"
        path.write_text(config_text(state_url, x.url, sf.url, accounts))
        yield World(x, sf, path)


def poll_once(w: World) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--config", str(w.config), "poll", "--once"])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def tasks(sf: SalesforceSandbox) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for t in sf.records("Task"):
        key = str(t["Social_Post_Id__c"])
        assert key not in out, f"duplicate Task for {key}"
        out[key] = t
    return out


def config_text(
    state_url: str,
    x_url: str,
    sf_url: str,
    accounts: tuple[str, ...] = ("acme", "acmesupport"),
    *,
    sources: Sequence[Mapping[str, TomlValue]] = (),
) -> str:
    """The tests' config: the X source and the CRM, and ``sources`` after the X one
    (:func:`sandbox.config.mastodon_source`, :func:`sandbox.config.bluesky_source`)."""
    return syncd_config(
        state_url=state_url,
        x_url=x_url,
        salesforce_url=sf_url,
        accounts=accounts,
        secrets=SECRETS,
        tables={
            "daemon": {"write_interval": "1s", "resolve_interval": "1s", "jitter": "100ms"},
            # crm_check_interval: how soon a person's new id or handle is used.
            "resolver": {"retry_after": "1s", "crm_check_interval": "1s"},
        },
        # start: tests post before the first poll, some of it hours back.
        source={"interval": "1s", "page_size": 20, "start": "1d"},
        sources=sources,
    )


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    """Until ``predicate`` holds. The deadline only bounds a hang: under xdist, daemons and
    stand-ins of other workers share the cores, and a step that takes 5 s alone took 30."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.1)


class Daemon:
    """``syncd run`` as a child process, its stderr collected by a thread."""

    def __init__(self, config: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "syncd", "--config", str(config), *args, "run"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=os.environ.copy(),
        )
        self._lines: list[str] = []
        assert self.proc.stderr is not None
        stream = self.proc.stderr
        self._reader = threading.Thread(
            target=lambda: self._lines.extend(iter(stream.readline, "")), daemon=True
        )
        self._reader.start()

    @property
    def log(self) -> str:
        return "".join(self._lines)

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 30.0, *, terminate: bool = True) -> int:
        if terminate and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        self._reader.join(5)
        return code
