"""One ``syncd run`` per SQLite state database; several share a PostgreSQL one.

Two daemons on one SQLite file would poll the same streams and write the same deliveries: the
external-id upsert keeps the CRM free of duplicates, but every API call is paid twice and the
cursors race. SQLite state is therefore single-instance, enforced with an advisory ``flock`` on
a lock file beside the database (released by the kernel when the process dies, even on
SIGKILL, so a crash never leaves a stale lock). On PostgreSQL several instances share the work
(``syncd.state.coordination`` for jobs, claims in ``syncd.state.outbox`` for deliveries), so
nothing is held for the life of the process.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from sqlalchemy.engine import make_url

from syncd.contracts import files as private_files
from syncd.errors import UserError


class AlreadyRunning(UserError):
    """Another syncd process holds this state database."""


class InstanceLock:
    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        self._fd: int | None = None

    def acquire(self) -> InstanceLock:
        if self.url.get_backend_name() == "sqlite":
            self._acquire_file(Path(str(self.url.database)))
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> InstanceLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _acquire_file(self, database: Path) -> None:
        path = database.with_name(database.name + ".lock")
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Truncated below: never through a link planted at its name (a daemon run as root
            # in the service user's directory would truncate whatever it points at).
            fd = private_files.open_file(path, os.O_RDWR, create=True)
        except private_files.UnsafeFile as exc:
            raise AlreadyRunning(f"state.url: {exc}") from None
        except OSError as exc:
            raise AlreadyRunning(f"state.url: cannot create {path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise AlreadyRunning(
                f"another syncd (pid {holder}) is already running on {database}; "
                "SQLite state is single-instance: stop it first, or use PostgreSQL"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
