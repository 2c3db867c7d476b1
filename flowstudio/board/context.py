"""What every route of the board needs, in one object on ``app.state.board``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request

from flowstudio.bench.manifest import TestSet
from flowstudio.board.store import BoardStore
from flowstudio.serve.auth import Tokens


@dataclass
class Limits:
    """Bounds on a submitted archive (``board serve --max-upload-mb`` etc.)."""

    max_upload: int = 256 * 1024 * 1024  # bytes of the request body; beyond: 413 while it streams
    max_unpacked: int = 1024 * 1024 * 1024  # sum of the members' declared sizes
    max_ratio: float = 50.0  # a member's size / its compressed size; mp4 barely compresses (~1.0)
    max_members: int = 2000
    max_pending: int = 3  # queued + scoring submissions one submitter may have; beyond: 429


@dataclass
class Board:
    store: BoardStore
    testset: TestSet
    data_dir: Path
    tokens: Tokens
    limits: Limits = field(default_factory=Limits)
    worker: Any = None  # flowstudio.board.worker.ScoringWorker, when started
    rater_tokens: Tokens = field(default_factory=lambda: Tokens({}))  # the arena's raters; none: closed
    arena: Any = None  # flowstudio.board.arena.ArenaSettings

    @property
    def submissions_dir(self) -> Path:
        return self.data_dir / "submissions"

    @property
    def staging_dir(self) -> Path:
        return self.data_dir / "staging"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"


def board_of(request: Request) -> Board:
    return request.app.state.board
