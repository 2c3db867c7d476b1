"""Seeding the board from the benchmark's own results files (``bench run`` / ``results.json``).

Nothing is typed in by hand: each seeded row is one results file that :func:`flowstudio.bench.run_benchmark`
wrote, read with :func:`flowstudio.metrics.results.read_results` (older formats converted), checked to
be a run on the board's test set (same name, same manifest hash, known case ids), and stored through
the same :meth:`BoardStore.record_results` the worker uses. :func:`run_and_seed` runs a method first
(``board seed --run METHOD``), for methods that have no results file yet.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from flowstudio.bench.manifest import TestSet
from flowstudio.board.catalog import card
from flowstudio.board.models import Submission
from flowstudio.board.store import BoardStore
from flowstudio.errors import InputError
from flowstudio.metrics.results import read_results

log = logging.getLogger(__name__)

#: Where ``board seed`` looks when given no files: the repository's committed benchmark results.
DEFAULT_RESULTS = Path("benchmarks/results")
SEEDER = "flowstudio"


def check_run(results: dict[str, Any], testset: TestSet, where: str) -> list[str]:
    """Why ``results`` cannot be shown on the board of ``testset`` (empty: it can)."""
    if results.get("kind") != "edit":
        return [f"{where}: a {results.get('kind')!r} results file, not an editing benchmark run"]
    settings = results.get("settings") or {}
    recorded = settings.get("testset") or {}
    problems = []
    if recorded.get("name") != testset.name:
        problems.append(
            f"{where}: a run on test set {recorded.get('name')!r}, the board shows {testset.name!r}"
        )
    elif recorded.get("manifest_sha256") != testset.manifest_sha256:
        problems.append(
            f"{where}: a run on another build of {testset.name} (manifest sha256 "
            f"{str(recorded.get('manifest_sha256'))[:12]}, the board's is {testset.manifest_sha256[:12]})"
        )
    if not settings.get("method"):
        problems.append(f"{where}: the settings name no method")
    known = {c.id for c in testset}
    unknown = sorted({str(r.get("id")) for r in results.get("cases", [])} - known)
    if unknown:
        problems.append(f"{where}: {len(unknown)} case id(s) not in the test set, e.g. {unknown[:3]}")
    if not results.get("cases"):
        problems.append(f"{where}: no case records")
    return problems


def seed_results(store: BoardStore, testset: TestSet, path: str | Path) -> Submission:
    """Put the run of results file ``path`` on the board (again: its scores are replaced)."""
    file = Path(path).resolve()
    if file.is_dir():  # a run folder: its results.json, so that its outputs/ are kept as with --run
        file = file / "results.json"
    results = read_results(file)
    problems = check_run(results, testset, str(path))
    if problems:
        raise InputError("; ".join(problems))
    settings = results["settings"]
    name = str(settings["method"])
    info = card(name, str(settings.get("description") or ""))
    method = store.ensure_method(
        name, description=info.description, paper=info.paper, code=info.code, submitter=SEEDER
    )
    folder = file.parent if file.name == "results.json" else None
    outputs = folder / "outputs" if folder is not None and (folder / "outputs").is_dir() else None
    submission = store.seeded(str(file), method) or store.add_submission(
        method,
        testset,
        origin="seed",
        source=str(file),
        owner=SEEDER,
        settings=settings,
        outputs=str(outputs) if outputs else None,
        status="seeding",
        cases_total=len(testset),
    )
    store.record_results(submission.id, results, from_status=("seeding", "scored", "queued"))
    log.info("seeded %s from %s (%d cases)", name, file, len(results["cases"]))
    return store.submission(submission.id) or submission


def run_fingerprint(results: dict[str, Any]) -> str:
    """What makes two results files one run for the board: the method, the build of the set, and every
    case's id and numbers. ``board seed`` without files skips a file whose fingerprint it has already
    seeded (e.g. ``bench_sanity_identity.json`` and ``board_seed_identity.json``), so the board does
    not list one run twice."""
    settings = results.get("settings") or {}
    key = {
        "method": settings.get("method"),
        "manifest_sha256": (settings.get("testset") or {}).get("manifest_sha256"),
        "cases": [[c.get("id"), c.get("metrics")] for c in results.get("cases", [])],
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def default_files(folder: Path = DEFAULT_RESULTS) -> list[Path]:
    """The editing-benchmark results files among ``folder``'s JSON files (others are not results)."""
    found = []
    for file in sorted(folder.glob("*.json")):
        try:
            if read_results(file).get("kind") == "edit":
                found.append(file)
        except (InputError, KeyError, TypeError, AttributeError):
            continue
    return found


def run_and_seed(
    store: BoardStore,
    testset: TestSet,
    method_name: str,
    out: Path,
    *,
    limit: int | None = None,
    edit_types: list[str] | tuple[str, ...] | None = None,
) -> Submission:
    """Run ``method_name`` with the benchmark runner into ``out`` (resumable), then seed its results.

    ``edit_types`` runs the cases of those types only (a method made for one type, such as a preset);
    ``limit`` then the first cases only. The board shows such a row with its case count, which is less
    than the set's: unranked in the all-types tab, ranked in a type's tab that it covers whole.
    """
    from flowstudio.bench.methods import get_method
    from flowstudio.bench.runner import run_benchmark
    from flowstudio.bench.sets import subset

    run_benchmark(
        method_name,
        get_method(method_name),
        subset(testset, edit_types=edit_types, limit=limit),
        out,
        extra_settings={"limit": limit, "edit_types": list(edit_types) if edit_types else None},
    )
    return seed_results(store, testset, out / "results.json")
