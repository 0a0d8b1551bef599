"""Configuration: every problem at once, with key paths; secrets never shown; exit code 2."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, field_validator
from support import ROOT

from syncd.config import problems as config_problems
from syncd.config import settings as config
from syncd.contracts import parse_duration, start_moment
from syncd.contracts.secrets import Secret
from syncd.errors import ConfigError

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
    assert problems["sources[0].bogus"].startswith("unknown key")
    assert problems["crm.page"].startswith("unknown key")
    assert "T_SF_PASSWORD is not set" in problems["crm.password"]


def test_missing_sections_and_unknown_types(env: Path) -> None:
    with pytest.raises(ConfigError) as info:
        config.parse({"sources": [{"type": "myspace", "name": "a"}]}, Path("c.toml"))
    problems = dict(info.value.problems)
    assert "unknown source type 'myspace'" in problems["sources[0].type"]
    assert problems["crm"] == "is required: add a [crm] table (type = salesforce)"


def test_placeholders_refuse_to_start(env: Path) -> None:
    with pytest.raises(ConfigError) as info:
        config.load(write(env, GOOD.replace('"acme", "@AcmeSupport"', '"CHANGE_ME"')))
    assert ("sources[0].accounts[0]", config_problems.PLACEHOLDER_MESSAGE) in info.value.problems


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


# -- durations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        *[("250ms", 0.25), ("60s", 60.0), (" 5m ", 300.0), ("1h", 3600.0), ("1d", 86400.0)],
        *[("1.5h", 5400.0), ("90", 90.0), (45, 45.0), (0.5, 0.5)],
    ],
)
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("10 parsecs", "unknown unit 'parsecs'"),
        ("5M", "did you mean '5m'?"),
        ("10 sec", "did you mean '10s'?"),
        ("1h30", "one unit, e.g. '90m'"),
        ("1h30m", "one unit"),
        ("soon", "'soon' is not a duration"),
        ("", "is not a duration"),
        ("-5s", "must be greater than zero, got '-5s'"),
        (-1, "must be greater than zero, got -1"),
        (0, "must be greater than zero"),
        ("0s", "must be greater than zero"),
        (float("inf"), "must be a finite duration"),
        (float("nan"), "must be a finite duration"),
        (10**12, "must be at most '365d'"),
        (True, "not a boolean"),
        ([1], "not a list"),
        ("x" * 500, "…' is not a duration"),
    ],
)
def test_bad_durations_say_why_and_show_the_valid_forms(value: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(value)
    text = str(info.value)
    assert message in text
    assert "'60s'" in text or "365d" in text  # the valid forms, or the limit
    assert "\n" not in text and len(text) < 250


def test_zero_jitter_means_none_but_negative_is_refused(env: Path) -> None:
    s = config.load(write(env, GOOD + "\n[daemon]\njitter = 0\n"))
    assert s.daemon.jitter == 0.0
    with pytest.raises(ConfigError) as info:
        config.load(write(env, GOOD + '\n[daemon]\njitter = "-1s"\n'))
    assert [p for p, _ in info.value.problems] == ["daemon.jitter"]
    assert "must be zero or more" in info.value.problems[0][1]


# -- secret references ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("file:", "needs a name after the scheme"),
        ("env:", "needs a name after the scheme"),
        ("env:not a name!", "must name an environment variable"),
        ("cred:../../etc/shadow", "must name a systemd credential"),
        ("file:relative/token", "absolute path"),
        ("vault:abc", "must be a secret reference"),
    ],
)
def test_malformed_secret_references_never_quote_themselves(ref: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        Secret(ref)
    assert ref.partition(":")[2] not in str(info.value) or not ref.partition(":")[2]


def test_unreadable_secret_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "empty").write_text("  \n")
    (tmp_path / "latin1").write_bytes(b"caf\xe9-secret")
    monkeypatch.setenv("T_EMPTY", "")
    cases = {
        f"file:{tmp_path}/empty": f"file {tmp_path}/empty is empty",
        f"file:{tmp_path}": f"file {tmp_path} is a directory, not a file",
        f"file:{tmp_path}/latin1": f"file {tmp_path}/latin1 is not UTF-8 text",
        "env:T_EMPTY": "environment variable T_EMPTY is empty",
    }
    for ref, message in cases.items():
        with pytest.raises(ValueError) as info:
            Secret(ref).reveal()
        assert str(info.value) == message
        assert "caf" not in str(info.value)


def test_permission_denied_names_the_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # chmod 000 does not stop root, so the refusal is simulated where the OS would raise it.
    target = tmp_path / "token"
    target.write_text("tok-secret-value")

    def denied(self: Path, *args: object, **kwargs: object) -> str:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", denied)
    with pytest.raises(ValueError, match=rf"file {target} is not readable by uid \d+$"):
        Secret(f"file:{target}").reveal()


def test_missing_systemd_credential(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    with pytest.raises(ValueError, match="systemd credential sf_password does not exist"):
        Secret("cred:sf_password").reveal()


def test_a_placeholder_secret_reference_is_reported_once(env: Path) -> None:
    bad = GOOD.replace('"env:T_X_BEARER"', '"env:CHANGE_ME"')
    with pytest.raises(ConfigError) as info:
        config.load(write(env, bad))
    assert info.value.problems == [("sources[0].bearer_token", config_problems.PLACEHOLDER_MESSAGE)]


# -- how problems are reported ------------------------------------------------------------------


def test_union_branches_become_one_problem_at_the_real_key() -> None:
    class Model(BaseModel):
        model_config = ConfigDict(extra="forbid")
        limit: int | str

    problems: list[tuple[str, str]] = []
    assert config_problems.validate(Model, {"limit": [1]}, "x", problems) is None
    assert problems == [("x.limit", "must be an integer or a string")]


def test_unknown_keys_without_a_close_match_list_small_tables(env: Path) -> None:
    with pytest.raises(ConfigError) as info:
        config.load(write(env, GOOD + "\n[logging]\nzzz = 1\n"))
    assert info.value.problems == [("logging.zzz", "unknown key (known: level, format)")]


def test_quoted_keys_are_shown_quoted_and_on_one_line(env: Path) -> None:
    with pytest.raises(ConfigError) as info:
        config.load(write(env, GOOD + '\n[logging]\n"two\\nlines" = 1\n'))
    assert info.value.problems == [('logging."two\\nlines"', "unknown key (known: level, format)")]
    assert str(info.value).count("\n") == 0


def test_problems_follow_the_order_of_the_file(env: Path) -> None:
    bad = GOOD.replace('interval = "2m"', 'interval = "2 parsecs"').replace(
        "[state]", '[logging]\nlevel = "loud"\n\n[state]'
    )
    with pytest.raises(ConfigError) as info:
        config.load(write(env, bad + "\n[writer]\nretries = -1\n"))
    paths = [p for p, _ in info.value.problems]
    assert paths == ["logging.level", "sources[0].interval", "writer.retries"]


def test_one_problem_is_one_line_several_are_one_line_each() -> None:
    one = ConfigError([("crm.password", "environment variable X is not set")], source="c.toml")
    assert str(one) == (
        "invalid configuration in c.toml: crm.password: environment variable X is not set"
    )
    two = ConfigError([("a", "x"), ("b", "y")])
    assert str(two) == "invalid configuration (2 problems):\n  a: x\n  b: y"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[daemon]\njitter = 5s\n", "daemon.jitter: not valid TOML at line 2, column 11"),
        ("[[sources]]\n[[sources]]\nname = a\n", "sources[1].name: not valid TOML at line 3"),
        ('[crm]\npassword = "abc\n', "crm.password: not valid TOML at line 2"),
        ("a = [1,\n", "a: not valid TOML at line 1 (end of file)"),
        ("[state\n", "not valid TOML at line 1"),
    ],
)
def test_toml_syntax_errors_name_the_line_and_key(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.load(write(tmp_path, text))
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_config_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'[crm]\n\nusername = "caf\xe9"\n')
    with pytest.raises(ConfigError, match="line 3: not UTF-8 text"):
        config.load(path)


def test_config_path_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        config.load(tmp_path)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "must be a database URL"),
        ("mysql://u:db-pw@h/db", "database 'mysql' is not supported"),
        ("sqlite://", "in-memory SQLite"),
        ("sqlite:///:memory:", "in-memory SQLite"),
    ],
)
def test_state_url_is_checked_without_echoing_it(env: Path, url: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.load(write(env, GOOD.replace('url = "sqlite:///{tmp}/state.db"', f'url = "{url}"')))
    (problem,) = info.value.problems
    assert problem[0] == "state.url" and message in problem[1]
    assert "db-pw" not in str(info.value)


def test_messages_never_echo_secret_inputs_or_url_credentials() -> None:
    # A connector's validator that quotes its input must not leak a secret through config.py.
    class Model(BaseModel):
        model_config = ConfigDict(extra="forbid")
        api_password: str
        url: str

        @field_validator("api_password", "url")
        @classmethod
        def _echo(cls, value: str) -> str:
            raise ValueError(f"bad value {value!r}")

    problems: list[tuple[str, str]] = []
    data = {"api_password": "pw", "url": "https://tok3n-in-url@h/x"}
    config_problems.validate(Model, data, "x", problems)
    assert problems == [
        ("x.api_password", "bad value '***'"),
        ("x.url", "bad value 'https://***@h/x'"),
    ]


# -- a source's start ----------------------------------------------------------------------------
START_NOW = datetime(2026, 12, 6, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("line", "moment"),
    [
        ("", START_NOW),  # "now", the default: the moment of the first walk
        ('start = "now"', START_NOW),
        ('start = "7d"', START_NOW - timedelta(days=7)),
        ('start = "2026-11-01"', datetime(2026, 11, 1, tzinfo=UTC)),
        ('start = "2026-11-01T08:00:00+02:00"', datetime(2026, 11, 1, 6, tzinfo=UTC)),
    ],
)
def test_a_sources_start_names_the_moment_its_first_walk_reads_back_to(
    env: Path, line: str, moment: datetime
) -> None:
    s = config.load(write(env, GOOD.replace('interval = "2m"', f'interval = "2m"\n{line}')))
    assert start_moment(s.sources[0].start, START_NOW) == moment


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"yesterday"', "'yesterday' is not a start: use 'now', a duration"),
        ('"-7d"', "is not a start"),
        ("2026-11-01", "is a TOML date/time, which no setting takes (put text in quotes)"),
    ],
)
def test_a_bad_start_is_refused_with_the_forms_it_takes(
    env: Path, value: str, message: str
) -> None:
    text = GOOD.replace('interval = "2m"', f'interval = "2m"\nstart = {value}')
    with pytest.raises(ConfigError) as info:
        config.load(write(env, text))
    assert [p for p, _ in info.value.problems] == ["sources[0].start"]
    assert message in info.value.problems[0][1]
