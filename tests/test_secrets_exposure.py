"""Secrets never leak: not in a log line (even at DEBUG), status output, exception text or repr.

The daemon runs with known, distinctive secret values through the failures most likely to
print a request: server errors, dropped connections, expired sessions (a fresh login sends the
password again), refused logins, record errors. Then every text syncd produced is searched.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from e2e_support import Daemon, config_text, tasks, wait_for

from syncd import config as config_mod
from syncd.app import App
from syncd.cli import cli
from syncd.errors import SyncdError
from syncd.sandbox.salesforce_api import SalesforceSandbox
from syncd.sandbox.seed import seed
from syncd.sandbox.x_api import XSandbox

X_BEARER = "xbearer-S3CRET-a1b2c3d4e5"
SF_PASSWORD = "sfpass-S3CRET-f6g7h8"
SF_TOKEN = "sftok-S3CRET-i9j0k1"
WRONG_PASSWORD = "wrongpass-S3CRET-l2m3n4"
SECRETS = (X_BEARER, SF_PASSWORD, SF_TOKEN, WRONG_PASSWORD)

pytestmark = pytest.mark.parametrize("state_url", ["sqlite"], indirect=True)


class Sandboxes:
    def __init__(self, x: XSandbox, sf: SalesforceSandbox, config: Path) -> None:
        self.x, self.sf, self.config = x, sf, config


@pytest.fixture
def world(state_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandboxes]:
    monkeypatch.setenv("E2E_X_BEARER", X_BEARER)
    monkeypatch.setenv("E2E_SF_TOKEN", SF_TOKEN)
    password = tmp_path / "sf-password"
    password.write_text(SF_PASSWORD + "\n")
    with (
        XSandbox(bearer_token=X_BEARER) as x,
        SalesforceSandbox(password=SF_PASSWORD, security_token=SF_TOKEN) as sf,
    ):
        assert isinstance(x, XSandbox) and isinstance(sf, SalesforceSandbox)
        path = tmp_path / "config.toml"
        text = config_text(state_url, x.url, sf.url).replace(
            "env:E2E_SF_PASSWORD", f"file:{password}"
        )
        path.write_text(text)
        yield Sandboxes(x, sf, path)


def leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def test_no_secret_in_logs_status_errors_or_reprs(world: Sandboxes, tmp_path: Path) -> None:
    people = seed(world.x, world.sf, customers=8)
    linked = [c for c in people.customers if c.kind == "contact_by_id"]
    for kind, options in (
        ("status", {"status": 500}),
        ("drop", {}),
        ("malformed", {}),
        ("rate_limit", {"reset": True, "seconds": 1}),
    ):
        world.x.inject(kind, endpoint="*", count=1, **options)
    world.sf.inject("session_expired", endpoint="*", count=2)  # forces fresh logins
    world.sf.inject("status", endpoint="login", count=1, status=500)
    world.sf.inject("lock_row", endpoint="composite", count=1)
    world.sf.inject("record_error", endpoint="composite", count=1, code="DUPLICATE_VALUE")
    posts = [world.x.add_post(c.user_id, f"@acme hello {i}") for i, c in enumerate(linked)]

    texts: dict[str, str] = {}
    daemon = Daemon(world.config, "--log-level", "DEBUG")
    try:
        wait_for(lambda: len(tasks(world.sf)) >= len(posts) - 1, what="writes through the faults")
        # Then the password is changed under it: logins are refused until it is parked.
        (tmp_path / "sf-password").write_text(WRONG_PASSWORD + "\n")
        world.sf.inject("session_expired", endpoint="*", count=1)
        world.x.add_post(linked[0].user_id, "@acme after the password change")
        wait_for(lambda: "parked after" in daemon.log, what="the CRM to be parked")
        texts["status"] = _cli(world, "status")
        texts["status --json"] = _cli(world, "status", "--json")
        texts["deadletter list"] = _cli(world, "deadletter", "list", "--json")
    finally:
        daemon.stop()
    texts["daemon log (DEBUG)"] = daemon.log
    assert "DEBUG" in daemon.log and "INVALID_LOGIN" in daemon.log  # the log did see it all

    # The same failures in-process: exception text, traceback and every repr on the way.
    settings = config_mod.load(world.config)
    app = App(settings)
    app.open()
    try:
        texts["reprs"] = " ".join(
            repr(o) for o in (settings, settings.crm, *settings.sources, app.crm, app.db)
        )
        texts["reprs"] += " ".join(repr(s) for _, s in app.sources.values())
        world.sf.inject("session_expired", endpoint="*", count=1)
        with pytest.raises(SyncdError) as caught:
            app.pipeline.resolve()
            app.crm.lookup([])
            app.pipeline.deliver()
            raise AssertionError("the refused login did not raise")
        texts["exception"] = "".join(traceback.format_exception(caught.value))
        texts["exception"] += repr(caught.value)
        texts["cycle report"] = json.dumps(app.cycle().errors)
    finally:
        app.close()

    assert "".join(texts)  # something was collected
    found = {where: leaks(text) for where, text in texts.items() if leaks(text)}
    assert found == {}, f"secrets leaked: {found}"
    state_file = Path(settings.state.url.removeprefix("sqlite:///"))
    for f in (state_file, state_file.with_name(state_file.name + "-wal")):
        if f.exists():
            assert leaks(f.read_bytes().decode("latin-1")) == [], f"secret stored in {f}"


def _cli(world: Sandboxes, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--config", str(world.config), *args])
    assert result.exit_code == 0, result.output
    return result.output
