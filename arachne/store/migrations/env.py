"""Alembic environment: runs on the connection Arachne hands over (see store/db.py)."""

from __future__ import annotations

from alembic import context

from arachne.store.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("Arachne migrations run through arachne.store.db.upgrade()")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
