"""One ``syncd run`` per state database.

Two daemons on one SQLite file would poll the same streams and write the same deliveries: the
external-id upsert keeps the CRM free of duplicates, but every API call is paid twice and the
cursors race. SQLite state is therefore single-instance, enforced with an advisory ``flock`` on
a lock file beside the database (released by the kernel when the process dies, even on
SIGKILL, so a crash never leaves a stale lock). PostgreSQL uses a session advisory lock, held
on a dedicated connection for the life of the process, until the work is shared between
instances row by row.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.pool import NullPool

from syncd.errors import UserError

# pg_try_advisory_lock(int, int): "sync" in ASCII, so it is recognisable in pg_locks, and the
# schema, so instances on different schemas of one database do not exclude each other.
PG_LOCK_KEY = 0x73796E63


class AlreadyRunning(UserError):
    """Another syncd process holds this state database."""


class InstanceLock:
    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        self._fd: int | None = None
        self._conn: Connection | None = None
        self._engine: Any = None

    def acquire(self) -> InstanceLock:
        if self.url.get_backend_name() == "sqlite":
            self._acquire_file(Path(str(self.url.database)))
        else:
            self._acquire_pg()
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def __enter__(self) -> InstanceLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _acquire_file(self, database: Path) -> None:
        path = database.with_name(database.name + ".lock")
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
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

    def _acquire_pg(self) -> None:
        self._engine = create_engine(self.url, poolclass=NullPool)
        conn = self._engine.connect()
        got = conn.execute(
            text("SELECT pg_try_advisory_lock(:k, hashtext(current_schema()))"),
            {"k": PG_LOCK_KEY},
        ).scalar()
        conn.commit()  # the session lock outlives the transaction; keep no transaction open
        if not got:
            conn.close()
            self._engine.dispose()
            self._engine = None
            where = self.url.render_as_string(hide_password=True)
            raise AlreadyRunning(f"another syncd is already running on {where}")
        self._conn = conn
