"""Migrated state databases for the tests, made once and reused (see ``db`` in conftest)."""

from __future__ import annotations

import uuid

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError


def schema_url(url: str, schema: str) -> str:
    """``url`` (a PostgreSQL database) with ``schema`` as the only schema on its search path."""
    return f"{url}?options=-csearch_path%3D{schema}"


class MigratedSchemas:
    """Migrated PostgreSQL schemas, emptied and reused by one test after another: migrating
    took most of a short test's time. One is renamed to the test's schema name, so
    ``state_url`` names it; afterwards its tables are emptied and it waits for the next
    test, unless the test changed its structure (then it is dropped with the test's schema)."""

    def __init__(self, admin: Engine, url: str) -> None:
        self.admin, self.url = admin, url
        self.spare: list[str] = []
        self.made: set[str] = set()
        self.shape: str | None = None

    def lend(self, schema: str) -> None:
        from syncd.state.db import Database

        if self.spare:
            migrated = self.spare.pop()
        else:
            migrated = f"m_{uuid.uuid4().hex[:12]}"
            with self.admin.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{migrated}"'))
            self.made.add(migrated)
            database = Database(schema_url(self.url, migrated))
            database.upgrade()
            database.dispose()
            if self.shape is None:
                self.shape = self._shape(migrated)
        with self.admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}"'))  # empty: state_url just made it
            conn.execute(text(f'ALTER SCHEMA "{migrated}" RENAME TO "{schema}"'))
        self.made.discard(migrated)

    def take_back(self, schema: str) -> None:
        if self._shape(schema) != self.shape:
            return  # state_url drops it
        migrated = f"m_{uuid.uuid4().hex[:12]}"
        try:
            self._empty(schema, migrated)
        except DBAPIError:
            return  # a connection the test left open holds a lock: state_url drops it
        self.made.add(migrated)
        self.spare.append(migrated)

    def _empty(self, schema: str, migrated: str) -> None:
        from syncd.state.tables import metadata

        with self.admin.begin() as conn:
            # A connection the test left in a transaction would hold the delete forever.
            conn.execute(text("SET LOCAL lock_timeout = '5s'"))
            tables = set(
                conn.execute(
                    text(
                        "SELECT tablename FROM pg_tables WHERE schemaname = :s"
                        " AND tablename <> 'alembic_version'"
                    ),
                    {"s": schema},
                ).scalars()
            )
            # DELETE, children first, costs a fifth of a TRUNCATE of every table.
            ordered = [t.name for t in reversed(metadata.sorted_tables) if t.name in tables]
            for table in [*ordered, *sorted(tables - set(ordered))]:
                conn.execute(text(f'DELETE FROM "{schema}"."{table}"'))
            sequences = conn.execute(
                text("SELECT sequencename FROM pg_sequences WHERE schemaname = :s"), {"s": schema}
            ).scalars()
            for sequence in list(sequences):
                conn.execute(text(f'ALTER SEQUENCE "{schema}"."{sequence}" RESTART'))
            conn.execute(text(f'ALTER SCHEMA "{schema}" RENAME TO "{migrated}"'))

    def _shape(self, schema: str) -> str:
        """Every relation, column, index, constraint and trigger, and the migration version."""
        with self.admin.connect() as conn:
            rows = conn.execute(
                text(
                    """
                    SELECT c.relname || ':' || c.relkind::text FROM pg_class c
                      JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = :s
                    UNION ALL
                    SELECT table_name || '.' || column_name || ':' || data_type || ':'
                        || coalesce(character_maximum_length::text, '') || ':' || is_nullable
                        || ':' || coalesce(column_default, '')
                      FROM information_schema.columns WHERE table_schema = :s
                    UNION ALL
                    SELECT indexdef FROM pg_indexes WHERE schemaname = :s
                    UNION ALL
                    SELECT conname || ':' || pg_get_constraintdef(c.oid) FROM pg_constraint c
                      JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = :s
                    UNION ALL
                    SELECT tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
                      JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = :s
                    UNION ALL
                    SELECT p.proname FROM pg_proc p
                      JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = :s
                    """
                ),
                {"s": schema},
            ).scalars()
            shape = sorted(r.replace(f'"{schema}".', "").replace(f"{schema}.", "") for r in rows)
            if "alembic_version:r" in shape:
                versions = conn.execute(text(f'SELECT version_num FROM "{schema}".alembic_version'))
                shape += sorted(f"version:{v}" for v in versions.scalars())
        return "\n".join(shape)

    def drop_all(self) -> None:
        with self.admin.begin() as conn:
            for schema in self.made:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
