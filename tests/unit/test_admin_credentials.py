"""Issue 16, item 15: with the documented ``cred:`` setup, admin commands work outside the
unit. systemd hands the unit its credentials in ``$CREDENTIALS_DIRECTORY``; ``sudo syncd
status`` has no such variable, so it reads the same files from ``[secrets]
credentials_directory`` (default /etc/syncd/credentials, where the unit loads them from)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from support import ROOT
from support.config import edit

from syncd.cli import cli
from syncd.config import settings as config

CRED = (
    ('bearer_token = "env:T_X_BEARER"', 'bearer_token = "cred:x_bearer_token"'),
    ('password = "env:T_SF_PASSWORD"', 'password = "cred:sf_password"'),
)


@pytest.fixture
def creds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The files LoadCredential= would load, readable here (as root's are to root)."""
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    (tmp_path / "token").write_text("tok-secret-value\n")
    folder = tmp_path / "credentials"
    folder.mkdir(mode=0o700)
    (folder / "x_bearer_token").write_text("x-secret-from-etc\n")
    (folder / "sf_password").write_text("sf-secret-from-etc\n")
    return folder


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text.replace("{tmp}", str(tmp_path)))
    return path


def test_an_admin_command_outside_the_unit_reads_the_credentials_directory(
    tmp_path: Path, creds: Path
) -> None:
    path = write(tmp_path, edit(*CRED) + f'\n[secrets]\ncredentials_directory = "{creds}"\n')

    result = CliRunner().invoke(cli, ["--config", str(path), "status"])

    assert result.exit_code == 0, result.output
    assert "secret-from-etc" not in result.output
    loaded = config.load(path)
    assert loaded.crm.password.reveal() == "sf-secret-from-etc"  # type: ignore[attr-defined]
    assert loaded.sources[0].bearer_token.reveal() == "x-secret-from-etc"  # type: ignore[attr-defined]


def test_in_the_unit_credentials_directory_is_systemds(
    tmp_path: Path, creds: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unit = tmp_path / "run-credentials"
    unit.mkdir()
    (unit / "x_bearer_token").write_text("x-secret-from-systemd\n")
    (unit / "sf_password").write_text("sf-secret-from-systemd\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(unit))
    path = write(tmp_path, edit(*CRED) + f'\n[secrets]\ncredentials_directory = "{creds}"\n')

    loaded = config.load(path)

    assert loaded.crm.password.reveal() == "sf-secret-from-systemd"  # type: ignore[attr-defined]


def test_a_credential_missing_outside_the_unit_names_the_file_and_the_key(
    tmp_path: Path, creds: Path
) -> None:
    (creds / "sf_password").unlink()
    path = write(tmp_path, edit(*CRED) + f'\n[secrets]\ncredentials_directory = "{creds}"\n')

    result = CliRunner().invoke(cli, ["--config", str(path), "status"])

    assert result.exit_code == 2
    assert "crm.password: systemd credential sf_password" in result.stderr
    assert f"read from {creds}/sf_password, [secrets] credentials_directory" in result.stderr
    assert "does not exist" in result.stderr


def test_the_default_is_where_the_units_load_them_from(tmp_path: Path, creds: Path) -> None:
    path = write(tmp_path, edit(*CRED))
    result = CliRunner().invoke(cli, ["--config", str(path), "status"])
    if Path("/etc/syncd/credentials/sf_password").exists():
        pytest.skip("this host has real syncd credentials")
    assert result.exit_code == 2
    assert "read from /etc/syncd/credentials/sf_password" in result.stderr
    unit = ROOT / "systemd" / "syncd.service"
    assert "LoadCredential=sf_password:/etc/syncd/credentials/sf_password" in unit.read_text()


def test_credentials_directory_must_be_absolute(tmp_path: Path, creds: Path) -> None:
    path = write(tmp_path, edit(*CRED) + '\n[secrets]\ncredentials_directory = "creds"\n')
    result = CliRunner().invoke(cli, ["--config", str(path), "status"])
    assert result.exit_code == 2
    assert "secrets.credentials_directory: must be an absolute path" in result.stderr
