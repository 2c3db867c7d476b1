"""Test-set manifests: load, validate (all problems at once, before anything runs), hash.

A manifest is a JSON (or YAML) file; every path in it is relative to the manifest's folder. See
:data:`flowstudio.bench.schema.MANIFEST_SCHEMA` and ``docs/guide_benchmark.md``::

    {"format": "flowstudio-bench-manifest", "version": 1, "name": "my-set",
     "cases": [{"id": "shoe-01", "edit_type": "color", "source": "clips/shoe-01.mp4",
                "source_prompt": "a white sneaker on a wooden floor",
                "target_prompt": "a red sneaker on a wooden floor",
                "mask": "masks/shoe-01.mp4", "tags": ["footwear"],
                "sha256": {"source": "…", "mask": "…"}}]}

:func:`load_testset` never returns a half-valid set: it gathers every problem (schema, duplicate
ids, missing files, hash mismatches, masks or targets whose frames/size differ from the source)
and raises one :class:`ManifestError` listing them all.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flowstudio.bench.io import load_frames, load_mask, sha256_file
from flowstudio.bench.schema import EDIT_TYPES, FILE_FIELDS, schema_errors
from flowstudio.errors import InputError
from flowstudio.video import IMAGE_SUFFIXES

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
DEFAULT_PRESERVE: dict[str, str] = {
    "background": "inside_mask",
    "style": "none",
    "lighting": "none",
    "other": "none",
}
"""Region of the source an edit must keep, by edit type; ``outside_mask`` for the types not listed."""


class ManifestError(InputError):
    """A test-set manifest is malformed or points at missing, altered or inconsistent files.

    ``problems`` lists every problem found; the message shows them one per line.
    """

    def __init__(self, manifest: str | os.PathLike[str], problems: list[str]) -> None:
        self.problems = list(problems)
        shown = "\n  ".join(self.problems[:50])
        more = f"\n  ... and {len(self.problems) - 50} more" if len(self.problems) > 50 else ""
        super().__init__(f"{manifest}: {len(self.problems)} problem(s); nothing was run:\n  {shown}{more}")


@dataclass(frozen=True)
class Case:
    """One edit of a test set, with paths resolved against the manifest folder."""

    id: str
    edit_type: str
    source: Path
    source_prompt: str
    target_prompt: str
    instruction: str | None = None
    mask: Path | None = None
    target_mask: Path | None = None
    target: Path | None = None
    target_first_frame: Path | None = None
    preserve: str = "outside_mask"
    tags: tuple[str, ...] = ()
    attributes: dict[str, Any] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)

    def files(self) -> dict[str, Path]:
        """The case's files by field name (only those given)."""
        return {name: getattr(self, name) for name in FILE_FIELDS if getattr(self, name) is not None}

    def load_source(self) -> np.ndarray:
        return load_frames(self.source)

    def load_target(self) -> np.ndarray | None:
        return None if self.target is None else load_frames(self.target)

    def load_mask(self) -> np.ndarray | None:
        return None if self.mask is None else load_mask(self.mask)

    def load_target_mask(self) -> np.ndarray | None:
        return None if self.target_mask is None else load_mask(self.target_mask)


@dataclass(frozen=True)
class TestSet:
    """A validated test set: its manifest path, name, raw JSON and cases in manifest order."""

    __test__ = False  # not a pytest class

    path: Path
    name: str
    cases: tuple[Case, ...]
    data: dict[str, Any]

    def __iter__(self) -> Iterator[Case]:
        return iter(self.cases)

    def __len__(self) -> int:
        return len(self.cases)

    @property
    def manifest_sha256(self) -> str:
        return sha256_file(self.path)

    def by_id(self, case_id: str) -> Case:
        for case in self.cases:
            if case.id == case_id:
                return case
        raise InputError(f"test set {self.name!r} has no case {case_id!r}")


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse a manifest file (``.json``, ``.yaml``/``.yml``) or a folder holding ``manifest.json``."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(
            path,
            [
                f"manifest not found (cwd is {Path.cwd()}); make one with "
                "`flowstudio bench make-set` or write it as docs/guide_benchmark.md shows"
            ],
        )
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            return yaml.safe_load(text)
        return json.loads(text)
    except Exception as err:  # json.JSONDecodeError, yaml.YAMLError
        raise ManifestError(path, [f"not valid {path.suffix.lstrip('.').upper() or 'JSON'}: {err}"]) from err


def case_file_problem(file: Path, manifest: Path, root: str | os.PathLike[str] | None = None) -> str | None:
    """Why a case file may not be used, or ``None``.

    A file resolving outside ``root`` (when given) is refused; so is a folder that is not a folder
    of frames (no png/jpg directly inside) or that holds the manifest itself (e.g. ``../../..``):
    hashing or reading such a folder would walk the file system.
    """
    resolved = file.resolve()
    if root is not None and not resolved.is_relative_to(Path(root).resolve()):
        return (
            f"{file} resolves to {resolved}, outside the allowed root {Path(root).resolve()}; "
            "keep case files under the root"
        )
    if resolved.is_dir():
        if manifest.resolve().parent.is_relative_to(resolved):
            return f"{file} is a folder holding the manifest itself; give a video file or a folder of frames"
        try:
            frames = any(p.suffix.lower() in IMAGE_SUFFIXES for p in resolved.iterdir())
        except OSError as err:
            return f"{file} is a folder that cannot be listed ({err.strerror})"
        if not frames:
            return (
                f"{file} is a folder with no frames (png/jpg) directly inside; give a video file or a "
                "folder of frames"
            )
    return None


def load_testset(
    path: str | os.PathLike[str],
    *,
    check_files: bool = True,
    verify_hashes: bool = True,
    root: str | os.PathLike[str] | None = None,
) -> TestSet:
    """Load and validate a manifest; raise :class:`ManifestError` listing every problem.

    Args:
        path: manifest file, or a folder holding ``manifest.json``.
        check_files: load every clip, mask and image to check frames and sizes agree with the source.
        verify_hashes: compare each file's SHA-256 with the one recorded in the manifest (files with no
            recorded hash are reported with a warning, not an error).
        root: when given, every case file must resolve inside this folder (for servers and shared
            boards; locally, manifest paths may point anywhere). See :func:`case_file_problem`.
    """
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    data = read_manifest(path)
    problems = schema_errors(data)
    if problems:
        raise ManifestError(path, problems)
    folder = path.parent
    cases: list[Case] = []
    seen: dict[str, int] = {}
    unhashed = 0
    for index, raw in enumerate(data["cases"]):
        where = f"case {raw['id']!r} (cases[{index}])"
        if raw["id"] in seen:
            problems.append(f"{where}: duplicate id, also cases[{seen[raw['id']]}]")
            continue
        seen[raw["id"]] = index
        case = _case_from_raw(raw, folder)
        for name, file in case.files().items():
            refused = case_file_problem(file, path, root)
            if refused is not None:
                problems.append(f"{where}: {name}: {refused}")
            elif not file.exists():
                problems.append(f"{where}: {name} file {file} does not exist")
            elif verify_hashes:
                expected = case.sha256.get(name)
                if expected is None:
                    unhashed += 1
                elif sha256_file(file) != expected:
                    problems.append(
                        f"{where}: {name} file {file} has changed: its SHA-256 differs from the "
                        "manifest's; restore it, or re-record with `bench validate --rehash`"
                    )
        usable = all(f.exists() and case_file_problem(f, path, root) is None for f in case.files().values())
        if check_files and usable:
            problems.extend(f"{where}: {p}" for p in _shape_problems(case))
        cases.append(case)
    if problems:
        raise ManifestError(path, problems)
    if unhashed:
        logger.warning(
            "%s: %d file(s) have no recorded SHA-256; record them with `bench validate --rehash`",
            path,
            unhashed,
        )
    return TestSet(path=path, name=data["name"], cases=tuple(cases), data=data)


def _case_from_raw(raw: dict[str, Any], root: Path) -> Case:
    def resolve(name: str) -> Path | None:
        value = raw.get(name)
        return None if value is None else (root / value)

    return Case(
        id=raw["id"],
        edit_type=raw["edit_type"],
        source=root / raw["source"],
        source_prompt=raw["source_prompt"],
        target_prompt=raw["target_prompt"],
        instruction=raw.get("instruction"),
        mask=resolve("mask"),
        target_mask=resolve("target_mask"),
        target=resolve("target"),
        target_first_frame=resolve("target_first_frame"),
        preserve=raw.get("preserve", DEFAULT_PRESERVE.get(raw["edit_type"], "outside_mask")),
        tags=tuple(raw.get("tags", ())),
        attributes=dict(raw.get("attributes", {})),
        sha256=dict(raw.get("sha256", {})),
    )


def _shape_problems(case: Case) -> list[str]:
    """Frames/size disagreements between a case's files (each loaded once)."""
    from flowstudio.errors import VideoError
    from flowstudio.video import read_image

    problems: list[str] = []
    try:
        source = load_frames(case.source)
    except VideoError as err:
        return [f"source unreadable: {err}"]
    t, h, w = source.shape[:3]
    checks: list[tuple[str, Path | None, Any]] = [
        ("mask", case.mask, load_mask),
        ("target", case.target, load_frames),
        ("target_mask", case.target_mask, load_mask),
    ]
    for name, file, loader in checks:
        if file is None:
            continue
        try:
            shape = loader(file).shape[:3]
        except VideoError as err:
            problems.append(f"{name} unreadable: {err}")
            continue
        if tuple(shape) != (t, h, w):
            problems.append(
                f"{name} {file.name} is {shape[0]} frames of {shape[1]}x{shape[2]} (HxW) but the "
                f"source is {t} frames of {h}x{w}; they must match"
            )
    if case.mask is None and case.preserve != "none":
        logger.debug("case %s has no mask: masked metrics will be skipped", case.id)
    if case.target_first_frame is not None:
        try:
            image = read_image(case.target_first_frame)
        except VideoError as err:
            problems.append(f"target_first_frame unreadable: {err}")
        else:
            if image.shape[:2] != (h, w):
                problems.append(
                    f"target_first_frame is {image.shape[0]}x{image.shape[1]} (HxW) but the source is {h}x{w}"
                )
    return problems


def record_hashes(path: str | os.PathLike[str], *, root: str | os.PathLike[str] | None = None) -> int:
    """Write the SHA-256 of every case file into the manifest (``sha256`` of each case); return the count.

    Only the schema is checked first (a file that is missing or refused by :func:`case_file_problem`
    is reported, not hashed).
    """
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    data = read_manifest(path)
    problems = schema_errors(data)
    if problems:
        raise ManifestError(path, problems)
    count = 0
    for raw in data["cases"]:
        hashes: dict[str, str] = {}
        for name in FILE_FIELDS:
            if name in raw:
                file = path.parent / raw[name]
                refused = case_file_problem(file, path, root)
                if refused is not None:
                    problems.append(f"case {raw['id']!r}: {name}: {refused}")
                    continue
                if not file.exists():
                    problems.append(f"case {raw['id']!r}: {name} file {file} does not exist")
                    continue
                hashes[name] = sha256_file(file)
                count += 1
        raw["sha256"] = hashes
    if problems:
        raise ManifestError(path, problems)
    write_manifest(path, data)
    return count


def write_manifest(path: str | os.PathLike[str], data: dict[str, Any]) -> Path:
    """Write manifest JSON atomically (indent 1, keys in insertion order)."""
    path = Path(path)
    problems = schema_errors(data)
    if problems:
        raise ManifestError(path, problems)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def check_edit_type(edit_type: str) -> str:
    if edit_type not in EDIT_TYPES:
        raise InputError(f"unknown edit type {edit_type!r}; known: {', '.join(EDIT_TYPES)}")
    return edit_type


__all__ = [
    "Case",
    "ManifestError",
    "TestSet",
    "case_file_problem",
    "load_testset",
    "read_manifest",
    "record_hashes",
    "write_manifest",
]
