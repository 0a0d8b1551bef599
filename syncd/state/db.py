"""Opening the state database: engine setup, file permissions, migrations, transactions.

SQLite is the default (one file, WAL, created 0600); PostgreSQL is for production. Every write
goes through :meth:`Database.transaction`, which on SQLite takes the write lock up front
(``BEGIN IMMEDIATE``) so two threads never deadlock upgrading a read lock. :meth:`Database.connect`
is for reading only: on SQLite it reads a snapshot (``BEGIN``) and never holds the write lock.

Statements are logged and raised without their parameters (``hide_parameters``): they carry
people's posts and names. A database that is down, restarting, full or locked past the lock
timeout is an outage, not a bug: :func:`unavailable` tells which errors are.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.pool import NullPool

from syncd.contracts import files as private_files
from syncd.errors import StateUnavailable, UserError

log = logging.getLogger("syncd.state")

MIGRATIONS = Path(__file__).parent / "migrations"
# alembic's own version table, read without alembic (see Database.at_head).
VERSION_TABLE = "alembic_version"
# Prepared statements each SQLite connection keeps (the driver's default is 128). A statement
# holds SQLite memory for each parameter (about 1 MB for a 1,000-row insert of 9 columns), and
# every row count of a multi-row insert or an IN list is a statement of its own: with 128, the
# pool's connections kept 15-20 MB of such statements, a tenth of the daemon's memory, most
# never run again. One prepared afresh costs about a second run of it (0.3 ms for 100 rows).
SQLITE_CACHED_STATEMENTS = 16
SNAPSHOT = "syncd_snapshot"  # execution option: a read-only connection (see connect())


class StateError(UserError):
    """The state database cannot be opened or migrated."""


@dataclass(frozen=True)
class Timeouts:
    """How long the state database may keep a job waiting (``[state]``), in seconds; a
    statement past its bound fails, and the daemon treats that as an outage, not a bug."""

    connect: float = 10.0  # PostgreSQL: establishing a connection
    lock: float = 30.0  # waiting for a lock: PostgreSQL's lock_timeout, SQLite's busy timeout
    statement: float = 600.0  # PostgreSQL: one statement; 0 means no bound


class Database:
    def __init__(self, url: str, *, echo: bool = False, timeouts: Timeouts = Timeouts()) -> None:
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise StateError(f"state.url is not a database URL: {exc}") from None
        self.url = parsed
        self.dialect = parsed.get_backend_name()
        self.timeouts = timeouts
        self.engine_options = engine_options(parsed, timeouts)
        kwargs: dict[str, Any] = {"echo": echo, **self.engine_options}
        if self.dialect == "sqlite":
            self._prepare_sqlite_file(parsed.database)
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
            _sqlite_pragmas(self.engine, timeouts.lock)
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
    def transaction(self, *, replayable: bool = False) -> Iterator[Connection]:
        """One explicit transaction: committed on success, rolled back on any exception.

        ``replayable``: losing the transaction whole to a crash is harmless, as its caller
        says why; on PostgreSQL its commit then does not wait for the WAL to reach the disk
        (``synchronous_commit = off``). A crash of the server or machine can lose such
        commits made in the last moments (three ``wal_writer_delay``, 600 ms by default),
        each whole, never a part of one, and only the latest: any later commit that did
        wait flushed the WAL up to itself, every commit before it included. SQLite already
        commits this way (``synchronous=NORMAL``)."""
        with self._writer, self.engine.begin() as conn:
            if replayable and self.dialect == "postgresql":
                conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
            yield conn

    def connect(self) -> Connection:
        """A connection to read with (never committed). On SQLite its transactions read a WAL
        snapshot instead of taking the write lock: a long read (progress, the ready
        deliveries) must not stall the thread storing pages or the writer."""
        conn = self.engine.connect()
        conn.execution_options(**{SNAPSHOT: True})
        return conn

    def snapshot(self) -> Connection:
        """A connection whose reads all see one moment, until it is closed. On PostgreSQL a
        connection from :meth:`connect` reads each statement at its own moment (READ
        COMMITTED): a check made of several reads (nothing claimed, then nothing ready) can
        then miss work that moved between them, a delivery claimed after the first read and
        no longer ready at the second. SQLite's reading transactions are snapshots already."""
        conn = self.connect()
        if self.dialect == "postgresql":
            conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        return conn

    def upgrade(self) -> None:
        """Apply every pending migration (idempotent). Instances starting together on
        PostgreSQL take turns: the second finds the schema at head and does nothing."""
        try:
            if self.at_head():
                return
            self._migrate()
        except (DBAPIError, PoolTimeout) as exc:
            if (outage := unavailable(exc)) is not None:
                raise outage from None
            if not isinstance(exc, OperationalError):
                raise
            raise StateError(f"cannot open the state database: {_first_line(exc)}") from None

    def at_head(self) -> bool:
        """Whether the schema is at the newest migration, read without importing alembic:
        alembic and mako hold about 10 MB for the life of a process that imports them,
        and a daemon starting on a current schema has nothing for them to do."""
        # Not a snapshot read: on SQLite it takes the write lock, as migrating would, so a
        # database locked by another process is an outage the start waits out here.
        with self.engine.connect() as conn:
            if not inspect(conn).has_table(VERSION_TABLE):
                return False
            versions = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).all()
        return [row[0] for row in versions] == [head_revision()]

    def _migrate(self) -> None:
        from alembic import command

        from syncd.state.coordination import lock_migrations

        with self.migration() as conn:
            if self.dialect == "postgresql":
                # A migration may rewrite a large table: not a stuck statement. Waiting
                # for a lock stays bounded (another instance migrating, an old one's
                # long transaction): the daemon's start waits that out and tries again.
                conn.exec_driver_sql("SET LOCAL statement_timeout = 0")
            lock_migrations(conn)
            command.upgrade(alembic_config(conn), "head")

    @contextmanager
    def migration(self) -> Iterator[Connection]:
        """The transaction migrations run in. On SQLite, foreign keys are not enforced while
        it runs: a migration that rebuilds a table others reference (the only way SQLite
        changes a column) could not drop the old table otherwise. That is the procedure
        SQLite documents for such changes, ending as it says: every reference is checked
        before the transaction commits, and a broken one rolls it all back."""
        sqlite = self.dialect == "sqlite"
        with self.engine.connect() as conn:
            if sqlite:  # a no-op inside a transaction: set before it begins
                _foreign_keys(conn, enforced=False)
            try:
                with conn.begin():
                    yield conn
                    if sqlite:
                        broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                        if broken:
                            tables = sorted({str(row[0]) for row in broken})
                            raise StateError(
                                "a migration left rows pointing at rows that do not exist, "
                                f"in {', '.join(tables)}: nothing was changed"
                            )
            finally:
                if sqlite:
                    _foreign_keys(conn, enforced=True)

    def revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def dispose(self) -> None:
        self.engine.dispose()

    def __repr__(self) -> str:
        # The URL may carry a password; render_as_string hides it by default.
        return f"Database({self.url.render_as_string(hide_password=True)!r})"


def head_revision() -> str:
    """The newest migration's revision: each is named after its file's number
    (``versions/0027_links_by_record.py`` is revision ``0027``, down from ``0026``), which
    tests/state/test_migrations.py checks against alembic's own reading of the scripts."""
    return max(p.name[:4] for p in (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))


def alembic_config(conn: Connection | None = None) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if conn is not None:
        cfg.attributes["connection"] = conn
    return cfg


def engine_options(url: Any, timeouts: Timeouts) -> dict[str, Any]:
    """``create_engine`` keywords every engine on the state database gets (the job locks'
    too): no statement parameters in messages or logs, and the ``[state]`` timeouts."""
    options: dict[str, Any] = {"hide_parameters": True}
    if url.get_backend_name() == "sqlite":
        options["connect_args"] = {
            "timeout": timeouts.lock,
            "check_same_thread": False,
            "cached_statements": SQLITE_CACHED_STATEMENTS,
        }
    elif url.get_backend_name() == "postgresql":
        # Given as startup options, so no session begins without them; added to any the URL
        # carries (e.g. a search_path), which connect_args would otherwise replace.
        given = url.query.get("options")
        settings = [given] if isinstance(given, str) else list(given or ())
        settings.append(f"-c lock_timeout={_ms(timeouts.lock)}")
        settings.append(f"-c statement_timeout={_ms(timeouts.statement)}")
        # libpq counts whole seconds and takes anything under 2 as 2.
        connect = max(2, round(timeouts.connect))
        options["connect_args"] = {"connect_timeout": connect, "options": " ".join(settings)}
    return options


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


# SQLite primary result codes (``sqlite3.Error.sqlite_errorcode & 0xFF``) of a database that
# cannot be used just now: busy or locked past the busy timeout, out of memory, made
# read-only, an I/O error, the disk full, the file not openable, a locking-protocol race.
_SQLITE_OUTAGES = {5, 6, 7, 8, 10, 13, 14, 15}
# PostgreSQL SQLSTATE classes and codes of the same: 08 connection, 53 insufficient
# resources (disk full, too many connections), 57 operator intervention (admin shutdown,
# restart, a cancelled statement: statement_timeout), 58 system (I/O) errors; a conflict
# nothing retried (40001 serialization, 40P01 deadlock, 40003 completion unknown), a lock
# not granted within lock_timeout (55P03), a standby after a failover (25006 read-only).
_PG_OUTAGE_CLASSES = {"08", "53", "57", "58"}
_PG_OUTAGES = {"40001", "40P01", "40003", "55P03", "25006"}


def unavailable(exc: BaseException) -> StateUnavailable | None:
    """``exc`` as a :class:`StateUnavailable` when it (or what it was raised from) says the
    state database cannot be used for now; None when it is anything else (a bug). The
    message names the error's kind and first line, never the statement or its parameters."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, StateUnavailable):
            return current
        if isinstance(current, PoolTimeout):
            return StateUnavailable("state database: no connection free in the pool in time")
        if isinstance(current, DBAPIError) and (kind := _outage_kind(current)) is not None:
            return StateUnavailable(f"state database: {kind}: {_first_line(current)}")
        current = current.__cause__  # an explicit "raise … from", not any error in handling
    return None


def _outage_kind(exc: DBAPIError) -> str | None:
    orig: Any = exc.orig
    if isinstance(orig, sqlite3.Error):
        code = getattr(orig, "sqlite_errorcode", None)
        if isinstance(code, int) and code & 0xFF in _SQLITE_OUTAGES:
            return str(getattr(orig, "sqlite_errorname", code))
        return None  # SQLite also calls "no such table" operational: a bug
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if isinstance(sqlstate, str):
        outage = sqlstate in _PG_OUTAGES or sqlstate[:2] in _PG_OUTAGE_CLASSES
        return f"{type(orig).__name__} ({sqlstate})" if outage else None
    if exc.connection_invalidated:
        return "connection lost"
    # Without a SQLSTATE (no server answer: refused, reset, timed out), psycopg's
    # OperationalError and InterfaceError (a connection already closed) are the connection's.
    if sqlstate is None and isinstance(exc, OperationalError | InterfaceError):
        return type(orig).__name__
    return None


def _first_line(exc: DBAPIError) -> str:
    text = str(exc.orig).strip().splitlines()
    first = text[0] if text else type(exc.orig).__name__
    return first if len(first) <= 300 else first[:299] + "…"


def _foreign_keys(conn: Connection, *, enforced: bool) -> None:
    """Turn SQLite's foreign key enforcement on or off for this connection, outside any
    transaction (the driver's own connection: through SQLAlchemy the statement would begin
    one first)."""
    raw: Any = conn.connection.dbapi_connection
    raw.execute(f"PRAGMA foreign_keys={'ON' if enforced else 'OFF'}")


def _sqlite_pragmas(engine: Engine, busy_timeout: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's implicit
        # transactions would defeat BEGIN IMMEDIATE).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={_ms(busy_timeout)}")
        # Copy the WAL into the database every 10,000 pages, not 1,000: a page of posts
        # dirties hundreds of index pages, copied once per checkpoint however often they
        # changed, and the copying holds up this process's other writers.
        cur.execute("PRAGMA wal_autocheckpoint=10000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        snapshot = conn.get_execution_options().get(SNAPSHOT, False)
        conn.exec_driver_sql("BEGIN" if snapshot else "BEGIN IMMEDIATE")


__all__ = ["Database", "NullPool", "StateError", "Timeouts", "engine_options", "unavailable"]
