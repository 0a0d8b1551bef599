"""Opening the state database: engine setup, file permissions, migrations, transactions.

SQLite is the default (one file, WAL, created 0600); PostgreSQL is for production. Every write
goes through :meth:`Database.transaction`, which on SQLite takes the write lock up front
(``BEGIN IMMEDIATE``) so two threads never deadlock upgrading a read lock. :meth:`Database.connect`
is for reading only: on SQLite it reads a snapshot (``BEGIN``) and never holds the write lock.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.pool import NullPool

from syncd import private_files
from syncd.errors import UserError

log = logging.getLogger("syncd.state")

MIGRATIONS = Path(__file__).parent / "migrations"
SNAPSHOT = "syncd_snapshot"  # execution option: a read-only connection (see connect())


class StateError(UserError):
    """The state database cannot be opened or migrated."""


class Database:
    def __init__(self, url: str, *, echo: bool = False) -> None:
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise StateError(f"state.url is not a database URL: {exc}") from None
        self.url = parsed
        self.dialect = parsed.get_backend_name()
        kwargs: dict[str, Any] = {"echo": echo}
        if self.dialect == "sqlite":
            self._prepare_sqlite_file(parsed.database)
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
            if not parsed.database or parsed.database == ":memory:":
                raise StateError("state.url: an in-memory SQLite database would lose all state")
        else:
            kwargs["pool_pre_ping"] = True
            kwargs["pool_size"] = 5
        try:
            self.engine: Engine = create_engine(parsed, **kwargs)
        except ModuleNotFoundError as exc:
            raise StateError(
                f"state.url needs the database driver {exc.name!r}: pip install 'syncd[postgres]'"
            ) from None
        # SQLite takes one writer at a time, and a thread refused the lock sleeps in SQLite's
        # busy handler (up to 100 ms a try) while others take it again: the backfill's
        # threads spent much of their time there. This process's writers queue here
        # instead, each woken as the one before commits; other processes still meet
        # SQLite's lock.
        self._writer: AbstractContextManager[Any] = nullcontext()
        if self.dialect == "sqlite":
            _sqlite_pragmas(self.engine)
            self._writer = threading.RLock()

    @staticmethod
    def _prepare_sqlite_file(database: str | None) -> None:
        if not database or database == ":memory:":
            return
        path = Path(database)
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Created 0600 before SQLite opens it; SQLite gives -wal/-shm the same mode. Never
            # through a link planted at the name: root's commands open it too.
            fd = private_files.open_file(path, os.O_RDONLY, create=True)
            try:
                # State holds people's posts: a file an older syncd, a restore or a hand-made
                # copy left readable by others is narrowed (SQLite copies the database's mode
                # to new -wal/-shm files, but not to ones already there).
                private_files.owner_only(fd)
            finally:
                os.close(fd)
            # SQLite opens these itself, following links: a link at their names is refused.
            for suffix in ("-wal", "-shm", "-journal"):
                private_files.narrow_existing(path.with_name(path.name + suffix))
        except private_files.UnsafeFile as exc:
            raise StateError(f"state.url: {exc}") from None
        except OSError as exc:
            raise StateError(f"state.url: cannot create {path}: {exc.strerror}") from None

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One explicit transaction: committed on success, rolled back on any exception."""
        with self._writer, self.engine.begin() as conn:
            yield conn

    def connect(self) -> Connection:
        """A connection to read with (never committed). On SQLite its transactions read a WAL
        snapshot instead of taking the write lock: a long read (progress, the ready
        deliveries) must not stall the thread storing pages or the writer."""
        conn = self.engine.connect()
        conn.execution_options(**{SNAPSHOT: True})
        return conn

    def upgrade(self) -> None:
        """Apply every pending migration (idempotent). Instances starting together on
        PostgreSQL take turns: the second finds the schema at head and does nothing."""
        from alembic import command

        from syncd.state.coordination import lock_migrations

        try:
            with self.engine.begin() as conn:
                lock_migrations(conn)
                command.upgrade(alembic_config(conn), "head")
        except OperationalError as exc:
            raise StateError(f"cannot open the state database: {exc.orig}") from None

    def revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def dispose(self) -> None:
        self.engine.dispose()

    def __repr__(self) -> str:
        # The URL may carry a password; render_as_string hides it by default.
        return f"Database({self.url.render_as_string(hide_password=True)!r})"


def alembic_config(conn: Connection | None = None) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if conn is not None:
        cfg.attributes["connection"] = conn
    return cfg


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's implicit
        # transactions would defeat BEGIN IMMEDIATE).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        # Copy the WAL into the database every 10,000 pages, not 1,000: a page of posts
        # dirties hundreds of index pages, copied once per checkpoint however often they
        # changed, and the copying holds up this process's other writers.
        cur.execute("PRAGMA wal_autocheckpoint=10000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        snapshot = conn.get_execution_options().get(SNAPSHOT, False)
        conn.exec_driver_sql("BEGIN" if snapshot else "BEGIN IMMEDIATE")


__all__ = ["Database", "NullPool", "StateError"]
