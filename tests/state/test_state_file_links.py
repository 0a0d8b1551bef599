"""Issue 16, item 14: commands run as root never act through a link the service's user planted
in its state directory.

Each test plants a symbolic link at a state file's name (the token file's lock, the OAuth
authorization waiting beside the token file, the SQLite database and its WAL, the instance
lock), pointing at a victim file, and runs what touches that name: the command fails with a
message naming the link, and the victim's mode, owner and content are as they were. As root
(CI runs as root too) the directory belongs to another user, as the service's does; the
hard-link and foreign-owner refusals only apply to root.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from support.e2e import config_text

from connectors.x.auth.token_file import TokenFile, TokenFileProblem, UserToken
from syncd.cli import cli
from syncd.state.db import Database, StateError
from syncd.state.lock import AlreadyRunning, InstanceLock

ROOT = os.geteuid() == 0
SERVICE_UID = 4242  # the service's (dynamic) user, when the tests run as root
as_root = pytest.mark.skipif(not ROOT, reason="only root is refused hard links and others' files")


@dataclass(frozen=True)
class Victim:
    path: Path
    before: tuple[int, int, int, bytes]

    def untouched(self) -> bool:
        return self.state() == self.before

    def state(self) -> tuple[int, int, int, bytes]:
        st = self.path.stat()
        return stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, self.path.read_bytes()


@pytest.fixture
def victim(tmp_path: Path) -> Victim:
    """A file outside the state directory, world-readable, as /etc/passwd is (root's)."""
    path = tmp_path / "elsewhere" / "victim"
    path.parent.mkdir()
    path.write_bytes(b"precious: not syncd's\n")
    path.chmod(0o644)
    st = path.stat()
    return Victim(path, (0o644, st.st_uid, st.st_gid, path.read_bytes()))


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    """The service's state directory: its own user's, 0700, as systemd makes it."""
    path = tmp_path / "state"
    path.mkdir(mode=0o700)
    if ROOT:
        os.chown(path, SERVICE_UID, SERVICE_UID)
    return path


def plant(link: Path, target: Path) -> None:
    link.symlink_to(target)
    if ROOT:
        os.chown(link, SERVICE_UID, SERVICE_UID, follow_symlinks=False)


# -- the OAuth 2.0 token file ----------------------------------------------------------------
def test_the_token_files_lock_is_never_opened_or_chowned_through_a_link(
    state_dir: Path, victim: Victim
) -> None:
    token = TokenFile(state_dir / "x-acme.json")
    plant(state_dir / "x-acme.json.lock", victim.path)

    refused = r"x-acme\.json\.lock is a symbolic link"
    with pytest.raises(TokenFileProblem, match=refused), token.lock():
        pass

    assert victim.untouched()


def test_the_token_file_is_never_read_through_a_link(state_dir: Path, victim: Victim) -> None:
    token = TokenFile(state_dir / "x-acme.json")
    victim.path.write_text(
        UserToken("a-token", "r-token", datetime.now(UTC) + timedelta(hours=1)).to_json()
    )
    victim = Victim(victim.path, victim.state())
    plant(token.path, victim.path)

    with pytest.raises(TokenFileProblem, match=r"x-acme\.json is a symbolic link"):
        token.read()
    # Writing replaces the link by a file of its own, and never writes through it.
    token.write(UserToken("new", None, datetime.now(UTC) + timedelta(hours=1)))
    assert not token.path.is_symlink() and token.read().access_token == "new"
    if ROOT:
        assert token.path.stat().st_uid == SERVICE_UID  # the directory owner's, for the service
    assert victim.untouched()


@as_root
def test_as_root_a_lock_file_with_another_name_or_owner_is_refused(
    state_dir: Path, victim: Victim
) -> None:
    token = TokenFile(state_dir / "x-acme.json")
    lock = state_dir / "x-acme.json.lock"
    os.link(victim.path, lock)  # a hard link: no symbolic link to refuse
    with pytest.raises(TokenFileProblem, match="has 2 names"), token.lock():
        pass
    assert victim.untouched()

    lock.unlink()
    lock.write_text("")
    os.chown(lock, 4343, 4343)  # neither root nor the directory's owner
    with pytest.raises(TokenFileProblem, match="belongs to uid 4343"), token.lock():
        pass

    lock.unlink()
    with token.lock():  # made here: given to the directory's owner, so the service can lock it
        assert lock.stat().st_uid == SERVICE_UID


def test_x_authorize_never_reads_the_waiting_authorization_through_a_link(
    tmp_path: Path, state_dir: Path, victim: Victim, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("E2E_X_BEARER", "bearer")
    monkeypatch.setenv("E2E_SF_PASSWORD", "pw")
    monkeypatch.setenv("E2E_SF_TOKEN", "tok")
    token_file = state_dir / "x-acme.json"
    text = config_text(f"sqlite:///{tmp_path}/state.db", "http://127.0.0.1:9", "http://127.0.0.1:9")
    table = (
        f'\n[sources.user_auth.acme]\ntype = "oauth2"\nclient_id = "c"\n'
        f'token_file = "{token_file}"\n'
    )
    config = tmp_path / "config.toml"
    config.write_text(text.replace("\n[crm]", table + "\n[crm]"))
    plant(state_dir / "x-acme.json.pending", victim.path)

    result = CliRunner().invoke(cli, ["--config", str(config), "x", "authorize", "acme"], input="")

    assert result.exit_code == 1, result.output
    assert "x-acme.json.pending is a symbolic link" in result.stderr
    assert "Traceback" not in result.output
    assert victim.untouched()


# -- the SQLite state database and the instance lock ----------------------------------------
@pytest.mark.parametrize("name", ["state.db", "state.db-wal", "state.db-shm"])
def test_the_state_database_is_never_opened_or_chmodded_through_a_link(
    state_dir: Path, victim: Victim, name: str
) -> None:
    plant(state_dir / name, victim.path)

    with pytest.raises(StateError, match=rf"{name} is a symbolic link"):
        Database(f"sqlite:///{state_dir / 'state.db'}").dispose()

    assert victim.untouched()


def test_a_state_command_refuses_a_linked_database_clearly(
    tmp_path: Path, state_dir: Path, victim: Victim, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("E2E_X_BEARER", "bearer")
    monkeypatch.setenv("E2E_SF_PASSWORD", "pw")
    monkeypatch.setenv("E2E_SF_TOKEN", "tok")
    db = state_dir / "state.db"
    config = tmp_path / "config.toml"
    config.write_text(config_text(f"sqlite:///{db}", "http://127.0.0.1:9", "http://127.0.0.1:9"))
    plant(db, victim.path)

    result = CliRunner().invoke(cli, ["--config", str(config), "status"])

    assert result.exit_code == 1, result.output
    assert f"state.url: {db} is a symbolic link" in result.stderr
    assert victim.untouched()


@as_root
def test_as_root_a_hard_linked_database_is_not_chmodded(state_dir: Path, victim: Victim) -> None:
    os.link(victim.path, state_dir / "state.db")
    with pytest.raises(StateError, match="has 2 names"):
        Database(f"sqlite:///{state_dir / 'state.db'}").dispose()
    assert victim.untouched()


def test_the_instance_lock_never_truncates_through_a_link(state_dir: Path, victim: Victim) -> None:
    plant(state_dir / "state.db.lock", victim.path)

    with pytest.raises(AlreadyRunning, match=r"state\.db\.lock is a symbolic link"):
        InstanceLock(f"sqlite:///{state_dir / 'state.db'}").acquire()

    assert victim.untouched()


def test_a_directory_anyone_may_write_to_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(StateError, match="writable by every user"):
        Database(f"sqlite:///{shared / 'state.db'}").dispose()
    assert not (shared / "state.db").exists()
    sticky = tmp_path / "sticky"  # as /tmp: only a file's owner may replace it
    sticky.mkdir()
    sticky.chmod(0o1777)
    Database(f"sqlite:///{sticky / 'state.db'}").dispose()


def test_an_ordinary_state_directory_still_works(state_dir: Path) -> None:
    fresh_state = state_dir / "state.db"
    db = Database(f"sqlite:///{fresh_state}")
    try:
        db.upgrade()
    finally:
        db.dispose()
    with InstanceLock(f"sqlite:///{fresh_state}"):
        assert fresh_state.with_name("state.db.lock").read_text().strip() == str(os.getpid())
    assert stat.S_IMODE(fresh_state.stat().st_mode) == 0o600
