"""Input folder layouts: which files are videos, what each clip is called, and who speaks in it.

The identity decides the train/val/test split (no identity in two splits), so each layout says
where it comes from:

* ``hdtf`` - HDTF's files ``{RD,WDA,WRA}_<Person>_<index>.mp4`` (any sub-folder depth): the identity
  is ``<Person>`` (``WDA_BarackObama_000`` and ``WDA_BarackObama_001`` are one identity).
* ``celebvhq`` - CelebV-HQ's ``celebvhq_info.json`` at the root (``{"clips": {clip_id: {"ytb_id":
  ...}}}``) and its videos ``<clip_id>.mp4`` in any sub-folder (``35666/``): CelebV-HQ has no person
  ids, so the identity is the YouTube video id, a proxy (one person can appear in several videos;
  say so when you publish splits). Without the JSON the id is the clip id less its ``_<n>`` suffix.
* ``talkingshapes`` - a TalkingShapes dataset (``flowstudio worlds make faces``): the identity is
  the rendered head (``clip_XXXXX.json``'s ``identity``), hashed; a video without that JSON falls
  back to the ``folder`` rule.
* ``folder`` - any folder: the identity is the first sub-folder under the root (``IN/<person>/...``),
  or the file stem for videos directly in the root.

``auto`` picks ``celebvhq`` when the JSON is there, ``talkingshapes`` when clip JSONs of that format
are, ``hdtf`` when every file name matches HDTF's pattern, else ``folder``.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from flowstudio.errors import InputError
from flowstudio.video import VIDEO_SUFFIXES

HDTF_PATTERN = re.compile(r"^(?:RD|WDA|WRA)_(?P<person>.+?)_\d+$")
CELEBVHQ_INFO = "celebvhq_info.json"
TALKINGSHAPES_FORMAT = "flowstudio.faces/1"


@dataclass(frozen=True)
class SourceClip:
    """One input video: ``clip_id`` (unique, file-system safe), its path, and its identity."""

    clip_id: str
    path: Path
    identity: str


def _clip_id(root: Path, path: Path) -> str:
    relative = path.relative_to(root).with_suffix("")
    return re.sub(r"[^A-Za-z0-9_.-]", "_", "__".join(relative.parts))


def _sidecar(path: Path) -> dict | None:
    record = path.with_suffix(".json")
    if not record.is_file():
        return None
    try:
        data = json.loads(record.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("format") == TALKINGSHAPES_FORMAT else None


def find_videos(root: Path) -> list[Path]:
    """Video files under ``root`` (recursive, sorted; hidden files and temporary names skipped)."""
    if not root.is_dir():
        raise InputError(f"input folder {str(root)!r} does not exist or is not a folder")
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES and not p.name.startswith(".")
    )


def guess_layout(root: Path, videos: list[Path]) -> str:
    if (root / CELEBVHQ_INFO).is_file():
        return "celebvhq"
    if videos and any(_sidecar(p) is not None for p in videos):
        return "talkingshapes"
    if videos and all(HDTF_PATTERN.match(p.stem) for p in videos):
        return "hdtf"
    return "folder"


def list_clips(root: str | Path, layout: str = "auto") -> tuple[list[SourceClip], str]:
    """The input videos of ``root`` with ids and identities, and the layout used."""
    root = Path(root)
    videos = find_videos(root)
    if layout == "auto":
        layout = guess_layout(root, videos)
    celebvhq: dict = {}
    if layout == "celebvhq" and (root / CELEBVHQ_INFO).is_file():
        try:
            celebvhq = json.loads((root / CELEBVHQ_INFO).read_text()).get("clips", {})
        except (OSError, json.JSONDecodeError, AttributeError) as err:
            raise InputError(f"{root / CELEBVHQ_INFO}: not CelebV-HQ's info JSON ({err})") from err
    clips = []
    for path in videos:
        clips.append(SourceClip(_clip_id(root, path), path, _identity(root, path, layout, celebvhq)))
    return clips, layout


def _identity(root: Path, path: Path, layout: str, celebvhq: dict) -> str:
    if layout == "hdtf":
        match = HDTF_PATTERN.match(path.stem)
        if match is None:
            raise InputError(
                f"{path}: name does not follow HDTF's {{RD,WDA,WRA}}_<Person>_<index>.mp4; "
                "use --layout folder (identity from sub-folders) for other data"
            )
        return match.group("person")
    if layout == "celebvhq":
        info = celebvhq.get(path.stem)
        if isinstance(info, dict) and info.get("ytb_id"):
            return f"ytb:{info['ytb_id']}"
        return "ytb:" + re.sub(r"_\d+$", "", path.stem)
    if layout == "talkingshapes":
        record = _sidecar(path)
        if record is not None and "identity" in record:
            text = json.dumps(record["identity"], sort_keys=True)
            return "talkingshapes:" + hashlib.sha256(text.encode()).hexdigest()[:12]
        # a file without its record (an edited or foreign video): its stem, as the folder layout
    parts = path.relative_to(root).parts
    return parts[0] if len(parts) > 1 else path.stem
