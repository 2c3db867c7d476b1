"""Run recipes: YAML files whose ``base: OTHER.yaml`` (beside them) supplies the keys they leave out.

One reader for every trainer's configs (the toy model, DualForce, distillation): an ablation or a
continuation is its base recipe plus the keys that change. Refuses, naming the file: a missing file,
YAML that does not parse, a top level that is not a mapping, and a ``base`` chain that loops.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from flowstudio.errors import InputError

Merge = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]


def shallow(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A recipe's keys replace its base's whole."""
    return {**base, **overrides}


def deep(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Nested mappings merge key by key (a section overrides only the keys it names)."""
    out = dict(base)
    for key, value in overrides.items():
        out[key] = (
            deep(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def read_yaml_mapping(path: str | Path, hint: str = "") -> dict[str, Any]:
    """The top-level mapping of a YAML file (empty file: ``{}``)."""
    import yaml

    file = Path(path)
    if not file.is_file():
        raise InputError(f"config file {str(file)!r} not found{'; ' + hint if hint else ''}")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise InputError(f"{file}: not valid YAML ({error})") from error
    if not isinstance(data, dict):
        raise InputError(f"{file}: top level must be a mapping of keys, got {type(data).__name__}")
    return data


def read_recipe(
    path: str | Path, merge: Merge = shallow, hint: str = "", _seen: tuple[Path, ...] = ()
) -> dict:
    """The recipe's keys over those of its ``base`` chain (``base`` is relative to the file)."""
    file = Path(path)
    if file.resolve() in _seen:
        raise InputError(f"{file}: its 'base' chain loops back to itself")
    data = read_yaml_mapping(file, hint)
    base = data.pop("base", None)
    if base is None:
        return data
    return merge(read_recipe(file.parent / base, merge, hint, (*_seen, file.resolve())), data)
