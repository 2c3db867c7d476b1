"""Editing ablations with spread: each control on and off, on the same ShapeWorld pairs, over seeds.

The base editor is the baseline inversion editor (DPM-Solver++ inversion + UniPC, CFG 1 / 5), the one
method every control applies to. The seven controls, and one extra:

====================  ====================================================================
``kv``                attention K/V sharing (concat) over the first half of the steps
``inject``            feature injection (strength 0.8) over the first 30% of the steps
``blend``             masked latent blending, with the *true* object masks unless ``auto-mask``
``auto-mask``         the automatic cross-attention mask instead of the true one (needs
                      ``blend``)
``composite``         the source's pixels composited back outside the mask (needs ``blend``)
``reschedule``        partial inversion: start from noise level 0.8 instead of 1
``solver``            FireFlow as the inversion solver instead of DPM-Solver++
``change-composite``  *extra*: the source's pixels pasted back wherever the decoded edit did
                      not change them (``BlendConfig(strength=0, pixel_composite=True,
                      composite_mask="change")``: max-RGB difference of 5x5 box-blurred frames
                      > 0.2, grown 3 px; ``edit_toy``'s ``*+change-composite`` setting); needs no
                      mask and no latent blending
====================  ====================================================================

Each control is measured both ways: added alone to the base (``+kv``, ...; ``+auto-mask`` and
``+composite`` come with blending and are compared with ``+blend``) and removed from the editor with
every control on (``all-kv``, ...), plus ``base`` and ``all``. The extra is only added to the base
(``+change-composite``, compared with ``base``): it is not part of ``all``, so the ``all`` and
``all-X`` rows stay as they were. 17 configurations. Removing ``blend`` from ``all`` removes the two
controls that need it as well (``all-blend`` is "no mask-based control at all").
Every configuration edits the same pairs (``edit_toy``'s held-out pairs, scoring and VAE cache: PSNR vs
the true edit, keep PSNR outside the edit, attribute accuracy by the readers, warp error, time as if
uncached) once per seed (``--seeds``: the edit's seed, which draws the automatic mask's noise). A
configuration that draws no noise (:func:`seed_dependent`, from ``flowstudio.edit.depends_on_seed``:
here every one without ``auto-mask``) gives the same edit at every seed, bit for bit, so it is run once
per pair, at seed 0; its spread is 0 by construction and the tables say so ("deterministic: run once")
rather than show three seeds that were not run. Results: mean +- std over seeds of the per-seed means
over pairs, and each control's effect (on minus off, per seed, then mean +- std; a run-once side enters
every seed with its one value), as ``edit_ablation.{json,md,png}``. The do-nothing ``identity`` row's
accuracy is reported beside the table: an effect on accuracy means little while no row edits more than
identity.

    python benchmarks/edit_ablation.py --model flowstudio/assets/toy-shapes      # 100 pairs x 3 seeds

**The full run** (100 pairs x (7 seed-dependent configurations x 3 seeds + 10 deterministic ones run
once), 3100 edits) was run on 2026-12-01 on the shipped v3 toy model, as two shards of 50 pairs (about
50 min each, one pinned thread per core), merged into ``benchmarks/results/edit_ablation.{json,md,png}``
(the JSON holds every row); ``docs/guide_edit.md`` reads it. Besides the spread over seeds, the effects
get a 95% paired-bootstrap interval over pairs (:func:`pair_intervals`), the uncertainty of which
pairs were drawn, which the seeds' ± does not show.

Rows are appended as they are made (``edit_ablation_progress.jsonl``), so an interrupted run resumes
(a file written before deterministic configurations were run once holds their seed-1/2 repeats: they
are left out of every mean, after a check that they equal seed 0's); ``--shard K/N`` and ``--merge``
work as in ``edit_toy.py``. A smoke run (it only proves the script works; never publish it):

    python benchmarks/edit_ablation.py --model flowstudio/assets/toy-shapes --pairs 2 --seeds 1 \\
        --steps 4 --frames 5 --size 64 --out /tmp/ablation_smoke

Without ``--model`` it builds the tiny *random-weight* checkpoint and writes to
``outputs/edit_ablation_tiny_random/`` with a banner saying the numbers are meaningless.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from edit_toy import (  # the editing benchmark's pairs, scoring, identity row and resumable rows
    CHANGE_COMPOSITE,
    EVAL_SEED,
    RESULTS,
    ROOT,
    _load_progress,
    edit_pair,
    identity_rows,
    make_pairs,
    open_pipeline,
    parse_shard,
    select_configs,
)

from flowstudio import __version__
from flowstudio.edit import (
    AttentionShareConfig,
    BlendConfig,
    InjectionConfig,
    RescheduleConfig,
    depends_on_seed,
    resolve_settings,
)

logger = logging.getLogger("benchmarks.edit_ablation")
CONTROLS = ("kv", "inject", "blend", "auto-mask", "composite", "reschedule", "solver")
EXTRAS = ("change-composite",)  # measured added to the base only: not part of `all`
NEEDS = {"auto-mask": "blend", "composite": "blend"}  # controls that act on blending's mask
METRICS = ("psnr", "keep_psnr", "attr_acc", "warp_error", "seconds")
EFFECT_METRICS = ("keep_psnr", "attr_acc", "psnr", "seconds")
ONCE = "deterministic: run once"  # how the tables mark a configuration run at seed 0 only


def options_for(controls: set[str], steps: int) -> dict[str, Any]:
    """``edit()`` options of the base editor with ``controls`` on; ``mask`` is ``"auto"``/``"oracle"``.

    Raises:
        ValueError: an unknown control name, ``auto-mask`` / ``composite`` without ``blend``, or
            ``change-composite`` with ``blend`` (both set the blending settings).
    """
    unknown = sorted(controls - set(CONTROLS) - set(EXTRAS))
    if unknown:
        raise ValueError(f"unknown control(s) {unknown}; choose from {', '.join(CONTROLS + EXTRAS)}")
    orphans = sorted(c for c in controls if c in NEEDS and NEEDS[c] not in controls)
    if orphans:
        raise ValueError(f"control(s) {orphans} act on blending's mask: turn 'blend' on with them")
    if "change-composite" in controls and "blend" in controls:
        raise ValueError("'change-composite' is a blend setting of its own: measure it without 'blend'")
    options: dict[str, Any] = {
        "method": "inversion",
        "steps": steps,
        "source_guidance": 1.0,
        "target_guidance": 5.0,
    }
    if "kv" in controls:
        options["attention_share"] = AttentionShareConfig(mode="concat", end=0.5)
    if "inject" in controls:
        options["injection"] = InjectionConfig(end=0.3, strength=0.8)
    if "blend" in controls:
        options["blend"] = BlendConfig(pixel_composite="composite" in controls)
        options["mask"] = "auto" if "auto-mask" in controls else "oracle"
    if "reschedule" in controls:
        options["reschedule"] = RescheduleConfig(strength=0.8)
    if "solver" in controls:
        options["inversion_solver"] = "fireflow"
    if "change-composite" in controls:
        options["blend"] = CHANGE_COMPOSITE  # as edit_toy's *+change-composite rows: no mask needed
    return options


def configurations() -> dict[str, set[str]]:
    """Name -> controls on: ``base``, ``+X`` for each control and extra, ``all``, ``all-X`` for each control.

    The extras (``+change-composite``) are measured added to the base only; ``all`` holds the seven
    controls, so its rows stay comparable with runs made before an extra was added.
    """
    configs: dict[str, set[str]] = {"base": set()}
    configs |= {f"+{c}": {c, NEEDS[c]} if c in NEEDS else {c} for c in CONTROLS}
    configs |= {f"+{c}": {c} for c in EXTRAS}
    configs["all"] = set(CONTROLS)
    configs |= {f"all-{c}": set(CONTROLS) - {c} - {d for d, n in NEEDS.items() if n == c} for c in CONTROLS}
    return configs


def seed_dependent(controls: set[str]) -> bool:
    """Whether the seed can change this configuration's edits (:func:`flowstudio.edit.depends_on_seed`).

    Of the controls here only the automatic mask draws noise (the base editor inverts; partial
    inversion, not SDEdit, is the reschedule): the configurations without it give the same edit for
    every seed, bit for bit, and are run once per pair.
    """
    options = options_for(controls, steps=1)
    mask = options.pop("mask", None)  # "oracle" stands for the true masks: a given mask, not "auto"
    settings = resolve_settings(source_prompt="source", target_prompt="target", **options)
    return depends_on_seed(settings, mask=mask)


def seeds_for(controls: set[str], seeds: int) -> list[int]:
    """The edit seeds a configuration is run with: ``0 .. seeds - 1``, or only 0 when it is deterministic."""
    return list(range(seeds)) if seed_dependent(controls) else [0]


def run_once(names: Any) -> set[str]:
    """The names among ``names`` of configurations that are deterministic (run once, at seed 0)."""
    configs = configurations()
    return {n for n in names if n in configs and not seed_dependent(configs[n])}


def drop_repeats(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` without a deterministic configuration's rows at seeds other than 0.

    Runs made before deterministic configurations were run once hold such rows; they repeat seed 0's
    edit, and counting them would show three seeds where one edit was made. A repeat whose scores
    differ from seed 0's is logged as a warning: the seed-dependence rule would then be wrong.
    """
    once = run_once({r["config"] for r in rows})
    first = {(r["pair"], r["config"]): r for r in rows if r["config"] in once and r.get("seed") == 0}
    kept = []
    for r in rows:
        if r["config"] not in once or r.get("seed") == 0:
            kept.append(r)
            continue
        ref = first.get((r["pair"], r["config"]))
        if ref is not None and any(ref[m] != r[m] for m in ("psnr", "keep_psnr", "attr_acc", "warp_error")):
            logger.warning(
                "%s on pair %s: seed %s scores differ from seed 0's, yet the configuration draws no noise",
                r["config"],
                r["pair"],
                r["seed"],
            )
    return kept


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return statistics.fmean(kept) if kept else None


def _spread(values: list[float | None]) -> dict[str, Any]:
    """``{"mean", "std", "seeds"}`` of per-seed values (std 0 with one seed; None where undefined)."""
    kept = [v for v in values if v is not None]
    if not kept:
        return {"mean": None, "std": None, "seeds": 0}
    std = statistics.stdev(kept) if len(kept) > 1 else 0.0
    return {"mean": round(statistics.fmean(kept), 4), "std": round(std, 4), "seeds": len(kept)}


def per_seed_means(rows: list[dict[str, Any]]) -> dict[str, dict[int, dict[str, float | None]]]:
    """Config -> seed -> metric -> mean over that seed's pairs (deterministic configurations: seed 0 only)."""
    rows = drop_repeats(rows)
    out: dict[str, dict[int, dict[str, float | None]]] = {}
    for config in dict.fromkeys(r["config"] for r in rows):
        out[config] = {}
        for seed in sorted({r["seed"] for r in rows if r["config"] == config}):
            sub = [r for r in rows if r["config"] == config and r["seed"] == seed]
            out[config][seed] = {m: _mean([r[m] for r in sub]) for m in METRICS} | {"pairs": len(sub)}
    return out


def aggregate(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Config -> metric -> mean +- std over seeds of the per-seed means over pairs (and pairs per seed).

    ``runs`` says how the spread was made: ``"per seed"``, or ``"once: deterministic"`` for a
    configuration that draws no noise (one edit per pair; its spread over seeds is 0 by construction).
    """
    seeds = per_seed_means(rows)
    once = run_once(seeds)
    return {
        config: {m: _spread([v[m] for v in by_seed.values()]) for m in METRICS}
        | {
            "pairs": min(v["pairs"] for v in by_seed.values()),
            "runs": "once: deterministic" if config in once else "per seed",
        }
        for config, by_seed in seeds.items()
    }


def _effect_pairs() -> list[tuple[str, str, str, str]]:
    """``(control, context, on, off)`` for every effect the tables show."""
    out = []
    for control in CONTROLS + EXTRAS:
        added_off = f"+{NEEDS[control]}" if control in NEEDS else "base"
        out.append((control, "added to base", f"+{control}", added_off))
        if control not in EXTRAS:
            out.append((control, "removed from all", "all", f"all-{control}"))
    return out


def effects(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Control -> context -> metric -> effect of turning it on (on minus off), mean +- std over seeds.

    Contexts: ``"added to base"`` (``+X`` minus ``base``; for a control that needs blending, minus
    ``+blend``) and ``"removed from all"`` (``all`` minus ``all-X``; not for the extras). Only seeds
    present in both rows count; a missing row gives no entry. A deterministic side (run once) enters
    every seed of the other side with its one value; with both sides deterministic the effect is one
    difference (std 0). ``runs`` says which: ``"per seed"``, ``"off run once"``, ``"on run once"`` or
    ``"once: deterministic"``.
    """
    seeds = per_seed_means(rows)
    once = run_once(seeds)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for control, context, on, off in _effect_pairs():
        if on not in seeds or off not in seeds:
            continue
        # a deterministic side's one edit (seed 0) is its result at every seed of the other side
        on_seeds = {0} if on in once else set(seeds[on])
        off_seeds = {0} if off in once else set(seeds[off])
        if on in once and off in once:
            common, runs = [0], "once: deterministic"
        elif on in once:
            common, runs = sorted(off_seeds), "on run once"
        elif off in once:
            common, runs = sorted(on_seeds), "off run once"
        else:
            common, runs = sorted(on_seeds & off_seeds), "per seed"
        if not (on_seeds <= set(seeds[on]) and off_seeds <= set(seeds[off])):
            continue  # a deterministic side without its seed-0 row

        def at(name: str, seed: int, metric: str) -> float | None:
            return seeds[name][0 if name in once else seed][metric]

        entry: dict[str, Any] = {}
        for m in EFFECT_METRICS:
            diffs = [
                None if at(on, s, m) is None or at(off, s, m) is None else at(on, s, m) - at(off, s, m)
                for s in common
            ]
            entry[m] = _spread(diffs)
        entry["runs"] = runs
        out.setdefault(control, {})[context] = entry
    return out


def pair_intervals(
    rows: list[dict[str, Any]], resamples: int = 2000, seed: int = 0
) -> dict[str, dict[str, dict[str, Any]]]:
    """Control -> context -> metric -> 95% paired-bootstrap interval of the effect over pairs.

    The ± of :func:`effects` is the spread over seeds, which is 0 for a deterministic configuration and
    says nothing about which pairs were drawn. This is the other uncertainty: each pair's effect (its
    on-row minus its off-row, each averaged over the seeds it was run at), resampled over pairs with
    replacement. An interval that holds 0 is an effect these 100 pairs cannot tell from none. Pairs
    without a value on both sides (e.g. no reader for the attribute) are left out (``n``).
    """
    rows = drop_repeats(rows)
    by: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in rows:
        by.setdefault((r["config"], r["pair"]), []).append(r)
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for control, context, on, off in _effect_pairs():
        entry: dict[str, Any] = {}
        for m in ("keep_psnr", "attr_acc"):
            diffs = []
            for pair in sorted({p for c, p in by if c == on} & {p for c, p in by if c == off}):
                a = _mean([r[m] for r in by[(on, pair)]])
                b = _mean([r[m] for r in by[(off, pair)]])
                if a is not None and b is not None:
                    diffs.append(a - b)
            if len(diffs) < 2:
                continue
            values = np.asarray(diffs)
            means = values[rng.integers(0, len(values), (resamples, len(values)))].mean(axis=1)
            low, high = np.percentile(means, [2.5, 97.5])
            entry[m] = {
                "mean": round(float(values.mean()), 4),
                "low": round(float(low), 4),
                "high": round(float(high), 4),
                "n": len(diffs),
            }
        if entry:
            out.setdefault(control, {})[context] = entry
    return out


def interval_table(intervals: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """Markdown lines: each effect with its 95% interval over pairs; ``*`` where 0 is outside it."""

    def cell(c: dict[str, Any] | None, digits: int) -> str:
        if c is None:
            return "-"
        star = " *" if c["low"] > 0 or c["high"] < 0 else ""
        return f"{c['mean']:+.{digits}f} [{c['low']:+.{digits}f}, {c['high']:+.{digits}f}]{star}"

    lines = [
        "## The same effects with the pairs' uncertainty (95% paired bootstrap over pairs)",
        "",
        "Each pair's effect (on minus off, each side averaged over its seeds), resampled over pairs "
        "(2000 resamples). `*`: the interval excludes 0. Accuracy is over the pairs with a reader "
        "(material has none).",
        "",
        "| control | context | keep PSNR (dB) | attribute acc. | pairs (acc.) |",
        "|---|---|---|---|---|",
    ]
    for control, contexts in intervals.items():
        for context, e in contexts.items():
            acc = e.get("attr_acc")
            lines.append(
                f"| {control} | {context} | {cell(e.get('keep_psnr'), 2)} | {cell(acc, 3)} | "
                f"{acc['n'] if acc else '-'} |"
            )
    return lines


def _pm(cell: dict[str, Any], digits: int = 3, signed: bool = False) -> str:
    if cell["mean"] is None:
        return "-"
    sign = "+" if signed else ""
    return f"{cell['mean']:{sign}.{digits}f} ± {cell['std']:.{digits}f}"


def table(agg: dict[str, dict[str, Any]], eff: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """Markdown lines: the configurations (mean ± std over seeds) and the controls' effects.

    The ``seeds`` columns say what a ``± 0`` means: a deterministic configuration was run once, and its
    spread is 0 by construction, not measured.
    """
    lines = [
        "| configuration | seeds | pairs | PSNR vs truth | keep PSNR | attribute acc. | warp err. | s/edit |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for config, a in agg.items():
        seeds = ONCE if a.get("runs", "per seed") != "per seed" else str(a["psnr"]["seeds"])
        lines.append(
            f"| {config} | {seeds} | {a['pairs']} | {_pm(a['psnr'], 2)} | {_pm(a['keep_psnr'], 2)} | "
            f"{_pm(a['attr_acc'])} | {_pm(a['warp_error'], 2)} | {_pm(a['seconds'], 2)} |"
        )
    lines += [
        "",
        "## Effect of each control (on minus off; mean ± std over seeds)",
        "",
        "| control | context | seeds | keep PSNR | attribute acc. | PSNR vs truth | s/edit |",
        "|---|---|---|---|---|---|---|",
    ]
    for control, contexts in eff.items():
        for context, e in contexts.items():
            runs = e.get("runs", "per seed")
            seeds = {
                "per seed": str(e["psnr"]["seeds"]),
                "on run once": f"{e['psnr']['seeds']} (on: {ONCE})",
                "off run once": f"{e['psnr']['seeds']} (off: {ONCE})",
            }.get(runs, f"both {ONCE}")
            lines.append(
                f"| {control} | {context} | {seeds} | {_pm(e['keep_psnr'], 2, True)} | "
                f"{_pm(e['attr_acc'], 3, True)} | {_pm(e['psnr'], 2, True)} | {_pm(e['seconds'], 2, True)} |"
            )
    return lines


def plot(eff: dict[str, dict[str, dict[str, Any]]], path: Path, title: str) -> Path:
    """Bar chart of each control's effect on keep PSNR and attribute accuracy, with std error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 0.5 * max(len(eff), 1) + 2))
    contexts = ("added to base", "removed from all")
    y = np.arange(len(eff))
    for ax, metric, label in zip(
        axes, ("keep_psnr", "attr_acc"), ("keep PSNR (dB)", "attribute accuracy"), strict=True
    ):
        for k, context in enumerate(contexts):
            cells = [eff[c].get(context, {}).get(metric, {"mean": None, "std": None}) for c in eff]
            means = [c["mean"] if c["mean"] is not None else 0.0 for c in cells]
            stds = [c["std"] if c["std"] is not None else 0.0 for c in cells]
            ax.barh(y + (k - 0.5) * 0.4, means, height=0.4, xerr=stds, label=context, capsize=3)
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.set_yticks(y, list(eff))
        ax.set_xlabel(f"effect on {label} (on - off)")
        ax.invert_yaxis()
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_results(
    out: Path, settings: dict[str, Any], rows: list[dict[str, Any]], random_model: bool
) -> None:
    """``edit_ablation.{json,md,png}`` from the rows (identity rows, config ``identity``, kept apart)."""
    ident = [r for r in rows if r["config"] == "identity"]
    rows = drop_repeats([r for r in rows if r["config"] != "identity"])
    agg, eff, intervals = aggregate(rows), effects(rows), pair_intervals(rows)
    once = sorted(run_once(agg), key=list(agg).index)
    identity_acc = _mean([r["attr_acc"] for r in ident])
    out.mkdir(parents=True, exist_ok=True)
    (out / "edit_ablation.json").write_text(
        json.dumps(
            {
                "settings": settings,
                "identity_attr_acc": identity_acc,
                "aggregate": agg,
                "effects": eff,
                "effect_intervals_over_pairs": intervals,
                "rows": rows,
                "identity_rows": ident,
            },
            indent=2,
            default=str,
        )
        + "\n"
    )
    lines = ["# Editing ablations on ShapeWorld ground-truth pairs", ""]
    if random_model:
        lines += [
            "> **RANDOM WEIGHTS.** This run used the tiny random-weight test checkpoint: it proves that",
            "> the script runs end to end, and nothing else. Do not read or quote these numbers.",
            "",
        ]
    lines += [
        f"Settings: `{json.dumps(settings)}`",
        "",
        "Mean ± std over seeds of the per-seed means over pairs. Do-nothing `identity` accuracy: "
        + ("-" if identity_acc is None else f"{identity_acc:.3f}")
        + " (an accuracy effect means little while the rows do not edit more than that).",
        "",
        f"Configurations that draw no noise give the same edit at every seed, bit for bit, so they are run "
        f"once per pair (seed 0) and their spread is 0 by construction (`{ONCE}`): "
        + (", ".join(once) or "none")
        + ". Only the automatic mask draws noise here (`flowstudio.edit.depends_on_seed`); an effect "
        "against a run-once row uses its one value at every seed of the other row.",
        "",
        *table(agg, eff),
        "",
        *interval_table(intervals),
        "",
        "![effects](edit_ablation.png)",
    ]
    (out / "edit_ablation.md").write_text("\n".join(lines) + "\n")
    plot(
        eff,
        out / "edit_ablation.png",
        f"edit_ablation: {settings.get('model')}, {settings.get('pairs')} pairs",
    )
    logger.info("wrote %s", out / "edit_ablation.md")


def merge(folders: list[Path], out: Path) -> None:
    """Combine shards written with ``--shard``; refuses shards run with other settings or overlapping."""
    parts = [json.loads((f / "edit_ablation.json").read_text()) for f in folders]
    first = {k: v for k, v in parts[0]["settings"].items() if k != "shard"}
    for f, part in zip(folders, parts, strict=True):
        if {k: v for k, v in part["settings"].items() if k != "shard"} != first:
            sys.exit(f"{f} was run with other settings than {folders[0]}; merge shards of one run")
    rows = [r for part in parts for r in part["rows"] + part["identity_rows"]]
    keys = [(r["pair"], r["config"], r.get("seed")) for r in rows]
    if len(set(keys)) != len(keys):
        sys.exit("the shards overlap (a pair was edited twice); merge shards K/N of one N")
    write_results(
        out, {**first, "shard": f"merged from {len(folders)} shards"}, rows, "RANDOM" in first["model"]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=None, help="trained model (default: tiny RANDOM one)")
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=3, help="edit seeds 0..N-1")
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--configs", nargs="+", default=None, help="subset of configuration names")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default: see module doc)")
    parser.add_argument("--shard", default="0/1", help="K/N: run only pairs i with i %% N == K")
    parser.add_argument("--merge", type=Path, nargs="+", default=None, help="shard folders to combine")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    random_model = args.model is None
    if args.merge:
        merge(args.merge, args.out or RESULTS)
        return
    shard = parse_shard(args.shard)
    if args.seeds < 1:
        sys.exit(f"--seeds {args.seeds}: need at least 1 (3 for a spread)")
    out = args.out or (ROOT / "outputs" / "edit_ablation_tiny_random" if random_model else RESULTS)
    configs = select_configs(configurations(), args.configs)
    pairs = make_pairs(args.pairs, args.frames, args.size, shard)

    with tempfile.TemporaryDirectory() as tmp:
        pipe = open_pipeline(args.model, args.device, Path(tmp))
        run_key = {
            k: str(getattr(args, k)) for k in ("model", "pairs", "seeds", "frames", "size", "steps", "shard")
        }
        rows, progress = _load_progress(out / "edit_ablation_progress.jsonl", run_key)
        done = {(r["pair"], r["config"], r.get("seed")) for r in rows}
        for row in identity_rows([p for p in pairs if (p["index"], "identity", None) not in done]):
            rows.append(row)
            with progress.open("a") as f:
                f.write(json.dumps(row, default=str) + "\n")
        seeds_of = {name: seeds_for(controls, args.seeds) for name, controls in configs.items()}
        for pair in pairs:
            for seed in range(args.seeds):
                for name, controls in configs.items():
                    if seed not in seeds_of[name] or (pair["index"], name, seed) in done:
                        continue
                    options = options_for(controls, args.steps)
                    _, measured = edit_pair(pipe, pair, options, seed=seed, device=args.device)
                    row = {
                        "config": name,
                        "controls": sorted(controls),
                        "pair": pair["index"],
                        "type": pair["type"],
                        "seed": seed,
                        **measured,
                    }
                    rows.append(row)
                    with progress.open("a") as f:
                        f.write(json.dumps(row, default=str) + "\n")
            logger.info(
                "pair %d (%s) done, %d of %d", pair["index"], pair["type"], pairs.index(pair) + 1, len(pairs)
            )
        rows = [r for r in rows if r["config"] in configs or r["config"] == "identity"]

    settings = {
        "model": "tiny RANDOM-weight checkpoint (seed 0): numbers are meaningless"
        if random_model
        else str(args.model),
        "pairs": args.pairs,
        "eval_seed": EVAL_SEED,
        "seeds": list(range(args.seeds)),
        "run_once": sorted(run_once(configs)),  # deterministic: edited at seed 0 only
        "frames": args.frames,
        "size": args.size,
        "steps": args.steps,
        "shard": args.shard,
        "base": "inversion (DPM-Solver++ / UniPC), source / target CFG 1 / 5",
        "threads": torch.get_num_threads(),
        "device": args.device,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "flowstudio": __version__,
        "metrics": "edit_toy.score: psnr/keep_psnr bench.metrics.pixel.psnr; attr_acc "
        "bench.metrics.attributes; warp_error bench.metrics.temporal; spread: std over seeds of "
        "per-seed means",
    }
    write_results(out, settings, rows, random_model)


if __name__ == "__main__":
    main()
