"""Alembic's environment for the board: online only, on the caller's connection if it gave one.

The board keeps its own version table (``board_alembic_version``), so that it can live in the same
database as the job store (whose revisions use Alembic's default ``alembic_version``).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from flowstudio.board.models import Base

VERSION_TABLE = "board_alembic_version"


def _run(connection: object) -> None:
    # render_as_batch: SQLite cannot ALTER constraints; batch mode copies the table instead.
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=True,
        version_table=VERSION_TABLE,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("the board's migrations run online only (flowstudio.board.db.upgrade)")
connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = create_engine(context.config.get_main_option("sqlalchemy.url"))
    with engine.begin() as own:
        _run(own)
    engine.dispose()
