"""The board's database: an engine like the job store's (SQLite file by default, any SQLAlchemy URL),
upgraded by the board's own Alembic revisions (``flowstudio/board/migrations``) whenever it opens.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool

from flowstudio.serve.migrate import ALEMBIC_LOCK, lock_database
from flowstudio.serve.store import database_url

MIGRATIONS = Path(__file__).parent / "migrations"
#: PostgreSQL advisory-lock key that serialises board upgrades across processes ("fsbrdmig").
UPGRADE_LOCK_KEY = int.from_bytes(b"fsbrdmig", "big")

__all__ = ["database_url", "make_engine", "upgrade"]


def make_engine(db: str | Path) -> Engine:
    """An engine on ``db`` (a SQLite path or a URL), as :class:`flowstudio.serve.store.JobStore` makes
    one: SQLite shared across threads (the worker and the request handlers), WAL so that readers do not
    block the scorer's writes."""
    url = database_url(db)
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        if url in ("sqlite://", "sqlite:///:memory:"):
            kwargs["poolclass"] = StaticPool
    engine = create_engine(url, **kwargs)
    if url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _pragmas(connection: Any, _record: Any) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

    return engine


def config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Upgrade the board's tables in ``engine``'s database to ``revision``, in one transaction.

    Several servers may open one fresh database at the same moment: each upgrade first takes the
    database's write lock for its whole transaction (SQLite ``BEGIN IMMEDIATE``, PostgreSQL a
    transaction-scoped advisory lock), so the later ones wait and then find the tables at ``revision``
    instead of failing on a ``CREATE TABLE`` of a table the first has just made.
    """
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    with ALEMBIC_LOCK, engine.begin() as connection:  # one Alembic run at a time in this process
        lock_database(engine, connection, UPGRADE_LOCK_KEY)
        cfg = config()
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)
