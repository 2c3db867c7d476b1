"""The one results format of editing (``bench run``) and talking-head (``avatar eval``) evaluations.

A results file (JSON, written atomically by :func:`write_results`)::

    {
      "format": "flowstudio-results", "version": 2, "kind": "edit" | "avatar", "created": "...",
      "settings": {..., "metric_versions": {name: version}},  # everything that produced the numbers
      "metrics": {name: {tier, level, higher_is_better, unit, version, description, needs, weights?}},
      "summary": {name: {"mean", "std", "n", "skipped"?}     # case-level metric over the cases
                        | {"value", ...}                      # set-level metric
                        | {"status": "skipped", "reason"}},   # not computed, and why
      "groups": {"edit_type": {"color": {name: {...}}}},      # the same statistics per group
      "cases": [{"id", "status": "ok" | "error", "metrics": {name: number},
                 "skipped": {name: reason}, "details": {...}, ...}],
      ...                                                     # kind-specific: errors, composite, notes
    }

``std`` is the population standard deviation over cases; ``skipped`` in a summary entry counts the
cases that had no value. :func:`read_results` also reads the two older formats
(``flowstudio-bench-results`` v1 and ``flowstudio.avatar.eval/1``) and returns them in this one.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from flowstudio.errors import InputError
from flowstudio.metrics.registry import Metric, Skip, for_suite

RESULTS_FORMAT = "flowstudio-results"
RESULTS_VERSION = 2
OLD_BENCH_FORMAT = "flowstudio-bench-results"
OLD_AVATAR_FORMAT = "flowstudio.avatar.eval/1"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def case_record(case_id: str, scores: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """One case's record from :func:`flowstudio.metrics.scoring.score_case`'s output."""
    return {
        "id": case_id,
        "status": "ok",
        **extra,
        "metrics": scores["metrics"],
        "skipped": scores["skipped"],
        "details": scores.get("details", {}),
    }


def summarize(records: list[dict[str, Any]], metrics: list[Metric]) -> dict[str, dict[str, Any]]:
    """Mean / std / n of each case-level metric over the ok records; a metric no case has is skipped
    with the first reason a case gave (or ``no case``)."""
    ok = [r for r in records if r.get("status", "ok") == "ok"]
    out: dict[str, dict[str, Any]] = {}
    for metric in metrics:
        if metric.level != "case":
            continue
        numbers = [float(r["metrics"][metric.name]) for r in ok if metric.name in r.get("metrics", {})]
        if numbers:
            entry: dict[str, Any] = {
                "mean": float(np.mean(numbers)),
                "std": float(np.std(numbers)),
                "n": len(numbers),
            }
            if len(numbers) < len(ok):
                entry["skipped"] = len(ok) - len(numbers)
            out[metric.name] = entry
        else:
            reasons = [r.get("skipped", {}).get(metric.name) for r in ok]
            out[metric.name] = Skip(next((x for x in reasons if x), "no case")).record()
    return out


def build_results(
    kind: str,
    settings: dict[str, Any],
    cases: list[dict[str, Any]],
    set_metrics: dict[str, dict[str, Any]],
    *,
    group_by: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A results dict of ``kind``: settings, declarations, summary (case stats + set metrics), groups
    (case stats per value of the records' ``group_by`` field), cases, and ``extra`` top-level fields."""
    metrics = for_suite(kind)
    groups: dict[str, dict[str, Any]] = {}
    if group_by:
        by: dict[str, list[dict[str, Any]]] = {}
        for record in cases:
            by.setdefault(str(record.get(group_by)), []).append(record)
        groups[group_by] = {k: _numbers_only(summarize(v, metrics)) for k, v in sorted(by.items())}
    return {
        "format": RESULTS_FORMAT,
        "version": RESULTS_VERSION,
        "kind": kind,
        "created": now(),
        "settings": settings,
        "metrics": {m.name: m.info() for m in metrics},
        "summary": {**summarize(cases, metrics), **set_metrics},
        "groups": groups,
        "cases": cases,
        **extra,
    }


def _numbers_only(summary: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in summary.items() if "mean" in v}


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def write_results(results: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``results`` as JSON (parents created; temp file then rename, so a reader never sees half)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(
        json.dumps(results, indent=1, allow_nan=False, default=_json_default) + "\n", encoding="utf-8"
    )
    os.replace(tmp, out)
    return out


def read_results(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A results file (or a run folder holding ``results.json``) in this format, older ones converted."""
    file = Path(path)
    file = file / "results.json" if file.is_dir() else file
    if not file.is_file():
        raise InputError(f"{path}: no results file there; pass a run folder or its results.json")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputError(f"{file}: not JSON ({err})") from err
    return convert(data, str(file))


def convert(data: dict[str, Any], where: str = "results") -> dict[str, Any]:
    """``data`` in this format: returned as it is, or converted from an older one."""
    fmt = data.get("format") if isinstance(data, dict) else None
    if fmt == RESULTS_FORMAT:
        return data
    if fmt == OLD_BENCH_FORMAT:
        return _from_bench_v1(data)
    if fmt == OLD_AVATAR_FORMAT:
        return _from_avatar_v1(data)
    raise InputError(f"{where}: not a flowstudio results file (format {fmt!r})")


def _declarations(kind: str, names: set[str]) -> dict[str, Any]:
    return {m.name: m.info() for m in for_suite(kind) if m.name in names}


def _from_bench_v1(data: dict[str, Any]) -> dict[str, Any]:
    old = data["summary"]
    cases = []
    for case in data.get("cases", []):
        case = dict(case)
        details = dict(case.pop("details", {}) or {})
        if "attribute" in case:
            details["attribute"] = case.pop("attribute")
        case.setdefault("metrics", {})
        case.setdefault("skipped", {})
        cases.append({**case, "details": details})
    summary = {**old.get("all", {}), **old.get("set_metrics", {})}
    return {
        "format": RESULTS_FORMAT,
        "version": RESULTS_VERSION,
        "kind": "edit",
        "created": data.get("created"),
        "settings": data.get("settings", {}),
        "metrics": _declarations("edit", set(summary)),
        "summary": summary,
        "groups": {"edit_type": old.get("by_edit_type", {})},
        "cases": cases,
        "environment": data.get("environment", {}),
        "weights": data.get("weights", {}),
        "errors": data.get("errors", 0),
        "composite": {**old.get("composite", {}), "weights": data.get("composite_weights", {})},
        "converted_from": f"{OLD_BENCH_FORMAT} v{data.get('version')}",
    }


def _from_avatar_v1(data: dict[str, Any]) -> dict[str, Any]:
    cases = []
    for clip in data.get("clips", []):
        values = clip.get("metrics", {})
        cases.append(
            {
                "id": clip.get("name"),
                "status": "ok",
                "metrics": {k: v for k, v in values.items() if not isinstance(v, dict)},
                "skipped": {k: v.get("reason", "skipped") for k, v in values.items() if isinstance(v, dict)},
                "details": clip.get("details", {}),
            }
        )
    summary = data.get("summary", {})
    return {
        "format": RESULTS_FORMAT,
        "version": RESULTS_VERSION,
        "kind": "avatar",
        "created": data.get("created"),
        "settings": data.get("settings", {}),
        "metrics": _declarations("avatar", set(summary)),
        "summary": summary,
        "groups": {},
        "cases": cases,
        "notes": data.get("notes", []),
        "converted_from": OLD_AVATAR_FORMAT,
    }
