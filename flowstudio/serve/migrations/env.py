"""Alembic's environment for the job store: online only, on the caller's connection if it gave one."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from flowstudio.serve.store import Base


def _run(connection: object) -> None:
    # render_as_batch: SQLite cannot ALTER constraints; batch mode copies the table instead.
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("the job store's migrations run online only (flowstudio.serve.migrate.upgrade)")
connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = create_engine(context.config.get_main_option("sqlalchemy.url"))
    with engine.begin() as own:
        _run(own)
    engine.dispose()
