"""Alembic environment: runs against the connection handed in by signalfactory's migrator."""

from __future__ import annotations

from alembic import context

from signalfactory.adapters.storage.tables import metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - only when someone runs the alembic CLI by hand
    raise SystemExit("run migrations through `signalfactory db upgrade`, which supplies the "
                     "database connection from SIGNALFACTORY_DATABASE_URL")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
