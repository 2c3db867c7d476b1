"""benchmarks/gpu_check.py end to end on the CPU (``--tiny``), and the bf16 path it found broken."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gpu_check() -> ModuleType:
    return _load_script()


@pytest.fixture(scope="module")
def tiny_run(gpu_check: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("gpu_check")
    gpu_check.main(["--tiny", "--out", str(out)])
    return out, json.loads((out / "gpu_check.json").read_text())


def test_tiny_run_writes_every_row_with_numbers(tiny_run: tuple[Path, dict[str, Any]]) -> None:
    out, result = tiny_run
    assert result["environment"]["gpu"] is None and result["environment"]["torch"] == torch.__version__
    assert result["settings"]["dtype"] == "bfloat16", "the tiny run must take the bf16 path a GPU run takes"
    edit = [r for r in result["rows"] if r["section"] == "edit"]
    # 2 sizes x 3 offload modes x (VAE encode, prompt, transformer at 1/2/4 rows, VAE decode)
    assert len(edit) == 2 * 3 * 6
    keys = {(r["size"], r["offload"], r["phase"], r["batch_rows"]) for r in edit}
    for size in ("tiny-a", "tiny-b"):
        for mode in ("none", "model", "group"):
            for rows in (1, 2, 4):
                assert (size, mode, "transformer", rows) in keys
            for phase in ("vae_encode", "text_encode", "vae_decode"):
                assert (size, mode, phase, None) in keys
    for r in edit:
        assert r["status"] == "ok", r
        assert r["seconds"] >= 0 and r["seconds_first"] >= 0 and r["seconds_min"] <= r["seconds"] + 1e-12
        assert r["peak_allocated_gib"] is None  # no allocator statistics on a CPU
    avatar = [r for r in result["rows"] if r["section"] == "avatar"]
    assert [r["dtype"] for r in avatar] == ["bfloat16", "float32"]
    for r in avatar:
        assert r["status"] == "ok", r
        x = r["extra"]
        assert x["fps"] > 0 and x["first_chunk_seconds"] > 0 and x["real_time_factor"] > 0
        # toy config: 1 latent frame per chunk = 4 video frames = 0.16 s of audio at 25 fps
        assert x["video_frames_per_chunk"] == 4 and x["audio_seconds_per_chunk"] == pytest.approx(0.16)
        assert x["fps"] == pytest.approx(4 / x["chunk_seconds_median"])


def test_call_counts_come_from_the_edit_code(tiny_run: tuple[Path, dict[str, Any]]) -> None:
    _, result = tiny_run
    counts = result["call_counts"]
    # FlowEdit: n_max = 33 of 50 steps, one batched call of source + target, each with CFG (4 rows)
    assert [(p["calls"], p["rows"]) for p in counts["flowedit"]["phases"]] == [(33, 4)]
    assert counts["flowedit"]["model_calls"] == 33 and counts["flowedit"]["row_evaluations"] == 132
    # baseline: 50 DPM-Solver++ inversion steps without CFG, 50 UniPC steps with CFG
    assert [(p["calls"], p["rows"]) for p in counts["inversion"]["phases"]] == [(50, 1), (50, 2)]
    assert counts["inversion"]["model_calls"] == 100 and counts["inversion"]["row_evaluations"] == 150


def test_estimates_add_up_the_measured_phases(tiny_run: tuple[Path, dict[str, Any]]) -> None:
    out, result = tiny_run
    estimates = result["edit_estimates"]
    assert len(estimates) == 2 * 3 * 2  # sizes x modes x methods
    rows = {(r["size"], r["offload"], r["phase"], r["batch_rows"]): r for r in result["rows"]}
    for e in estimates:
        assert e["status"] == "ok", e
        key = (e["size"], e["offload"])
        seconds = {p: rows[(*key, p, None)]["seconds"] for p in ("text_encode", "vae_encode", "vae_decode")}
        phases = result["call_counts"][e["method"]]["phases"]
        transformer = sum(p["calls"] * rows[(*key, "transformer", p["rows"])]["seconds"] for p in phases)
        assert e["transformer_seconds"] == pytest.approx(transformer)
        other = 3 * seconds["text_encode"] + seconds["vae_encode"] + seconds["vae_decode"]
        assert e["seconds_estimate"] == pytest.approx(transformer + other)
        assert e["formula_peak_gib"] is not None and e["formula_peak_gib"] >= 0
    md = (out / "gpu_check.md").read_text()
    for text in ("# GPU readiness check", "whole-edit estimates", "measured phases", "DualForce streaming"):
        assert text in md
    assert md.count("| tiny-a |") == 6 + 18  # 6 estimate rows + 18 phase rows
    assert "| toy | bfloat16 | ok |" in md and "| toy | float32 | ok |" in md


def test_budget_guard_skips_rows_but_writes_results(gpu_check: ModuleType, tmp_path: Path) -> None:
    gpu_check.main(["--tiny", "--out", str(tmp_path), "--budget-minutes", "0", "--modes", "model"])
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert result["rows"] and all(r["status"] == "skipped (budget)" for r in result["rows"])
    assert all(e["status"] == "incomplete" for e in result["edit_estimates"])
    assert "skipped (budget)" in (tmp_path / "gpu_check.md").read_text()


def test_cpu_results_never_go_to_the_results_folder(gpu_check: ModuleType) -> None:
    with pytest.raises(SystemExit, match="may not go to"):
        gpu_check.main(["--tiny", "--out", str(gpu_check.RESULTS)])


def test_bf16_transformer_gets_bf16_inputs(tiny_checkpoint: Path) -> None:
    """Loaded in bf16, Wan's first parameter (scale_shift_table) stays fp32 (diffusers'
    _keep_in_fp32_modules); the denoiser must still feed the transformer bf16, or the patch
    embedding refuses the input. Found by gpu_check's bf16 run."""
    from flowstudio.denoiser import Conditioning
    from flowstudio.pipeline import WanVideoPipeline

    pipe = WanVideoPipeline.from_pretrained(tiny_checkpoint, device="cpu", dtype=torch.bfloat16)
    assert next(pipe.components.transformer.parameters()).dtype == torch.float32  # the trap
    assert pipe.denoiser.dtype == torch.bfloat16
    x = torch.randn(pipe.latent_shape(5, 32, 32))
    velocity = pipe.denoiser(x, 0.5, Conditioning(prompt_embeds=pipe.encode_prompt("a red ball")))
    assert velocity.shape == x.shape and velocity.dtype == torch.float32
    assert torch.isfinite(velocity).all()
