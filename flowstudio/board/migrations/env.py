"""Alembic's environment for the board (the shared body: :mod:`flowstudio.serve.migrations_env`).

The board keeps its own version table (``board_alembic_version``), so that it can live in the same
database as the job store (whose revisions use Alembic's default ``alembic_version``).
"""

from __future__ import annotations

from flowstudio.board.models import Base
from flowstudio.serve.migrations_env import run_migrations

VERSION_TABLE = "board_alembic_version"

run_migrations(
    Base.metadata,
    version_table=VERSION_TABLE,
    owner="the board's migrations (flowstudio.board.db.upgrade)",
)
