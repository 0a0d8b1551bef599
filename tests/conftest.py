"""Shared fixtures: a fresh state database on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from support.databases import MigratedSchemas, schema_url

# The Salesforce stand-in fixture (``sb``) many modules share; a module may define its own.
pytest_plugins = ["support.salesforce", "support.meta"]

PG_URL = os.environ.get("SYNCD_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_available() -> bool:
    try:
        engine = create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:
        return False


_PG = None


def pg_available() -> bool:
    global _PG
    if _PG is None:
        _PG = _pg_available()
    return _PG


# The folders whose tests run a daemon, a benchmark or many generated examples: seconds to
# minutes each, where most others take milliseconds.
_LONG = ("e2e", "properties")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The modules of long tests spread evenly among the others, each module's tests together
    and in their order. pytest-xdist (``--dist worksteal``) gives each worker a run of the
    tests and an idle worker takes half of what another has left: spread, the long tests are
    shared out and start early, where in folder order one worker's run held most of them and
    a minute-long test could end the run. Every test makes its own state (tmp_path, a schema of
    its own), so none depends on what ran before it."""
    tests = Path(__file__).parent
    modules: dict[Path, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(item.path, []).append(item)
    long = [m for m in modules if m.relative_to(tests).parts[0] in _LONG]
    short = [m for m in modules if m not in long]
    total = sum(len(modules[m]) for m in short) or 1
    place: dict[Path, float] = {m: (i + 0.5) / len(long) for i, m in enumerate(long)}
    before = 0
    for m in short:
        place[m] = (before + len(modules[m]) / 2) / total
        before += len(modules[m])
    items[:] = [item for m in sorted(modules, key=place.__getitem__) for item in modules[m]]


@pytest.fixture(scope="session")
def _pg_admin() -> Iterator[Engine]:
    """One connection pool for making and dropping the tests' schemas."""
    admin = create_engine(PG_URL)
    yield admin
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A state database URL, empty, on each backend. PostgreSQL gets a throwaway schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return
    if not pg_available():
        if os.environ.get("SYNCD_REQUIRE_PG"):
            pytest.fail(f"PostgreSQL required but not reachable at {PG_URL}")
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin: Engine = request.getfixturevalue("_pg_admin")
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield schema_url(PG_URL, schema)
    finally:
        # ``db`` may have taken the schema back to reuse it.
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state database file migrated once: ``db`` copies it instead of migrating again."""
    from syncd.state.db import Database

    path = tmp_path_factory.mktemp("template") / "state.db"
    database = Database(f"sqlite:///{path}")
    database.upgrade()
    database.dispose()  # closes the last connection: the WAL is folded into the file
    return path


@pytest.fixture(scope="session")
def _migrated_schemas(_pg_admin: Engine) -> Iterator[MigratedSchemas]:
    schemas = MigratedSchemas(_pg_admin, PG_URL)
    yield schemas
    schemas.drop_all()


@pytest.fixture
def db(request: pytest.FixtureRequest, state_url: str) -> Iterator[Any]:
    """A migrated state database on each backend, at ``state_url``."""
    from syncd.state.db import Database

    url = make_url(state_url)
    if url.get_backend_name() == "sqlite":
        template: Path = request.getfixturevalue("_sqlite_template")
        assert url.database is not None
        shutil.copyfile(template, url.database)
        database = Database(state_url)
        yield database
        database.dispose()
        return
    schemas: MigratedSchemas = request.getfixturevalue("_migrated_schemas")
    schema = str(url.query["options"]).removeprefix("-csearch_path=")
    schemas.lend(schema)
    database = Database(state_url)
    try:
        yield database
    finally:
        database.dispose()
        schemas.take_back(schema)


@pytest.fixture
def migrated_url(db: Any, state_url: str) -> str:
    """``state_url`` with the schema already there (``db``'s): for tests of what syncd does
    with its state, not of how its first start creates it, the CLI's upgrade has nothing to do.
    """
    return state_url
