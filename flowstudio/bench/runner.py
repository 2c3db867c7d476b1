"""One-command evaluation: run a method over a test set (or read outputs made elsewhere) and score it.

Layout of a run folder ``OUT``::

    OUT/run.json              settings of the run (checked on resume: a different run is refused)
    OUT/outputs/<id>.npz      each output clip (lossless)
    OUT/cases/<id>.json       each case's record: metrics, skipped metrics with reasons, or the error
    OUT/work/<id>/            scratch folder handed to the method
    OUT/results.json          the run's one results file (settings + every case + summaries)

Resumable: a case whose record exists is not run again (interrupt with Ctrl-C and run the same
command). A case that fails (the method raises, the output has the wrong shape, a file is missing)
is recorded with its error and the run goes on; ``results.json`` counts the errors.
"""

from __future__ import annotations

import json
import logging
import numbers
import os
import platform
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from flowstudio import __version__
from flowstudio.bench.io import load_frames, save_frames
from flowstudio.bench.manifest import TestSet
from flowstudio.bench.methods import EditMethod, method_settings
from flowstudio.bench.scoring import case_inputs, check_output, score_case
from flowstudio.checks import check_writable_folder
from flowstudio.errors import InputError
from flowstudio.metrics import SetScorer, versions
from flowstudio.metrics.results import build_results, now, write_results

logger = logging.getLogger(__name__)


def _write_json(path: Path, data: Any) -> None:
    write_results(data, path)


def run_settings(
    method_name: str, method: EditMethod, testset: TestSet, seed: int, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Everything that determines a run's numbers (compared on resume)."""
    return {
        **method_settings(method, method_name),
        "seed": int(seed),
        "testset": {
            "name": testset.name,
            "manifest": str(testset.path),
            "manifest_sha256": testset.manifest_sha256,
            "cases": len(testset),
            "case_ids_sha256": _ids_hash(testset),
        },
        "metric_versions": versions("edit"),
        **(extra or {}),
    }


def _ids_hash(testset: TestSet) -> str:
    import hashlib

    return hashlib.sha256("\n".join(c.id for c in testset).encode()).hexdigest()


def run_benchmark(
    method_name: str,
    method: EditMethod,
    testset: TestSet,
    out: str | os.PathLike[str],
    *,
    seed: int = 0,
    reference: Any | None = None,
    progress: bool = True,
    extra_settings: dict[str, Any] | None = None,
    on_case: Callable[[str, dict[str, Any]], None] | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    """Run ``method`` on every case of ``testset`` into ``out``, score each output, write ``results.json``.

    Args:
        method_name: the registry name (recorded).
        method: the callable (see :mod:`flowstudio.bench.methods`).
        testset: a validated test set.
        out: run folder (created; resumed when it holds the same run).
        seed: passed to the method for every case.
        reference: a ``ReferenceScorer`` for the reference tier, or ``None`` (offline tier only; the
            reference metrics are then recorded as skipped with that reason).
        progress: show a tqdm bar.
        extra_settings: recorded in the settings (e.g. ``limit``).
        on_case: called with ``(case_id, record)`` after each case.
        workers: processes for the per-frame work of each case's offline-tier scoring
            (``score_case(workers=N)``; the same numbers, so not part of the run's settings: a run
            may be resumed with another count); 1 = this process.

    Returns:
        The results dict written to ``out/results.json``.
    """
    from tqdm import tqdm

    if isinstance(workers, bool) or not isinstance(workers, numbers.Integral) or workers < 1:
        raise InputError(f"workers must be a whole number >= 1 (1 = no worker processes); got {workers!r}")
    out = check_writable_folder(out, "out")
    settings = run_settings(method_name, method, testset, seed, extra_settings)
    run_file = out / "run.json"
    if run_file.is_file():
        previous = json.loads(run_file.read_text(encoding="utf-8"))
        if _comparable(previous["settings"]) != _comparable(settings):
            raise InputError(
                f"{out} holds a different run (method, test set, seed or metric versions differ); "
                "pick another --out folder or delete it"
            )
        logger.info("resuming the run in %s", out)
    else:
        _write_json(run_file, {"settings": settings, "started": _now()})
    records: dict[str, dict[str, Any]] = {}
    bar = tqdm(testset.cases, desc=f"bench {method_name}", unit="case", disable=not progress)
    for case in bar:
        record_file = out / "cases" / f"{case.id}.json"
        if record_file.is_file():
            records[case.id] = json.loads(record_file.read_text(encoding="utf-8"))
            continue
        record = _run_case(case, method, out, seed, reference, workers)
        _write_json(record_file, record)
        records[case.id] = record
        if record["status"] == "error":
            logger.warning("case %s failed: %s", case.id, record["error"]["message"])
        if on_case is not None:
            on_case(case.id, record)
        bar.set_postfix(errors=sum(r["status"] == "error" for r in records.values()))
    results = assemble_results(settings, testset, records, reference, out)
    _write_json(out / "results.json", results)
    logger.info("wrote %s: %d cases, %d errors", out / "results.json", len(records), results["errors"])
    return results


def _comparable(settings: dict[str, Any]) -> dict[str, Any]:
    keep = dict(settings)
    keep.pop("description", None)
    keep["testset"] = {k: v for k, v in settings["testset"].items() if k != "manifest"}
    return keep


def _now() -> str:
    return now()


def _run_case(
    case: Any, method: EditMethod, out: Path, seed: int, reference: Any | None, workers: int = 1
) -> dict[str, Any]:
    record: dict[str, Any] = {"id": case.id, "edit_type": case.edit_type, "tags": list(case.tags)}
    start = time.perf_counter()
    stage = "edit"
    try:
        work = out / "work" / case.id
        work.mkdir(parents=True, exist_ok=True)
        source = case.load_source()
        frames = check_output(method(case, work, seed), source, case.id)
        record["edit_seconds"] = round(time.perf_counter() - start, 4)
        info = getattr(method, "last_case_info", None)
        if isinstance(info, dict):  # e.g. the engine's model calls for this case
            record["method_info"] = dict(info)
        save_frames(out / "outputs" / f"{case.id}.npz", frames)
        stage = "score"
        record.update(
            status="ok", **score_case(case, frames, reference=reference, source=source, workers=workers)
        )
    except Exception as err:  # noqa: BLE001 - a failed case is recorded, the run goes on
        record.update(
            status="error",
            error={
                "stage": stage,
                "type": type(err).__name__,
                "message": str(err),
                "traceback": traceback.format_exc(limit=4)[-2000:],
            },
        )
    record["seconds"] = round(time.perf_counter() - start, 4)
    return record


def assemble_results(
    settings: dict[str, Any],
    testset: TestSet,
    records: dict[str, dict[str, Any]],
    reference: Any | None,
    out: Path,
) -> dict[str, Any]:
    """The run's results (:mod:`flowstudio.metrics.results`): settings, environment, weights, per-case
    records with their composite, summaries overall and per edit type, set-level metrics."""
    from flowstudio.bench.composite import DEFAULT_WEIGHTS, composite_score

    ordered = [records[c.id] for c in testset if c.id in records]
    for record in ordered:
        if record.get("status") == "ok":
            record["composite"] = composite_score(record["metrics"])
    composites = [r["composite"]["value"] for r in ordered if r.get("status") == "ok"]
    return build_results(
        "edit",
        settings,
        ordered,
        _set_metrics(testset, out, reference),
        group_by="edit_type",
        environment={
            "flowstudio": __version__,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "numpy": np.__version__,
            "opencv": _cv2_version(),
        },
        weights=reference.weights_report() if reference is not None else {},
        errors=sum(r["status"] == "error" for r in ordered),
        composite={
            "mean": float(np.mean(composites)) if composites else None,
            "n": len(composites),
            "weights": DEFAULT_WEIGHTS,
        },
    )


def _cv2_version() -> str:
    import cv2

    return cv2.__version__


def _set_metrics(testset: TestSet, out: Path, reference: Any | None) -> dict[str, Any]:
    """Set-level metrics (FVD, FID) over the run's outputs, read back from ``out/outputs``."""
    scorer = SetScorer("edit", reference)
    for case in testset:
        file = out / "outputs" / f"{case.id}.npz"
        if file.is_file():
            scorer.add(case_inputs(case, load_frames(file), reference=reference))
    return scorer.finish()
