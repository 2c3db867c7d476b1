"""`flowstudio avatar ablate`: trains and scores every run, writes the table, resumes, refuses bad input."""

from __future__ import annotations

import json
import shutil
from functools import partial
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flowstudio.avatar.cli import avatar_app
from flowstudio.avatar.evaluation.ablate import (
    ablation_runs,
    lag_within_one,
    markdown_table,
    metric_value,
    run_ablations,
    spread,
    stands_out,
)
from flowstudio.errors import InputError
from flowstudio.worlds.faces_dataset import make_faces_dataset

CONFIGS = Path(__file__).parents[1] / "configs" / "dualforce"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def held_out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("faces")
    make_faces_dataset(out, 1, seed=1000, seconds=0.8, height=64, width=64, workers=1, progress=False)
    return out


def _two_runs(tmp_path: Path) -> Path:
    folder = tmp_path / "ablations"
    folder.mkdir()
    shutil.copy(CONFIGS / "ablations" / "no_bridge.yaml", folder / "no_bridge.yaml")
    # the copy's base is ../toy_packaged.yaml (whose base is toy.yaml): put both beside it
    for name in ("toy_packaged.yaml", "toy.yaml"):
        shutil.copy(CONFIGS / name, tmp_path / name)
    return folder


def test_every_run_is_trained_scored_and_tabulated_per_seed_then_resumed(tmp_path: Path, held_out: Path):
    folder = _two_runs(tmp_path)
    out = tmp_path / "out"
    base = tmp_path / "toy_packaged.yaml"
    # every call below scores the same held-out clip with the same runs into the same folder
    ablate = partial(run_ablations, out, held_out, base=base, folder=folder, clips=1, progress=False)
    table = ablate(steps=2, seeds=(0, 1))
    assert list(table["runs"]) == ["full", "no_bridge"]
    for name in ("full", "no_bridge"):
        run = table["runs"][name]
        assert sorted(run["seeds"]) == ["0", "1"]
        for seed in ("0", "1"):
            assert (out / name / f"seed_{seed}" / "final" / "model.safetensors").is_file()
            assert run["seeds"][seed]["train"]["steps"] == 2
            assert run["seeds"][seed]["train"]["seed"] == int(seed)
        assert "lip_sync_lag_within_1" in run["seeds"]["0"]["metrics"]
        flicker = [run["seeds"][s]["metrics"]["flicker"] for s in ("0", "1")]
        assert run["metrics"]["flicker"] == pytest.approx(sum(flicker) / 2)
        assert run["std"]["flicker"] == pytest.approx(abs(flicker[0] - flicker[1]) / 2**0.5)
    # two seeds are two different models: different initialisation and batches
    weights = [(out / "full" / f"seed_{s}" / "final" / "model.safetensors").read_bytes() for s in (0, 1)]
    assert weights[0] != weights[1]
    md = (out / "ablations.md").read_text()
    assert "| full |" in md and "| no_bridge |" in md and "±" in md
    assert (out / "ablations.png").stat().st_size > 0
    stored = json.loads((out / "ablations.json").read_text())
    assert stored["settings"]["steps"] == 2 and stored["settings"]["seeds"] == [0, 1]
    eval_time = (out / "full" / "seed_1" / "eval.json").stat().st_mtime
    # a scored run is reused as it was, even with its checkpoints gone (only eval.json kept)
    shutil.rmtree(out / "full" / "seed_1" / "checkpoints")
    shutil.rmtree(out / "full" / "seed_1" / "final")
    again = ablate(steps=2, seeds=(0, 1))
    assert again["runs"]["full"]["seeds"]["1"]["train"]["seconds_this_invocation"] == 0.0
    assert (
        again["runs"]["full"]["seeds"]["1"]["train"]["final_loss"]
        == (table["runs"]["full"]["seeds"]["1"]["train"]["final_loss"])
    )
    assert not (out / "full" / "seed_1" / "final").exists()  # not retrained
    assert (out / "full" / "seed_1" / "eval.json").stat().st_mtime == eval_time  # evaluation reused
    assert again["runs"]["full"]["metrics"] == table["runs"]["full"]["metrics"]
    # --stored-only assembles the same table from the eval.json files and never trains ...
    assembled = ablate(steps=2, seeds=(0, 1), stored_only=True)
    assert assembled["runs"]["full"]["metrics"] == table["runs"]["full"]["metrics"]
    # a record written before a configuration field existed still counts (the field held its default),
    # while a field that really differs disowns it
    record_file = out / "full" / "seed_0" / "eval.json"
    record = json.loads(record_file.read_text())
    del record["model_config"]["audio"]["struct_trains_encoder"]
    record_file.write_text(json.dumps(record))
    assert (
        ablate(steps=2, seeds=(0, 1), stored_only=True)["runs"]["full"]["metrics"]
        == (table["runs"]["full"]["metrics"])
    )
    record["model_config"]["audio"]["hidden_dim"] += 1
    record_file.write_text(json.dumps(record))
    with pytest.raises(InputError, match="full seed 0: its eval.json was made with another model_config"):
        ablate(steps=2, seeds=(0, 1), stored_only=True)
    record["model_config"]["audio"]["hidden_dim"] -= 1
    record_file.write_text(json.dumps(record))
    # ... and refuses, listing every run and seed it lacks, where one is missing or made otherwise
    with pytest.raises(
        InputError, match=r"2 run\(s\).*full seed 2: no eval.json.*no_bridge seed 2: no eval.json"
    ):
        ablate(steps=2, seeds=(0, 1, 2), stored_only=True)
    assert not (out / "full" / "seed_2").exists()
    with pytest.raises(
        InputError,
        match="full seed 0: its eval.json was made with another ablation_settings, "
        "trained_steps, train_config",
    ):
        ablate(steps=3, seeds=(0,), stored_only=True)
    cli = CliRunner().invoke(
        avatar_app,
        [
            "ablate",
            "--data",
            str(held_out),
            "--out",
            str(out),
            "--base",
            str(base),
            "--folder",
            str(folder),
            "--steps",
            "2",
            "--clips",
            "1",
            "--seeds",
            "3",
            "--stored-only",
        ],
    )
    assert cli.exit_code == 2 and "no eval.json" in cli.output and not (out / "full" / "seed_2").exists()
    # a different budget is a different run: trained on from its checkpoint and scored again
    third = ablate(steps=3, seeds=(0,), only=["full"])
    assert third["runs"]["full"]["seeds"]["0"]["train"]["seconds_this_invocation"] > 0
    assert json.loads((out / "full" / "seed_0" / "eval.json").read_text())["trained_steps"] == 3


def test_bad_input_is_refused(tmp_path: Path, held_out: Path):
    with pytest.raises(InputError, match="no ablation run YAMLs"):
        ablation_runs(CONFIGS / "toy.yaml", tmp_path)
    with pytest.raises(InputError, match="held-out dataset"):
        run_ablations(
            tmp_path / "o", tmp_path / "missing", base=CONFIGS / "toy.yaml", folder=CONFIGS / "ablations"
        )
    with pytest.raises(InputError, match="unknown run"):
        run_ablations(
            tmp_path / "o", held_out, base=CONFIGS / "toy.yaml", folder=CONFIGS / "ablations", only=["bogus"]
        )
    with pytest.raises(InputError, match="seeds"):
        run_ablations(
            tmp_path / "o", held_out, base=CONFIGS / "toy.yaml", folder=CONFIGS / "ablations", seeds=(0, 0)
        )
    result = CliRunner().invoke(avatar_app, ["ablate", "--data", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "held-out dataset" in result.output


def test_table_helpers():
    assert metric_value({"mean": 0.5, "std": 0.1}) == 0.5
    assert metric_value({"value": 3}) == 3.0
    assert metric_value({"status": "skipped", "reason": "x"}) is None
    table = {"settings": {"steps": 1}, "runs": {"full": {"metrics": {"lip_sync_corr": 0.25}}}}
    assert "| full | 0.250 |" in markdown_table(table)
    cases = [{"metrics": {"lip_sync_offset": lag}} for lag in (1, 1, -5, 0, -1, 2)]
    assert lag_within_one({"cases": cases}) == pytest.approx(4 / 6)
    assert lag_within_one({"cases": [{"metrics": {}}]}) is None
    assert spread([1.0, None, 3.0]) == (2.0, pytest.approx(2**0.5))
    assert spread([2.0]) == (2.0, None) and spread([None]) == (None, None)
    full = {"metrics": {"a": 1.0}, "std": {"a": 0.1}}
    assert stands_out({"metrics": {"a": 1.5}, "std": {"a": 0.2}}, full, "a")  # 0.5 > 0.1 + 0.2
    assert not stands_out({"metrics": {"a": 1.25}, "std": {"a": 0.2}}, full, "a")  # ranges overlap
    assert not stands_out({"metrics": {"a": 9.0}, "std": {"a": None}}, full, "a")  # one seed: no claim
    table = {
        "settings": {"seeds": [0, 1]},
        "runs": {
            "full": {"metrics": {"lip_sync_corr": 0.2}, "std": {"lip_sync_corr": 0.01}},
            "no_bridge": {"metrics": {"lip_sync_corr": 0.1}, "std": {"lip_sync_corr": 0.02}},
        },
    }
    assert "| no_bridge | **0.100 ± 0.020** |" in markdown_table(table)
    assert "ablate" in CliRunner().invoke(avatar_app, ["--help"]).output
