"""Reports of benchmark results: Markdown and HTML tables per edit type, and matplotlib plots.

``write_report([results...], out)`` writes ``out/report.md``, ``out/report.html`` and
``out/metrics.png`` (one grouped bar chart per metric: edit types on the x axis, one bar per run)
and ``out/composite.png``. Several results files compare methods side by side.
"""

from __future__ import annotations

import html
import logging
import os
from pathlib import Path
from typing import Any

from flowstudio.errors import InputError
from flowstudio.metrics import for_suite
from flowstudio.metrics.results import read_results

logger = logging.getLogger(__name__)


def load_results(paths: list[str | os.PathLike[str]]) -> list[dict[str, Any]]:
    """Editing results (:mod:`flowstudio.metrics.results`; older bench files converted) from
    ``results.json`` files or run folders holding one."""
    results = []
    for path in paths:
        data = read_results(path)
        if data.get("kind") != "edit":
            raise InputError(f"{path}: holds {data.get('kind')} results, not an editing benchmark run")
        results.append(data)
    if not results:
        raise InputError("no results given")
    return results


def _case_metrics(results: list[dict[str, Any]]) -> list[str]:
    """Case-level editing metrics that some run has numbers for, in registry order."""
    return [
        m.name
        for m in for_suite("edit", level="case")
        if any("mean" in r["summary"].get(m.name, {}) for r in results)
    ]


def _arrow(name: str) -> str:
    better = {m.name: m.higher_is_better for m in for_suite("edit")}.get(name)
    return "" if better is None else ("↑" if better else "↓")


def _by_type(result: dict[str, Any]) -> dict[str, Any]:
    return result.get("groups", {}).get("edit_type", {})


def _label(result: dict[str, Any]) -> str:
    s = result["settings"]
    return s.get("label") or s["method"]


def _fmt(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.2f}"


def tables(results: list[dict[str, Any]]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) per table: one overall, then one per edit type; rows are runs."""
    metrics = _case_metrics(results)
    header = ["method", "cases", "errors", "composite", *[f"{m} {_arrow(m)}" for m in metrics]]
    out = []
    groups = ["all", *sorted({t for r in results for t in _by_type(r)})]
    for group in groups:
        rows = []
        for result in results:
            summary = result["summary"] if group == "all" else _by_type(result).get(group, {})
            cases = [c for c in result["cases"] if group == "all" or c["edit_type"] == group]
            composite = [
                c["composite"]["value"]
                for c in cases
                if c.get("status") == "ok" and c.get("composite", {}).get("value") is not None
            ]
            rows.append(
                [
                    _label(result),
                    str(len(cases)),
                    str(sum(c["status"] == "error" for c in cases)),
                    _fmt(sum(composite) / len(composite) if composite else None),
                    *[_fmt(summary.get(m, {}).get("mean")) for m in metrics],
                ]
            )
        out.append(("All cases" if group == "all" else f"Edit type: {group}", header, rows))
    return out


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _settings_lines(result: dict[str, Any]) -> list[str]:
    s = result["settings"]
    weights = result.get("weights") or {}
    used = [f"{n} ({w['sha256']})" for n, w in weights.items() if w.get("status") == "ok"]
    return [
        f"- **{_label(result)}**: test set `{s['testset']['name']}` ({s['testset']['cases']} cases, manifest "
        f"sha256 `{s['testset']['manifest_sha256'][:12]}`), seed {s['seed']}, model {s.get('model')}, "
        f"steps {s.get('steps')}; reference weights: {', '.join(used) or 'none (reference tier skipped)'}"
    ]


def write_report(results: list[dict[str, Any]], out: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``report.md``, ``report.html`` and PNG plots into ``out``; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    all_tables = tables(results)
    md = ["# flowstudio benchmark report", "", "Runs:", ""]
    for result in results:
        md += _settings_lines(result)
    md += [
        "",
        "Arrows: ↑ higher is better, ↓ lower is better. Metric definitions: docs/guide_benchmark.md.",
        "",
    ]
    skipped_sets = {}
    set_names = [m.name for m in for_suite("edit", level="set")]
    for result in results:
        for name in set_names:
            value = result["summary"].get(name)
            if value is None:
                continue
            skipped_sets.setdefault(name, []).append(
                f"{_label(result)}: "
                + (_fmt(value["value"]) if "value" in value else f"skipped ({value['reason']})")
            )
    for title, header, rows in all_tables:
        md += [f"## {title}", "", _markdown_table(header, rows), ""]
    if skipped_sets:
        md += (
            ["## Set-level metrics", ""] + [f"- {n}: " + "; ".join(v) for n, v in skipped_sets.items()] + [""]
        )
    files = {"markdown": out / "report.md", "html": out / "report.html"}
    plots = _plots(results, out, plt)
    md += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    files["markdown"].write_text("\n".join(md), encoding="utf-8")
    files["html"].write_text(_html(results, all_tables, plots, skipped_sets), encoding="utf-8")
    for plot in plots:
        files[plot.stem] = plot
    return files


def _plots(results: list[dict[str, Any]], out: Path, plt: Any) -> list[Path]:
    """``composite.png`` and ``metrics.png`` (one panel per metric): edit types on x, one bar per run."""
    import numpy as np

    types = sorted({t for r in results for t in _by_type(r)})
    metrics = _case_metrics(results)

    def values(result: dict[str, Any], metric: str) -> list[float]:
        if metric == "composite":
            out_values = []
            for t in types:
                cs = [
                    c["composite"]["value"]
                    for c in result["cases"]
                    if c["edit_type"] == t
                    and c.get("status") == "ok"
                    and c.get("composite", {}).get("value") is not None
                ]
                out_values.append(float(np.mean(cs)) if cs else np.nan)
            return out_values
        by_type = _by_type(result)
        return [by_type.get(t, {}).get(metric, {}).get("mean", np.nan) for t in types]

    def panel(ax: Any, metric: str) -> None:
        width = 0.8 / len(results)
        for k, result in enumerate(results):
            ax.bar(
                np.arange(len(types)) + k * width - 0.4 + width / 2,
                values(result, metric),
                width,
                label=_label(result),
            )
        ax.set_xticks(np.arange(len(types)), types, fontsize=7, rotation=30)
        arrow = {"↑": " (higher better)", "↓": " (lower better)"}.get(_arrow(metric), "")
        ax.set_title(f"{metric}{arrow}", fontsize=9)
        ax.tick_params(axis="y", labelsize=7)

    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(types) + 1.5), 3.0))
    panel(ax, "composite")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "composite.png", dpi=90)
    plt.close(fig)
    cols = 4
    rows = max(1, -(-len(metrics) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.5 * rows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics, strict=False):
        panel(ax, metric)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "metrics.png", dpi=80)
    plt.close(fig)
    return [out / "composite.png", out / "metrics.png"]


def _html(
    results: list[dict[str, Any]], all_tables: list[Any], plots: list[Path], set_lines: dict[str, list[str]]
) -> str:
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>flowstudio benchmark report</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1.5em}"
        "td,th{border:1px solid #ccc;padding:3px 7px;font-size:13px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}th{background:#f3f3f3}img{margin:4px}</style>",
        "</head><body><h1>flowstudio benchmark report</h1><ul>",
    ]
    for result in results:
        parts.append(f"<li>{esc(_settings_lines(result)[0][2:].replace('**', ''))}</li>")
    parts.append("</ul><p>↑ higher is better, ↓ lower is better.</p>")
    for title, header, rows in all_tables:
        parts.append(
            f"<h2>{esc(title)}</h2><table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>"
        )
        parts += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows]
        parts.append("</table>")
    if set_lines:
        parts.append(
            "<h2>Set-level metrics</h2><ul>"
            + "".join(f"<li>{esc(n)}: {esc('; '.join(v))}</li>" for n, v in set_lines.items())
            + "</ul>"
        )
    parts.append("<h2>Plots</h2>" + "".join(f"<img src='{esc(p.name)}' alt='{esc(p.stem)}'>" for p in plots))
    parts.append("</body></html>")
    return "\n".join(parts)
