"""Issue 16, item 15: error text is redacted before it is stored, secrets with a line break
are masked in every form they show in, and a secret too short to mask is never masked.

``syncd status`` prints what state holds (a stream's last error, a parked account's reason, a
check's error), so state must hold no secret. A bearer token with a line break inside made
requests refuse its header, quoting it escaped (``…\\n…``), which no redactor recognised.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from support.e2e import World, make_world, poll_once
from support.salesforce import settings as sf_settings

from connectors.salesforce.crm import SalesforceCrm
from connectors.x.source import XSource
from sandbox.salesforce.api import SalesforceSandbox
from sandbox.seed import seed
from syncd.cli import cli
from syncd.contracts import redaction
from syncd.contracts.secrets import masked
from syncd.errors import AuthError, TransientError
from syncd.state.tables import parked

FIRST, SECOND = "bearer-first-HALF-0123", "bearer-second-HALF-4567"


@pytest.fixture
def world(state_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv("COLUMNS", "250")  # rich would squeeze the error column away at 80
    with make_world(state_url, tmp_path, monkeypatch) as w:
        # The broken token fails every call: the back-off between retries is not under test
        # here, and cost seconds a stream.
        w.config.write_text(w.config.read_text() + "\n[writer]\nretries = 0\n")
        yield w


def cli_run(w: World, *args: str) -> Any:
    return CliRunner().invoke(cli, ["--config", str(w.config), *args])


def test_a_token_with_a_line_break_never_reaches_state_or_status(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(world.x, world.sf, customers=4)
    code, output = poll_once(world)  # streams and their cursors exist
    assert code == 0, output
    monkeypatch.setenv("E2E_X_BEARER", f"{FIRST}\n{SECOND}")  # a token file gone wrong

    code, output = poll_once(world)
    assert code == 1

    shown = cli_run(world, "status", "--json")
    assert shown.exit_code == 0, shown.output
    errors = [s["last_error"] for s in json.loads(shown.stdout)["streams"]]
    assert errors and all(e and "[redacted]" in e for e in errors), errors
    table = cli_run(world, "status")
    assert table.exit_code == 0, table.output
    assert "[redacted]" in table.stdout  # shown, not taken for markup
    for text in (output, shown.output, table.output):
        assert FIRST not in text and SECOND not in text


def test_error_text_is_redacted_on_its_way_into_state(db: Any) -> None:
    redaction.protect(["parked-secret\nwith-a-line-break"])
    reason = (
        "credentials refused: parked-secret\nwith-a-line-break, quoted "
        "'parked-secret\\nwith-a-line-break'; Authorization: Bearer AAAA-token-1234"
    )
    with db.transaction() as conn:
        conn.execute(
            parked.insert().values(
                name="x:acme", reason=reason, failures=3, parked_at=datetime.now(UTC), kind="auth"
            )
        )
    with db.connect() as conn:
        stored = conn.execute(select(parked.c.reason)).scalar_one()
    assert "parked-secret" not in stored and "with-a-line-break" not in stored
    assert "AAAA-token-1234" not in stored
    assert stored.startswith("credentials refused: [redacted]")


def test_a_secret_cut_by_a_writers_clip_is_taken_out_too(db: Any) -> None:
    secret = "clipped-secret-value-0123456789"
    redaction.protect([secret])
    reason = ("x" * 1980 + f" {secret} and more")[:2000]  # as admin.park clips it
    assert reason.endswith(" clipped-secret-valu")
    with db.transaction() as conn:
        conn.execute(
            parked.insert().values(
                name="crm", reason=reason, failures=3, parked_at=datetime.now(UTC), kind="auth"
            )
        )
    with db.connect() as conn:
        stored = conn.execute(select(parked.c.reason)).scalar_one()
    assert stored == "x" * 1980 + " [redacted]"


def test_every_line_of_a_secret_is_masked_and_a_short_one_never() -> None:
    value = "line-one-of-it\r\nline-two-of-it"
    assert masked("saw line-two-of-it alone", [value]) == "saw [redacted] alone"
    assert masked("repr: 'line-one-of-it\\r\\nline-two-of-it'", [value]) == "repr: '[redacted]'"
    # Too short to tell from ordinary text: masking "a" would blank every "a".
    assert masked("a banana, and a saga", ["a", "abc"]) == "a banana, and a saga"
    redaction.protect(["a"])
    assert redaction.redact("a banana") == "a banana"


def test_a_one_letter_bearer_token_does_not_mask_the_x_error() -> None:
    source = XSource("a", api_base_url="http://127.0.0.1:9", timeout=5)
    try:
        error = source.client.redact(TransientError("X API 503: a backend failed, try again"))
    finally:
        source.close()
    assert str(error) == "X API 503: a backend failed, try again"


def test_a_one_letter_password_does_not_mask_the_salesforce_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SF_PASSWORD", "a")
    monkeypatch.setenv("SF_TOKEN", "t")
    with SalesforceSandbox() as sf:
        crm = SalesforceCrm(sf_settings(login_url=sf.url))
        try:
            with pytest.raises(AuthError) as err:  # the sandbox's password is another
                crm.query("SELECT Id FROM Contact LIMIT 1")
        finally:
            crm.close()
    assert "***" not in str(err.value)
    assert "Invalid username, password" in str(err.value)


def test_a_short_configured_secret_is_named_in_a_warning(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("E2E_SF_TOKEN", "t0k3n")
    result = cli_run(world, "status")
    assert result.exit_code == 0, result.output
    assert "crm.security_token is shorter than 8 characters" in result.stderr
    assert "t0k3n" not in result.output
