"""Checking a submitted results archive before anything of it is stored.

An archive is a zip holding, at its root, one ``<case id>.mp4`` per case of the test set and nothing
else. :func:`archive_problems` lists every reason to refuse one, each as ``{"field", "message"}``
(``field`` is ``archive`` or ``archive:<member name>``):

* not a zip; more members than ``max_members``;
* zip bomb: the members' declared sizes add up past ``max_unpacked``, or one member's
  size / compressed size is above ``max_ratio`` (an mp4 hardly compresses: ~1.0);
* path traversal (an absolute name, ``..``, a backslash or a drive), a symlink, a folder, an
  encrypted member, a member not at the root, a file that is not ``.mp4``;
* an unknown case id, one given twice, missing case ids;
* a corrupt video (PyAV cannot decode it), or one whose frame count or size differs from the case's
  source.

Members are read from the zip into memory (each bounded by its declared size, which ``zipfile``
enforces together with the CRC): nothing is extracted to disk while checking.
"""

from __future__ import annotations

import io
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from flowstudio.board.context import Limits

Problem = dict[str, str]


@dataclass(frozen=True)
class Shape:
    frames: int
    height: int
    width: int


def _problem(member: str | None, message: str) -> Problem:
    return {"field": "archive" if member is None else f"archive:{member}", "message": message}


def _name_problem(info: zipfile.ZipInfo) -> str | None:
    """Why a member's name or kind is refused, or ``None``."""
    name = info.filename
    mode = info.external_attr >> 16
    if name.startswith(("/", "\\")) or "\\" in name or ".." in PurePosixPath(name).parts or ":" in name:
        return "path traversal: member names must be plain <case id>.mp4 (no '/', '..', '\\' or drive)"
    if stat.S_ISLNK(mode):
        return "a symlink: only regular mp4 files are accepted"
    if info.is_dir():
        return "a folder: put the mp4 files at the archive's root, no folders"
    if "/" in name:
        return "not at the archive's root: put the mp4 files at the root, no folders"
    if info.flag_bits & 0x1:
        return "encrypted: archives must not be encrypted"
    if PurePosixPath(name).suffix.lower() != ".mp4":
        return "not an mp4: the archive holds only <case id>.mp4 files"
    return None


def video_problem(data: bytes, shape: Shape) -> str | None:
    """Why ``data`` is not a decodable clip of ``shape`` (frames, height, width), or ``None``."""
    import av

    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.video:
                return "corrupt video: no video stream"
            frames, size = 0, None
            for frame in container.decode(video=0):
                frames += 1
                size = (frame.height, frame.width)
    except Exception as error:  # noqa: BLE001 - whatever a broken file makes the decoder raise
        return f"corrupt video: {type(error).__name__}: {error}"
    if frames == 0 or size is None:
        return "corrupt video: no frame decodes"
    if frames != shape.frames:
        return f"wrong frame count: {frames} frames, the case's source has {shape.frames}"
    if size != (shape.height, shape.width):
        return f"wrong size: {size[0]}x{size[1]} (HxW), the case's source is {shape.height}x{shape.width}"
    return None


def archive_problems(
    path: Path, expected: dict[str, Shape], limits: Limits
) -> tuple[list[Problem], list[str]]:
    """``(problems, members)``: every reason to refuse the archive at ``path`` (empty: accept it) and,
    when accepted, the member names in case order."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        return [_problem(None, f"not a zip archive ({error})")], []
    with archive:
        infos = archive.infolist()
        if len(infos) > limits.max_members:
            return [_problem(None, f"{len(infos)} members, more than the limit of {limits.max_members}")], []
        declared = sum(i.file_size for i in infos)
        if declared > limits.max_unpacked:
            return [
                _problem(
                    None,
                    f"zip bomb: the members unpack to {declared} bytes, more than the limit of "
                    f"{limits.max_unpacked}",
                )
            ], []
        problems: list[Problem] = []
        good: dict[str, zipfile.ZipInfo] = {}
        seen: set[str] = set()
        for info in infos:
            refused = _name_problem(info)
            if refused is None and info.file_size > limits.max_ratio * max(info.compress_size, 1):
                ratio = info.file_size / max(info.compress_size, 1)
                refused = (
                    f"zip bomb: compression ratio {ratio:.0f}:1, more than the limit of "
                    f"{limits.max_ratio:.0f}:1"
                )
            if refused is not None:
                problems.append(_problem(info.filename, refused))
                continue
            case_id = PurePosixPath(info.filename).stem
            if case_id in seen:
                problems.append(_problem(info.filename, f"case {case_id!r} is given twice"))
                continue
            seen.add(case_id)
            if case_id not in expected:
                problems.append(
                    _problem(info.filename, f"unknown case id {case_id!r}: not a case of the test set")
                )
                continue
            good[case_id] = info
        missing = [c for c in expected if c not in seen]
        if missing:
            shown = ", ".join(missing[:20]) + (
                f" ... ({len(missing) - 20} more)" if len(missing) > 20 else ""
            )
            problems.append(_problem(None, f"missing case ids ({len(missing)} of {len(expected)}): {shown}"))
        for case_id, info in good.items():
            try:
                data = archive.read(info)
            except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as error:  # CRC, truncation
                problems.append(_problem(info.filename, f"unreadable member: {error}"))
                continue
            refused = video_problem(data, expected[case_id])
            if refused is not None:
                problems.append(_problem(info.filename, refused))
    order = [good[c].filename for c in expected if c in good]
    return problems, order


def extract(path: Path, members: list[str], folder: Path) -> None:
    """Write the (checked) members into ``folder`` under their own plain names."""
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path) as archive:
        for name in members:
            target = folder / PurePosixPath(name).name
            with archive.open(name) as source, open(target, "wb") as out:
                while block := source.read(1 << 20):
                    out.write(block)
