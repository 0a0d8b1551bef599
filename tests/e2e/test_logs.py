"""Log lines an operator (and journald, and a log shipper) can read; never a secret."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.e2e import Daemon, World, make_world, tasks, wait_for

from sandbox.seed import seed
from syncd.contracts import redaction
from syncd.service import logs


def record(level: int, msg: str, *args: object, exc: bool = False) -> logging.LogRecord:
    info = None
    if exc:
        try:
            raise RuntimeError("boom with password=hunter2hunter2")
        except RuntimeError:
            import sys

            info = sys.exc_info()
    return logging.LogRecord("syncd.x.acme", level, __file__, 1, msg, args, info)


def test_json_is_one_object_per_line_with_the_promised_keys() -> None:
    line = logs.JsonFormatter().format(
        record(logging.ERROR, "poll %s failed", "mentions", exc=True)
    )
    assert "\n" not in line
    entry = json.loads(line)
    assert set(entry) == {"time", "level", "logger", "message", "exception"}
    assert entry["level"] == "ERROR" and entry["logger"] == "syncd.x.acme"
    assert entry["message"] == "poll mentions failed"
    assert entry["time"].endswith("+00:00")
    assert "RuntimeError" in entry["exception"] and "hunter2" not in entry["exception"]


def test_journal_lines_carry_the_syslog_priority_and_no_timestamp() -> None:
    fmt = logs.JournalFormatter()
    assert fmt.format(record(logging.WARNING, "slow")) == "<4>syncd.x.acme: slow"
    assert fmt.format(record(logging.INFO, "ok")) == "<6>syncd.x.acme: ok"
    assert fmt.format(record(logging.DEBUG, "detail")).startswith("<7>")
    assert fmt.format(record(logging.CRITICAL, "dead")).startswith("<2>")
    lines = fmt.format(record(logging.ERROR, "crashed", exc=True)).splitlines()
    # journald makes one entry per line: each traceback line keeps the error priority.
    assert len(lines) > 2 and all(line.startswith("<3>") for line in lines)


def test_auto_picks_the_journal_only_when_stderr_is_the_journal_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open(tmp_path / "stream", "w") as stream:
        st = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert isinstance(logs.formatter("auto", stream), logs.JournalFormatter)
        assert isinstance(logs.formatter("json", stream), logs.JsonFormatter)
        assert isinstance(logs.formatter("human", stream), logs.HumanFormatter)
        # Inherited by a process whose stderr went elsewhere: not the journal.
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino + 1}")
        assert isinstance(logs.formatter("auto", stream), logs.HumanFormatter)
    monkeypatch.delenv("JOURNAL_STREAM")
    assert isinstance(logs.formatter("auto", io.StringIO()), logs.HumanFormatter)


def test_human_lines_have_a_timestamp_and_the_level() -> None:
    line = logs.HumanFormatter(date=True).format(record(logging.WARNING, "slow"))
    assert "WARNING syncd.x.acme: slow" in line
    assert line[:4].isdigit() and line[4] == "-"


def test_configured_secrets_and_credential_shapes_are_redacted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    redaction.protect(["s3cret-value-1", "ab"])  # too short to redact safely: ignored
    text = redaction.redact(
        "login with s3cret-value-1; Authorization: Bearer AAAA%2Fxyz; "
        "sid 00D5g000004XYZa!AQ4AQFAKESESSION; ?password=pw123&pagination_token=next1"
    )
    assert "s3cret-value-1" not in text and "AAAA" not in text and "FAKESESSION" not in text
    assert "pw123" not in text
    assert "pagination_token=next1" in text  # not a credential
    assert "ab" in redaction.redact("tab")


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with make_world(f"sqlite:///{tmp_path / 'state.db'}", tmp_path, monkeypatch) as w:
        yield w


def test_log_format_json_for_the_whole_daemon_and_no_secret_in_it(world: World) -> None:
    people = seed(world.x, world.sf, customers=5)
    customer = next(c for c in people.customers if c.kind != "unknown")
    post = world.x.add_post(customer.user_id, "@acme hello")
    daemon = Daemon(world.config, "--log-format", "json", "--log-level", "DEBUG")
    try:
        wait_for(lambda: f"x:{post['id']}" in tasks(world.sf), what="the Task")
        wait_for(lambda: '"syncd.x.acme"' in daemon.log, what="a line from the account logger")
    finally:
        code = daemon.stop()
    assert code == 0, daemon.log
    entries = [json.loads(line) for line in daemon.log.splitlines()]
    assert {e["logger"] for e in entries} >= {"syncd.daemon", "syncd.x.acme"}
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    for secret in ("e2e-bearer", "sandbox-password", "sandbox-token"):
        assert secret not in daemon.log
