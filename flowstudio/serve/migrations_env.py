"""The body of an Alembic ``env.py``, shared by the job store's and the board's migrations.

Both run online only, on the caller's connection when it gave one (``config.attributes["connection"]``,
so that an upgrade runs in the caller's transaction), else on an engine of ``sqlalchemy.url``. They
differ only in their tables and their version table: the board keeps its own
(``board_alembic_version``) so that it can live in the same database as the job store.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import MetaData, create_engine


def run_migrations(target_metadata: MetaData, *, version_table: str = "alembic_version", owner: str) -> None:
    """Run the current Alembic command (called from an ``env.py``).

    Args:
        target_metadata: the models the revisions build (for autogenerate).
        version_table: the table that holds the revision this database is at.
        owner: who these migrations belong to and the function that runs them, for the error of
            an offline run (``"the job store's migrations ... (flowstudio.serve.migrate.upgrade)"``).
    """
    if context.is_offline_mode():
        raise SystemExit(f"{owner} run online only")

    def run(connection: Any) -> None:
        # render_as_batch: SQLite cannot ALTER constraints; batch mode copies the table instead.
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=True,
            version_table=version_table,
        )
        with context.begin_transaction():
            context.run_migrations()

    connection = context.config.attributes.get("connection")
    if connection is not None:
        run(connection)
        return
    engine = create_engine(context.config.get_main_option("sqlalchemy.url"))
    with engine.begin() as own:
        run(own)
    engine.dispose()
