"""JSON Schema of a benchmark test-set manifest, and a small validator of the subset it uses.

The schema is plain data (:data:`MANIFEST_SCHEMA`, JSON Schema draft 2020-12); ``flowstudio bench
schema`` prints it so that other tools can validate manifests with any JSON Schema library. The
validator here implements only the keywords the schema uses (``type``, ``required``, ``properties``,
``additionalProperties``, ``enum``, ``pattern``, ``minLength``, ``minItems``, ``items``), so the package
needs no ``jsonschema`` dependency; each error names the JSON path of the offending value.
"""

from __future__ import annotations

import re
from typing import Any

EDIT_TYPES: tuple[str, ...] = (
    "product",
    "color",
    "material",
    "background",
    "style",
    "shape",
    "texture",
    "removal",
    "addition",
    "lighting",
    "text",
    "other",
)
"""Edit types a case may declare. The first five are the ShapeWorld ground-truth edits."""

PRESERVE_MODES: tuple[str, ...] = ("outside_mask", "inside_mask", "none")
SHA256_PATTERN = r"^[0-9a-f]{64}$"
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
FILE_FIELDS: tuple[str, ...] = ("source", "mask", "target_mask", "target", "target_first_frame")

_PATH = {"type": "string", "minLength": 1}
MANIFEST_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://flowstudio.dev/schemas/bench-manifest-v1.json",
    "title": "flowstudio benchmark test-set manifest",
    "type": "object",
    "required": ["format", "version", "name", "cases"],
    "additionalProperties": False,
    "properties": {
        "format": {"enum": ["flowstudio-bench-manifest"]},
        "version": {"enum": [1]},
        "name": {"type": "string", "pattern": ID_PATTERN},
        "description": {"type": "string"},
        "license": {"type": "string"},
        "generator": {"type": "object", "description": "how a generated set was made (name, seed, version)"},
        "fps": {"type": "number"},
        "cases": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["id", "edit_type", "source", "source_prompt", "target_prompt"],
                "additionalProperties": False,
                "properties": {
                    "id": {"type": "string", "pattern": ID_PATTERN},
                    "edit_type": {"enum": list(EDIT_TYPES)},
                    "source": {**_PATH, "description": "source clip, relative to the manifest folder"},
                    "source_prompt": {"type": "string", "minLength": 1},
                    "target_prompt": {"type": "string", "minLength": 1},
                    "instruction": {"type": "string"},
                    "mask": {**_PATH, "description": "object mask of the source, same frames and size"},
                    "target_mask": {**_PATH, "description": "object mask of the ground-truth target"},
                    "target": {**_PATH, "description": "ground-truth edited clip"},
                    "target_first_frame": {**_PATH, "description": "an image of the wanted first frame"},
                    "preserve": {"enum": list(PRESERVE_MODES)},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "attributes": {
                        "type": "object",
                        "description": "toy-world attributes: {'source': {...}, 'target': {...}}",
                    },
                    "sha256": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            name: {"type": "string", "pattern": SHA256_PATTERN} for name in FILE_FIELDS
                        },
                    },
                },
            },
        },
    },
}

_TYPES: dict[str, type | tuple[type, ...]] = {
    "object": dict,
    "array": list,
    "string": str,
    "number": (int, float),
    "integer": int,
    "boolean": bool,
}


def _pattern_matches(pattern: str, value: str) -> bool:
    """JSON Schema (ECMA-262) semantics: ``$`` ends the text; Python's ``$`` also matches before a
    final newline, which let ids such as ``"case-1\\n"`` through (and into file names)."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.search(pattern, value) is not None


def schema_errors(value: Any, schema: dict[str, Any] = MANIFEST_SCHEMA, path: str = "$") -> list[str]:
    """All violations of ``schema`` by ``value``, each as ``"<json path>: <what is wrong>"``."""
    errors: list[str] = []
    expected = schema.get("type")
    if expected is not None:
        ok = isinstance(value, _TYPES[expected]) and not (isinstance(value, bool) and expected != "boolean")
        if not ok:
            return [f"{path}: must be of type {expected}, got {type(value).__name__} {value!r:.60}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: must be one of {', '.join(map(str, schema['enum']))}; got {value!r}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            errors.append(f"{path}: must not be empty")
        if "pattern" in schema and not _pattern_matches(schema["pattern"], value):
            errors.append(f"{path}: {value!r} does not match {schema['pattern']}")
    if isinstance(value, dict):
        for key in schema.get("required", ()):
            if key not in value:
                errors.append(f"{path}: missing required key {key!r}")
        properties = schema.get("properties", {})
        for key, item in value.items():
            if key in properties:
                errors.extend(schema_errors(item, properties[key], f"{path}.{key}"))
            elif schema.get("additionalProperties") is False:
                errors.append(f"{path}: unknown key {key!r} (known: {', '.join(sorted(properties))})")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errors.append(f"{path}: needs at least {schema['minItems']} item(s)")
        if "items" in schema:
            for i, item in enumerate(value):
                errors.extend(schema_errors(item, schema["items"], f"{path}[{i}]"))
    return errors
