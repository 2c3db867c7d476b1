"""The job store's schema migrations (Alembic; the revisions are in ``migrations/versions``).

:func:`upgrade` brings a database to the newest revision; :class:`~flowstudio.serve.store.JobStore`
calls it whenever it opens one, so a server always starts on the current schema. A database made by
the first slice of ``flowstudio serve`` (``create_all``, before Alembic) is stamped ``0001`` first.

A new revision, after changing :mod:`flowstudio.serve.store`::

    python -c "from flowstudio.serve.migrate import config; from alembic import command; \\
               command.revision(config('sqlite:///tmp.sqlite'), 'what changed', autogenerate=True)"

(upgrade that scratch database to head first); then read and fix the generated file.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

MIGRATIONS = Path(__file__).parent / "migrations"
#: The revision of the first slice's schema (the table ``create_all`` made before Alembic).
FIRST_SLICE = "0001"
#: PostgreSQL advisory-lock key that serialises job-store upgrades across processes ("fsjobmig").
UPGRADE_LOCK_KEY = int.from_bytes(b"fsjobmig", "big")
#: Alembic's ``context``/``op`` are process-wide proxies: two upgrades in one process (the job store's
#: and the board's included) must not interleave; they deadlock against each other's database locks.
ALEMBIC_LOCK = threading.Lock()


def lock_database(engine: Engine, connection: Connection, key: int) -> None:
    """Hold the database's write lock for the rest of ``connection``'s transaction (its first statement):
    SQLite ``BEGIN IMMEDIATE`` (a file; pysqlite opens transactions lazily, so this one opens it as a
    writer), PostgreSQL ``pg_advisory_xact_lock(key)``. Several servers opening one fresh database at
    once then upgrade one after the other instead of failing on a table another has just created."""
    if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    elif engine.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def config(url: str | None = None) -> Config:
    """An Alembic config on the packaged migrations (``url``: a database to run them on by itself)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url)
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Upgrade the database of ``engine`` to ``revision``, in one transaction that holds the database's
    lock (:func:`lock_database`), so that servers starting together on one database do not race."""
    # alembic announces each of its plugins at INFO on every start; the upgrades it runs stay logged
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    with ALEMBIC_LOCK, engine.begin() as connection:
        lock_database(engine, connection, UPGRADE_LOCK_KEY)  # before reading what is there
        cfg = config()
        cfg.attributes["connection"] = connection
        tables = set(inspect(connection).get_table_names())
        if "jobs" in tables and "alembic_version" not in tables:
            command.stamp(cfg, FIRST_SLICE)
        command.upgrade(cfg, revision)
