"""The file an account's OAuth 2.0 tokens live in, and the tokens themselves.

syncd rewrites the file on every refresh: whole, 0600, by rename, so a reader (another syncd
process, an admin) sees the old pair or the new one and a crash leaves no half. A lock file
beside it serialises refreshes across processes (:mod:`connectors.x.auth.oauth2`). ``syncd x
authorize`` runs as root in the service user's directory: nothing there is opened through a
link, and only files syncd itself made are chowned (:mod:`syncd.contracts.files`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from connectors.x.parse import is_x_id
from syncd.contracts import files as private_files


@dataclass(frozen=True)
class UserToken:
    """One account's OAuth 2.0 tokens, and whose they are. ``repr`` shows no token."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_at: datetime
    scope: str = ""
    user_id: str | None = None  # from GET /2/users/me when the account authorized syncd
    username: str | None = None

    def expires_within(self, margin: timedelta, now: datetime) -> bool:
        return self.expires_at - margin <= now

    def to_json(self) -> str:
        return json.dumps(
            {
                "token_type": "bearer",
                "access_token": self.access_token,
                "refresh_token": self.refresh_token,
                "expires_at": self.expires_at.isoformat(),
                "scope": self.scope,
                "user_id": self.user_id,
                "username": self.username,
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> UserToken:
        """Raises ValueError, naming what is wrong and never a value."""
        doc = json.loads(text)
        if not isinstance(doc, dict):
            raise ValueError("is not a JSON object")
        access, refresh = doc.get("access_token"), doc.get("refresh_token")
        if not isinstance(access, str) or not access:
            raise ValueError("has no access_token")
        if refresh is not None and not isinstance(refresh, str):
            raise ValueError("has a refresh_token that is not a string")
        try:
            expires = datetime.fromisoformat(str(doc.get("expires_at")))
        except ValueError:
            raise ValueError("has no valid expires_at") from None
        if expires.tzinfo is None:
            raise ValueError("has an expires_at without a time zone")
        user_id, username = doc.get("user_id"), doc.get("username")
        return cls(
            access,
            refresh or None,
            expires,
            str(doc.get("scope") or ""),
            user_id if is_x_id(user_id) else None,
            username if isinstance(username, str) else None,
        )


class TokenFileProblem(Exception):
    """The token file cannot be used; the message names the file and what is wrong."""


class TokenFile:
    """The JSON file holding one account's tokens. Written whole, 0600, by rename."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"TokenFile({str(self.path)!r})"

    def stamp(self) -> tuple[int, int, int] | None:
        """Changes whenever the file is replaced or rewritten; None while there is none."""
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def read(self) -> UserToken:
        try:
            text = read_private(self.path)
        except private_files.UnsafeFile as exc:
            raise TokenFileProblem(str(exc)) from None
        except FileNotFoundError:
            raise TokenFileProblem(f"{self.path} does not exist") from None
        except PermissionError:
            raise TokenFileProblem(f"{self.path} is not readable by uid {os.geteuid()}") from None
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise TokenFileProblem(f"{self.path} cannot be read ({reason})") from None
        try:
            return UserToken.from_json(text)
        except ValueError as exc:  # JSON's own message may quote the file: never shown
            why = str(exc) if not isinstance(exc, json.JSONDecodeError) else "is not JSON"
            raise TokenFileProblem(f"{self.path} {why}") from None

    def write(self, token: UserToken) -> None:
        try:
            write_private(self.path, token.to_json() + "\n")
        except private_files.UnsafeFile as exc:
            raise TokenFileProblem(str(exc)) from None
        except OSError as exc:
            raise TokenFileProblem(f"cannot write {self.path} ({exc.strerror})") from None

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Held while refreshing, by every syncd process on this host."""
        path = self.path.with_name(self.path.name + ".lock")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Never through a link planted at its name: it is chowned below.
            fd = private_files.open_file(path, os.O_RDWR, create=True)
        except private_files.UnsafeFile as exc:
            raise TokenFileProblem(str(exc)) from None
        except OSError as exc:
            raise TokenFileProblem(f"cannot create {path} ({exc.strerror})") from None
        try:
            _give_to_directory_owner(fd, path.parent)
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing drops the lock


def read_private(path: Path) -> str:
    """The text of a file beside the token file, never read through a link planted there.
    Raises UnsafeFile, OSError or UnicodeDecodeError."""
    fd = private_files.open_file(path, os.O_RDONLY, create=False)
    with os.fdopen(fd, encoding="utf-8") as f:
        return f.read()


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically, mode 0600: a reader sees the old file or the
    new one, never half of one, and a crash leaves no partial file under the name. The new
    file is made under a fresh name (O_EXCL) and renamed over ``path``: a link planted at
    ``path`` is replaced, never followed. Raises UnsafeFile or OSError."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    private_files.check_directory(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), 0o600)
            _give_to_directory_owner(f.fileno(), path.parent)
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a power cut
    finally:
        os.close(directory)


def _give_to_directory_owner(fd: int, directory: Path) -> None:
    # An admin runs `syncd x authorize` as root, but the service runs as its own user (under
    # systemd a dynamic one owning /var/lib/syncd): a root-owned 0600 file would be unreadable
    # to it. Files written as root take the owner of their directory instead: only files
    # syncd made (or root's own), through their descriptor, never another's file.
    if os.geteuid() != 0:
        return
    st = os.stat(directory)
    if st.st_uid != 0 and os.fstat(fd).st_uid == 0:
        os.fchown(fd, st.st_uid, st.st_gid)
