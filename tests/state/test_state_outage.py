"""An unavailable state database is an outage the daemon waits out, not a bug that stops it:
the job tries again with back-off, /healthz fails meanwhile, the outage is logged once when
it starts and once when it ends, and no statement's parameters (people's posts) reach a log.
Commands report it as one line and exit 75. On SQLite and PostgreSQL: the database is made
unavailable by another connection holding its write lock (SQLite) or a table lock
(PostgreSQL) past the configured lock timeout."""

from __future__ import annotations

import io
import logging
import sqlite3
import threading
import traceback
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from support.e2e import World, make_world, tasks, wait_for

import connectors
from sandbox.seed import seed
from syncd.cli import cli
from syncd.config import settings as config
from syncd.errors import StateUnavailable
from syncd.service import logs
from syncd.service.app import App
from syncd.service.daemon import Daemon, open_waiting
from syncd.service.http import verdict
from syncd.service.jobs import OUTAGE_MAX_WAIT, StateOutage
from syncd.state.db import Database, Timeouts, unavailable

SECRET = "my parcel never came, order 4471-zebra"  # a post's text: never in a log
LOCK_TIMEOUT = 0.2


@contextmanager
def locked(url: str) -> Iterator[None]:
    """Another connection holds the state database so that writing to it (PostgreSQL: to the
    tables a poll stores into) waits past the lock timeout, until the block ends."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        holder = sqlite3.connect(str(parsed.database), isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(
                text(
                    "LOCK TABLE alembic_version, interactions, cursors, crm_keys"
                    " IN ACCESS EXCLUSIVE MODE"
                )
            )
            try:
                yield
            finally:
                conn.rollback()
    finally:
        engine.dispose()


def short_locks(url: str) -> Database:
    db = Database(url, timeouts=Timeouts(lock=LOCK_TIMEOUT))
    db.upgrade()
    return db


def test_a_lock_held_past_the_timeout_is_an_outage_and_a_bug_is_not(state_url: str) -> None:
    db = short_locks(state_url)
    try:
        if db.dialect == "postgresql":
            with db.connect() as conn:  # the [state] timeouts, beside the URL's own options
                assert conn.exec_driver_sql("SHOW lock_timeout").scalar() == "200ms"
                assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "10min"
                assert conn.exec_driver_sql("SHOW search_path").scalar_one().startswith("t_")
        insert = text(
            "INSERT INTO crm_keys (crm, record_id, object, rank, stamp, network, handle, seen_at)"
            " VALUES ('sf', '003A', 'Contact', 0, 't', 'x', :handle, CURRENT_TIMESTAMP)"
        )
        with locked(state_url), pytest.raises(DBAPIError) as raised, db.connect() as conn:
            # A read connection takes SQLite's write lock only at the INSERT: the statement
            # that fails is the one carrying the parameter.
            conn.execute(insert, {"handle": SECRET})
        outage = unavailable(raised.value)
        assert isinstance(outage, StateUnavailable)
        assert ("SQLITE_BUSY" if db.dialect == "sqlite" else "LockNotAvailable") in str(outage)
        shown = str(raised.value) + "".join(traceback.format_exception(raised.value))
        assert SECRET not in shown and SECRET not in str(outage)

        with pytest.raises(DBAPIError) as bug, db.transaction() as conn:
            conn.execute(text("INSERT INTO no_such_table VALUES (:t)"), {"t": SECRET})
        assert unavailable(bug.value) is None  # a bug: the daemon still stops on it
        assert SECRET not in "".join(traceback.format_exception(bug.value))
        # Raised from an outage is an outage; merely raised while handling one is not.
        try:
            raise RuntimeError("wrapped") from raised.value
        except RuntimeError as exc:
            assert unavailable(exc) is not None
        try:
            try:
                raise raised.value
            except DBAPIError:
                raise KeyError("a bug in the handler") from None
        except KeyError as exc:
            assert unavailable(exc) is None
    finally:
        db.dispose()


def test_the_log_never_shows_statement_parameters_of_any_engine(tmp_path: Path) -> None:
    # An engine made without hide_parameters (not the state's): its error carries them.
    engine = create_engine(f"sqlite:///{tmp_path / 'other.db'}")
    with pytest.raises(DBAPIError) as raised, engine.connect() as conn:
        conn.execute(text("INSERT INTO no_such_table VALUES (:t)"), {"t": SECRET})
    engine.dispose()
    assert SECRET in str(raised.value)  # what would have reached the journal
    out = io.StringIO()
    logs.setup("INFO", "human", out)
    try:
        log = logging.getLogger("syncd.test")
        log.error("a job failed: %s", raised.value)
        log.critical("stopped by an unexpected error", exc_info=raised.value)
    finally:
        logging.getLogger().handlers.clear()
    assert "Traceback" in out.getvalue() and "no_such_table" in out.getvalue()
    assert SECRET not in out.getvalue()


def test_outage_back_off_doubles_to_its_cap_and_is_said_once_each_way(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="syncd")
    now = [100.0]
    outage = StateOutage(lambda: now[0])
    down = StateUnavailable("state database: SQLITE_BUSY: database is locked")
    waits = [outage.failed("write", down) for _ in range(8)]
    assert waits == [1, 2, 4, 8, 16, 32, OUTAGE_MAX_WAIT, OUTAGE_MAX_WAIT]
    outage.failed("resolve", down)
    now[0] += 42
    described = outage.describe()
    assert described is not None and "for 42s" in described and "resolve, write" in described
    outage.passed("write")
    assert outage.describe() is not None  # the resolver still waits for it
    outage.passed("resolve")
    outage.passed("resolve")
    assert outage.describe() is None
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2 and "database is locked" in said[0]
    assert said[1] == "state database available again after 42s"
    assert outage.failed("write", down) == 1  # a new outage starts its back-off afresh


@pytest.fixture
def world(state_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with make_world(state_url, tmp_path, monkeypatch) as w:
        short = w.config.read_text().replace(
            "[state]\n", f'[state]\nlock_timeout = "{int(LOCK_TIMEOUT * 1000)}ms"\n'
        )
        w.config.write_text(short)
        yield w


def polled_every_stream(url: str) -> bool:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            done = conn.execute(
                text("SELECT count(*) FROM cursors WHERE last_success_at IS NOT NULL")
            ).scalar()
    finally:
        engine.dispose()
    return done == 4  # two brand accounts, two streams each


def test_the_daemon_waits_out_a_locked_state_database_and_then_delivers(
    world: World, state_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # As the daemon's log set-up leaves them (syncd.service.logs.setup): the HTTP libraries
    # log whole answers at DEBUG. Said here, or the test depends on one run before it.
    for library in ("urllib3", *connectors.LIBRARY_LOGGERS):
        caplog.set_level(logging.WARNING, logger=library)
    # Last: set_level also sets caplog's handler to its level, which must take syncd's INFO.
    caplog.set_level(logging.DEBUG)
    people = seed(world.x, world.sf, customers=4)
    customer = next(c for c in people.customers if c.kind == "contact_by_id")
    app = App(config.load(world.config))
    app.open()
    stop = threading.Event()
    daemon = Daemon(app, stop_when=stop.is_set)
    codes: list[int] = []
    runner = threading.Thread(target=lambda: codes.append(daemon.run()), daemon=True)
    runner.start()
    try:
        wait_for(lambda: polled_every_stream(state_url), what="a first poll of every stream")
        with locked(state_url):
            post = world.x.add_post(customer.user_id, f"@acme {SECRET}")
            wait_for(lambda: daemon.state_outage() is not None, what="the outage")
            code, body = verdict(daemon)
            assert code == 503
            assert any("state database" in r and "waiting: " in r for r in body["reasons"])
            assert not daemon.stopping.is_set() and daemon.fatal is None
        wait_for(lambda: f"x:{post['id']}" in tasks(world.sf), what="the post's Task")
        wait_for(lambda: daemon.state_outage() is None, what="the recovery")
        assert verdict(daemon)[0] == 200
    finally:
        stop.set()
        runner.join(30)
        app.close()
    assert codes == [0] and daemon.fatal is None
    started = [r for r in caplog.records if "waiting for it, trying again" in r.getMessage()]
    ended = [r for r in caplog.records if "state database available again" in r.getMessage()]
    assert len(started) == 1 and started[0].levelno == logging.ERROR
    assert len(ended) == 1
    assert SECRET not in caplog.text


SINCE = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")


@pytest.mark.parametrize(
    "command",
    [
        ["poll", "--once"],
        # A foreground backfill stores its job before its first read.
        ["backfill", "--source", "acme-x", "--account", "acme", "--since", SINCE, "--yes"],
    ],
    ids=["poll", "backfill"],
)
def test_a_command_meeting_an_outage_says_so_and_exits_75(
    world: World, state_url: str, command: list[str]
) -> None:
    seed(world.x, world.sf, customers=1)
    CliRunner().invoke(cli, ["--config", str(world.config), "db", "upgrade"])
    with locked(state_url):
        result = CliRunner().invoke(cli, ["--config", str(world.config), *command])
    assert result.exit_code == 75, result.output
    assert "state database" in result.output and "run it again" in result.output
    assert "Traceback" not in result.output


def test_start_up_waits_for_the_state_database_instead_of_exiting(
    state_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A restart during an outage that exited would spend systemd's start limit.
    caplog.set_level(logging.INFO, logger="syncd")
    short_locks(state_url).dispose()  # migrated once; at start-up it is only checked
    db = Database(state_url, timeouts=Timeouts(lock=LOCK_TIMEOUT))
    waits: list[float] = []
    with ExitStack() as held:
        held.enter_context(locked(state_url))

        def sleep(seconds: float) -> None:
            waits.append(seconds)
            if len(waits) == 3:
                held.close()  # the database is back

        try:
            open_waiting(SimpleNamespace(open=db.upgrade), sleep)  # type: ignore[arg-type]
        finally:
            db.dispose()
    assert waits == [1, 2, 4]
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2 and "waiting for it, trying again" in said[0]
    assert said[1].startswith("state database available again")


def test_a_terminated_backend_or_an_unreachable_server_is_an_outage(state_url: str) -> None:
    if make_url(state_url).get_backend_name() != "postgresql":
        pytest.skip("PostgreSQL connections: SQLite has none")
    db = short_locks(state_url)
    admin = create_engine(state_url)
    try:
        conn = db.connect()
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        conn.rollback()
        with admin.connect() as other:  # what a restart or a failover does to a session
            assert other.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
        with pytest.raises(DBAPIError) as raised:
            conn.exec_driver_sql("SELECT 1")
        conn.close()
        assert unavailable(raised.value) is not None
        with db.connect() as fresh:  # the pool replaces the dead connection once it is back
            assert fresh.exec_driver_sql("SELECT 1").scalar() == 1
            fresh.exec_driver_sql("SET statement_timeout = '50ms'")
            with pytest.raises(DBAPIError) as cancelled:
                fresh.exec_driver_sql("SELECT pg_sleep(5)")
        outage = unavailable(cancelled.value)
        assert outage is not None and "QueryCanceled" in str(outage)
    finally:
        admin.dispose()
        db.dispose()
    closed = make_url(state_url).set(port=1)  # nothing listens there: connection refused
    nowhere = Database(closed.render_as_string(hide_password=False), timeouts=Timeouts(connect=2))
    try:
        with pytest.raises(DBAPIError) as refused, nowhere.connect():
            pass
        refusal = unavailable(refused.value)
        assert refusal is not None and "OperationalError" in str(refusal)
    finally:
        nowhere.dispose()


def test_a_reload_during_an_outage_keeps_the_running_configuration(
    world: World, state_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = App(config.load(world.config))
    app.open()
    daemon = Daemon(app, reload=lambda: config.load(world.config))
    daemon.start(paused=True)
    try:
        with locked(state_url):
            assert daemon.reload() is False  # SIGHUP: not a reason to stop
        assert daemon.app is app and not daemon.stopping.is_set()
        refused = [r.getMessage() for r in caplog.records if "reload refused" in r.getMessage()]
        assert len(refused) == 1 and "state database" in refused[0]
    finally:
        daemon.shutdown()
        app.close()
