"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch thread for a module (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``): the
    test machine's cores are shared, and tiny models run fastest on one thread."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def speck_clip():
    """A generated clip that drew no object, only a 3x3 speck: uint8 ``(9, 64, 64, 3)``. The shape reader
    finds nothing to read in it (a uniform clip would not do: ``estimate_mask`` falls back to a central
    ellipse), so it exercises the readers' no-object rule."""
    import numpy as np

    clip = np.full((9, 64, 64, 3), 128, np.uint8)
    clip[:, 31:34, 31:34] = (200, 20, 20)
    return clip


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Wan2.2-TI2V checkpoint folder (seed 0), built once per session.

    Same layout and config keys as Wan-AI/Wan2.2-TI2V-5B-Diffusers; see
    ``flowstudio.testing.build_tiny_checkpoint``. Shared: copy it (``shutil.copytree``) before
    changing anything in it.
    """
    from flowstudio.testing import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("checkpoints") / "tiny-wan2.2-ti2v", seed=0)


@pytest.fixture(params=["sqlite", "postgresql"])
def board_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path | str]:
    """The board's database, once per backend: a SQLite file, and PostgreSQL at
    ``FLOWSTUDIO_TEST_POSTGRES_URL`` (a throwaway database: the board's tables are dropped before and
    after each test), skipped when that is not set. Yields what ``BoardStore``/``create_app`` take."""
    if request.param == "sqlite":
        yield tmp_path / "board.sqlite"
        return
    import os

    url = os.environ.get("FLOWSTUDIO_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("FLOWSTUDIO_TEST_POSTGRES_URL is not set")
    pytest.importorskip("psycopg")
    from tests.board_fixtures import wipe_board_tables

    wipe_board_tables(url)
    yield url
    wipe_board_tables(url)
