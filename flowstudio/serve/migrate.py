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
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import inspect
from sqlalchemy.engine import Engine

MIGRATIONS = Path(__file__).parent / "migrations"
#: The revision of the first slice's schema (the table ``create_all`` made before Alembic).
FIRST_SLICE = "0001"


def config(url: str | None = None) -> Config:
    """An Alembic config on the packaged migrations (``url``: a database to run them on by itself)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url)
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Upgrade the database of ``engine`` to ``revision``, in one transaction."""
    # alembic announces each of its plugins at INFO on every start; the upgrades it runs stay logged
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    with engine.begin() as connection:
        cfg = config()
        cfg.attributes["connection"] = connection
        tables = set(inspect(connection).get_table_names())
        if "jobs" in tables and "alembic_version" not in tables:
            command.stamp(cfg, FIRST_SLICE)
        command.upgrade(cfg, revision)
