"""Where a result came from: library versions and a fingerprint of the model folder.

The fingerprint must not cost a read of the weights per job (the 5B folder is ~20 GB): it hashes
every small file (configs, tokenizer, vocabulary: < 1 MiB each) whole and, of each larger file
(weights), its name, size and first and last 64 KiB (a safetensors header with every tensor's name,
dtype, shape and offset sits at the start). Copies of one model get the same fingerprint; a
changed config or a retrained, resized or truncated weight file gets another. It is cached per
folder and recomputed only when a file's size or modification time changes.
"""

from __future__ import annotations

import hashlib
import os
import platform
from functools import lru_cache
from pathlib import Path
from typing import Any

SMALL_FILE = 1 << 20
EDGE = 64 << 10


def versions() -> dict[str, str]:
    """Versions of flowstudio and the libraries that decide its numbers."""
    from importlib.metadata import PackageNotFoundError, version

    from flowstudio import __version__

    found = {"flowstudio": __version__, "python": platform.python_version()}
    for name in ("torch", "diffusers", "transformers", "numpy"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def _files(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """``(relative path, size, mtime_ns)`` of every file under ``folder``, hidden ones skipped."""
    entries = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith("."):
                continue
            path = Path(root) / name
            stat = path.stat()
            entries.append((path.relative_to(folder).as_posix(), stat.st_size, stat.st_mtime_ns))
    return tuple(entries)


@lru_cache(maxsize=32)
def _fingerprint(folder: Path, files: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for name, size, _ in files:
        digest.update(f"{name}\0{size}\0".encode())
        with open(folder / name, "rb") as handle:
            if size <= SMALL_FILE:
                digest.update(handle.read())
            else:
                digest.update(handle.read(EDGE))
                handle.seek(size - EDGE)
                digest.update(handle.read(EDGE))
    return "sha256:" + digest.hexdigest()


def model_fingerprint(folder: str | os.PathLike[str] | None) -> str | None:
    """``sha256:...`` of ``folder`` as the module docstring says, or ``None`` without a folder."""
    if folder is None or not Path(folder).is_dir():
        return None
    path = Path(folder).resolve()
    return _fingerprint(path, _files(path))  # the stat listing is the cache key: cheap, and exact


def model_provenance(folder: str | os.PathLike[str] | None, description: str | None = None) -> dict[str, Any]:
    """``{"path", "hash", "description"}`` of the model a job ran."""
    return {
        "path": None if folder is None else str(folder),
        "hash": model_fingerprint(folder),
        "description": description,
    }


def runtime(pipe: Any) -> dict[str, str]:
    """Where a loaded ``WanVideoPipeline`` runs: its device, the transformer's dtype and the VAE's."""
    from flowstudio.checks import dtype_name

    return {
        "device": str(pipe.device),
        "dtype": dtype_name(pipe.denoiser.dtype),
        "vae_dtype": dtype_name(pipe.components.vae.dtype),
    }
