"""Up-front checks of user input, shared by the commands and the Python APIs.

Each check raises :class:`~flowstudio.errors.InputError` with one line that names the argument,
states the rule, echoes the value and says what to do, before any model is loaded or file written.
:func:`markup_safe` escapes text for rich consoles, so that a path such as ``clips/[draft]/a.mp4``
is printed as it is (rich would read ``[draft]`` as a style tag and ``[/e]`` as a broken one).
"""

from __future__ import annotations

import math
import numbers
import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowstudio.errors import InputError

if TYPE_CHECKING:
    import torch

DTYPES: tuple[str, ...] = ("float32", "bfloat16", "float16")
"""Names the ``--dtype`` options accept."""


def markup_safe(text: object) -> str:
    """``str(text)`` with rich markup escaped (``[`` of tags), for ``console.print``."""
    from rich.markup import escape

    return escape(str(text))


def check_int(name: str, value: Any, *, minimum: int | None = None, what: str = "") -> int:
    """``value`` as an int: a whole number (not a bool, float or string) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(
            f"{name} must be a whole number{_at_least(minimum)}, got {value!r} ({type(value).__name__}); "
            f"pass an int{what}"
        )
    if minimum is not None and value < minimum:
        raise InputError(f"{name} must be a whole number{_at_least(minimum)}, got {value}{what}")
    return int(value)


def check_number(
    name: str, value: Any, *, positive: bool = False, minimum: float | None = None, what: str = ""
) -> float:
    """``value`` as a finite float (``> 0`` with ``positive``, ``>= minimum`` with ``minimum``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{name} must be a number, got {value!r} ({type(value).__name__}){what}")
    number = float(value)
    rule = " > 0" if positive else (f" >= {minimum:g}" if minimum is not None else "")
    if not math.isfinite(number) or (positive and number <= 0) or (minimum is not None and number < minimum):
        raise InputError(f"{name} must be a finite number{rule}, got {value!r}{what}")
    return number


def check_text(name: str, value: Any, describe: str) -> str:
    """A non-empty text (not only blanks); ``describe`` says what it should say."""
    if not isinstance(value, str) or not value.strip():
        raise InputError(
            f"{name} is missing or empty: give a non-empty text describing {describe}, got {value!r}"
        )
    return value


def parse_dtype(name: str | torch.dtype | None, option: str = "dtype") -> torch.dtype | None:
    """``None`` (the device's default), or one of :data:`DTYPES` (a ``torch.dtype`` passes through)."""
    import torch

    if name is None or isinstance(name, torch.dtype):
        return name
    if not isinstance(name, str) or name not in DTYPES:
        raise InputError(f"{option} must be one of {', '.join(DTYPES)}, got {name!r}")
    return getattr(torch, name)


def dtype_name(dtype: str | torch.dtype) -> str:
    """The name of a dtype as :data:`DTYPES` spells it (``torch.bfloat16`` -> ``"bfloat16"``)."""
    return dtype if isinstance(dtype, str) else str(dtype).removeprefix("torch.")


def check_device(device: Any, option: str = "device") -> torch.device:
    """``device`` as a ``torch.device`` (``cpu``, ``cuda``, ``cuda:1``, ``mps``...)."""
    import torch

    try:
        return torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(
            f"{option} must be a torch device such as cpu, cuda or cuda:1, got {device!r}"
        ) from None


def _at_least(minimum: int | None) -> str:
    return "" if minimum is None else f" >= {minimum}"


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_outputs(
    outputs: Iterable[str | os.PathLike[str]],
    *,
    inputs: Iterable[str | os.PathLike[str] | None] = (),
    option: str = "--out",
) -> list[Path]:
    """Refuse output files that are folders or that are one of the ``inputs``; return them as paths.

    Checked before a run so that no file is left half-written (an mp4 without its JSON) and no
    input is overwritten by its own output.
    """
    paths = [Path(p) for p in outputs]
    sources = [Path(p) for p in inputs if p is not None and not _is_array(p)]
    for path in paths:
        if path.is_dir():
            raise InputError(
                f"{option}: {path} is an existing folder but must be a file to write; "
                "move the folder away or choose another --out"
            )
        for source in sources:
            if _same_file(path, source):
                raise InputError(
                    f"{option}: {path} is also an input ({source}); writing it would overwrite the "
                    "input: choose another --out"
                )
    return paths


def check_writable_folder(path: str | os.PathLike[str], option: str = "out", *, create: bool = True) -> Path:
    """Check a folder can be written: not an existing file, and creatable/writable.

    With ``create`` (the default) the folder is made and a probe file written and removed; without,
    nothing is created: the folder, or its nearest existing parent, must be writable.
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{option}: {folder} is an existing file, not a folder; choose another {option}")
    if not create:
        existing = next((p for p in (folder, *folder.absolute().parents) if p.exists()), None)
        if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise InputError(
                f"{option}: cannot write into {folder} ({existing} is not a writable folder); "
                "choose a folder you can write to"
            )
        return folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".flowstudio-write-test-{uuid.uuid4().hex[:8]}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise InputError(
            f"{option}: cannot write into {folder} ({err.strerror or err}); choose a folder you can write to"
        ) from err
    return folder


def _is_array(value: object) -> bool:
    return not isinstance(value, (str, os.PathLike))
