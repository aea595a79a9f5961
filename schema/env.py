"""Alembic environment: runs migrations on the connection handed over in config."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    version_table="alembic_version",
    version_table_schema="archive_meta",
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
