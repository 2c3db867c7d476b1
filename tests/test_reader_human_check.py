"""``benchmarks/reader_human_check.py``: blind sheets, the labels file it accepts and refuses, and the
comparison of prompt, person and reader on saved clips."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from flowstudio.worlds.readers import read_shape
from flowstudio.worlds.shapes import render_clip

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "reader_human_check.py"
sys.path.insert(0, str(SCRIPT.parent))  # the benchmarks import _results as a sibling module
spec = importlib.util.spec_from_file_location("reader_human_check", SCRIPT)
check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check)


def _save_true_renders(folder: Path, indices: list[int]) -> list[str]:
    """The true render of each held-out prompt, saved as toy_quality --save-clips would save a generation."""
    folder.mkdir()
    shapes = []
    for i in indices:
        spec_i = check.held_out(100_000 + i)[0]
        np.savez_compressed(folder / f"t2v_{i:04d}.npz", frames=render_clip(spec_i))
        shapes.append(spec_i.shape)
    return shapes


def test_labels_are_index_and_a_known_shape(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("# a comment\n3 ring\n\n7 none  # could not tell\n")
    assert check.read_labels(good) == {3: "ring", 7: "none"}
    for text in ("3 donut\n", "ring 3\n", "3\n", "# only comments\n"):
        bad = tmp_path / "bad.txt"
        bad.write_text(text)
        with pytest.raises(SystemExit):
            check.read_labels(bad)


def test_a_folder_without_saved_clips_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="--save-clips"):
        check.saved_clips(tmp_path)


def test_sheet_and_compare_on_true_renders(tmp_path, monkeypatch):
    clips = tmp_path / "clips"
    shapes = _save_true_renders(clips, [0, 1, 2])
    check.sheet(clips, tmp_path / "sheet.png")
    assert (tmp_path / "sheet.png").stat().st_size > 5_000
    assert [line.split()[0] for line in (tmp_path / "sheet.txt").read_text().splitlines()[1:]] == [
        "0",
        "1",
        "2",
    ]

    labels = tmp_path / "labels.txt"  # a person who sees every prompt's shape, except clip 2's
    labels.write_text(f"0 {shapes[0]}\n1 {shapes[1]}\n2 none\n")
    monkeypatch.setattr(check, "RESULTS", tmp_path / "results")
    result = check.compare(clips, labels, "t")
    assert result["asked_vs_person"]["hits"] == 2 and result["asked_vs_person"]["n"] == 3
    reader_hits = sum(
        read_shape(np.load(clips / f"t2v_{i:04d}.npz")["frames"])[0] == s for i, s in enumerate(shapes)
    )
    assert result["asked_vs_reader"]["hits"] == reader_hits
    assert [row["person"] for row in result["rows"]] == [shapes[0], shapes[1], "none"]
    assert json.loads((tmp_path / "results" / "t.json").read_text())["settings"]["n"] == 3
    assert "prompt's shape = person's" in (tmp_path / "results" / "t.md").read_text()

    stray = tmp_path / "stray.txt"
    stray.write_text("9 ring\n")
    with pytest.raises(SystemExit, match="not in"):
        check.compare(clips, stray, "t")
