"""Validated field types of the requests, built on :mod:`flowstudio.checks`.

Each type checks a value *before* pydantic coerces it, with the same one-line
:class:`~flowstudio.errors.InputError` the Python APIs raise (``steps must be a whole number >= 1,
got 2.5 (float)``), so a request, a CLI option and ``flowstudio.edit.edit`` word a bad value the
same way; the ``Field`` constraints beside each check put the rule into the JSON schema a REST
client reads. Strict on purpose: ``"2"`` is not a step count, ``True`` is not a seed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import BeforeValidator, Field, PlainSerializer, PlainValidator, ValidationInfo, WithJsonSchema

from flowstudio.checks import DTYPES, check_device, check_int, check_number, check_text, dtype_name
from flowstudio.errors import InputError


def whole(minimum: int | None = None, what: str = "") -> Any:
    """An ``int`` (not a bool, float or text) ``>= minimum``."""

    def check(value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return None
        return check_int(info.field_name or "value", value, minimum=minimum, what=what)

    return Annotated[int, Field(ge=minimum, strict=True), BeforeValidator(check)]


def number(
    *, positive: bool = False, minimum: float | None = None, maximum: float | None = None, what: str = ""
) -> Any:
    """A finite ``float`` (``> 0`` with ``positive``, within ``[minimum, maximum]`` where given)."""

    def check(value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return None
        name = info.field_name or "value"
        value = check_number(name, value, positive=positive, minimum=minimum, what=what)
        if maximum is not None and value > maximum:
            raise InputError(f"{name} must be in [{minimum or 0:g}, {maximum:g}], got {value!r}{what}")
        return value

    constraints = Field(gt=0 if positive else None, ge=minimum, le=maximum, allow_inf_nan=False)
    return Annotated[float, constraints, BeforeValidator(check)]


def text(describe: str) -> Any:
    """A non-empty text (not only blanks)."""

    def check(value: Any, info: ValidationInfo) -> Any:
        return check_text(info.field_name or "value", value, describe)

    return Annotated[str, Field(min_length=1), BeforeValidator(check)]


def choice(options: Iterable[str], what: str = "") -> Any:
    """One of ``options`` (kept open as ``str`` so that e.g. solver names follow the registry)."""
    allowed = tuple(options)

    def check(value: Any, info: ValidationInfo) -> Any:
        if value is not None and value not in allowed:
            raise InputError(f"unknown {info.field_name} {value!r}; choose one of {', '.join(allowed)}{what}")
        return value

    return Annotated[str, Field(json_schema_extra={"enum": list(allowed)}), BeforeValidator(check)]


def _device(value: Any, info: ValidationInfo) -> Any:
    check_device(value, info.field_name or "device")
    return str(value)


def _dtype(value: Any, info: ValidationInfo) -> Any:
    if value is None:
        return None
    name = dtype_name(value)
    if name not in DTYPES:
        raise InputError(f"{info.field_name} must be one of {', '.join(DTYPES)}, got {value!r}")
    return name


#: A torch device name (``cpu``, ``cuda``, ``cuda:1``, ``mps``).
Device = Annotated[str, BeforeValidator(_device)]
#: ``None`` (the device's default: bf16 on GPU, fp32 on CPU) or a dtype name.
DtypeName = Annotated[str | None, Field(json_schema_extra={"enum": [*DTYPES, None]}), BeforeValidator(_dtype)]


def _frames(value: Any) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise InputError(f"expected a file path or a uint8 array, got {type(value).__name__}")
    return value


def _describe_array(value: np.ndarray) -> str:
    return f"<array {value.dtype} {tuple(value.shape)}>"


#: In-memory frames or mask (the benchmark passes a case's decoded frames): accepted from Python,
#: absent from the JSON schema (a REST client sends paths), recorded as ``<array dtype shape>``.
Array = Annotated[
    Any,
    PlainValidator(_frames),
    PlainSerializer(_describe_array, return_type=str),
    WithJsonSchema({"type": "string", "description": "in-memory array (Python only)"}),
]


def _path(value: Any, info: ValidationInfo) -> Any:
    if isinstance(value, str | os.PathLike) and str(value) != "":
        return Path(value)
    if value is None or isinstance(value, np.ndarray):
        return value
    raise InputError(f"{info.field_name} must be a file path, got {value!r}")


#: A file path (text accepted); ``""`` is refused rather than taken as the current folder.
FilePath = Annotated[Path, BeforeValidator(_path)]
