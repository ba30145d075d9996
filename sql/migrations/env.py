"""Alembic environment: runs against the engine Tiller hands over (SQLite or PostgreSQL)."""

from __future__ import annotations

from alembic import context

import models

config = context.config
engine = config.attributes["engine"]

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=models.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
