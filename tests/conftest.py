"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Wan2.2-TI2V checkpoint folder (seed 0), built once per session.

    Same layout and config keys as Wan-AI/Wan2.2-TI2V-5B-Diffusers; see
    ``flowstudio.testing.build_tiny_checkpoint``. Shared: copy it (``shutil.copytree``) before
    changing anything in it.
    """
    from flowstudio.testing import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("checkpoints") / "tiny-wan2.2-ti2v", seed=0)
