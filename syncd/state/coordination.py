"""Several ``syncd run`` on one PostgreSQL database: who runs which job, and conflicts.

SQLite state stays single-instance (see :mod:`syncd.state.lock`), so everything here is a
no-op there. On PostgreSQL:

- a job that must not run twice at once (a poll walk, which owns its stream's cursor; the
  resolver, which may create Leads; the compliance check; pruning) runs under a session
  advisory lock taken with ``pg_try_advisory_lock`` on a connection of its own. Another
  instance finding it held skips that run; a dead instance's lock goes with its connection;
- migrations at start-up wait for each other (``pg_advisory_xact_lock``);
- a deadlock (40P01) or serialization failure (40001) is retried where redoing the work is
  harmless, and otherwise turned into a transient failure: the job runs again next interval
  instead of stopping the daemon as a bug would.

Deliveries and backfill jobs are shared row by row instead, under a :class:`Lease`: a row
held by one process (:func:`owner_id`) until a time, which another process may take once it
lapses (a delivery's claim, ``syncd.state.outbox``; a backfill's lease,
``syncd.state.backfills``).
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import update_wrapper
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Column, ColumnElement, Connection, Engine, and_, create_engine, or_, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from syncd.errors import TransientError

log = logging.getLogger("syncd.state")

T = TypeVar("T")
P = ParamSpec("P")

# Advisory lock keys (int, int): a class recognisable in pg_locks ("synj", "synm"; the old
# instance lock was "sync"), then a hash that includes the schema, so instances on other
# schemas of one database never exclude each other. Two job names may share a 32-bit hash;
# the cost is an occasional skipped run of one of them, not a wrong one.
JOB_LOCK_KEY = 0x73796E6A
MIGRATION_LOCK_KEY = 0x73796E6D
_SCHEMA = "coalesce(current_schema(), '')"  # no schema on the search path: still one key
CONFLICTS = frozenset({"40P01", "40001"})  # deadlock_detected, serialization_failure
CONFLICT_ATTEMPTS = 4

_owner: tuple[int, str] | None = None


def owner_id() -> str:
    """This process, as its claims name it: ``host:pid:random`` (pids are reused, and a
    restarted container may come back with the same host name and pid)."""
    global _owner
    if _owner is None or _owner[0] != os.getpid():  # a forked child is another owner
        _owner = (os.getpid(), f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}")
    return _owner[1]


def gone(owner: str) -> bool:
    """Whether ``owner`` names a process of this host that no longer runs (its lease can be
    taken at once). Reads ``host:pid`` too, as leases were named before :func:`owner_id`."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


@dataclass(frozen=True)
class Lease:
    """A row held by one process until a time, in two columns of its table: who holds it
    (an :func:`owner_id`) and until when. A lapsed lease is nobody's; its holder finds out
    when a statement it guards with :meth:`held_by` changes nothing."""

    owner: Column[Any]
    until: Column[Any]

    def free(self, now: datetime) -> ColumnElement[bool]:
        """Held by nobody: never taken, released, or lapsed."""
        return or_(self.until.is_(None), self.until <= now)

    def held(self, now: datetime | ColumnElement[Any]) -> ColumnElement[bool]:
        """Held by somebody at ``now``."""
        return and_(self.owner.is_not(None), self.until > now)

    def open_to(self, owner: str, now: datetime) -> ColumnElement[bool]:
        """``owner`` may take it: free, or already its own."""
        return or_(self.free(now), self.owner == owner)

    def held_by(self, owner: str) -> ColumnElement[bool]:
        return self.owner == owner

    def take(self, owner: str, until: datetime) -> dict[str, Any]:
        """The values that give the lease to ``owner`` until ``until``."""
        return {self.owner.key: owner, self.until.key: until}

    def renew(self, until: datetime) -> dict[str, Any]:
        return {self.until.key: until}

    def release(self) -> dict[str, Any]:
        return {self.owner.key: None, self.until.key: None}

    @staticmethod
    def lapsed(owner: str | None, until: datetime | None, now: datetime) -> bool:
        """For a row read: nobody holds it (none, lapsed, or its holder died on this host)."""
        return owner is None or until is None or until <= now or gone(owner)


def shared(conn_or_dialect: Connection | str) -> bool:
    """Whether several instances may share this state database (PostgreSQL)."""
    name = conn_or_dialect if isinstance(conn_or_dialect, str) else conn_or_dialect.dialect.name
    return name == "postgresql"


class JobLocks:
    """Session advisory locks for jobs only one instance may run at a time."""

    def __init__(self, url: URL, options: dict[str, Any] | None = None) -> None:
        # Each lock is held on a connection of its own, taken from a pool of them: a new
        # connection per job run (the daemon's poll jobs run several a second) cost the
        # server a backend process each. A connection goes back to the pool only after its
        # lock was released; one that could not release it is closed, which releases it, so
        # no lock lingers in a pooled session. No bound on how many: one per job at once.
        # ``options``: the state database's engine options (its timeouts).
        self._engine: Engine | None = None
        if shared(url.get_backend_name()):
            self._engine = create_engine(
                url, pool_size=4, max_overflow=-1, pool_pre_ping=True, **(options or {})
            )

    @contextmanager
    def hold(self, name: str) -> Iterator[bool]:
        """Whether this process got ``name`` for the ``with`` block (always, on SQLite)."""
        if self._engine is None:
            yield True
            return
        key = {"k": JOB_LOCK_KEY, "name": name}
        with self._engine.connect() as conn:
            got = bool(
                conn.execute(
                    text(f"SELECT pg_try_advisory_lock(:k, hashtext({_SCHEMA} || '/' || :name))"),
                    key,
                ).scalar()
            )
            conn.commit()  # the session lock outlives the transaction; keep none open
            try:
                yield got
            finally:
                if got:
                    try:
                        conn.execute(
                            text(
                                "SELECT pg_advisory_unlock(:k, "
                                f"hashtext({_SCHEMA} || '/' || :name))"
                            ),
                            key,
                        )
                        conn.commit()
                    except DBAPIError:  # closing the connection unlocks it as well
                        log.debug("could not unlock job %s", name, exc_info=True)
                        conn.invalidate()

    def run(self, name: str, call: Callable[[], T]) -> T | None:
        """``call()``, unless another instance is running the job ``name`` (None then: the
        job's next interval tries again)."""
        with self.hold(name) as mine:
            if not mine:
                log.debug("%s: another syncd instance is running it; skipped", name)
                return None
            return conflicts_transient(call)

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


def lock_migrations(conn: Connection) -> None:
    """Wait until no other instance migrates this schema; held until ``conn`` commits."""
    if shared(conn):
        conn.execute(
            text(f"SELECT pg_advisory_xact_lock(:k, hashtext({_SCHEMA}))"),
            {"k": MIGRATION_LOCK_KEY},
        )


def is_conflict(exc: BaseException) -> bool:
    """A deadlock or serialization failure: the database undid the transaction, which may
    succeed when run again."""
    orig: Any = getattr(exc, "orig", None)
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return isinstance(exc, DBAPIError) and code in CONFLICTS


def retry_conflicts(run: Callable[[], T], attempts: int = CONFLICT_ATTEMPTS) -> T:
    """Run ``run`` (one whole transaction, safe to redo) again after a conflict."""
    for attempt in range(1, attempts + 1):
        try:
            return run()
        except DBAPIError as exc:
            if attempt == attempts or not is_conflict(exc):
                raise
            log.debug("database conflict (%s), attempt %d: trying again", exc.orig, attempt)
            # Jittered, so the two transactions that met do not meet again in step.
            time.sleep(random.uniform(0.01, 0.1) * attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def redone_on_conflict(
    fn: Callable[Concatenate[Connection, P], T],
) -> Callable[Concatenate[Connection, P], T]:
    """Run ``fn(conn, …)`` in a savepoint on PostgreSQL and redo it after a conflict. Only for
    work that is the first of its transaction: locks taken before the savepoint stay held."""

    def run(conn: Connection, /, *args: P.args, **kwargs: P.kwargs) -> T:
        if not shared(conn):
            return fn(conn, *args, **kwargs)

        def attempt() -> T:
            with conn.begin_nested():
                return fn(conn, *args, **kwargs)

        return retry_conflicts(attempt)

    update_wrapper(run, fn)
    return run


def conflicts_transient(run: Callable[[], T]) -> T:
    """Run a job; a conflict that escapes it is a failure of this run, not a bug."""
    try:
        return run()
    except DBAPIError as exc:
        if not is_conflict(exc):
            raise
        raise TransientError(f"state database conflict: {exc.orig}", system="state") from exc
