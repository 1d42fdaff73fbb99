"""Alembic environment: runs on the connection `stacks.deployer.db.migrate` hands in."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from stacks.deployer.models import Base

connection: Connection | None = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through stacks.deployer.db.migrate(engine)")

# Batch mode lets later revisions ALTER tables on SQLite too.
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
