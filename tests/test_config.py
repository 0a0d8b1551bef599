"""Configuration: every problem at once, with key paths; secrets never shown; exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from syncd import config
from syncd.errors import ConfigError
from syncd.secrets import Secret

ROOT = Path(__file__).parent.parent

GOOD = """
[state]
url = "sqlite:///{tmp}/state.db"

[[sources]]
name = "acme-x"
type = "x"
bearer_token = "env:T_X_BEARER"
api_base_url = "http://127.0.0.1:9"
accounts = ["acme", "@AcmeSupport"]
interval = "2m"

[crm]
type = "salesforce"
login_url = "http://127.0.0.1:9"
username = "u@example.com"
password = "env:T_SF_PASSWORD"
security_token = "file:{tmp}/token"
"""


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("T_X_BEARER", "x-secret-value")
    monkeypatch.setenv("T_SF_PASSWORD", "sf-secret-value")
    (tmp_path / "token").write_text("tok-secret-value\n")
    return tmp_path


def write(tmp: Path, text: str) -> Path:
    path = tmp / "config.toml"
    path.write_text(text.replace("{tmp}", str(tmp)))
    return path


def test_valid_config_parses(env: Path) -> None:
    s = config.load(write(env, GOOD))
    src = s.sources[0]
    assert src.accounts == ["acme", "AcmeSupport"]
    assert src.interval == 120.0
    assert [str(x) for x in src.streams] == ["mentions", "replies"]
    assert s.crm.name == "salesforce"
    token = src.bearer_token  # type: ignore[attr-defined]
    assert isinstance(token, Secret) and token.reveal() == "x-secret-value"
    assert "x-secret-value" not in repr(s)
    assert "sf-secret-value" not in repr(s) and "tok-secret-value" not in repr(s)


def test_every_problem_is_reported_with_its_key_path(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("T_SF_PASSWORD")
    bad = (
        GOOD.replace('accounts = ["acme", "@AcmeSupport"]', "accounts = []")
        .replace('interval = "2m"', 'interval = "soon"\nbogus = 1')
        .replace('login_url = "http://127.0.0.1:9"', 'login_url = "http://127.0.0.1:9"\npage = 3')
    )
    with pytest.raises(ConfigError) as info:
        config.load(write(env, bad))
    problems = dict(info.value.problems)
    assert problems["sources[0].accounts"] == "must be a non-empty list"
    assert "duration" in problems["sources[0].interval"]
    assert problems["sources[0].bogus"] == "unknown key"
    assert problems["crm.page"] == "unknown key"
    assert "T_SF_PASSWORD is not set" in problems["crm.password"]


def test_missing_sections_and_unknown_types(env: Path) -> None:
    with pytest.raises(ConfigError) as info:
        config.parse({"sources": [{"type": "myspace", "name": "a"}]}, Path("c.toml"))
    problems = dict(info.value.problems)
    assert "unknown source type 'myspace'" in problems["sources[0].type"]
    assert problems["crm"] == "is required: a [crm] table"


def test_placeholders_refuse_to_start(env: Path) -> None:
    with pytest.raises(ConfigError) as info:
        config.load(write(env, GOOD.replace('"acme", "@AcmeSupport"', '"CHANGE_ME"')))
    assert ("sources[0].accounts[0]", "is still a placeholder: set a real value") in (
        info.value.problems
    )


def test_example_config_is_complete_but_refuses_placeholders(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("X_BEARER_TOKEN", "SF_PASSWORD", "SF_TOKEN"):
        monkeypatch.setenv(name, "s3cret")
    with pytest.raises(ConfigError) as info:
        config.load(ROOT / "config.example.toml")
    # Only the placeholders are wrong: every documented key is a real key.
    assert {p for p, _ in info.value.problems} == {"sources[0].accounts[0]", "crm.username"}


def test_cli_exits_2_without_traceback(env: Path) -> None:
    path = write(env, GOOD.replace('accounts = ["acme", "@AcmeSupport"]', "accounts = []"))
    proc = subprocess.run(
        [sys.executable, "-m", "syncd", "--config", str(path), "status"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "sources[0].accounts: must be a non-empty list" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("plain-password", "must be a secret reference"),
        ("env:NOPE_NOT_SET", "is not set"),
        ("file:/nonexistent/x", "does not exist"),
        ("cred:x", "CREDENTIALS_DIRECTORY"),
    ],
)
def test_secret_references(ref: str, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(ValueError, match=message):
        Secret(ref).reveal()


def test_systemd_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "sf_password").write_text("hunter2\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    secret = Secret("cred:sf_password")
    assert secret.reveal() == "hunter2"
    assert "hunter2" not in repr(secret) and "hunter2" not in str(secret)
