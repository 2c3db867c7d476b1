"""Editing methods the benchmark can run, registered by name.

An :class:`EditMethod` is any callable ``method(case, out_dir, seed) -> frames`` returning the edited
clip as uint8 ``(T, H, W, 3)`` with the source's frames and size. ``out_dir`` is a scratch folder of
its own for that case (intermediate files, logs). Optional attributes are recorded in the results:
``settings`` (a dict: model, steps, guidance, ...), ``description``, and ``last_case_info`` (a dict
the method sets during each call, e.g. model calls; recorded as the case's ``method_info``).
A method with ``configure(options, device=..., dtype=...)`` (the editing engine) can be configured
by ``bench run --option key=value --device --dtype`` (:func:`configure_method`).

Built-in reference methods, honest anchors for every table:

* ``identity``: returns the source unchanged: the no-edit lower bound (perfect preservation and
  motion, no edit at all).
* ``ground-truth``: the oracle: returns the case's ground-truth target (cases without one fail with a
  recorded error). Only for test sets with ground truth, such as ``shapeworld-v1``.

The editing engine registers its methods under ``flowstudio-edit:<method>``. They are loaded lazily:
asking for ``flowstudio-edit:flowedit`` imports :mod:`flowstudio.edit`, which either registers
itself at import (``register_method("flowstudio-edit:flowedit", ...)``) or provides
``bench_method(name) -> EditMethod``. Without the engine the error says so.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from flowstudio.bench.manifest import Case
from flowstudio.errors import InputError

logger = logging.getLogger(__name__)

EDIT_PREFIX = "flowstudio-edit:"


@runtime_checkable
class EditMethod(Protocol):
    """``method(case, out_dir, seed) -> uint8 (T, H, W, 3)``."""

    def __call__(self, case: Case, out_dir: Path, seed: int) -> np.ndarray: ...


_REGISTRY: dict[str, EditMethod | Callable[[], EditMethod]] = {}
_LAZY: set[str] = set()


def register_method(
    name: str, method: EditMethod | Callable[[], EditMethod], *, lazy: bool = False, overwrite: bool = False
) -> None:
    """Register ``method`` under ``name``; with ``lazy=True`` ``method`` is a factory called on first use."""
    if not isinstance(name, str) or not name or any(c.isspace() for c in name):
        raise InputError(f"method name must be a non-empty string without spaces, got {name!r}")
    if name in _REGISTRY and not overwrite:
        raise InputError(f"a method named {name!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[name] = method
    if lazy:
        _LAZY.add(name)
    else:
        _LAZY.discard(name)


def available_methods() -> list[str]:
    """Registered method names (``flowstudio-edit:*`` appear once the engine is imported)."""
    return sorted(_REGISTRY)


def get_method(name: str) -> EditMethod:
    """The method registered as ``name``; ``flowstudio-edit:<m>`` imports the editing engine first.

    Raises:
        InputError: unknown name, or the editing engine is not installed / has no such method.
    """
    if name not in _REGISTRY and name.startswith(EDIT_PREFIX):
        _load_edit_method(name)
    if name not in _REGISTRY:
        raise InputError(
            f"unknown method {name!r}; registered: {', '.join(available_methods())}; editing-engine "
            f"methods are named {EDIT_PREFIX}<method>"
        )
    if name in _LAZY:
        _REGISTRY[name] = _REGISTRY[name]()  # type: ignore[call-arg]
        _LAZY.discard(name)
    return _REGISTRY[name]  # type: ignore[return-value]


def _load_edit_method(name: str) -> None:
    method = name[len(EDIT_PREFIX) :]
    try:
        engine = importlib.import_module("flowstudio.edit")
    except ImportError as err:
        raise InputError(
            f"method {name!r} needs the editing engine flowstudio.edit, which cannot be imported "
            f"here ({err}); use a build of flowstudio that includes it, or run `bench score` on "
            "outputs made elsewhere"
        ) from err
    if name in _REGISTRY:  # the engine registered itself at import
        return
    factory = getattr(engine, "bench_method", None)
    if factory is None:
        raise InputError(
            f"flowstudio.edit is installed but registers no benchmark method {name!r} and has no "
            f"bench_method(name); registered: {', '.join(available_methods())}"
        )
    try:
        found = factory(method)
    except (KeyError, ValueError) as err:
        raise InputError(f"flowstudio.edit has no method {method!r} ({err})") from err
    register_method(name, found)


def configure_method(
    method: EditMethod,
    name: str,
    options: list[str] | tuple[str, ...] = (),
    *,
    device: str = "cpu",
    dtype: str | None = None,
) -> EditMethod:
    """``method`` configured by ``bench run --option key=value --device --dtype``.

    Methods with a ``configure`` hook (the editing engine) get a new configured instance; the
    registered one is left as it is. Others take no options (``--device`` then only places the
    reference-tier models; ``--dtype`` is refused).

    Raises:
        InputError: options or a dtype for a method that takes none, or what ``configure`` refuses.
    """
    hook = getattr(method, "configure", None)
    if callable(hook):
        return hook(list(options), device=device, dtype=dtype)
    if options or dtype is not None:
        given = ", ".join([*(f"--option {o}" for o in options), *([f"--dtype {dtype}"] if dtype else [])])
        raise InputError(
            f"method {name!r} takes no engine options ({given}); --option and --dtype configure the "
            "editing engine, flowstudio-edit:<method>"
        )
    return method


def method_settings(method: EditMethod, name: str) -> dict[str, Any]:
    """Settings a method exposes for the results JSON (its ``settings`` dict, if any)."""
    settings = dict(getattr(method, "settings", {}) or {})
    settings.setdefault(
        "description", getattr(method, "description", None) or (method.__doc__ or "").strip().split("\n")[0]
    )
    return {"method": name, **settings}


class _Identity:
    """identity: returns the source unchanged (no-edit lower bound)."""

    settings = {"model": None, "steps": 0}

    def __call__(self, case: Case, out_dir: Path, seed: int) -> np.ndarray:
        return case.load_source()


class _GroundTruth:
    """ground-truth: returns the case's ground-truth target (oracle upper bound)."""

    settings = {"model": None, "steps": 0}

    def __call__(self, case: Case, out_dir: Path, seed: int) -> np.ndarray:
        target = case.load_target()
        if target is None:
            raise InputError(
                f"case {case.id} has no ground-truth target; the ground-truth oracle only runs on sets "
                "with targets (e.g. shapeworld-v1)"
            )
        return target


class FolderMethod:
    """Outputs made by any external tool, read from a folder: ``<folder>/<case id>.<ext>``.

    Accepted, in this order: ``<id>.npz``, ``<id>.npy``, ``<id>.mp4``, ``.mov``, ``.mkv``, ``.webm``,
    ``.avi``, ``.gif``, or a folder ``<id>/`` of PNG/JPEG frames in natural order.
    """

    SUFFIXES = (".npz", ".npy", ".mp4", ".mov", ".mkv", ".webm", ".avi", ".gif", ".m4v")

    def __init__(self, folder: str | Path, name: str | None = None) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise InputError(f"outputs folder {self.folder} does not exist")
        self.settings = {"outputs": str(self.folder.resolve()), "model": None, "steps": None}
        self.description = f"outputs read from {self.folder}"

    def find(self, case_id: str) -> Path | None:
        for suffix in self.SUFFIXES:
            path = self.folder / f"{case_id}{suffix}"
            if path.is_file():
                return path
        path = self.folder / case_id
        return path if path.is_dir() else None

    def __call__(self, case: Case, out_dir: Path, seed: int) -> np.ndarray:
        from flowstudio.bench.io import load_frames

        path = self.find(case.id)
        if path is None:
            raise FileNotFoundError(
                f"no output for case {case.id} in {self.folder} (expected {case.id}.mp4, "
                f"{case.id}.npz, ... or a folder {case.id}/ of frames)"
            )
        return load_frames(path)


register_method("identity", _Identity())
register_method("ground-truth", _GroundTruth())
