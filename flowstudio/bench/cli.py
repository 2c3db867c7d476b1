"""``flowstudio bench``: typer sub-app; every command is a thin shell over :mod:`flowstudio.bench`.

Registered by the main CLI as ``app.add_typer(bench_app, name="bench")``.
"""

from __future__ import annotations

import json
import logging
from enum import StrEnum
from pathlib import Path

import typer
from rich.console import Console

from flowstudio.errors import FlowstudioError

logger = logging.getLogger(__name__)
console = Console(stderr=True)
bench_app = typer.Typer(
    help="Editing benchmark: test sets, metrics, one-command runs, reports.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


class SetName(StrEnum):
    shapeworld = "shapeworld-v1"
    ecommerce = "ecommerce"


def _fail(error: Exception) -> None:
    from flowstudio.jobs.errors import fail

    fail(error)  # the one error handler of every command: one line, exit code 2


@bench_app.command("make-set")
def make_set(
    name: SetName = typer.Argument(
        ..., help="Built-in set: shapeworld-v1 (generated) or ecommerce (template)."
    ),
    out: Path = typer.Argument(..., help="Folder to write the set (manifest.json and files) into."),
    seed: int = typer.Option(0, help="Seed of shapeworld-v1; the same seed gives the same set."),
    cases: int = typer.Option(200, min=5, help="Number of shapeworld-v1 cases (200 is the published set)."),
) -> None:
    """Write a built-in test set to OUT (shapeworld-v1 is reused when OUT already holds it)."""
    from flowstudio.bench.sets import make_ecommerce_template, make_shapeworld

    try:
        if name == SetName.shapeworld:
            testset = make_shapeworld(out, seed=seed, num_cases=cases, progress=True)
            typer.echo(f"{testset.path}: {len(testset)} cases")
        else:
            typer.echo(f"{make_ecommerce_template(out)}: template written; see docs/annotating_ecommerce.md")
    except FlowstudioError as err:
        _fail(err)


@bench_app.command("validate")
def validate(
    manifest: Path = typer.Argument(..., help="Manifest file, or a folder holding manifest.json."),
    rehash: bool = typer.Option(False, help="Record every file's SHA-256 into the manifest first."),
    root: Path | None = typer.Option(
        None, help="Refuse case files that resolve outside this folder (default: anywhere)."
    ),
) -> None:
    """Check a manifest: schema, duplicate ids, files, sizes and hashes. Lists every problem."""
    from flowstudio.bench.manifest import load_testset, record_hashes

    try:
        if rehash:
            typer.echo(f"recorded {record_hashes(manifest, root=root)} file hashes")
        testset = load_testset(manifest, root=root)
    except FlowstudioError as err:
        _fail(err)
    counts: dict[str, int] = {}
    for case in testset:
        counts[case.edit_type] = counts.get(case.edit_type, 0) + 1
    typer.echo(
        f"{testset.path}: OK, {len(testset)} cases ("
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        + ")"
    )


def _reference(enabled: bool, weights: Path | None, device: str) -> object | None:
    if not enabled:
        return None
    from flowstudio.bench.metrics.reference import ReferenceScorer
    from flowstudio.bench.metrics.registry import load_config

    return ReferenceScorer(config=load_config(weights), device=device)


def _print_summary(results: dict) -> None:
    typer.echo(
        f"cases: {len(results['cases'])}, errors: {results['errors']}, "
        f"composite: {results['composite']['mean']}"
    )
    for name, stats in results["summary"].items():  # skipped metrics: see results.json for why
        if "mean" in stats:
            typer.echo(f"  {name:16s} {stats['mean']:.4f}  (n={stats['n']})")
        elif "value" in stats:
            typer.echo(f"  {name:16s} {stats['value']:.4f}  (set)")


@bench_app.command("run")
def run(
    method: str = typer.Option(
        ..., "--method", "-m", help="Method name: identity, ground-truth, flowstudio-edit:<method>, ..."
    ),
    testset: str = typer.Option(..., "--testset", "-t", help="shapeworld-v1 or a manifest path."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder (resumed when it holds the same run)."),
    seed: int = typer.Option(0, help="Seed passed to the method for every case."),
    limit: int | None = typer.Option(None, min=1, help="Only the first N cases (a quick subset)."),
    edit_type: list[str] = typer.Option(
        [],
        "--edit-type",
        help="Only the cases of this edit type (repeatable; applied before --limit), e.g. the "
        "cases a one-type method such as a preset is made for.",
    ),
    set_seed: int = typer.Option(0, help="Seed of a generated built-in test set."),
    reference: bool = typer.Option(
        False, "--reference", help="Also compute the reference tier (local weights)."
    ),
    weights: Path | None = typer.Option(None, help="Weights config for the reference tier (JSON/YAML)."),
    device: str = typer.Option(
        "cpu", help="Torch device of the editing engine (flowstudio-edit:*) and the reference-tier models."
    ),
    dtype: str | None = typer.Option(
        None, help="Model dtype of the editing engine: float32 / bfloat16 / float16 (default: the device's)."
    ),
    option: list[str] = typer.Option(
        [],
        "--option",
        "-O",
        help="Engine setting key=value, repeatable (steps=10, target_guidance=7, flowedit.n_avg=2, ...); "
        "used for every case and recorded in results.json.",
    ),
    workers: int = typer.Option(
        1,
        min=1,
        help="Processes for the per-frame scoring of each case (offline tier; the same numbers). "
        "1 = this process.",
    ),
) -> None:
    """Edit every case with METHOD and score it; per-case errors are recorded, the run goes on."""
    from flowstudio.bench.methods import configure_method, get_method
    from flowstudio.bench.runner import run_benchmark
    from flowstudio.bench.sets import resolve_testset
    from flowstudio.checks import check_device, check_writable_folder

    try:
        check_writable_folder(out, "--out", create=False)
        check_device(device, "--device")
        chosen = configure_method(get_method(method), method, option, device=device, dtype=dtype)
        cases = resolve_testset(testset, seed=set_seed, limit=limit, edit_types=edit_type)
        results = run_benchmark(
            method,
            chosen,
            cases,
            out,
            seed=seed,
            reference=_reference(reference, weights, device),
            extra_settings={"limit": limit, "edit_types": edit_type or None, "reference_tier": reference},
            workers=workers,
        )
    except FlowstudioError as err:
        _fail(err)
    _print_summary(results)
    typer.echo(f"results: {out / 'results.json'}")


@bench_app.command("score")
def score(
    outputs: Path = typer.Argument(
        ..., help="Folder of outputs: <case id>.mp4 / .npz / ... or <case id>/ frames."
    ),
    testset: str = typer.Option(..., "--testset", "-t", help="shapeworld-v1 or a manifest path."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Run folder (default: OUTPUTS/../<name>-scores)."
    ),
    label: str | None = typer.Option(None, help="Method name to record (default: external:<folder name>)."),
    limit: int | None = typer.Option(None, min=1, help="Only the first N cases."),
    edit_type: list[str] = typer.Option(
        [], "--edit-type", help="Only the cases of this edit type (repeatable; applied before --limit)."
    ),
    set_seed: int = typer.Option(0, help="Seed of a generated built-in test set."),
    reference: bool = typer.Option(False, "--reference", help="Also compute the reference tier."),
    weights: Path | None = typer.Option(None, help="Weights config for the reference tier."),
    device: str = typer.Option("cpu", help="Torch device of the reference-tier models."),
    workers: int = typer.Option(
        1,
        min=1,
        help="Processes for the per-frame scoring of each case (offline tier; the same numbers). "
        "1 = this process.",
    ),
) -> None:
    """Score outputs made by any tool; a missing output is recorded as that case's error."""
    from flowstudio.bench.methods import FolderMethod
    from flowstudio.bench.runner import run_benchmark
    from flowstudio.bench.sets import resolve_testset

    try:
        method = FolderMethod(outputs)
        name = label or f"external:{outputs.resolve().name}"
        cases = resolve_testset(testset, seed=set_seed, limit=limit, edit_types=edit_type)
        out = out or outputs.resolve().parent / f"{outputs.resolve().name}-scores"
        results = run_benchmark(
            name,
            method,
            cases,
            out,
            reference=_reference(reference, weights, device),
            extra_settings={"limit": limit, "edit_types": edit_type or None, "reference_tier": reference},
            workers=workers,
        )
    except FlowstudioError as err:
        _fail(err)
    _print_summary(results)
    typer.echo(f"results: {out / 'results.json'}")


@bench_app.command("report")
def report(
    results: list[Path] = typer.Argument(
        ..., help="results.json files or run folders (several compare methods)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for report.md, report.html and plots."),
) -> None:
    """Markdown and HTML tables per edit type, and plots."""
    from flowstudio.bench.report import load_results, write_report

    try:
        files = write_report(load_results(results), out)
    except FlowstudioError as err:
        _fail(err)
    typer.echo(f"wrote {files['markdown']}, {files['html']} and {len(files) - 2} plots")


@bench_app.command("fit-weights")
def fit_weights_cmd(
    ratings: Path = typer.Argument(
        ..., help="CSV: case_id,method,rating (Likert) or case_id,method_a,method_b,winner (pairwise)."
    ),
    results: list[Path] = typer.Option(..., "--results", "-r", help="results.json of each rated run."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write the fitted weights report (JSON) here."),
    folds: int = typer.Option(5, min=0, help="k-fold cross-validation of the fit (0: in-sample only)."),
) -> None:
    """Fit the composite weights to human ratings; print Spearman/Kendall before and after."""
    from flowstudio.bench.composite import fit_weights, read_ratings
    from flowstudio.bench.report import load_results

    try:
        report_data = fit_weights(read_ratings(ratings), load_results(results), folds=folds)
    except FlowstudioError as err:
        _fail(err)
    for key in ("before", "after", "after_cv"):
        if key in report_data:
            block = report_data[key]
            typer.echo(
                f"{key:9s} spearman {block['spearman']}  kendall {block['kendall']}"
                + (f"  agreement {block['agreement']}" if "agreement" in block else "")
            )
    typer.echo("fitted weights: " + json.dumps(report_data["fitted_weights"]))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report_data, indent=1) + "\n", encoding="utf-8")


@bench_app.command("schema")
def schema() -> None:
    """Print the manifest JSON Schema."""
    from flowstudio.bench.schema import MANIFEST_SCHEMA

    typer.echo(json.dumps(MANIFEST_SCHEMA, indent=1))


@bench_app.command("weights")
def weights_cmd(
    config: Path | None = typer.Option(None, help="Weights config (default $FLOWSTUDIO_BENCH_WEIGHTS)."),
    pin: bool = typer.Option(
        False, help="Record the present files' SHA-256 into CONFIG (after checking them)."
    ),
) -> None:
    """Show where each reference-tier model resolves and whether it may be used."""
    from flowstudio.bench.metrics import registry

    if pin:
        if config is None:
            _fail(FlowstudioError("--pin needs --config PATH to write to"))
        registry.pin(config)
    loaded = registry.load_config(config)
    for name in registry.WEIGHTS:
        status = registry.resolve(name, loaded)
        typer.echo(
            f"{name:10s} {status.status:8s} {status.path}" + (f"  ({status.reason})" if status.reason else "")
        )


@bench_app.command("methods")
def methods() -> None:
    """List registered methods."""
    from flowstudio.bench.methods import available_methods

    for name in available_methods():
        typer.echo(name)
    typer.echo("flowstudio-edit:<method>  (loaded from flowstudio.edit when installed)")
