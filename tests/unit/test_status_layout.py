"""``syncd status`` on a narrow terminal: every source, account and stream name whole."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from support.config import BASE

from syncd.cli import cli
from syncd.state.db import Database
from syncd.state.tables import cursors

AT = datetime(2026, 12, 6, 16, 57, 45, tzinfo=UTC)
# The demo's five sources, as its first poll leaves them (the since_ids are theirs too).
STREAMS = [
    ("acme-bluesky", "acme.bsky.social", "2026-12-06T16:56:45.948752Z|"),
    ("acme-facebook", "100000000000001", "2026-12-06T16:56:45Z"),
    ("acme-instagram", "acme", "2026-12-06T16:56:46Z"),
    ("acme-mastodon", "acme", "0"),
    ("acme-x", "acme", "2129621077146468351"),
    ("acme-x", "acmesupport", "2129621077247131647"),
]
ERROR = "TransientError: Bluesky answered 502 Bad Gateway three times; tried again next poll"


def status(config: Path, columns: int, *args: str) -> str:
    shown = CliRunner().invoke(
        cli, ["--config", str(config), "status", *args], env={"COLUMNS": str(columns)}
    )
    assert shown.exit_code == 0, shown.output
    return shown.output


@pytest.fixture
def config(db: Database, state_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("T_X_BEARER", "bearer-token-value")
    monkeypatch.setenv("T_SF_PASSWORD", "password-value")
    (tmp_path / "token").write_text("security-token-value")
    with db.transaction() as conn:
        for source, account, since_id in STREAMS:
            for stream in ("mentions", "replies"):
                failed = source == "acme-bluesky" and stream == "replies"
                conn.execute(
                    cursors.insert().values(
                        source=source,
                        account=account,
                        stream=stream,
                        since_id=since_id,
                        pagination_token="t" if source == "acme-x" else None,
                        last_success_at=AT,
                        last_error=ERROR if failed else None,
                        updated_at=AT,
                    )
                )
    path = tmp_path / "config.toml"
    state = 'url = "sqlite:///{tmp}/state.db"'
    path.write_text(BASE.replace(state, f'url = "{state_url}"').replace("{tmp}", str(tmp_path)))
    return path


def test_at_80_columns_every_name_is_whole_and_no_line_is_wider(config: Path) -> None:
    shown = status(config, 80)
    lines = shown.splitlines()
    assert max(len(line) for line in lines) <= 80
    words = {word for line in lines for word in line.replace("│", " ").split()}
    for source, account, _ in STREAMS:
        assert {source, account} <= words, (source, account, shown)
    assert {"mentions", "replies", "(mid-walk)"} <= words
    assert "…" not in shown
    # The error is all there, wrapped.
    assert " ".join(ERROR.split()) in " ".join(" ".join(lines).replace("│", " ").split())


def test_a_wide_terminal_keeps_one_row_a_stream_and_json_is_unchanged(config: Path) -> None:
    shown = status(config, 200)
    rows = [line for line in shown.splitlines() if line.startswith("│")]
    assert len(rows) == 2 * len(STREAMS)
    first = [cell.strip() for cell in rows[0].strip("│").split("│")]
    assert first == [
        "acme-bluesky",
        "acme.bsky.social",
        "mentions",
        "2026-12-06T16:56:45.948752Z|",
        "2026-12-06 16:57:45",
        "",
    ]
    assert "source" in shown.splitlines()[1] and "last error" in shown.splitlines()[1]
    got = json.loads(status(config, 80, "--json"))["streams"]
    assert [(s["source"], s["account"], s["stream"]) for s in got] == [
        (source, account, stream)
        for source, account, _ in STREAMS
        for stream in ("mentions", "replies")
    ]
