"""benchmarks/plain_backdrop_steps.py: the setting syntax and the prompts it reads."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def script() -> ModuleType:
    sys.path.insert(0, str(BENCHMARKS))  # the script imports its siblings _results and toy_quality
    spec = importlib.util.spec_from_file_location(
        "plain_backdrop_steps", BENCHMARKS / "plain_backdrop_steps.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_setting_names_model_sampler_steps_shift_and_guidance(script: ModuleType) -> None:
    setting = script.parse_setting("teacher 4=flowstudio/assets/toy-shapes:unipc:4:2.5:5")
    assert setting == {
        "name": "teacher 4",
        "model": "flowstudio/assets/toy-shapes",
        "solver": "unipc",
        "steps": 4,
        "shift": 2.5,
        "guidance_scale": 5.0,
    }
    for bad in ("no-equals-sign", "x=folder:unipc:4:5", "=folder:unipc:4:5:5"):
        with pytest.raises(SystemExit, match="NAME=FOLDER:SOLVER:STEPS:SHIFT:GUIDANCE"):
            script.parse_setting(bad)


def test_the_prompts_read_are_the_plain_backdrops_of_the_report_stream(script: ModuleType) -> None:
    indices = script.plain_prompts(200)
    assert len(indices) == 35  # the 35 plain-backdrop prompts of dmd_toy's 200-prompt reports
    from toy_quality import held_out

    assert all(held_out(100_000 + i)[0].background == "plain" for i in indices)
    others = set(range(200)) - set(indices)
    assert all(held_out(100_000 + i)[0].background != "plain" for i in others)


def test_the_picture_has_a_row_per_setting_and_a_column_per_prompt(script: ModuleType, tmp_path) -> None:
    import numpy as np
    from PIL import Image

    frames = {
        "teacher": [np.zeros((8, 8, 3), np.uint8)] * 3,
        "student": [np.full((8, 8, 3), 200, np.uint8)] * 2,
    }
    reads = {"teacher": ["plain", "plain", "marble"], "student": ["marble", "plain"]}
    script.draw(frames, reads, tmp_path / "grid.png")
    image = np.asarray(Image.open(tmp_path / "grid.png"))
    assert image.shape[0] > 100 and image.shape[1] > 200  # 2 rows x 3 columns of panels
