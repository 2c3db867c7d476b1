"""Tune a preset's target guidance and change-mask composite on fresh pairs of its edit type, then
confirm the choice on other fresh pairs (issue 13, item 2: the preset bars).

``edit_toy.py`` chose the ``color`` preset (FlowEdit, CFG 1.5 / 5, 20 steps, the change-mask composite
at its defaults: threshold 0.2, blur 5, grow 3) among whole configurations, on 20 colour pairs, at
accuracy 0.75 and keep PSNR 25.0 dB, against the bars 0.8 and 30 dB. This script asks whether the same
method with other knobs meets them, without choosing on the pairs it reports:

1. **Tuning**: ``--tune`` fresh pairs of the type (pair indices 1000 + 5k + type offset, a part of
   ``edit_toy``'s stream no run of 100 pairs reaches). Each target guidance of ``--guidance`` edits
   every pair once *without* the composite; each composite setting (``--thresholds`` x ``--grows``
   x ``--largest`` x ``--refine``, blur 5) is then applied to the decoded edit exactly as the engine
   applies it (:func:`flowstudio.edit.blending.change_region` and ``composite`` on the decoded frames
   and the source; checked bit for bit against the engine on the first pair), plus "no composite".
   A preset without a composite (``product-replace``: plain FlowEdit) is tuned the same way, its own
   setting being "no composite".
2. **Choice**: among the settings whose tuning accuracy is at least the preset's own (its guidance
   and composite on the same pairs), the one with the best keep PSNR; the preset itself when none
   keeps more.
3. **Confirmation**: the chosen setting and the preset edit ``--validate`` other fresh pairs
   (indices 2000 + 5k + offset), scored the same way, with Wilson 95% intervals on accuracy and the
   bars stated as met or missed.

Writes ``benchmarks/results/preset_sweep_<type>.{json,md,png}`` (the picture: keep PSNR against
accuracy for every tuning setting, and source / edit / truth frames of validation pairs).

    OMP_NUM_THREADS=1 python benchmarks/preset_sweep.py --model flowstudio/assets/toy-shapes --type color
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from edit_toy import EVAL_SEED, RESULTS, edit_pair, open_pipeline, pairs_at, score

from flowstudio import __version__
from flowstudio.edit import BlendConfig
from flowstudio.edit.blending import pixel_composite
from flowstudio.edit.presets import PRESETS
from flowstudio.worlds import EDIT_TYPES

logger = logging.getLogger("benchmarks.preset_sweep")
PRESET_FOR_TYPE = {
    "product": "product-replace",
    "color": "color",
    "background": "background",
    "style": "style",
}
BARS = {"color": 0.8, "background": 0.7, "product": 0.6, "style": 0.6}  # accuracy; keep PSNR >= 30 dB
KEEP_BAR = 30.0
BLUR = 5
TUNE_START, VALIDATE_START = 1000, 2000


def indices_of(edit_type: str, start: int, count: int) -> list[int]:
    """``count`` pair indices from ``start`` whose edit type (index mod 5) is ``edit_type``."""
    offset = EDIT_TYPES.index(edit_type)
    return [start + 5 * k + offset for k in range(count)]


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson 95% interval of a proportion (sound at 0 and n hits, unlike the normal one)."""
    if n == 0:
        return (math.nan, math.nan)
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (round(centre - half, 3), round(centre + half, 3))


def composite_settings(
    thresholds: list[float],
    grows: list[int],
    largest: tuple[bool, ...] = (False,),
    refines: tuple[str, ...] = ("none",),
    subject_insets: list[int] = (),
    subject_grows: list[int] = (),
    subject_confirms: list[int] = (0,),
    swap_plate_grows: list[int] = (),
    swap_erodes: list[int] = (),
    swap_backdrop_tolerances: list[float] = (0.0,),
) -> list[dict[str, Any] | None]:
    """``None`` (no composite), every change-mask setting (threshold x grow x largest-region-only x border
    refinement, blur 5), every subject-composite setting (inset x grow; none unless both are given) and
    every swap-composite setting (plate grow x cut erosion x backdrop tolerance; none unless grows and
    erosions are given; a tolerance of 0, the hole step off, is left out of the setting)."""
    change = [
        {"threshold": t, "grow": g, "largest": k, "refine": r}
        for r in refines
        for k in largest
        for t in thresholds
        for g in grows
    ]
    subject = [
        {"subject_inset": i, "subject_grow": g, **({"subject_confirm_grow": c} if c else {})}
        for c in subject_confirms
        for i in subject_insets
        for g in subject_grows
    ]
    swap = [
        {"swap_plate_grow": g, "swap_erode": e, **({"swap_backdrop_tolerance": b} if b else {})}
        for b in swap_backdrop_tolerances
        for g in swap_plate_grows
        for e in swap_erodes
    ]
    return [None, *change, *subject, *swap]


#: ``--refine`` values: the BlendConfig's ``change_refine``, with ``-soft`` for
#: ``change_refine_sure_core=False`` (the whole change region only probable foreground, so the cut may
#: drop whole redrawn blotches).
REFINES = ("none", "source", "both", "source-soft", "both-soft", "source-soft-edges")
#: ``-edges``: the frame's outer pixels taken as background by the cut (``change_refine_border``)
EDGE_BORDER = 8


def refine_fields(refine: str) -> dict[str, Any]:
    """A ``--refine`` value as :class:`BlendConfig` fields (``change_refine``,
    ``change_refine_sure_core``, and ``change_refine_border`` for ``-edges``)."""
    if refine not in REFINES:
        raise ValueError(f"unknown refinement {refine!r}; choose from {', '.join(REFINES)}")
    edges = refine.endswith("-edges")
    refine = refine.removesuffix("-edges")
    base, soft = refine.removesuffix("-soft"), refine.endswith("-soft")
    fields = {"change_refine": base, "change_refine_sure_core": not soft}
    return fields | ({"change_refine_border": EDGE_BORDER} if edges else {})


def refine_of(blend: BlendConfig) -> str:
    """The ``--refine`` value whose :func:`refine_fields` are ``blend``'s (the inverse, by search, so
    the two cannot disagree); a refinement no value expresses exits with the values there are."""
    fields = {
        "change_refine": blend.change_refine,
        # without a refinement the cut's own settings do nothing
        "change_refine_sure_core": blend.change_refine_sure_core or blend.change_refine == "none",
        "change_refine_border": 0 if blend.change_refine == "none" else blend.change_refine_border,
    }
    for refine in REFINES:
        if {"change_refine_border": 0, **refine_fields(refine)} == fields:
            return refine
    sys.exit(f"the preset's refinement {fields} is not one of --refine's values ({', '.join(REFINES)})")


def _setting_of(blend: BlendConfig) -> dict[str, Any]:
    """A preset's composite as a sweep setting."""
    if blend.composite_mask == "swap":
        tolerance = blend.swap_backdrop_tolerance
        holes = {"swap_backdrop_tolerance": tolerance} if tolerance else {}
        check = {"swap_plate_check": blend.swap_plate_check} if blend.swap_plate_check else {}
        return {"swap_plate_grow": blend.swap_plate_grow, "swap_erode": blend.swap_erode, **holes, **check}
    if blend.composite_mask == "subject":
        confirm = {"subject_confirm_grow": blend.subject_confirm_grow} if blend.subject_confirm_grow else {}
        return {"subject_inset": blend.subject_inset, "subject_grow": blend.subject_grow, **confirm}
    return {
        "threshold": blend.change_threshold,
        "grow": blend.change_grow,
        "largest": blend.change_largest,
        "refine": refine_of(blend),
    }


def apply(setting: dict[str, Any] | None, edited: np.ndarray, source: np.ndarray) -> np.ndarray:
    """The engine's pixel composite of ``edited`` over ``source`` under a sweep setting (``None``:
    ``edited``): :func:`flowstudio.edit.blending.pixel_composite`, as ``edit()`` applies it."""
    if setting is None:
        return edited
    if "swap_erode" in setting:  # the edit's new product over the source's painted-out scene
        config = BlendConfig(
            composite_mask="swap",
            swap_plate_grow=setting["swap_plate_grow"],
            swap_erode=setting["swap_erode"],
            # a setting without them is the swap before the hole step / the plate check existed
            swap_backdrop_tolerance=setting.get("swap_backdrop_tolerance", 0.0),
            swap_plate_check=setting.get("swap_plate_check", 0.0),
        )
    elif "subject_inset" in setting:  # the source's subject pasted back, the edit everywhere else
        config = BlendConfig(
            composite_mask="subject",
            subject_inset=setting["subject_inset"],
            subject_grow=setting["subject_grow"],
            subject_confirm_grow=setting.get("subject_confirm_grow", 0),
        )
    else:
        config = BlendConfig(
            composite_mask="change",
            change_threshold=setting["threshold"],
            change_blur=BLUR,
            change_grow=setting["grow"],
            change_largest=setting.get("largest", False),
            **refine_fields(setting.get("refine", "none")),
        )
    return pixel_composite(edited, source, config)[0]


def label(guidance: float, setting: dict[str, Any] | None) -> str:
    if setting is None:
        return f"cfg {guidance:g}, no composite"
    if "swap_erode" in setting:
        tolerance = setting.get("swap_backdrop_tolerance", 0.0)
        holes = f", backdrop within {tolerance:g} dropped" if tolerance else ""
        check = setting.get("swap_plate_check", 0.0)
        checked = f", old product checked by its colours at {check:g}x" if check else ""
        return (
            f"cfg {guidance:g}, swap composite (old product painted out grown {setting['swap_plate_grow']}, "
            f"new product cut eroded {setting['swap_erode']}{holes}{checked})"
        )
    if "subject_inset" in setting:
        confirm = setting.get("subject_confirm_grow", 0)
        confirmed = f", confirmed by the edit's cut grown {confirm}" if confirm else ""
        return (
            f"cfg {guidance:g}, subject composite (GrabCut from a {setting['subject_inset']} px border, "
            f"grow {setting['subject_grow']}{confirmed})"
        )
    largest = ", largest region" if setting.get("largest") else ""
    refine = setting.get("refine", "none")
    on = "source" if refine.startswith("source") else "source+edit"
    soft = " (soft: no sure core)" if "-soft" in refine else ""
    soft += f", frame edges {EDGE_BORDER} px as background" if refine.endswith("-edges") else ""
    refined = "" if refine == "none" else f", GrabCut on {on}{soft}"
    return f"cfg {guidance:g}, change t={setting['threshold']:g} grow={setting['grow']}{largest}{refined}"


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy (hits, n, Wilson interval), mean keep PSNR and PSNR vs truth of one setting's rows."""
    read = [r["attr_acc"] for r in rows if r["attr_acc"] is not None]
    hits = int(round(sum(read)))
    keep = [r["keep_psnr"] for r in rows if r["keep_psnr"] is not None]
    return {
        "pairs": len(rows),
        "hits": hits,
        "read": len(read),
        "accuracy": round(hits / len(read), 4) if read else None,
        "accuracy_ci95": wilson(hits, len(read)),
        # the mean is what edit_toy reports and the bar reads; a pair whose kept region is untouched
        # scores the 100 dB cap, so the median and the share of pairs at the bar are shown beside it
        "keep_psnr": round(float(np.mean(keep)), 3) if keep else None,
        "keep_psnr_median": round(float(np.median(keep)), 3) if keep else None,
        "keep_at_bar": round(float(np.mean([k >= KEEP_BAR for k in keep])), 3) if keep else None,
        "psnr": round(float(np.mean([r["psnr"] for r in rows])), 3),
    }


def edit_without_composite(
    pipe: Any,
    pair: dict[str, Any],
    options: dict[str, Any],
    guidance: float,
    cache: Path | None = None,
    model: str = "",
) -> tuple[np.ndarray, np.ndarray, float]:
    """The decoded edit (no composite), the source frames it was made from, and its wall time.

    With ``cache`` (a folder), each edit is stored there (compressed ``.npz``, keyed by the model, the
    pair, the guidance and the options) and read back by a later run instead of being made again: a
    new composite idea is then scored on the same edits without the model.
    """
    opts = {**options, "target_guidance": guidance, "blend": None}
    path = None
    if cache is not None:
        key = json.dumps(
            {"model": model, "pair": pair["index"], "shape": list(pair["source"].shape), "options": opts},
            sort_keys=True,
            default=repr,
        )
        path = cache / f"edit_{hashlib.sha1(key.encode()).hexdigest()[:20]}.npz"
        if path.is_file():
            stored = np.load(path)
            return stored["edited"], stored["source"], float(stored["seconds"])
    result, row = edit_pair(pipe, pair, opts, seed=0, device="cpu")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # written whole, then renamed: a run killed mid-write leaves no torn file
        partial = path.with_suffix(".part.npz")
        np.savez_compressed(
            partial, edited=result.frames, source=result.source_frames, seconds=row["seconds"]
        )
        partial.replace(path)
    return result.frames, result.source_frames, row["seconds"]


def check_matches_engine(pipe: Any, pair: dict[str, Any], options: dict[str, Any]) -> None:
    """The post-hoc composite equals the engine's own on one pair, bit for bit (else the sweep is void)."""
    blend = options.get("blend")
    edited, source, _ = edit_without_composite(pipe, pair, options, options["target_guidance"])
    ours = apply(None if blend is None else _setting_of(blend), edited, source)
    engine, _ = edit_pair(pipe, pair, options, seed=0, device="cpu")
    if not np.array_equal(ours, engine.frames):
        sys.exit("the post-hoc composite differs from the engine's: the sweep would not measure the preset")


def frames_picture(
    shown: list[tuple[dict[str, Any], np.ndarray, np.ndarray]], path: Path, title: str
) -> None:
    """Rows of source / preset / chosen / truth at the middle frame of a few validation pairs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(shown), 4, figsize=(8, 2.1 * len(shown)), squeeze=False)
    for row, (pair, preset_out, chosen_out) in enumerate(shown):
        mid = pair["source"].shape[0] // 2
        images = [pair["source"][mid], preset_out[mid], chosen_out[mid], pair["target"][mid]]
        names = ["source", "preset", "chosen", "truth"]
        for col, (image, name) in enumerate(zip(images, names, strict=True)):
            ax = axes[row][col]
            ax.imshow(image)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name, fontsize=9)
        axes[row][0].set_ylabel(pair["target_prompt"][:28], fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def scatter(tuning: dict[str, dict[str, Any]], chosen: str, preset: str, path: Path, edit_type: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, s in tuning.items():
        if s["accuracy"] is None or s["keep_psnr"] is None:
            continue
        colour = "tab:red" if name == chosen else "tab:green" if name == preset else "tab:blue"
        ax.scatter(s["accuracy"], s["keep_psnr"], color=colour, s=30 if name in (chosen, preset) else 12)
        if name in (chosen, preset):
            ax.annotate(
                name, (s["accuracy"], s["keep_psnr"]), fontsize=7, xytext=(4, 4), textcoords="offset points"
            )
    ax.axvline(BARS[edit_type], color="grey", ls="--", lw=0.8)
    ax.axhline(KEEP_BAR, color="grey", ls="--", lw=0.8)
    ax.set_xlabel(f"{edit_type} accuracy (tuning pairs)")
    ax.set_ylabel("keep PSNR outside the edit (dB)")
    ax.set_title(f"preset_sweep: {edit_type}, every guidance x composite setting (bars dashed)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


#: ``--rule``: how the tuning pairs choose a setting.
RULES = {
    "keep-at-accuracy": "tuning accuracy >= the preset's, then the best keep PSNR",
    "keep-bar": f"among settings whose mean keep PSNR meets the bar ({KEEP_BAR:g} dB), the most accurate, "
    "then the best keep PSNR; the keep-at-accuracy rule when none does",
}


def choose(tuning: dict[str, dict[str, Any]], preset_name: str, rule: str) -> str:
    """The setting ``rule`` (:data:`RULES`) chooses among the tuning summaries."""
    read = {n: s for n, s in tuning.items() if s["accuracy"] is not None}
    if rule == "keep-bar":
        keeping = [n for n, s in read.items() if s["keep_psnr"] is not None and s["keep_psnr"] >= KEEP_BAR]
        if keeping:
            return max(keeping, key=lambda n: (read[n]["accuracy"], read[n]["keep_psnr"]))
    elif rule != "keep-at-accuracy":
        raise ValueError(f"unknown rule {rule!r}; choose one of {', '.join(RULES)}")
    base = tuning[preset_name]["accuracy"]
    eligible = [n for n, s in read.items() if s["accuracy"] >= base]
    return max(eligible, key=lambda n: (read[n]["keep_psnr"], read[n]["accuracy"]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True, help="trained model folder")
    parser.add_argument("--type", default="color", choices=sorted(PRESET_FOR_TYPE))
    parser.add_argument("--tune", type=int, default=40, help="fresh pairs to tune on")
    parser.add_argument("--validate", type=int, default=40, help="other fresh pairs to confirm on")
    parser.add_argument("--guidance", default="5,7.5,10", help="target guidances (comma-separated)")
    parser.add_argument("--thresholds", default="0.1,0.15,0.2,0.25,0.3,0.4")
    parser.add_argument("--grows", default="1,3,6")
    parser.add_argument(
        "--largest",
        default="0,1",
        help="largest-changed-region-only settings to try (0: every changed pixel, 1: the largest region)",
    )
    parser.add_argument(
        "--refine",
        default="none",
        help="border refinements to try (comma-separated: none, source, both, source-soft, both-soft, "
        "source-soft-edges; BlendConfig.change_refine, -soft: change_refine_sure_core=False, -edges: "
        "change_refine_border=8)",
    )
    parser.add_argument(
        "--subject-insets",
        default="",
        help="subject composites to try (BlendConfig composite_mask='subject'): border widths in pixels, "
        "comma-separated, with --subject-grows (none by default)",
    )
    parser.add_argument("--subject-grows", default="", help="pixels the kept subject is grown by")
    parser.add_argument(
        "--subject-confirms",
        default="0",
        help="subject_confirm_grow values to try (0: off; N: the source's subject kept only within N "
        "pixels of the edit's own cut)",
    )
    parser.add_argument(
        "--swap-plate-grows",
        default="",
        help="swap composites to try (BlendConfig composite_mask='swap'): pixels the old product is grown "
        "by before it is painted out, comma-separated, with --swap-erodes (none by default)",
    )
    parser.add_argument("--swap-erodes", default="", help="pixels the new product's cut is eroded by")
    parser.add_argument(
        "--swap-backdrop-tolerances",
        default="0",
        help="colour distances (0..1) under which the new product's cut drops pixels that look like the "
        "edit's backdrop around it (a ring's hole), comma-separated; 0: off (the default)",
    )
    parser.add_argument(
        "--rule",
        default="keep-at-accuracy",
        choices=sorted(RULES),
        help="how the tuning pairs choose: " + "; ".join(f"{k}: {v}" for k, v in RULES.items()),
    )
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="folder for the decoded edits: a later run with other composite settings reads them "
        "instead of editing again (the reported seconds are those of the original edits)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.manual_seed(0)

    preset = PRESETS[PRESET_FOR_TYPE[args.type]]
    if not preset.available:
        sys.exit(f"preset {preset.name!r} is not validated on this model: there is no configuration to tune")
    options = dict(preset.values)
    # a preset without a composite (plain FlowEdit) is tuned the same way: "no composite" is its setting
    blend: BlendConfig | None = options.get("blend")
    own_cut = blend is not None and blend.composite_mask in ("subject", "swap")
    if blend is not None and not own_cut and (blend.composite_mask != "change" or blend.change_blur != BLUR):
        sys.exit(
            f"preset {preset.name!r} uses none of the change-mask composite (blur {BLUR}), the subject's "
            "and the swap's"
        )
    guidances = [float(g) for g in args.guidance.split(",")]
    refines = tuple(args.refine.split(","))
    if unknown := [r for r in refines if r not in REFINES]:
        sys.exit(f"--refine {args.refine!r}: unknown {unknown}; choose from {', '.join(REFINES)}")
    if options["target_guidance"] not in guidances:
        guidances.insert(0, float(options["target_guidance"]))
    settings = composite_settings(
        [float(t) for t in args.thresholds.split(",")],
        [int(g) for g in args.grows.split(",")],
        tuple(bool(int(k)) for k in args.largest.split(",")),
        refines,
        [int(i) for i in args.subject_insets.split(",") if i],
        [int(g) for g in args.subject_grows.split(",") if g],
        [int(c) for c in args.subject_confirms.split(",") if c],
        [int(g) for g in args.swap_plate_grows.split(",") if g],
        [int(e) for e in args.swap_erodes.split(",") if e],
        [float(b) for b in args.swap_backdrop_tolerances.split(",") if b],
    )
    preset_setting = None if blend is None else _setting_of(blend)
    if preset_setting not in settings:
        settings.append(preset_setting)
    preset_name = label(options["target_guidance"], preset_setting)

    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        pipe = open_pipeline(args.model, "cpu", Path(tmp))
        tune_pairs = pairs_at(indices_of(args.type, TUNE_START, args.tune), args.frames, args.size)
        check_matches_engine(pipe, tune_pairs[0], options)
        logger.info("post-hoc composite == the engine's on pair %d", tune_pairs[0]["index"])

        rows: dict[str, list[dict[str, Any]]] = {}
        seconds: dict[float, list[float]] = {g: [] for g in guidances}
        for guidance in guidances:
            for k, pair in enumerate(tune_pairs):
                edited, source, took = edit_without_composite(
                    pipe, pair, options, guidance, args.cache, str(args.model)
                )
                seconds[guidance].append(took)
                for setting in settings:
                    scored = score(pair, apply(setting, edited, source))
                    rows.setdefault(label(guidance, setting), []).append({"pair": pair["index"], **scored})
                logger.info("cfg %g: pair %d of %d", guidance, k + 1, len(tune_pairs))
        tuning = {name: summarise(r) for name, r in rows.items()}

        base = tuning[preset_name]
        chosen = choose(tuning, preset_name, args.rule)
        guidance_of = {label(g, s): (g, s) for g in guidances for s in settings}
        chosen_guidance, chosen_setting = guidance_of[chosen]
        logger.info("chosen on tuning pairs: %s (preset: %s)", chosen, preset_name)

        val_pairs = pairs_at(indices_of(args.type, VALIDATE_START, args.validate), args.frames, args.size)
        # the preset and the choice (one entry when the choice is the preset itself)
        confirmed = {
            preset_name: (options["target_guidance"], preset_setting),
            chosen: (chosen_guidance, chosen_setting),
        }
        val_rows: dict[str, list[dict[str, Any]]] = {name: [] for name in confirmed}
        shown = []
        for k, pair in enumerate(val_pairs):
            edits: dict[float, tuple[np.ndarray, np.ndarray]] = {}  # one edit per guidance
            outputs = {}
            for name, (g, s) in confirmed.items():
                if g not in edits:
                    edits[g] = edit_without_composite(pipe, pair, options, g, args.cache, str(args.model))[:2]
                outputs[name] = apply(s, *edits[g])
                val_rows[name].append({"pair": pair["index"], **score(pair, outputs[name])})
            if k < 4:
                shown.append((pair, outputs[preset_name], outputs[chosen]))
            logger.info("validation: pair %d of %d", k + 1, len(val_pairs))
        validation = {name: summarise(r) for name, r in val_rows.items()}

    bar = BARS[args.type]

    def verdict(s: dict[str, Any]) -> str:
        acc_ok = s["accuracy"] is not None and s["accuracy"] >= bar
        keep_ok = s["keep_psnr"] is not None and s["keep_psnr"] >= KEEP_BAR
        return (
            "**met**"
            if acc_ok and keep_ok
            else "missed: "
            + ", ".join(
                [
                    *([] if acc_ok else [f"accuracy < {bar}"]),
                    *([] if keep_ok else [f"keep < {KEEP_BAR:g} dB"]),
                ]
            )
        )

    meta = {
        "model": str(args.model),
        "type": args.type,
        "preset": preset.name,
        "preset_values": {k: (repr(v) if k == "blend" else v) for k, v in options.items()},
        "tune_pairs": [p["index"] for p in tune_pairs],
        "validate_pairs": [p["index"] for p in val_pairs],
        "eval_seed": EVAL_SEED,
        "guidances": guidances,
        "composites": settings,
        "blur": BLUR,
        "frames": args.frames,
        "size": args.size,
        "seed": 0,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "flowstudio": __version__,
        "edit_seconds_mean": {str(g): round(float(np.mean(v)), 3) for g, v in seconds.items()},
        "wall_minutes": round((time.time() - started) / 60, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"preset_sweep_{args.type}"
    stem.with_suffix(".json").write_text(
        json.dumps(
            {
                "settings": meta,
                "chosen": chosen,
                "rule": args.rule,
                "preset": preset_name,
                "tuning": tuning,
                "validation": validation,
                "tuning_rows": rows,
                "validation_rows": val_rows,
            },
            indent=2,
        )
        + "\n"
    )
    scatter(tuning, chosen, preset_name, stem.with_suffix(".png"), args.type)
    frames_picture(
        shown,
        args.out / f"preset_sweep_{args.type}_frames.png",
        f"{args.type}: validation pairs, middle frame",
    )
    top = sorted(tuning.items(), key=lambda kv: (-(kv[1]["accuracy"] or 0), -(kv[1]["keep_psnr"] or 0)))
    lines = [
        f"# Preset sweep: {args.type} (issue 13, item 2)",
        "",
        f"Settings: `{json.dumps(meta)}`",
        "",
        f"Produced by `OMP_NUM_THREADS=1 python benchmarks/preset_sweep.py --model {args.model} "
        f"--type {args.type} --tune {args.tune} --validate {args.validate} --guidance {args.guidance} "
        f"--thresholds {args.thresholds} --grows {args.grows} --largest {args.largest} "
        f"--refine {args.refine} --rule {args.rule}"
        + (
            f" --subject-insets {args.subject_insets} --subject-grows {args.subject_grows}"
            f" --subject-confirms {args.subject_confirms}"
            if args.subject_insets and args.subject_grows
            else ""
        )
        + (
            f" --swap-plate-grows {args.swap_plate_grows} --swap-erodes {args.swap_erodes}"
            f" --swap-backdrop-tolerances {args.swap_backdrop_tolerances}"
            if args.swap_plate_grows and args.swap_erodes
            else ""
        )
        + (f" --cache {args.cache}" if args.cache else "")
        + "`. "
        f"The preset: `{preset_name}`. "
        f"Bars: accuracy >= {bar}, keep PSNR >= {KEEP_BAR:g} dB outside the edit (mean over pairs, as "
        "`edit_toy.py`; a pair whose kept region the composite left untouched scores the 100 dB cap, so "
        "the median and the share of pairs at 30 dB are shown too).",
        "",
        "## Confirmation on fresh pairs (not used for the choice)",
        "",
        "| setting | pairs | accuracy [95% Wilson] | keep PSNR mean / median (dB) | pairs >= 30 dB | "
        "PSNR vs truth (dB) | bars |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in dict.fromkeys([preset_name, chosen]):
        s = validation[name]
        role = "preset" if name == preset_name else "chosen"
        ci = s["accuracy_ci95"]
        lines.append(
            f"| {name} ({role}) | {s['pairs']} | {s['accuracy']:.3f} ({s['hits']}/{s['read']}) "
            f"[{ci[0]:.2f}, {ci[1]:.2f}] | {s['keep_psnr']:.2f} / {s['keep_psnr_median']:.2f} | "
            f"{s['keep_at_bar']:.2f} | {s['psnr']:.2f} | {verdict(s)} |"
        )
    lines += [
        "",
        f"## Tuning pairs: every setting (the choice, rule {args.rule}: {RULES[args.rule]}; the preset's "
        f"tuning accuracy {base['accuracy']:.3f})",
        "",
        "| setting | accuracy [95% Wilson] | keep PSNR mean / median (dB) | pairs >= 30 dB | "
        "PSNR vs truth (dB) |",
        "|---|---|---|---|---|",
    ]
    for name, s in top:
        mark = " **chosen**" if name == chosen else " (preset)" if name == preset_name else ""
        ci = s["accuracy_ci95"]
        lines.append(
            f"| {name}{mark} | {s['accuracy']:.3f} [{ci[0]:.2f}, {ci[1]:.2f}] | "
            f"{s['keep_psnr']:.2f} / {s['keep_psnr_median']:.2f} | {s['keep_at_bar']:.2f} | {s['psnr']:.2f} |"
        )
    lines += ["", f"![keep vs accuracy]({stem.name}.png)", "", f"![frames]({stem.name}_frames.png)", ""]
    stem.with_suffix(".md").write_text("\n".join(lines))
    logger.info("wrote %s", stem.with_suffix(".md"))


if __name__ == "__main__":
    main()
