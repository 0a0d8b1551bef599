"""Alembic environment: runs on the connection syncd hands it (see syncd.state.db.upgrade)."""

from __future__ import annotations

from alembic import context

from syncd.state.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - syncd always passes one
    raise RuntimeError("syncd migrations run through `syncd db upgrade`, not the alembic CLI")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
