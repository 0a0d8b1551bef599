"""Malformed configurations, driven through the real CLI: exit code 2, no traceback, and each
problem on exactly one line that names its key. One row per malformed config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from support import ROOT
from support.config import BASE, Case, check, edit

import connectors
from syncd.cli import cli
from syncd.errors import ConfigError

KNOWN = sorted(connectors.SOURCES)  # the source types the registry offers, as messages list them

SOURCE_BLOCK = BASE[BASE.index("[[sources]]") : BASE.index("[crm]")]
CRM_BLOCK = BASE[BASE.index("[crm]") :]


def _example() -> str:
    return (
        (ROOT / "config.example.toml")
        .read_text()
        .replace('url = "sqlite:////var/lib/syncd/state.db"', 'url = "sqlite:///{tmp}/state.db"')
    )


def user_auth(key: str, body: str) -> str:
    """BASE with a [sources.user_auth.KEY] table holding ``body``."""
    return edit(('interval = "2m"\n', f'interval = "2m"\n\n[sources.user_auth.{key}]\n{body}'))


OAUTH2 = 'type = "oauth2"\nclient_id = "cid"\ntoken_file = "{tmp}/x-acme.json"\n'


def _unreadable(tmp: Path) -> None:
    secret = tmp / "locked"
    secret.write_text("tok-secret-value\n")
    secret.chmod(0)


AS_ROOT = pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads a chmod 000 file anyway"
)

CASES = [
    # -- structure ----------------------------------------------------------------------
    Case("missing-crm", BASE.replace(CRM_BLOCK, ""), [("crm", "is required: add a [crm] table")]),
    Case(
        "missing-sources",
        BASE.replace(SOURCE_BLOCK, ""),
        [("sources", f"is required: add a [[sources]] table (type = {', '.join(KNOWN)})")],
    ),
    Case(
        "sources-single-brackets",
        edit(("[[sources]]", "[sources]")),
        [("sources", "must be [[sources]] tables (double brackets)")],
    ),
    Case("crm-double-brackets", edit(("[crm]", "[[crm]]")), [("crm", "must be one [crm] table")]),
    Case(
        "source-missing-type",
        edit(('type = "x"\n', "")),
        [("sources[0].type", "is required: one of " + ", ".join(repr(k) for k in KNOWN))],
    ),
    Case(
        "unknown-source-type",
        edit(('type = "x"', 'type = "twitter"')),
        [("sources[0].type", f"unknown source type 'twitter' (known: {', '.join(KNOWN)})")],
    ),
    Case(
        "unknown-crm-type",
        edit(('type = "salesforce"', 'type = "salesforse"')),
        [("crm.type", "unknown crm type 'salesforse' (known: salesforce); did you mean")],
    ),
    Case(
        "duplicate-source-names",
        BASE.replace(CRM_BLOCK, SOURCE_BLOCK + CRM_BLOCK),
        [("sources[1].name", "'acme-x' is already the name of sources[0]")],
    ),
    Case(
        "source-missing-name",
        edit(('name = "acme-x"\n', "")),
        [("sources[0].name", "is required")],
    ),
    Case(
        "crm-without-auth",
        edit(('password = "env:T_SF_PASSWORD"\n', ""), ("security_token", "# security_token")),
        [("crm", "no Salesforce auth method configured")],
    ),
    # -- unknown keys, with a did-you-mean from the model's own field names ---------------
    Case(
        "unknown-top-level-key",
        edit(("[daemon]", "[deamon]")),
        [("deamon", "unknown key; did you mean 'daemon'?")],
    ),
    Case(
        "top-level-key-above-its-table",
        "jitter = 1\n" + BASE,
        [("jitter", "unknown key at the top level; did you mean it in [daemon]?")],
    ),
    Case(
        "unknown-daemon-key",
        edit(("write_interval", "write_intervall")),
        [("daemon.write_intervall", "unknown key; did you mean 'write_interval'?")],
    ),
    Case(
        "unknown-state-key",
        edit(("url =", "ulr =")),
        [("state.ulr", "unknown key; did you mean 'url'?")],
    ),
    Case(
        "unknown-resolver-writer-logging-keys",
        BASE + "[resolver]\nretry_afer = 5\n[writer]\nbatchsize = 5\n[logging]\nlevle = 'INFO'\n",
        [
            ("resolver.retry_afer", "unknown key; did you mean 'retry_after'?"),
            ("writer.batchsize", "unknown key; did you mean 'batch_size'?"),
            ("logging.levle", "unknown key; did you mean 'level'?"),
        ],
    ),
    Case(
        "unknown-source-key",
        edit(("page_size = 100", "pagesize = 100")),
        [("sources[0].pagesize", "unknown key; did you mean 'page_size'?")],
    ),
    Case(
        "unknown-crm-key",
        edit(("login_url =", "login_uri =")),
        [("crm.login_uri", "unknown key; did you mean 'login_url'?")],
    ),
    Case(
        "unknown-crm-nested-key",
        BASE + "[crm.task_fields]\nnetwrk = 'Network__c'\n",
        [("crm.task_fields.netwrk", "unknown key; did you mean 'network'?")],
    ),
    # -- [crm.priority] ---------------------------------------------------------------------
    Case(
        "priority-default-unmapped",
        BASE + '[crm.priority]\ntask = { High = "High", Low = "Low" }\ndefault = "Gold"\n',
        [("crm.priority.default", "'Gold' is not a value the task map names ('High', 'Low')")],
    ),
    Case(
        "priority-maps-nothing",
        BASE + '[crm.priority]\nfield = "Account.SLA__c"\n',
        [("crm.priority", "maps nothing: give task (and/or case)")],
    ),
    Case(
        "priority-field-path",
        BASE + '[crm.priority]\nfield = "Account.Owner.Tier__c"\ntask = { A = "High" }\n',
        [("crm.priority.field", "is not a field of the person or of its Account")],
    ),
    Case(
        "priority-same-value-twice",
        BASE + '[crm.priority]\ntask = { High = "High", high = "Normal" }\n',
        [("crm.priority.task", "'High' and 'high' are the same value (case is ignored)")],
    ),
    Case(
        "priority-per-network",
        BASE + '[crm.priority]\ntask = { High = "High" }\nx = "High"\n',
        [("crm.priority.x", "unknown key")],
    ),
    # -- wrong types ----------------------------------------------------------------------
    Case(
        "string-for-int",
        edit(("page_size = 100", 'page_size = "100"')),
        [("sources[0].page_size", "must be an integer, not a string")],
    ),
    Case(
        "bool-for-int",
        BASE + "[writer]\nretries = true\n",
        [("writer.retries", "must be an integer, not a boolean")],
    ),
    Case(
        "list-for-table",
        BASE + "task_fields = ['Network__c']\n",
        [("crm.task_fields", "must be a table, not a list")],
    ),
    Case(
        "scalar-for-section",
        "daemon = 5\n" + BASE.replace('[daemon]\nwrite_interval = "10s"\n', ""),
        [("daemon", "must be a table ([daemon]), not an integer")],
    ),
    Case(
        "string-for-list",
        edit(('accounts = ["acme"]', 'accounts = "acme"')),
        [("sources[0].accounts", "must be a list, not a string")],
    ),
    Case(
        "number-for-string",
        edit(('username = "u@example.com"', "username = 42")),
        [("crm.username", "must be a string, not an integer (put text in quotes)")],
    ),
    Case(
        "date-for-string",
        edit(('username = "u@example.com"', "username = 2024-01-01")),
        [("crm.username", "is a TOML date/time")],
    ),
    Case(
        "wrong-case-choice",
        BASE + "[logging]\nlevel = 'info'\n",
        [("logging.level", "must be one of 'DEBUG', 'INFO', 'WARNING', 'ERROR', not 'info'")],
    ),
    Case(
        "unknown-stream",
        edit(('accounts = ["acme"]', 'accounts = ["acme"]\nstreams = ["mention"]')),
        [("sources[0].streams[0]", "did you mean 'mentions'?")],
    ),
    # -- durations ------------------------------------------------------------------------
    Case(
        "bad-duration-unit",
        edit(('interval = "2m"', 'interval = "10 parsecs"')),
        [("sources[0].interval", "unknown unit 'parsecs' (use a number of seconds")],
    ),
    Case(
        "negative-duration",
        edit(('write_interval = "10s"', 'write_interval = "-5s"')),
        [("daemon.write_interval", "must be greater than zero, got '-5s': use")],
    ),
    Case(
        "zero-duration",
        edit(('interval = "2m"', "interval = 0")),
        [("sources[0].interval", "must be greater than zero")],
    ),
    Case(
        "compound-duration",
        BASE + "[resolver]\nretry_after = '1h30'\n",
        [("resolver.retry_after", "write it with one unit, e.g. '90m'")],
    ),
    Case(
        "duration-unit-spelled-out",
        edit(('interval = "2m"', 'interval = "2 minutes"')),
        [("sources[0].interval", "did you mean '2m'?")],
    ),
    Case(
        "backoff-shorter-than-first-retry",
        BASE + "[resolver]\nretry_after = '1h'\nmax_retry_after = '5m'\n",
        [("resolver.max_retry_after", "must not be shorter than retry_after")],
    ),
    # -- values out of range, bad URLs -----------------------------------------------------
    Case(
        "page-size-out-of-range",
        edit(("page_size = 100", "page_size = 500")),
        [("sources[0].page_size", "must be at most 100, not 500")],
    ),
    Case(
        "empty-accounts",
        edit(('accounts = ["acme"]', "accounts = []")),
        [("sources[0].accounts", "must be a non-empty list")],
    ),
    Case(
        "bad-api-base-url-with-password",
        edit(('api_base_url = "http://127.0.0.1:9"', 'api_base_url = "ftp://me:pw-in-url@h"')),
        [("sources[0].api_base_url", "must be an absolute http(s) URL")],
        hidden=("pw-in-url",),
    ),
    Case(
        "bad-instance-url-echoed-without-password",
        BASE + 'instance_url = "ftp://me:pw-in-url@h"\n',
        [("crm.instance_url", "must be an http:// or https:// URL, got 'ftp://***@h'")],
        hidden=("pw-in-url",),
    ),
    Case(
        "bad-state-url",
        edit(('url = "sqlite:///{tmp}/state.db"', 'url = "postgres://syncd:db-pw@db/syncd"')),
        [("state.url", "database 'postgres' is not supported")],
        hidden=("db-pw",),
    ),
    Case(
        "huge-value-is-clipped",
        BASE + f'history_object = "{"A" * 5000}!"\n',
        [("crm.history_object", "is not a Salesforce API name")],
    ),
    # -- secret references: named, never shown ---------------------------------------------
    Case(
        "missing-secret-file",
        edit(("file:{tmp}/token", "file:{tmp}/nope")),
        [("crm.security_token", "file {tmp}/nope does not exist")],
    ),
    Case(
        "secret-file-is-a-directory",
        edit(("file:{tmp}/token", "file:{tmp}")),
        [("crm.security_token", "is a directory, not a file")],
    ),
    Case(
        "empty-secret-file",
        edit(("file:{tmp}/token", "file:{tmp}/empty")),
        [("crm.security_token", "file {tmp}/empty is empty")],
        setup=lambda tmp: (tmp / "empty").write_text("\n"),
    ),
    Case(
        "unreadable-secret-file",
        edit(("file:{tmp}/token", "file:{tmp}/locked")),
        [("crm.security_token", "is not readable by uid")],
        setup=_unreadable,
        marks=(AS_ROOT,),
    ),
    Case(
        "relative-secret-file",
        edit(("file:{tmp}/token", "file:token")),
        [("crm.security_token", "absolute path")],
    ),
    Case(
        "unset-env-var",
        BASE,
        [("crm.password", "environment variable T_SF_PASSWORD is not set")],
        env={"T_SF_PASSWORD": None},
    ),
    Case(
        "cred-without-credentials-directory",
        edit(('"env:T_SF_PASSWORD"', '"cred:sf_password"')),
        [("crm.password", "$CREDENTIALS_DIRECTORY is not set")],
        env={"CREDENTIALS_DIRECTORY": None},
    ),
    Case(
        "secret-written-in-clear",
        edit(('"env:T_SF_PASSWORD"', '"plain-pw-1234"')),
        [("crm.password", "must be a secret reference")],
        hidden=("plain-pw-1234",),
    ),
    Case(
        "secret-of-wrong-type",
        edit(('"env:T_X_BEARER"', "987654321")),
        [("sources[0].bearer_token", "must be a secret reference in quotes")],
        hidden=("987654321",),
    ),
    # -- per-account user credentials (owned reads) ----------------------------------------
    Case(
        "user-auth-for-an-unknown-account",
        user_auth("acmee", OAUTH2),
        [("sources[0].user_auth", "'acmee' is not one of this source's accounts; did you mean")],
    ),
    Case(
        "user-auth-without-type",
        user_auth("acme", OAUTH2.replace('type = "oauth2"\n', "")),
        [("sources[0].user_auth.acme.type", "is required: one of 'oauth1', 'oauth2'")],
    ),
    Case(
        "user-auth-unknown-type",
        user_auth("acme", OAUTH2.replace('"oauth2"', '"oauth_2"')),
        [("sources[0].user_auth.acme.type", "not 'oauth_2'; did you mean 'oauth2'?")],
    ),
    Case(
        "user-auth-oauth1-keys",
        user_auth(
            "acme",
            'type = "oauth1"\nconsumer_key = "env:T_X_BEARER"\n'
            'consumer_secret = "cs-plain-S3CRET"\naccess_token = "env:T_X_BEARER"\n'
            'acces_token_secret = "env:T_X_BEARER"\n',
        ),
        [
            ("sources[0].user_auth.acme.access_token_secret", "is required"),
            ("sources[0].user_auth.acme.consumer_secret", "must be a secret reference"),
            (
                "sources[0].user_auth.acme.acces_token_secret",
                "unknown key; did you mean 'access_token_secret'?",
            ),
        ],
        hidden=("cs-plain-S3CRET",),
    ),
    Case(
        "user-auth-relative-token-file",
        user_auth("acme", OAUTH2.replace("{tmp}/x-acme.json", "x-acme.json")),
        [("sources[0].user_auth.acme.token_file", "must be an absolute path")],
    ),
    # -- placeholders, syntax, the file itself ---------------------------------------------
    Case(
        "placeholder-left",
        edit(('username = "u@example.com"', 'username = "CHANGE_ME@example.com"')),
        [("crm.username", "is still CHANGE_ME from config.example.toml")],
    ),
    Case(
        "example-copied-unchanged",
        _example(),
        [
            ("sources[0].accounts[0]", "is still CHANGE_ME"),
            ("crm.username", "is still CHANGE_ME"),
        ],
        env={"X_BEARER_TOKEN": "x-secret-value", "SF_PASSWORD": "s", "SF_TOKEN": "t"},
    ),
    Case(
        "example-copied-unchanged-without-its-secrets",
        _example(),
        [
            ("sources[0].bearer_token", "environment variable X_BEARER_TOKEN is not set"),
            ("sources[0].accounts[0]", "is still CHANGE_ME"),
            ("crm.username", "is still CHANGE_ME"),
            ("crm.password", "environment variable SF_PASSWORD is not set"),
            ("crm.security_token", "environment variable SF_TOKEN is not set"),
        ],
        env={"X_BEARER_TOKEN": None, "SF_PASSWORD": None, "SF_TOKEN": None},
    ),
    Case(
        "invalid-toml-syntax",
        edit(('interval = "2m"', "interval = 2 m")),
        [("sources[0].interval", "not valid TOML at line 14, column 14")],
    ),
    Case(
        "duplicate-toml-key",
        edit(('interval = "2m"', 'interval = "2m"\ninterval = "3m"')),
        [("sources[0].interval", "not valid TOML at line 15")],
    ),
    Case("config-file-missing", None, [("", "config file {tmp}/config.toml does not exist")]),
]


@pytest.fixture
def tmp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("T_X_BEARER", "x-secret-value")
    monkeypatch.setenv("T_SF_PASSWORD", "sf-secret-value")
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    (tmp_path / "token").write_text("tok-secret-value\n")
    return tmp_path


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_malformed_config_exits_2_with_one_line_per_problem(
    case: Case, tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in case.env.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    if case.setup:
        case.setup(tmp)
    path = tmp / "config.toml"
    if case.toml is not None:
        path.write_text(case.toml.replace("{tmp}", str(tmp)))
    result = CliRunner().invoke(cli, ["--config", str(path), "status"])
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    check(result.stderr, case, tmp)


def test_there_are_at_least_15_distinct_malformed_configs() -> None:
    assert len({c.id for c in CASES}) == len(CASES) >= 15


def test_the_base_config_is_valid(tmp: Path) -> None:
    path = tmp / "config.toml"
    path.write_text(BASE.replace("{tmp}", str(tmp)))
    result = CliRunner().invoke(cli, ["--config", str(path), "status", "--json"])
    assert result.exit_code == 0, result.output


def test_many_problems_at_once_through_the_installed_script(tmp: Path) -> None:
    """The real console script, in its own process: the exit code is the one a shell sees."""
    text = edit(
        ("write_interval", "write_intervall"),
        ("page_size = 100", "page_size = 500"),
        ('interval = "2m"', 'interval = "10 parsecs"'),
        ('"env:T_SF_PASSWORD"', '"env:T_UNSET_FOR_SURE"'),
    )
    path = tmp / "config.toml"
    path.write_text(text.replace("{tmp}", str(tmp)))
    script = Path(sys.executable).parent / "syncd"
    env = {k: v for k, v in os.environ.items() if k != "T_UNSET_FOR_SURE"}
    proc = subprocess.run(
        [str(script), "--config", str(path), "poll", "--once"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    case = Case(
        "many",
        text,
        [
            ("daemon.write_intervall", "did you mean 'write_interval'?"),
            ("sources[0].page_size", "must be at most 100"),
            ("sources[0].interval", "unknown unit 'parsecs'"),
            ("crm.password", "environment variable T_UNSET_FOR_SURE is not set"),
        ],
    )
    check(proc.stderr, case, tmp)


def test_problem_text_is_flattened_and_clipped() -> None:
    err = ConfigError([("a\nb", "line one\nline two\r\n\tthree"), ("c", "x" * 10_000)])
    assert err.problems[0] == ("a b", "line one line two three")
    assert len(err.problems[1][1]) == 400 and err.problems[1][1].endswith("…")
    assert str(err).count("\n") == 2  # a header and one line per problem
