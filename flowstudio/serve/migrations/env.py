"""Alembic's environment for the job store (the shared body: :mod:`flowstudio.serve.migrations_env`)."""

from __future__ import annotations

from flowstudio.serve.migrations_env import run_migrations
from flowstudio.serve.store import Base

run_migrations(Base.metadata, owner="the job store's migrations (flowstudio.serve.migrate.upgrade)")
