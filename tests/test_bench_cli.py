"""`bench` commands end to end through the typer sub-app: make-set, validate, run, score, report, fit."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from flowstudio.bench.cli import bench_app
from flowstudio.bench.methods import get_method, register_method

runner = CliRunner()


@pytest.fixture(scope="module")
def testset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench") / "sw"
    result = runner.invoke(bench_app, ["make-set", "shapeworld-v1", str(out), "--cases", "5", "--seed", "1"])
    assert result.exit_code == 0, result.output
    return out / "manifest.json"


@pytest.fixture(scope="module")
def runs(testset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for method in ("identity", "ground-truth"):
        result = runner.invoke(
            bench_app, ["run", "--method", method, "--testset", str(testset), "--out", str(root / method)]
        )
        assert result.exit_code == 0, result.output
        out[method] = root / method
    return out


def test_weights_command_reports_skipped_models(tmp_path, monkeypatch):
    from flowstudio.bench.metrics import registry

    for spec in registry.WEIGHTS.values():
        monkeypatch.delenv(spec.env, raising=False)
    monkeypatch.delenv(registry.CONFIG_ENV, raising=False)
    monkeypatch.setenv(registry.ROOT_ENV, str(tmp_path))
    result = runner.invoke(bench_app, ["weights"])
    assert result.exit_code == 0
    for name in ("clip", "dino", "lpips", "i3d", "inception", "syncnet", "arcface", "headpose"):
        assert f"{name} " in result.output  # one weights registry: editing and avatar models
    assert result.output.count("skipped") == len(registry.WEIGHTS) == 8


def test_help_and_methods():
    for args in ([], ["run", "--help"], ["score", "--help"], ["report", "--help"], ["fit-weights", "--help"]):
        result = runner.invoke(bench_app, args)
        assert "Usage" in result.output, args
    listing = runner.invoke(bench_app, ["methods"])
    assert (
        "identity" in listing.output
        and "ground-truth" in listing.output
        and "flowstudio-edit:" in listing.output
    )
    assert json.loads(runner.invoke(bench_app, ["schema"]).output)["title"].startswith("flowstudio")


def test_validate_ok_and_broken(testset, tmp_path):
    result = runner.invoke(bench_app, ["validate", str(testset)])
    assert result.exit_code == 0 and "OK, 5 cases" in result.output
    bad = tmp_path / "manifest.json"
    data = json.loads(testset.read_text())
    data["cases"][0]["source"] = "missing.npz"
    bad.write_text(json.dumps(data))
    result = runner.invoke(bench_app, ["validate", str(bad)])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_identity_and_oracle_anchor_the_scale(runs):
    identity = json.loads((runs["identity"] / "results.json").read_text())
    oracle = json.loads((runs["ground-truth"] / "results.json").read_text())
    assert identity["errors"] == 0 and oracle["errors"] == 0
    ident, gt = identity["summary"], oracle["summary"]
    assert gt["gt_psnr"]["mean"] == 100.0 and gt["gt_ssim"]["mean"] == pytest.approx(1.0)
    assert ident["bg_psnr"]["mean"] == 100.0 and ident["motion_epe"]["mean"] == 0.0
    assert ident["gt_psnr"]["mean"] < 40.0 and ident["color_fidelity"]["mean"] > 1.0
    assert oracle["composite"]["mean"] > identity["composite"]["mean"]
    settings = identity["settings"]
    assert settings["method"] == "identity" and settings["seed"] == 0 and settings["steps"] == 0
    assert settings["testset"]["cases"] == 5 and len(settings["testset"]["manifest_sha256"]) == 64
    assert settings["metric_versions"]["gt_psnr"] == "1"
    case = identity["cases"][0]
    assert (
        case["status"] == "ok"
        and "clip_text" in case["skipped"]
        and "reference tier" in case["skipped"]["clip_text"]
    )
    assert identity["summary"]["fvd"]["status"] == "skipped"
    assert (runs["identity"] / "outputs" / f"{case['id']}.npz").is_file()


def test_resume_skips_done_cases_and_refuses_a_different_run(runs, testset):
    record = runs["identity"] / "cases"
    stamps = {p: p.stat().st_mtime_ns for p in record.iterdir()}
    result = runner.invoke(
        bench_app, ["run", "-m", "identity", "-t", str(testset), "-o", str(runs["identity"])]
    )
    assert result.exit_code == 0
    assert {p: p.stat().st_mtime_ns for p in record.iterdir()} == stamps
    result = runner.invoke(
        bench_app, ["run", "-m", "identity", "-t", str(testset), "-o", str(runs["identity"]), "--seed", "7"]
    )
    assert result.exit_code == 2 and "different run" in result.output


def test_per_case_errors_are_recorded_and_the_run_goes_on(testset, tmp_path):
    def flaky(case, out_dir, seed):
        if case.edit_type == "color":
            raise RuntimeError("out of memory (simulated)")
        if case.edit_type == "material":
            return case.load_source()[:, :32]  # wrong size
        return case.load_source()

    register_method("test-flaky", flaky, overwrite=True)
    result = runner.invoke(
        bench_app, ["run", "-m", "test-flaky", "-t", str(testset), "-o", str(tmp_path / "r")]
    )
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert results["errors"] == 2
    errors = {c["edit_type"]: c["error"] for c in results["cases"] if c["status"] == "error"}
    assert errors["color"]["type"] == "RuntimeError" and "simulated" in errors["color"]["message"]
    assert "keep the source's frames and size" in errors["material"]["message"]
    assert sum(c["status"] == "ok" for c in results["cases"]) == 3


def test_unknown_and_engine_methods_fail_clearly(testset, tmp_path, monkeypatch):
    import sys
    import types

    from flowstudio.bench import methods

    # as in a fresh process: no engine method registered yet (another test module may have loaded them)
    fresh = {k: v for k, v in methods._REGISTRY.items() if not k.startswith(methods.EDIT_PREFIX)}
    monkeypatch.setattr(methods, "_REGISTRY", fresh)
    result = runner.invoke(bench_app, ["run", "-m", "nope", "-t", str(testset), "-o", str(tmp_path / "x")])
    assert result.exit_code == 2 and "unknown method 'nope'" in result.output
    assert not (tmp_path / "x").exists()
    monkeypatch.setitem(sys.modules, "flowstudio.edit", None)  # the engine is not installed
    result = runner.invoke(
        bench_app, ["run", "-m", "flowstudio-edit:flowedit", "-t", str(testset), "-o", str(tmp_path / "y")]
    )
    assert result.exit_code == 2 and "needs the editing engine flowstudio.edit" in result.output
    monkeypatch.setitem(sys.modules, "flowstudio.edit", types.ModuleType("flowstudio.edit"))  # no hook
    result = runner.invoke(
        bench_app, ["run", "-m", "flowstudio-edit:flowedit", "-t", str(testset), "-o", str(tmp_path / "y")]
    )
    assert result.exit_code == 2 and "bench_method(name)" in result.output


def test_engine_methods_register_lazily(monkeypatch):
    import sys
    import types

    engine = types.ModuleType("flowstudio.edit")
    engine.bench_method = lambda name: lambda case, out_dir, seed: case.load_source()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "flowstudio.edit", engine)
    assert callable(get_method("flowstudio-edit:fake"))


def test_score_external_outputs_mp4_and_missing(testset, tmp_path):
    from flowstudio.bench.manifest import load_testset
    from flowstudio.video import write_video

    cases = load_testset(testset).cases
    outputs = tmp_path / "tool-x"
    for case in cases[:-1]:  # the last case has no output
        write_video(outputs / f"{case.id}.mp4", case.load_target(), 16)
    result = runner.invoke(
        bench_app, ["score", str(outputs), "-t", str(testset), "-o", str(tmp_path / "scores")]
    )
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "scores" / "results.json").read_text())
    assert results["settings"]["method"] == "external:tool-x" and results["errors"] == 1
    assert "no output for case" in results["cases"][-1]["error"]["message"]
    assert 28.0 < results["summary"]["gt_psnr"]["mean"] < 100.0  # H.264 round trip of the ground truth


def test_report_and_fit_weights(runs, tmp_path):
    result = runner.invoke(
        bench_app,
        [
            "report",
            str(runs["identity"]),
            str(runs["ground-truth"] / "results.json"),
            "--out",
            str(tmp_path / "report"),
        ],
    )
    assert result.exit_code == 0, result.output
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "## Edit type: color" in markdown and "| identity |" in markdown and "| ground-truth |" in markdown
    assert "<table>" in (tmp_path / "report" / "report.html").read_text()
    assert (tmp_path / "report" / "metrics.png").stat().st_size > 1000
    results = [json.loads((runs[m] / "results.json").read_text()) for m in ("identity", "ground-truth")]
    ids = [c["id"] for c in results[0]["cases"]]
    likert = tmp_path / "likert.csv"
    with open(likert, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case_id", "method", "rating"])
        for i, case_id in enumerate(ids):
            writer.writerow([case_id, "identity", 1 + i % 2])
            writer.writerow([case_id, "ground-truth", 5 - i % 2])
    result = runner.invoke(
        bench_app,
        [
            "fit-weights",
            str(likert),
            "-r",
            str(runs["identity"]),
            "-r",
            str(runs["ground-truth"]),
            "--out",
            str(tmp_path / "fit.json"),
            "--folds",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    fit = json.loads((tmp_path / "fit.json").read_text())
    assert fit["kind"] == "likert" and fit["n"] == 10
    assert fit["after"]["spearman"] >= fit["before"]["spearman"] - 1e-9
    assert abs(sum(fit["fitted_weights"].values()) - 1.0) < 1e-3
    pairwise = tmp_path / "pairs.csv"
    rows = [["case_id", "method_a", "method_b", "winner"]] + [
        [c, "identity", "ground-truth", "b"] for c in ids
    ]
    with open(pairwise, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    result = runner.invoke(
        bench_app,
        [
            "fit-weights",
            str(pairwise),
            "-r",
            str(runs["identity"]),
            "-r",
            str(runs["ground-truth"]),
            "--folds",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "agreement 1.0" in result.output
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    result = runner.invoke(bench_app, ["fit-weights", str(bad), "-r", str(runs["identity"])])
    assert result.exit_code == 2 and "neither Likert" in result.output
    assert np.isfinite(fit["before"]["kendall"])


def test_run_configures_the_engine_with_options_device_and_dtype(
    testset, tmp_path, monkeypatch, tiny_checkpoint
):
    from flowstudio.bench import methods

    monkeypatch.setenv("FLOWSTUDIO_MODEL", str(tiny_checkpoint))
    # a registry of its own: the engine method is registered afresh with this model, and forgotten after
    fresh = {k: v for k, v in methods._REGISTRY.items() if k != "flowstudio-edit:flowedit"}
    monkeypatch.setattr(methods, "_REGISTRY", fresh)
    records = {}
    for steps in (2, 3):
        out = tmp_path / f"steps{steps}"
        args = ["run", "-m", "flowstudio-edit:flowedit", "-t", str(testset), "-o", str(out), "--limit", "1"]
        args += ["--option", f"steps={steps}", "-O", "flowedit.n_avg=1"]
        args += ["--device", "cpu", "--dtype", "float32"]
        result = runner.invoke(bench_app, args)
        assert result.exit_code == 0, result.output
        records[steps] = json.loads((out / "results.json").read_text())
    for steps, results in records.items():
        settings = results["settings"]
        assert settings["options"] == {"steps": steps, "flowedit": {"n_max": None, "n_min": 0, "n_avg": 1}}
        assert settings["steps"] == steps and settings["device"] == "cpu" and settings["dtype"] == "float32"
        assert results["cases"][0]["status"] == "ok", results["cases"][0]
    calls = {s: r["cases"][0]["method_info"]["model_calls"] for s, r in records.items()}
    assert calls[2] < calls[3]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-m", "flowstudio-edit:flowedit", "--option", "stpes=2"], "--option stpes: unknown engine option"),
        (["-m", "flowstudio-edit:flowedit", "--option", "steps=two"], "expected an integer"),
        (["-m", "flowstudio-edit:flowedit", "--dtype", "fp8"], "--dtype must be one of"),
        (["-m", "flowstudio-edit:flowedit", "--device", "gpu"], "--device must be a torch device"),
        (["-m", "identity", "--option", "steps=2"], "method 'identity' takes no engine options"),
    ],
)
def test_run_refuses_bad_engine_options_before_anything_runs(testset, tmp_path, monkeypatch, args, message):
    import flowstudio.bench.runner as bench_runner

    def never(*a, **k):
        raise AssertionError("the run must not start")

    monkeypatch.setattr(bench_runner, "run_benchmark", never)
    out = tmp_path / "run"
    result = runner.invoke(bench_app, ["run", *args, "-t", str(testset), "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists()


class _Halfway:
    """The mean of the source and the ground truth: an output every metric scores off its bound."""

    settings = {"model": None, "steps": 0}

    def __call__(self, case, out_dir, seed):
        return ((case.load_source().astype(np.uint16) + case.load_target()) // 2).astype(np.uint8)


def test_run_and_score_with_workers_give_the_same_numbers(testset, tmp_path, monkeypatch):
    """--workers N reaches score_case(workers=N) (the frame-parallel scorer) and changes no number."""
    from flowstudio.bench.metrics import content_cache, parallel

    register_method("test-halfway-workers", _Halfway(), overwrite=True)
    calls: list[int] = []
    original = parallel.prefill

    def spy(inputs, workers):
        calls.append(workers)
        return original(inputs, workers)

    monkeypatch.setattr(parallel, "prefill", spy)
    records = {}
    for workers in (1, 2):
        content_cache.clear()  # both cold: the source flows are computed, not read from the cache
        out = tmp_path / f"w{workers}"
        args = ["run", "--method", "test-halfway-workers", "--testset", str(testset), "--limit", "2"]
        result = runner.invoke(bench_app, [*args, "--out", str(out), "--workers", str(workers)])
        assert result.exit_code == 0, result.output
        records[workers] = json.loads((out / "results.json").read_text())
    assert calls == [2, 2], "workers=1 scores in this process; workers=2 prefills each of the 2 cases"
    one, two = ([(c["id"], c["metrics"]) for c in records[w]["cases"]] for w in (1, 2))
    assert len(one) == 2 and all(metrics for _, metrics in one)
    assert one == two, "the frame-parallel scorer must give exactly the one-process numbers"
    assert "workers" not in records[2]["settings"], "a run may be resumed with another worker count"
    # bench score: the outputs of the workers=2 run scored again, in 2 processes: the same numbers
    calls.clear()
    content_cache.clear()
    scored = runner.invoke(
        bench_app,
        ["score", str(tmp_path / "w2" / "outputs"), "--testset", str(testset), "--limit", "2"]
        + ["--out", str(tmp_path / "rescored"), "--workers", "2"],
    )
    assert scored.exit_code == 0, scored.output
    again = json.loads((tmp_path / "rescored" / "results.json").read_text())
    assert [(c["id"], c["metrics"]) for c in again["cases"]] == one and calls == [2, 2]
    refused = runner.invoke(bench_app, [*args, "--out", str(tmp_path / "w0"), "--workers", "0"])
    assert refused.exit_code != 0 and not (tmp_path / "w0").exists()


def test_edit_type_runs_only_those_cases_and_records_it(testset, tmp_path):
    out = tmp_path / "two-types"
    args = ["run", "-m", "identity", "-t", str(testset), "-o", str(out)]
    result = runner.invoke(bench_app, [*args, "--edit-type", "style", "--edit-type", "color"])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert sorted(c["edit_type"] for c in results["cases"]) == ["color", "style"]
    assert results["settings"]["edit_types"] == ["style", "color"]

    bad = runner.invoke(bench_app, [*args[:-1], str(tmp_path / "bad"), "--edit-type", "colour"])
    assert bad.exit_code == 2
    assert "'colour' not in test set" in bad.output and "it holds: background, color" in bad.output
    assert not (tmp_path / "bad" / "results.json").exists(), "nothing is run for a refused filter"
