"""Composite score: a weighted mean of per-metric "goodness" in [0, 1], and fitting its weights to people.

Each metric is mapped to a goodness ``g`` in [0, 1] (1 = best) by a fixed, documented transform
(:data:`NORMALIZERS`): ``linear(lo, hi)`` maps ``lo -> 0`` and ``hi -> 1`` for higher-is-better
metrics, ``hi -> 0`` and ``lo -> 1`` for lower-is-better ones, clipped. The composite of a case is
``sum_i w_i g_i / sum_i w_i`` over the metrics the case has (the others drop out and are listed).

Default weights (:data:`DEFAULT_WEIGHTS`) split the score into four concerns, following what
FiVE-Bench, V2VBench and EditBoard report separately: did the edit happen (attribute accuracy,
CLIP text alignment, closeness to ground truth), was the rest kept (background PSNR/SSIM/LPIPS,
DINO structure), is it temporally clean (warp error, flicker, CLIP frame consistency), is the motion
kept (flow EPE). Fit them to human ratings with :func:`fit_weights` (``flowstudio bench fit-weights``).

Ratings CSV, one of two forms (header required):

* Likert: ``case_id,method,rating`` (any numeric scale, e.g. 1-5);
* pairwise: ``case_id,method_a,method_b,winner`` with ``winner``: ``a``, ``b``, ``tie`` or a method name.

Methods are matched to results files by the ``method`` recorded in them.
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flowstudio.errors import InputError

logger = logging.getLogger(__name__)

NORMALIZERS: dict[str, tuple[float, float]] = {
    # metric: (worst, best) -> goodness 0 .. 1, linear and clipped
    "gt_psnr": (10.0, 45.0),
    "gt_ssim": (0.5, 1.0),
    "gt_psnr_edit": (10.0, 45.0),
    "gt_ssim_edit": (0.5, 1.0),
    "gt_ssim_outside": (0.5, 1.0),
    "color_fidelity": (20.0, 0.0),
    "bg_psnr": (15.0, 50.0),
    "bg_ssim": (0.5, 1.0),
    "bg_ciede2000": (20.0, 0.0),
    "warp_error": (25.0, 0.0),
    "flicker": (5.0, 0.0),
    "motion_epe": (4.0, 0.0),
    "attr_acc": (0.0, 1.0),
    "clip_text": (0.15, 0.35),
    "clip_frame": (0.8, 1.0),
    "dino_structure": (0.1, 0.0),
    "lpips_bg": (0.5, 0.0),
}

DEFAULT_WEIGHTS: dict[str, float] = {
    # the edit happened (0.55): an unchanged video must not score well
    "attr_acc": 0.20,
    "clip_text": 0.15,
    "gt_ssim_edit": 0.10,
    "color_fidelity": 0.10,
    # the rest was kept (0.25)
    "bg_psnr": 0.05,
    "bg_ssim": 0.05,
    "lpips_bg": 0.075,
    "dino_structure": 0.075,
    # temporally clean (0.12)
    "warp_error": 0.06,
    "flicker": 0.03,
    "clip_frame": 0.03,
    # the motion was kept (0.08)
    "motion_epe": 0.08,
}


def goodness(name: str, value: float) -> float:
    """Map a metric value to [0, 1] with :data:`NORMALIZERS` (1 = best)."""
    worst, best = NORMALIZERS[name]
    return float(np.clip((value - worst) / (best - worst), 0.0, 1.0))


def composite_score(metrics: dict[str, float], weights: dict[str, float] | None = None) -> dict[str, Any]:
    """``{"value", "used", "missing"}``: weighted mean goodness over the metrics present."""
    weights = DEFAULT_WEIGHTS if weights is None else weights
    used = [n for n, w in weights.items() if w > 0 and n in metrics]
    missing = [n for n, w in weights.items() if w > 0 and n not in metrics]
    if not used:
        return {"value": None, "used": [], "missing": missing}
    total = sum(weights[n] for n in used)
    value = sum(weights[n] * goodness(n, metrics[n]) for n in used) / total
    return {"value": float(value), "used": used, "missing": missing}


# --------------------------------------------------------------------------------------------
# Rank correlation (independent of scipy; tested against it)


def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank."""
    x = np.asarray(x, np.float64)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), np.float64)
    sorted_x = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman's rho: Pearson correlation of the (average-tie) ranks; ``None`` when undefined."""
    rx, ry = rankdata(x), rankdata(y)
    if len(rx) < 2 or rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def kendall_tau_b(x: np.ndarray, y: np.ndarray) -> float | None:
    """Kendall's tau-b (ties in either variable accounted for); ``None`` when undefined."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 2:
        return None
    dx = np.sign(x[:, None] - x[None, :])
    dy = np.sign(y[:, None] - y[None, :])
    upper = np.triu_indices(len(x), k=1)
    s = float((dx * dy)[upper].sum())
    nx, ny = float((dx[upper] != 0).sum()), float((dy[upper] != 0).sum())
    if nx == 0 or ny == 0:
        return None
    return s / np.sqrt(nx * ny)


# --------------------------------------------------------------------------------------------
# Fitting


@dataclass
class Ratings:
    """Parsed ratings: ``kind`` is ``likert`` or ``pairwise``; rows as dicts."""

    kind: str
    rows: list[dict[str, str]]


def read_ratings(path: str | os.PathLike[str]) -> Ratings:
    """Read a Likert or pairwise ratings CSV (see the module doc); errors name the line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: ratings file not found")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or ())
        rows = list(reader)
    if {"case_id", "method", "rating"} <= columns:
        kind = "likert"
        for i, row in enumerate(rows, start=2):
            try:
                float(row["rating"])
            except ValueError as err:
                raise InputError(f"{path}:{i}: rating {row['rating']!r} is not a number") from err
    elif {"case_id", "method_a", "method_b", "winner"} <= columns:
        kind = "pairwise"
        for i, row in enumerate(rows, start=2):
            if row["winner"] not in ("a", "b", "tie", row["method_a"], row["method_b"]):
                raise InputError(
                    f"{path}:{i}: winner must be a, b, tie or one of the two methods; got {row['winner']!r}"
                )
    else:
        raise InputError(
            f"{path}: columns {sorted(columns)} are neither Likert (case_id,method,rating) nor pairwise "
            "(case_id,method_a,method_b,winner)"
        )
    if not rows:
        raise InputError(f"{path}: no ratings")
    return Ratings(kind, rows)


def _goodness_vector(metrics: dict[str, float], names: list[str]) -> np.ndarray:
    """Goodness per metric; a missing metric gets 0.5 (neutral) so it neither helps nor hurts."""
    return np.array([goodness(n, metrics[n]) if n in metrics else 0.5 for n in names])


def _project_simplex(w: np.ndarray) -> np.ndarray:
    """Euclidean projection onto ``{w >= 0, sum w = 1}`` (Duchi et al. 2008)."""
    u = np.sort(w)[::-1]
    css = np.cumsum(u)
    rho = np.nonzero(u * np.arange(1, len(w) + 1) > (css - 1))[0][-1]
    theta = (css[rho] - 1) / (rho + 1.0)
    return np.maximum(w - theta, 0.0)


def _fit(kind: str, x: np.ndarray, y: np.ndarray, start: np.ndarray, steps: int = 3000) -> np.ndarray:
    """Weights on the simplex. Likert: least squares of standardised ratings on ``a + b * x @ w``;
    pairwise: Bradley-Terry logistic loss on ``s * (x_a - x_b) @ w`` with a learned scale ``s``."""
    w = start.copy()
    lr = 0.05
    for _ in range(steps):
        if kind == "likert":
            pred = x @ w
            pc, yc = pred - pred.mean(), y - y.mean()
            b = (pc @ yc) / max(pc @ pc, 1e-12)
            grad = -2 * b * (x - x.mean(0)).T @ (yc - b * pc) / len(y)
        else:
            margin = x @ w * 8.0  # fixed temperature: goodness differences are small
            p = 1.0 / (1.0 + np.exp(-margin))
            grad = -8.0 * x.T @ (y - p) / len(y)
        w = _project_simplex(w - lr * grad)
    return w


def fit_weights(
    ratings: Ratings, results: list[dict[str, Any]], *, folds: int = 5, seed: int = 0
) -> dict[str, Any]:
    """Fit composite weights to human ratings; report rank correlation before and after.

    Args:
        ratings: from :func:`read_ratings`.
        results: results dicts of the runs that were rated (methods matched by their ``method``).
        folds: k-fold cross-validation of the fitted weights (0 = in-sample only).
        seed: fold assignment.

    Returns:
        ``{"kind", "n", "default_weights", "fitted_weights", "before", "after", "after_cv"}``; each
        correlation block holds ``spearman`` and ``kendall`` (pairwise also ``agreement``: the share of
        non-tie pairs whose winner has the higher composite).
    """
    table: dict[tuple[str, str], dict[str, float]] = {}
    for result in results:
        method = result["settings"]["method"]
        for case in result["cases"]:
            if case.get("status") == "ok":
                table[(case["id"], method)] = case["metrics"]
    names = list(NORMALIZERS)
    default = np.array([DEFAULT_WEIGHTS.get(n, 0.0) for n in names])
    default = default / default.sum()
    missing: set[tuple[str, str]] = set()

    def lookup(case_id: str, method: str) -> np.ndarray | None:
        metrics = table.get((case_id, method))
        if metrics is None:
            missing.add((case_id, method))
            return None
        return _goodness_vector(metrics, names)

    if ratings.kind == "likert":
        items = [(lookup(r["case_id"], r["method"]), float(r["rating"])) for r in ratings.rows]
        items = [(x, y) for x, y in items if x is not None]
        if len(items) < 3:
            raise InputError(
                f"only {len(items)} ratings match a scored case; check case ids and method names "
                f"({len(missing)} unmatched, e.g. {sorted(missing)[:3]})"
            )
        x = np.stack([i[0] for i in items])
        y = np.array([i[1] for i in items])
    else:
        rows = []
        for r in ratings.rows:
            xa, xb = lookup(r["case_id"], r["method_a"]), lookup(r["case_id"], r["method_b"])
            if xa is None or xb is None:
                continue
            winner = {"a": 1.0, r["method_a"]: 1.0, "b": 0.0, r["method_b"]: 0.0}.get(r["winner"], 0.5)
            rows.append((xa - xb, winner))
        if len(rows) < 3:
            raise InputError(
                f"only {len(rows)} pairwise ratings match scored cases ({len(missing)} unmatched)"
            )
        x = np.stack([r[0] for r in rows])
        y = np.array([r[1] for r in rows])

    def evaluate(w: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> dict[str, float | None]:
        pred = xs @ w
        out: dict[str, float | None] = {"spearman": spearman(pred, ys), "kendall": kendall_tau_b(pred, ys)}
        if ratings.kind == "pairwise":
            decided = ys != 0.5
            out["agreement"] = (
                float(((pred[decided] > 0) == (ys[decided] == 1.0)).mean()) if decided.any() else None
            )
        return out

    fitted = _fit(ratings.kind, x, y, default)
    report: dict[str, Any] = {
        "kind": ratings.kind,
        "n": len(y),
        "unmatched": len(missing),
        "default_weights": {n: round(float(w), 4) for n, w in zip(names, default, strict=True) if w > 0},
        "fitted_weights": {n: round(float(w), 4) for n, w in zip(names, fitted, strict=True) if w > 1e-4},
        "before": evaluate(default, x, y),
        "after": evaluate(fitted, x, y),
    }
    if folds and len(y) >= 2 * folds:
        order = np.random.default_rng(seed).permutation(len(y))
        pred = np.empty(len(y))
        for k in range(folds):
            test = order[k::folds]
            train = np.setdiff1d(order, test)
            pred[test] = x[test] @ _fit(ratings.kind, x[train], y[train], default)
        cv = {"spearman": spearman(pred, y), "kendall": kendall_tau_b(pred, y)}
        if ratings.kind == "pairwise":
            decided = y != 0.5
            cv["agreement"] = (
                float(((pred[decided] > 0) == (y[decided] == 1.0)).mean()) if decided.any() else None
            )
        report["after_cv"] = {**cv, "folds": folds}
    return report
