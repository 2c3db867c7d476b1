"""Editing benchmark on ShapeWorld ground-truth pairs: every method x control combination.

For each pair (a rendered source clip and the exact re-render with one attribute changed: product,
color, material, background or style; ``flowstudio.worlds``), every configuration edits the source
with the pair's prompts (``edit_prompt_pair``) and is scored against the truth:

- ``psnr``: PSNR of the edit against the true edited clip;
- ``keep_psnr``: PSNR where nothing should change: outside the union of source and target object
  masks for product/color/material edits, inside it (the product) for background edits; not defined
  for style edits (they change every pixel);
- ``attr_acc``: the edited attribute read off the pixels by the analytic readers
  (``flowstudio.bench.metrics.attributes.attribute_accuracy`` over ``flowstudio.worlds.readers``);
- ``warp_error``: temporal warp error of the edit (``flowstudio.bench.metrics.temporal``);
- model calls, row evaluations, wall time, peak memory (CUDA peak, or process peak RSS on CPU).

The configurations of a pair share the source's VAE encoding, and those that differ only after decoding
share the decoding: the pipeline's VAE cache serves them, bit for bit (:data:`VAE_CACHE_BYTES`). A
row's wall time stays the edit's cost on its own: what the cache served counts with the time it took
to compute (``vae_cached_seconds``).

``baseline`` (DPM-Solver++ inversion + UniPC) and ``flowedit`` are the reference rows. ``identity``
is the do-nothing edit (the source clip itself, scored against the target; no model call): the
readers err, so "accuracy" is never zero by itself, and a configuration that edits no more often than
doing nothing has not edited. Choice rule (:func:`choose_per_type`): a configuration whose attribute
accuracy on a type is not significantly above identity's (one-sided Fisher exact test at 5%,
:func:`edits_more_than_identity`) is never chosen; a type with no such configuration gets **none**.
``*+oracle-mask`` rows blend with the true edit region (:func:`oracle_region`): an upper bound for
blending, not a deployable setting (the ``auto`` rows find the mask from cross-attention).
``presets+flowedit`` (:data:`ROUTED`) edits each pair with its type's validated preset (FlowEdit where
none is): judged against the references over all types, never chosen per type. ``--first-pair N``
draws pairs ``N..`` instead of ``0..``, e.g. 3000 for pairs no preset was chosen on.

Results: ``benchmarks/results/edit_toy.{json,md}`` -- but ONLY for a trained model given with
``--model``. Without ``--model`` the script builds the tiny *random-weight* checkpoint and writes to
``outputs/edit_toy_tiny_random/`` with a banner saying the numbers are meaningless: that run only
proves the script works end to end.

    python benchmarks/edit_toy.py --model PATH [--pairs 100] [--steps 30] [--configs baseline flowedit ...]
    python benchmarks/edit_toy.py --pairs 5 --frames 5 --size 64 --steps 4     # tiny random, smoke run

On a few cores, shards in separate single-threaded processes finish sooner than one process with
all threads (small matrices parallelise poorly); each shard takes pairs ``i`` with ``i % N == K``:

    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/edit_toy.py --model M --shard 0/2 --out /tmp/s0 &
    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/edit_toy.py --model M --shard 1/2 --out /tmp/s1
    python benchmarks/edit_toy.py --merge /tmp/s0 /tmp/s1               # -> benchmarks/results/

Re-derive the choices (and add the identity rows if the file lacks them: they only render and score
the source clips of the same pairs) from a results file, without re-running any edit:

    python benchmarks/edit_toy.py --rechoose benchmarks/results/edit_toy.json   # rewrites .json + .md
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flowstudio import __version__
from flowstudio.edit import (
    AttentionShareConfig,
    BlendConfig,
    FlowEditConfig,
    InjectionConfig,
    RescheduleConfig,
    edit,
)
from flowstudio.edit.bench_adapter import PRESET_FOR_EDIT_TYPE as PRESET_OF
from flowstudio.edit.presets import preset_available
from flowstudio.pipeline import WanVideoPipeline

logger = logging.getLogger("benchmarks.edit_toy")
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
EVAL_SEED = 20261125  # evaluation pairs; must differ from any seed the toy model was trained on
IDENTITY = "identity"  # the do-nothing edit: the source clip, scored against the target
ROUTED = "presets+flowedit"  # the per-type preset router: a candidate overall, not per type
ALPHA = 0.05  # one-sided significance level of "edits more than identity"
# keep the source's pixels wherever the decoded edit did not change them (no mask, no latent blending);
# edit_ablation measures the same composite added to its base editor
CHANGE_COMPOSITE = BlendConfig(strength=0.0, pixel_composite=True, composite_mask="change")
# the product swap: the edit's new product pasted onto the source with its old product painted out
SWAP_COMPOSITE = BlendConfig(
    strength=0.0,
    pixel_composite=True,
    composite_mask="swap",
    swap_plate_grow=1,
    swap_erode=2,
    swap_backdrop_tolerance=0.0,
    swap_plate_check=0.0,
)  # the swap's first settings (the defaults were 1 / 2 / no backdrop drop / no plate check until they were
# tuned: SWAP_TIGHT, then SWAP_HOLES, then SWAP_CHECKED)
# ... with the new product cut as the edit's own subject (from the frame's border), not where the edit
# changed: for editors that redraw the whole frame, where everything changed
SWAP_SUBJECT = dataclasses.replace(SWAP_COMPOSITE, swap_cut="subject")
SWAP_TIGHT = dataclasses.replace(SWAP_COMPOSITE, swap_plate_grow=0, swap_erode=3)
# ... and the cut's pixels that look like the edit's backdrop around it dropped (a ring's hole)
SWAP_HOLES = dataclasses.replace(SWAP_TIGHT, swap_backdrop_tolerance=0.12)
# ... and the old product's cut checked against the product found from the border's colours (tiles)
SWAP_CHECKED = dataclasses.replace(SWAP_HOLES, swap_plate_check=1.6)
SWAP_TIGHT_SUBJECT = dataclasses.replace(SWAP_TIGHT, swap_cut="subject")


def configurations(steps: int) -> dict[str, dict[str, Any]]:
    """Name -> ``edit()`` options; ``mask`` may be ``"auto"`` or ``"oracle"`` (true masks)."""
    cfg = {"steps": steps, "source_guidance": 1.0, "target_guidance": 5.0}
    fe = {"method": "flowedit", "steps": steps, "source_guidance": 1.5, "target_guidance": 5.0}
    kv = AttentionShareConfig(mode="concat", end=0.5)
    inject = InjectionConfig(end=0.3, strength=0.8)
    half = max(steps // 2, 1)
    change = CHANGE_COMPOSITE
    # the change region cut on the source with no sure core (refine_region(sure_core=False))
    soft_cut = dataclasses.replace(change, change_refine="source", change_refine_sure_core=False)

    def fireflow_at(fraction: int, **extra: Any) -> dict[str, Any]:
        """FireFlow at ``steps // fraction`` steps (at least one), plus ``extra`` options."""
        return {"method": "fireflow", **cfg, "steps": max(steps // fraction, 1), **extra}

    return {
        "baseline": {"method": "inversion", **cfg},
        "flowedit": fe,
        "rf-solver": {"method": "rf-solver", **cfg},
        # RF-Solver costs two model calls per step: at half the steps it spends the baseline's calls
        "rf-solver-half-steps": {"method": "rf-solver", **cfg, "steps": half},
        "fireflow": {"method": "fireflow", **cfg},
        "fireflow-half-steps": {"method": "fireflow", **cfg, "steps": half},
        # half the steps is 1.8x fewer rows (FireFlow's first step and CFG rows do not halve): the
        # issue's "half the wall time" needs fewer still
        "fireflow-40pct-steps": {"method": "fireflow", **cfg, "steps": max(int(0.4 * steps), 1)},
        # on the v5 toy model the transformer is ~70% of an edit: half the wall time needs ~1/4 the steps
        "fireflow-quarter-steps": fireflow_at(4),
        "baseline+inject+kv": {"method": "inversion", **cfg, "injection": inject, "attention_share": kv},
        # on v6b the quarter-steps row was 1.89x faster than the baseline: the VAE, the text encoder and
        # Python take ~1.8 s of every edit whatever the steps, so half the wall time needs fewer steps still
        "fireflow-fifth-steps": fireflow_at(5),
        "fireflow-fifth-steps+change-composite": fireflow_at(5, blend=change),
        "fireflow-tenth-steps": fireflow_at(10),
        "fireflow+inject+kv": {"method": "fireflow", **cfg, "injection": inject, "attention_share": kv},
        "flowedit+kv": {**fe, "attention_share": kv},
        # a weak model follows text weakly: stronger target guidance pushes the edit through
        "flowedit-cfg12": {**fe, "target_guidance": 12.0},
        "flowedit-cfg12+kv+auto-blend+composite": {
            **fe,
            "target_guidance": 12.0,
            "attention_share": kv,
            "blend": BlendConfig(pixel_composite=True),
            "mask": "auto",
        },
        "baseline-cfg12": {"method": "inversion", **cfg, "target_guidance": 12.0},
        "flowedit-nmax70": {**fe, "flowedit": FlowEditConfig(n_max=int(0.7 * steps))},
        "flowedit+kv+auto-blend": {**fe, "attention_share": kv, "blend": BlendConfig(), "mask": "auto"},
        "fireflow+inject+auto-blend": {
            "method": "fireflow",
            **cfg,
            "injection": inject,
            "blend": BlendConfig(),
            "mask": "auto",
        },
        "flowedit+kv+auto-blend+composite": {
            **fe,
            "attention_share": kv,
            "blend": BlendConfig(pixel_composite=True),
            "mask": "auto",
        },
        "flowedit-half-steps+kv+auto-blend+composite": {
            **fe,
            "steps": half,
            "flowedit": FlowEditConfig(n_max=int(0.7 * half)),
            "attention_share": kv,
            "blend": BlendConfig(pixel_composite=True),
            "mask": "auto",
        },
        "flowedit+oracle-mask": {**fe, "blend": BlendConfig(), "mask": "oracle"},
        # keep the source's pixels wherever the decoded edit did not change them (no mask needed)
        "flowedit+change-composite": {**fe, "blend": change},
        "fireflow-half-steps+change-composite": {"method": "fireflow", **cfg, "steps": half, "blend": change},
        # the preset's change mask cut on the source with no sure core (refine_region(sure_core=False)):
        # 0.94 accuracy and >= 30 dB keep on 94% of 80 colour pairs of v5 (docs/findings_edit.md)
        "flowedit+change-composite+grabcut-soft": {**fe, "blend": soft_cut},
        # the fast setting with the composites: FireFlow at a quarter of the steps is the baseline's
        # accuracy in half its wall time on v5; the composite pastes the source back where it did not change
        "fireflow-quarter-steps+change-composite": fireflow_at(4, blend=change),
        "fireflow-quarter-steps+change-composite+grabcut-soft": fireflow_at(4, blend=soft_cut),
        # the same, with the frame's outer 8 pixels taken as background by the cut: where the model
        # redrew the whole background, the change region covers the frame and the soft cut alone keeps it
        "flowedit+change-composite+grabcut-soft-edges": {
            **fe,
            "blend": dataclasses.replace(soft_cut, change_refine_border=8),
        },
        # background edits: the source's subject (GrabCut from the frame's border) pasted back, the edit
        # kept everywhere else; on 40 + 40 fresh background pairs of v6b, 0.80 / 0.725 accuracy at 92-97 dB
        # keep on the product (docs/findings_edit.md)
        "flowedit+subject-composite": {
            **fe,
            "blend": BlendConfig(strength=0.0, pixel_composite=True, composite_mask="subject"),
        },
        # the same, the source's subject kept only within 4 px of the edit's own cut: backdrop the source's
        # cut took along (tiles touching the product) goes to the edit (docs/findings_edit.md)
        "flowedit+subject-composite-confirmed": {
            **fe,
            "blend": BlendConfig(
                strength=0.0, pixel_composite=True, composite_mask="subject", subject_confirm_grow=4
            ),
        },
        # product swaps: the edit's new product (GrabCut seeded where the edit changed) over the source's
        # scene with the old product painted out; on 40 + 40 fresh product pairs of v6b 0.675 / 0.600
        # accuracy at 33.1 / 34.8 dB keep (docs/findings_edit.md)
        "flowedit+swap-composite": {**fe, "blend": SWAP_COMPOSITE},
        # the swap on other editors: inversion + regeneration and few-step FireFlow change the shape more
        # than FlowEdit (product 0.60-0.675 against 0.625 on 40 pairs of v6b) but redraw the whole frame, so
        # their new product is cut as the edit's own subject; and FlowEdit pushed harder by its target
        # guidance
        "baseline+swap-composite-subject-cut": {"method": "inversion", **cfg, "blend": SWAP_SUBJECT},
        "fireflow-quarter-steps+swap-composite-subject-cut": fireflow_at(4, blend=SWAP_SUBJECT),
        "flowedit+swap-composite-subject-cut": {**fe, "blend": SWAP_SUBJECT},
        "flowedit-cfg12+swap-composite": {**fe, "target_guidance": 12.0, "blend": SWAP_COMPOSITE},
        # the swap with the old product painted out exactly as cut (no growth) and the new product's cut
        # eroded 3 px: preset_sweep's choice on 40 fresh product pairs (keep 44.0 vs 33.1 dB at equal
        # accuracy; benchmarks/results/preset_sweep_v6b_swap_tight)
        "flowedit+swap-composite-plate0-erode3": {**fe, "blend": SWAP_TIGHT},
        # ... with the cut's pixels that look like the edit's backdrop around it dropped (a ring's hole;
        # tolerance 0.12 chosen on preset_sweep's 80 cached product edits: 62 vs 52 of 80 + 2 read)
        "flowedit+swap-composite-plate0-erode3-holes": {**fe, "blend": SWAP_HOLES},
        # ... with the painted-out old product checked by its colours (ratio 1.6, chosen on 120 cached
        # product edits: the same accuracy, +1.4 dB keep; on tiles +9 dB)
        "flowedit+swap-composite-plate0-erode3-holes-checked": {**fe, "blend": SWAP_CHECKED},
        # ... with the subject cut where the seeded one finds nothing (the edit redrew the whole frame)
        "flowedit+swap-composite-plate0-erode3-or-subject": {
            **fe,
            "blend": dataclasses.replace(SWAP_TIGHT, swap_cut="change-or-subject"),
        },
        "baseline+swap-composite-subject-cut-plate0-erode3": {
            "method": "inversion",
            **cfg,
            "blend": SWAP_TIGHT_SUBJECT,
        },
        "fireflow-quarter-steps+swap-composite-subject-cut-plate0-erode3": fireflow_at(
            4, blend=SWAP_TIGHT_SUBJECT
        ),
        # the change region cut again on the source's edges (GrabCut), at preset_sweep's choice on v5
        # (threshold 0.25, grow 1): benchmarks/results/preset_sweep_v5_refine
        "flowedit+change-composite+grabcut": {
            **fe,
            "blend": dataclasses.replace(
                change, change_threshold=0.25, change_grow=1, change_refine="source"
            ),
        },
        # the few-step editor: a DMD student (--model STUDENT --steps 4) edits on its own levels without
        # guidance (what `edit --model STUDENT` does by default)
        "student-flowedit+change-composite": {
            **fe,
            "grid": "student",
            "source_guidance": 1.0,
            "target_guidance": 1.0,
            "blend": change,
        },
        # the same with the colour preset's composite (the change region cut on the source, no sure core)
        "student-flowedit+change-composite+grabcut-soft": {
            **fe,
            "grid": "student",
            "source_guidance": 1.0,
            "target_guidance": 1.0,
            "blend": soft_cut,
        },
        "baseline-partial-0.8": {
            "method": "inversion",
            **cfg,
            "reschedule": RescheduleConfig(strength=0.8),
        },
        "preset": {"preset": "by-edit-type"},  # each validated preset, own steps; types without one: skipped
        # what a user editing a catalogue does: the validated preset of the pair's edit type, plain
        # FlowEdit (every preset's base) where the type has none; run on every pair, so it is compared
        # with the references over all types (never chosen per type: per type it is the preset itself)
        ROUTED: {"preset": "by-edit-type", "otherwise": fe},
    }


def pair_indices(count: int, shard: tuple[int, int] = (0, 1), first: int = 0) -> list[int]:
    """Pairs ``first .. first + count - 1`` whose index is K modulo N (``shard = (K, N)``)."""
    return [i for i in range(first, first + count) if i % shard[1] == shard[0]]


def pair_specs(
    count: int, shard: tuple[int, int] = (0, 1), first: int = 0
) -> list[tuple[int, str, Any, Any]]:
    """``(index, edit type, source spec, target spec)`` of the pairs :func:`make_pairs` renders."""
    return specs_at(pair_indices(count, shard, first))


def specs_at(indices: Any) -> list[tuple[int, str, Any, Any]]:
    """:func:`pair_specs` of the pairs with these indices (pair ``i`` is the same in every list; its
    edit type is the ``i % 5``-th of product, color, material, background, style)."""
    from flowstudio.worlds import EDIT_TYPES, edit_spec
    from flowstudio.worlds.dataset import clip_spec

    out = []
    for i in indices:
        kind = EDIT_TYPES[i % len(EDIT_TYPES)]
        source = clip_spec(EVAL_SEED, i)
        out.append((i, kind, source, edit_spec(source, kind, np.random.default_rng([EVAL_SEED, i, 1]))))
    return out


def make_pairs(
    count: int,
    frames: int,
    size: int,
    shard: tuple[int, int] = (0, 1),
    types: list[str] | None = None,
    first: int = 0,
) -> list[dict[str, Any]]:
    """``count`` ground-truth pairs, edit types in turn (product, color, material, background, style).

    ``shard = (K, N)`` keeps the pairs whose index is K modulo N (pair i is the same in every shard);
    ``types`` keeps only the pairs of those edit types (pair i's type is the ``i % 5``-th); ``first``:
    the first pair's index (0: the published runs' pairs; a later start draws pairs no choice saw).
    """
    from flowstudio.worlds import EDIT_TYPES

    unknown = sorted(set(types or ()) - set(EDIT_TYPES))
    if unknown:
        raise SystemExit(f"--types: unknown edit types {unknown}; choose from {list(EDIT_TYPES)}")
    indices = pair_indices(count, shard, first)
    if types:
        indices = [i for i in indices if EDIT_TYPES[i % len(EDIT_TYPES)] in types]
    return pairs_at(indices, frames, size)


def pairs_at(indices: Any, frames: int, size: int) -> list[dict[str, Any]]:
    """The pairs of :func:`make_pairs` with these indices (other benchmarks draw fresh pairs of one
    edit type from the same stream, e.g. indices 1000 + 5k + 1 are colour pairs no run of 100 saw)."""
    try:
        from flowstudio.worlds import edit_masks, edit_prompt_pair
        from flowstudio.worlds.shapes import render_clip
    except ImportError as err:  # pragma: no cover - the worlds package ships with flowstudio
        sys.exit(f"flowstudio.worlds is not available ({err}); the benchmark needs the ShapeWorld renderer")
    pairs = []
    for i, kind, source, target in specs_at(indices):
        src_prompt, tgt_prompt = edit_prompt_pair(source, target, np.random.default_rng([EVAL_SEED, i, 2]))
        src_mask, tgt_mask = edit_masks(source, target, frames, size, size)
        pairs.append(
            {
                "index": i,
                "type": kind,
                "source_spec": source,
                "target_spec": target,
                "source_prompt": src_prompt,
                "target_prompt": tgt_prompt,
                "source": render_clip(source, frames, size, size),
                "target": render_clip(target, frames, size, size),
                "source_mask": src_mask,
                "target_mask": tgt_mask,
            }
        )
    return pairs


def score(pair: dict[str, Any], frames: np.ndarray) -> dict[str, Any]:
    from flowstudio.bench.metrics.attributes import attribute_accuracy
    from flowstudio.bench.metrics.pixel import psnr
    from flowstudio.bench.metrics.temporal import warp_error
    from flowstudio.worlds.edits import EDIT_FIELDS

    union = pair["source_mask"] | pair["target_mask"]
    kind = pair["type"]
    keep_region = None if kind == "style" else (union if kind == "background" else ~union)
    attributes = {
        "world": "shapeworld",
        "field": EDIT_FIELDS[kind],
        "source": dataclasses.asdict(pair["source_spec"]),
        "target": dataclasses.asdict(pair["target_spec"]),
    }
    accuracy = attribute_accuracy(frames, attributes, pair["target_mask"])
    return {
        "psnr": psnr(frames, pair["target"]),
        "keep_psnr": None if keep_region is None else psnr(frames, pair["source"], keep_region),
        "attr_acc": accuracy.get("value"),
        "attr_read": accuracy.get("read"),
        "attr_expected": accuracy.get("expected"),
        "warp_error": warp_error(frames),
    }


def _peak_memory_mb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (Linux: KiB)


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return round(statistics.fmean(kept), 3) if kept else None


def _read(values: list[float | None]) -> int:
    """How many of ``values`` the readers could score (``None``: no reader for the attribute)."""
    return sum(v is not None for v in values)


def _one_label_accuracy(rows: list[dict[str, Any]]) -> float | None:
    """The accuracy of an output that always reads as one label: the most common expected label's
    share of the read pairs (None without expected labels)."""
    labels = [r.get("attr_expected") for r in rows if r["attr_acc"] is not None]
    if not labels or any(label is None for label in labels):
        return None
    return round(max(labels.count(label) for label in set(labels)) / len(labels), 3)


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per configuration: means over all pairs and per edit type.

    ``attr_pairs`` counts the pairs whose attribute was read (material has no reader): the accuracy
    is a share of those, and the significance test needs the count.
    """
    out = []
    for name in dict.fromkeys(r["config"] for r in rows):
        sub = [r for r in rows if r["config"] == name]
        entry = {"config": name, "pairs": len(sub)}
        for key in (
            "psnr",
            "keep_psnr",
            "attr_acc",
            "warp_error",
            "model_calls",
            "row_evaluations",
            "seconds",
        ):
            entry[key] = _mean([r[key] for r in sub])
        # the median too: a pair that changes nothing outside the edit scores the 100 dB cap, which
        # pulls the mean up far more than a bad pair pulls it down
        kept = [r["keep_psnr"] for r in sub if r["keep_psnr"] is not None]
        entry["keep_psnr_median"] = round(statistics.median(kept), 3) if kept else None
        # timed since 2026-12-01: a mean over only some rows would not be comparable with "seconds"
        timed = [r.get("transformer_seconds") for r in sub]
        entry["transformer_seconds"] = _mean(timed) if None not in timed else None
        entry["attr_pairs"] = _read([r["attr_acc"] for r in sub])
        entry["peak_memory_mb"] = max(r["peak_memory_mb"] for r in sub)
        entry["by_type"] = {}
        for kind in dict.fromkeys(r["type"] for r in sub):
            of_type = [r for r in sub if r["type"] == kind]
            entry["by_type"][kind] = {
                **{k: _mean([r[k] for r in of_type]) for k in ("psnr", "keep_psnr", "attr_acc")},
                "attr_pairs": _read([r["attr_acc"] for r in of_type]),
                "one_label_accuracy": _one_label_accuracy(of_type),
            }
        read = sum(m["attr_pairs"] for m in entry["by_type"].values() if m["one_label_accuracy"] is not None)
        entry["one_label_accuracy"] = (
            round(
                sum(
                    m["one_label_accuracy"] * m["attr_pairs"]
                    for m in entry["by_type"].values()
                    if m["one_label_accuracy"] is not None
                )
                / read,
                3,
            )
            if read and read == entry["attr_pairs"]
            else None
        )
        out.append(entry)
    return out


REFERENCE_ROWS = ("baseline", "flowedit")
NOT_DEPLOYABLE = ("oracle",)  # rows that use the true masks: bounds, never chosen
NONE_EDITS = "none: no configuration edits significantly more than identity"
NONE_UNREADABLE = "none: the readers cannot read this attribute, so no configuration can be shown to edit it"
NONE_ONE_LABEL = (
    "none: the configurations above identity score no more than an output that always reads as one "
    "label would (the most common target's share)"
)


def _candidates(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows that may be chosen: deployable, not the preset or identity row, and run on every pair (a
    row cut short is reported but not compared: its pairs are a subset)."""
    full = max((e["pairs"] for e in summary), default=0)
    return [
        e
        for e in summary
        if e["config"] not in ("preset", IDENTITY)
        and not any(w in e["config"] for w in NOT_DEPLOYABLE)
        and e["pairs"] == full
    ]


def accuracy_tolerance(best: float, pairs: int, z: float = 1.64) -> float:
    """How far below ``best`` an accuracy over ``pairs`` pairs is still statistically equal.

    One-sided two-proportion test at 95%: ``z * sqrt(2 p (1 - p) / n)``, at least 0.05. With 20 pairs
    per edit type one pair is 0.05, and a model that edits rarely makes differences of a pair or two
    pure noise: choosing on them would be choosing on chance.
    """
    p = min(max(best, 0.0), 1.0)
    return max(0.05, z * (2 * p * (1 - p) / max(pairs, 1)) ** 0.5)


def one_sided_p(hits: int, pairs: int, ref_hits: int, ref_pairs: int) -> float:
    """P-value of "``hits / pairs`` is above ``ref_hits / ref_pairs``": one-sided Fisher exact test.

    Under the null both rates are equal; given the total of hits, the hits of the first sample are
    hypergeometric, and the p-value is the chance of at least ``hits``. Exact, unlike the normal
    approximation of :func:`accuracy_tolerance`, which at 20 pairs and rates near zero calls 3/20
    against 0/20 significant (Fisher: p = 0.11; 5/20 against 0/20 is the first that passes, p = 0.024).
    It ignores that both samples are the same pairs, which makes it conservative.
    """
    total, hit_total = pairs + ref_pairs, hits + ref_hits
    denominator = math.comb(total, hit_total)
    if denominator == 0:
        return 1.0
    tail = sum(
        math.comb(pairs, k) * math.comb(ref_pairs, hit_total - k)
        for k in range(hits, min(pairs, hit_total) + 1)
    )
    return tail / denominator


def _hits(accuracy: float | None, pairs: int) -> int:
    return round((accuracy or 0.0) * pairs)


def edits_more_than_identity(
    metrics: dict[str, Any], identity: dict[str, Any], pairs: int | None = None, alpha: float = ALPHA
) -> tuple[bool, float | None]:
    """``(significant, p)``: is ``metrics``' attribute accuracy significantly above identity's?

    Both are summary entries (or their ``by_type`` items) with ``attr_acc`` and ``attr_pairs`` (the
    pairs whose attribute was read; ``pairs`` when missing). An attribute no reader can read
    (``attr_acc`` None) is never significant: ``(False, None)``.
    """
    if metrics.get("attr_acc") is None or identity.get("attr_acc") is None:
        return False, None
    n = metrics.get("attr_pairs") or pairs or 0
    n_ref = identity.get("attr_pairs") or pairs or 0
    if n == 0 or n_ref == 0:
        return False, None
    p = one_sided_p(_hits(metrics["attr_acc"], n), n, _hits(identity["attr_acc"], n_ref), n_ref)
    return p < alpha, round(p, 4)


def beats_one_label(
    metrics: dict[str, Any], one_label: float | None, pairs: int, alpha: float = ALPHA
) -> bool:
    """Is the accuracy significantly above ``one_label`` (the share of the most common target label)?

    An edit that turns every clip into the same thing (a degraded clip that the style reader calls
    "photo", say) scores exactly that share without following any prompt; so a configuration must
    also beat it (the same Fisher test, that share taken as a sample of the same pairs). ``None``
    (no expected labels recorded): not checked.
    """
    if one_label is None:
        return True
    n = metrics.get("attr_pairs") or pairs
    return one_sided_p(_hits(metrics["attr_acc"], n), n, _hits(one_label, n), n) < alpha


def _identity(summary: list[dict[str, Any]]) -> dict[str, Any]:
    for e in summary:
        if e["config"] == IDENTITY:
            return e
    raise ValueError(
        "the summary has no 'identity' row, and the choice rule needs it (a configuration must edit "
        "significantly more than doing nothing); re-derive with --rechoose RESULTS.json, which adds it"
    )


def choose_per_type(
    summary: list[dict[str, Any]], pairs_by_type: dict[str, int] | None = None
) -> dict[str, dict[str, Any]]:
    """Per edit type, the deployable configuration that edits, then edits best, then keeps best.

    Rule:

    1. only configurations whose attribute accuracy on that type is significantly above the
       ``identity`` row's (:func:`edits_more_than_identity`) and above what an output that always
       reads as one label would score (:func:`beats_one_label`) qualify; with none, the type's entry
       says so (``config`` None, ``reason`` :data:`NONE_EDITS`, :data:`NONE_ONE_LABEL`, or
       :data:`NONE_UNREADABLE` for an attribute no reader reads) instead of naming the least bad;
    2. among the qualifying ones, those statistically equal to the best (:func:`accuracy_tolerance`)
       stay, and the highest keep PSNR wins (style, which changes every pixel: the highest PSNR against
       the true edit).

    Every entry also reports the best accuracy of any candidate and identity's, with the p-value.

    Raises:
        ValueError: the summary has no ``identity`` row.
    """
    identity = _identity(summary)
    chosen: dict[str, dict[str, Any]] = {}
    types = dict.fromkeys(t for e in summary for t in e["by_type"])
    for kind in types:
        n = (pairs_by_type or {}).get(kind) or max(e["pairs"] for e in summary) // max(len(types), 1)
        ident = identity["by_type"].get(kind, {"attr_acc": None})
        rows = [
            (e["config"], e["by_type"][kind])
            for e in _candidates(summary)
            if kind in e["by_type"] and e["config"] != ROUTED
        ]
        tests = {name: edits_more_than_identity(m, ident, n) for name, m in rows}
        best_name, best = max(rows, key=lambda r: r[1]["attr_acc"] or 0.0)
        report = {
            "identity_accuracy": ident.get("attr_acc"),
            "best_accuracy": best["attr_acc"],
            "best_accuracy_config": best_name if best["attr_acc"] is not None else None,
            "best_accuracy_p_vs_identity": tests[best_name][1],
            "test": f"one-sided Fisher exact vs identity, alpha {ALPHA}",
        }
        above_identity = [(name, m) for name, m in rows if tests[name][0]]
        one_label = ident.get("one_label_accuracy")
        report["one_label_accuracy"] = one_label
        qualifying = [(name, m) for name, m in above_identity if beats_one_label(m, one_label, n)]
        if not qualifying:
            if ident.get("attr_acc") is None:
                reason = NONE_UNREADABLE
            else:
                reason = NONE_ONE_LABEL if above_identity else NONE_EDITS
            chosen[kind] = {
                "config": None,
                "reason": reason,
                "above_identity": [name for name, _ in above_identity],
                **report,
            }
            continue
        best_acc = max(m["attr_acc"] for _, m in qualifying)
        tolerance = accuracy_tolerance(best_acc, n)
        close = [(name, m) for name, m in qualifying if m["attr_acc"] >= best_acc - tolerance]
        key = "psnr" if kind == "style" else "keep_psnr"
        name, metrics = max(close, key=lambda r: (r[1][key] or -1.0, r[1]["attr_acc"]))
        chosen[kind] = {
            "config": name,
            "rule_metric": key,
            "accuracy_tolerance": round(tolerance, 3),
            "p_vs_identity": tests[name][1],
            **report,
            **metrics,
        }
    return chosen


def verdicts(summary: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's two bars, computed from the summary (empty where a reference row is missing).

    Only configurations whose overall attribute accuracy is significantly above identity's
    (:func:`edits_more_than_identity`) and the one-label accuracy (:func:`beats_one_label`) can pass a
    bar: keeping better than the references while not editing is not a win. "Equal or better
    accuracy" is judged twice: strictly (at least the references' mean) and within noise
    (:func:`accuracy_tolerance` over all pairs). Both are reported, and so is whether each reference
    row itself edits more than both nulls.

    Raises:
        ValueError: the summary has no ``identity`` row.
    """
    by_name = {e["config"]: e for e in summary}
    if not all(r in by_name for r in REFERENCE_ROWS):
        return {}
    identity = _identity(summary)
    base, fe = (by_name[r] for r in REFERENCE_ROWS)
    refs_acc = max(base["attr_acc"] or 0.0, fe["attr_acc"] or 0.0)
    refs_keep = max(base["keep_psnr"] or 0.0, fe["keep_psnr"] or 0.0)
    tolerance = accuracy_tolerance(refs_acc, base["pairs"])
    editing = [
        e
        for e in _candidates(summary)
        if edits_more_than_identity(e, identity, e["pairs"])[0]
        and beats_one_label(e, identity.get("one_label_accuracy"), e["pairs"])
    ]

    def better_keep(floor: float) -> list[str]:
        rows = [
            e
            for e in editing
            if e["config"] not in REFERENCE_ROWS
            and (e["attr_acc"] or 0.0) >= floor
            and (e["keep_psnr"] or 0.0) > refs_keep
        ]
        return [e["config"] for e in sorted(rows, key=lambda e: -(e["keep_psnr"] or 0.0))]

    def fastest(floor: float) -> dict[str, Any] | None:
        rows = [
            e
            for e in editing
            if e["config"] != "baseline"
            and (e["attr_acc"] or 0.0) >= floor
            # the wording: the baseline's accuracy *and keep* (PSNR outside the edit)
            and (e["keep_psnr"] or 0.0) >= (base["keep_psnr"] or 0.0)
        ]
        if not rows:
            return None
        top = min(rows, key=lambda e: e["seconds"])
        return {
            "config": top["config"],
            "speedup_seconds": round(base["seconds"] / top["seconds"], 2),
            "speedup_row_evaluations": round(base["row_evaluations"] / top["row_evaluations"], 2),
        }

    base_acc = base["attr_acc"] or 0.0
    return {
        "reference_accuracy": refs_acc,
        "reference_keep_psnr": refs_keep,
        "identity_accuracy": identity["attr_acc"],
        "one_label_accuracy": identity.get("one_label_accuracy"),
        "references_edit_more_than_nulls": {
            r: edits_more_than_identity(by_name[r], identity, by_name[r]["pairs"])[0]
            and beats_one_label(by_name[r], identity.get("one_label_accuracy"), by_name[r]["pairs"])
            for r in REFERENCE_ROWS
        },
        "edit_more_than_nulls": [e["config"] for e in editing],
        "accuracy_tolerance": round(tolerance, 3),
        "beats_references_on_keep_at_equal_or_better_accuracy": better_keep(refs_acc),
        "beats_references_on_keep_at_accuracy_within_noise": better_keep(refs_acc - tolerance),
        "fastest_at_baseline_quality": fastest(base_acc),
        "fastest_at_baseline_quality_within_noise": fastest(base_acc - tolerance),
    }


def _share(entry: dict[str, Any]) -> str:
    """The transformer's share of the edit's wall time ("-" for rows made before it was timed)."""
    spent, total = entry.get("transformer_seconds"), entry.get("seconds")
    return "-" if spent is None or not total else f"{spent / total:.0%}"


def write_results(
    out: Path, settings: dict[str, Any], rows: list[dict[str, Any]], random_model: bool
) -> None:
    summary = summarise(rows)
    pairs_by_type = {t: len({r["pair"] for r in rows if r["type"] == t}) for t in {r["type"] for r in rows}}
    chosen = choose_per_type(summary, pairs_by_type)
    bars = verdicts(summary)
    out.mkdir(parents=True, exist_ok=True)
    (out / "edit_toy.json").write_text(
        json.dumps(
            {"settings": settings, "summary": summary, "chosen_per_type": chosen, "bars": bars, "rows": rows},
            indent=2,
            default=str,
        )
        + "\n"
    )
    lines = ["# Editing on ShapeWorld ground-truth pairs", ""]
    if random_model:
        lines += [
            "> **RANDOM WEIGHTS.** This run used the tiny random-weight test checkpoint: it proves that",
            "> the benchmark runs end to end, and nothing else. Do not read or quote these numbers.",
            "",
        ]
    lines += [
        f"Settings: `{json.dumps(settings)}`",
        "",
        "| configuration | pairs | PSNR vs truth | keep PSNR (median) | attribute acc. | warp err. "
        "| model calls | rows | s/edit | transformer share |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def fmt(v: Any) -> str:
        return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

    for e in summary:
        lines.append(
            f"| {e['config']} | {e['pairs']} | {fmt(e['psnr'])} | {fmt(e['keep_psnr'])} "
            f"({fmt(e.get('keep_psnr_median'))}) | "
            f"{fmt(e['attr_acc'])} | "
            f"{fmt(e['warp_error'])} | {fmt(e['model_calls'])} | {fmt(e['row_evaluations'])} | "
            f"{fmt(e['seconds'])} | {_share(e)} |"
        )
    types = list(dict.fromkeys(t for e in summary for t in e["by_type"]))
    lines += [
        "",
        "## Per edit type: attribute accuracy / keep PSNR (style: PSNR vs truth)",
        "",
        "| configuration | " + " | ".join(types) + " |",
        "|---|" + "---|" * len(types),
    ]
    for e in summary:
        cells = []
        for kind in types:
            m = e["by_type"].get(kind, {})
            second = m.get("psnr") if kind == "style" else m.get("keep_psnr")
            cells.append(f"{fmt(m.get('attr_acc'))} / {fmt(second)}")
        lines.append(f"| {e['config']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Chosen per edit type (rule: `choose_per_type`)",
        "",
        f"A configuration qualifies for a type only if its attribute accuracy there is significantly above "
        f"the `{IDENTITY}` row's (the source clip returned unchanged; one-sided Fisher exact test, "
        f"alpha {ALPHA}) and above the one-label accuracy (what an output that always reads as the same "
        "label would score: the most common target label's share, same test); among those, accuracy "
        "within noise of the best, then the best keep PSNR (style: PSNR vs truth).",
        "",
        "| type | best accuracy (configuration) | identity accuracy | p (best vs identity) | one-label "
        "accuracy | chosen |",
        "|---|---|---|---|---|---|",
    ]
    notes: list[str] = []
    for kind, c in chosen.items():
        if c["config"] is None:
            verdict = c["reason"]
        else:
            verdict = (
                f"**{c['config']}** (accuracy {fmt(c['attr_acc'])}, keep PSNR {fmt(c['keep_psnr'])}, "
                f"PSNR vs truth {fmt(c['psnr'])})"
            )
        best = (
            "-" if c["best_accuracy"] is None else f"{fmt(c['best_accuracy'])} ({c['best_accuracy_config']})"
        )
        lines.append(
            f"| {kind} | {best} | {fmt(c['identity_accuracy'])} | {fmt(c['best_accuracy_p_vs_identity'])} "
            f"| {fmt(c.get('one_label_accuracy'))} | {verdict} |"
        )
        if c["config"] is None and c.get("above_identity"):
            notes.append(
                f"- {kind}: above identity but not above one-label accuracy: {', '.join(c['above_identity'])}"
            )
    lines += ["", *notes] if notes else []
    if bars:

        def fast_text(fast: dict[str, Any] | None) -> str:
            if fast is None:
                return "**none**"
            return (
                f"{fast['config']}, {fast['speedup_seconds']}x faster in wall time, "
                f"{fast['speedup_row_evaluations']}x fewer row evaluations (bar: half the baseline's wall "
                f"time, {'met' if fast['speedup_seconds'] >= 2.0 else 'missed'})"
            )

        lines += [
            "",
            "## The issue's bars",
            "",
            f"References (baseline, FlowEdit): attribute accuracy {fmt(bars['reference_accuracy'])}, "
            f"keep PSNR {fmt(bars['reference_keep_psnr'])}; accuracy noise over these pairs +-"
            f"{fmt(bars['accuracy_tolerance'])} (one-sided 95%). Identity (no edit): accuracy "
            f"{fmt(bars['identity_accuracy'])}, one-label accuracy {fmt(bars['one_label_accuracy'])}. Only "
            "configurations that edit significantly more than both over all read pairs can pass a bar: "
            + (", ".join(bars["edit_more_than_nulls"]) or "**none does**")
            + "; the references themselves: "
            + ", ".join(
                f"{r} {'does' if ok else 'does not'}"
                for r, ok in bars["references_edit_more_than_nulls"].items()
            )
            + ".",
            "",
            "- Better keep PSNR than both at equal or better accuracy, strictly: "
            + (", ".join(bars["beats_references_on_keep_at_equal_or_better_accuracy"]) or "**none**"),
            "- ... at accuracy within noise of theirs: "
            + (", ".join(bars["beats_references_on_keep_at_accuracy_within_noise"]) or "**none**"),
            "- Fastest at the baseline's quality (accuracy and keep PSNR at least the baseline's), "
            "strictly: " + fast_text(bars["fastest_at_baseline_quality"]),
            "- ... with accuracy within noise: "
            + fast_text(bars["fastest_at_baseline_quality_within_noise"]),
        ]
    (out / "edit_toy.md").write_text("\n".join(lines) + "\n")
    logger.info("wrote %s", out / "edit_toy.md")


def _load_progress(path: Path, run_key: dict[str, str]) -> tuple[list[dict[str, Any]], Path]:
    """Rows already made by an interrupted run with the same settings; a new file otherwise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text(json.dumps({"run": run_key}) + "\n")
        return [], path
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not lines or lines[0].get("run") != run_key:
        sys.exit(
            f"{path} holds rows of a run with other settings ({lines[0] if lines else 'empty'}); "
            "delete it or use another --out"
        )
    logger.info("resuming: %d rows already in %s", len(lines) - 1, path)
    return lines[1:], path


def merge(folders: list[Path], out: Path) -> None:
    """Combine shards written with ``--shard``; refuses shards run with different settings."""
    parts = [json.loads((f / "edit_toy.json").read_text()) for f in folders]
    first = {k: v for k, v in parts[0]["settings"].items() if k != "shard"}
    for f, part in zip(folders, parts, strict=True):
        other = {k: v for k, v in part["settings"].items() if k != "shard"}
        if other != first:
            sys.exit(f"{f} was run with other settings than {folders[0]}: {other} vs {first}")
    rows = sorted((r for part in parts for r in part["rows"]), key=lambda r: r["pair"])
    seen = {(r["pair"], r["config"]) for r in rows}
    if len(seen) != len(rows):
        sys.exit("the shards overlap (a pair was edited twice); merge shards K/N of one N")
    expected = {
        i
        for i, kind, _, _ in pair_specs(first["pairs"], first=first.get("first_pair", 0))
        if kind in first.get("types", [kind])
    }
    missing = expected - {r["pair"] for r in rows}
    if missing:
        sys.exit(f"the shards miss pairs {sorted(missing)[:10]}...; run every shard K/N first")
    settings = {**first, "shard": f"merged from {len(folders)} shards"}
    write_results(out, settings, rows, random_model="RANDOM" in str(first["model"]))


def identity_rows(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The do-nothing edit on every pair: the source clip scored as if it were the edit (no model)."""
    rows = []
    for pair in pairs:
        start = time.perf_counter()
        scores = score(pair, pair["source"])
        rows.append(
            {
                "config": IDENTITY,
                "pair": pair["index"],
                "type": pair["type"],
                **scores,
                "model_calls": 0,
                "row_evaluations": 0,
                "seconds": round(time.perf_counter() - start, 3),  # scoring only: the edit itself is free
                "peak_memory_mb": round(_peak_memory_mb("cpu"), 1),
            }
        )
    return rows


def rechoose(results: Path, out: Path | None = None) -> Path:
    """Re-derive the summary, choices and bars of a results file with the current rule; no edit is run.

    Identity rows missing from the file are computed on the same pairs (its settings' pairs, frames,
    size and shard): rendering and scoring the source clips only. Writes ``edit_toy.{json,md}`` into
    ``out`` (default: the results file's folder) and returns that folder.
    """
    if not results.is_file():
        sys.exit(f"--rechoose {results}: no such results file (an edit_toy.json written by this script)")
    data = json.loads(results.read_text())
    settings, rows = data.get("settings"), data.get("rows")
    if not settings or rows is None:
        sys.exit(f"--rechoose {results}: not an edit_toy results file (needs 'settings' and 'rows')")
    if any("attr_expected" not in r for r in rows):  # files written before the label was recorded
        from flowstudio.worlds.edits import EDIT_FIELDS

        targets = {
            i: (kind, target)
            for i, kind, _, target in pair_specs(settings["pairs"], first=settings.get("first_pair", 0))
        }
        for r in rows:
            kind, target = targets[r["pair"]]
            expected = None if r["attr_acc"] is None else getattr(target, EDIT_FIELDS[kind])
            r.setdefault("attr_expected", expected)
    if not any(r["config"] == IDENTITY for r in rows):
        shard = str(settings.get("shard", "0/1"))
        k, n = (int(x) for x in shard.split("/")) if "/" in shard else (0, 1)
        indices = {r["pair"] for r in rows}
        pairs = [
            p
            for p in make_pairs(
                settings["pairs"],
                settings["frames"],
                settings["size"],
                (k, n),
                settings.get("types"),
                settings.get("first_pair", 0),
            )
            if p["index"] in indices
        ]
        logger.info("adding identity rows on %d pairs (source clips scored against the targets)", len(pairs))
        rows = rows + identity_rows(pairs)
        settings = {**settings, "identity_rows": f"added by --rechoose with flowstudio {__version__}"}
    out = out or results.parent
    write_results(out, settings, rows, random_model="RANDOM" in str(settings.get("model")))
    return out


class TransformerClock:
    """Wall time spent inside the transformer's forward calls while the context is open.

    Why: at toy scale the VAE, text encoder and Python take a fixed share of an edit, so the
    transformer's share says how far a row ratio carries over to a real model, where it dominates.
    """

    def __init__(self, transformer: torch.nn.Module, device: str) -> None:
        self.transformer, self.cuda = transformer, device.startswith("cuda")
        self.seconds = 0.0
        self._started = 0.0
        self._handles: list[Any] = []

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def _pre(self, *_: Any) -> None:
        self._sync()
        self._started = time.perf_counter()

    def _post(self, *_: Any) -> None:
        self._sync()
        self.seconds += time.perf_counter() - self._started

    def __enter__(self) -> TransformerClock:
        self._handles = [
            self.transformer.register_forward_pre_hook(self._pre),
            self.transformer.register_forward_hook(self._post),
        ]
        return self

    def __exit__(self, *_: Any) -> None:
        for handle in self._handles:
            handle.remove()


def oracle_region(pair: dict[str, Any]) -> np.ndarray:
    """The true edit region of a pair, bool ``(T, H, W)``: the benchmark's own edit region
    (:func:`flowstudio.bench.scoring.regions` under the type's default ``preserve``).

    The union of the source and target objects for an object edit (product, colour, material); the
    rest of the frame for a background edit (the object is what it keeps: blending with the object's
    mask would put back the very background the prompt changes); the whole frame for a style edit.
    Until 2026-12-01 the union was used for every type, which made every blended row keep background
    and style pairs' backgrounds.
    """
    from types import SimpleNamespace

    from flowstudio.bench.manifest import DEFAULT_PRESERVE
    from flowstudio.bench.scoring import regions

    source, target = pair["source_mask"], pair["target_mask"]
    case = SimpleNamespace(preserve=DEFAULT_PRESERVE.get(pair["type"], "outside_mask"))
    return regions(case, source, target, source.shape)[0]


def options_for(options: dict[str, Any], edit_type: str) -> dict[str, Any] | None:
    """A configuration's ``edit()`` options for a pair of ``edit_type``: ``preset="by-edit-type"``
    becomes that type's preset, or ``options["otherwise"]`` where the type has no validated preset
    (None without one: the row skips the pair)."""
    options = dict(options)
    otherwise = options.pop("otherwise", None)
    if options.get("preset") == "by-edit-type":
        options["preset"] = PRESET_OF[edit_type]
        if not preset_available(options["preset"]):
            return None if otherwise is None else dict(otherwise)
    return options


def edit_pair(
    pipe: WanVideoPipeline, pair: dict[str, Any], options: dict[str, Any], *, seed: int, device: str
) -> tuple[Any, dict[str, Any]]:
    """Edit one pair with ``options`` (``mask="oracle"``: :func:`oracle_region`) and measure it.

    Returns the edit result and a row's measured fields: the scores, model calls, rows evaluated, the
    edit's wall time (scoring excluded) and its peak device memory.

    ``seconds`` is the edit's cost on its own: when the pipeline's VAE cache (:func:`open_pipeline`)
    served a result (the pair's source encoded by an earlier configuration, latents decoded before),
    the time that result took to compute is added back, and shown as ``vae_cached_seconds``; so rows
    compare with each other, whatever ran before them, and with rows made without the cache.
    """
    options = dict(options)
    mask = options.pop("mask", None)
    if mask == "oracle":
        mask = oracle_region(pair).astype(np.uint8) * 255
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    saved_before = pipe.vae_cache.saved_seconds
    with TransformerClock(pipe.components.transformer, device) as clock:
        start = time.perf_counter()
        result = edit(
            pair["source"],
            source_prompt=pair["source_prompt"],
            target_prompt=pair["target_prompt"],
            model=pipe,
            mask=mask,
            seed=seed,
            **options,
        )
        cached = pipe.vae_cache.saved_seconds - saved_before
        seconds = time.perf_counter() - start + cached
    if result.frames.shape != pair["source"].shape:  # scores compare frame by frame with the pair's clips
        sys.exit(
            f"the model edited at {result.frames.shape[1:3]} frames of {pair['source'].shape[1:3]}; "
            "pass --size/--frames the model works at (the toy model: --size 128)"
        )
    return result, {
        **score(pair, result.frames),
        "model_calls": result.model_calls,
        "row_evaluations": result.row_evaluations,
        "seconds": round(seconds, 3),
        "vae_cached_seconds": round(cached, 3),
        "transformer_seconds": round(clock.seconds, 3),
        "peak_memory_mb": round(_peak_memory_mb(device), 1),
    }


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)`` with ``0 <= K < N``; exits with a one-line message otherwise."""
    try:
        shard = tuple(int(x) for x in text.split("/"))
        if len(shard) != 2 or not 0 <= shard[0] < shard[1]:
            raise ValueError
    except ValueError:
        sys.exit(f"--shard {text!r}: expected K/N with 0 <= K < N, e.g. 0/2")
    return shard


def select_configs(configs: dict[str, Any], names: list[str] | None) -> dict[str, Any]:
    """The named subset of ``configs`` (all when ``names`` is empty); unknown names exit with the choices."""
    if not names:
        return configs
    unknown = sorted(set(names) - set(configs))
    if unknown:
        sys.exit(f"unknown configuration(s) {unknown}; choose from {sorted(configs)}")
    return {k: configs[k] for k in names}


# Every configuration of a pair encodes the same source, and configurations that differ only after
# decoding (pixel composites) decode the same latents: the VAE cache serves those from memory, exactly
# (keyed by content). 256 MB holds a pair's worth at toy size (a 17x128x128 clip decodes to 0.8 MB).
VAE_CACHE_BYTES = 256 * 2**20


def open_pipeline(model: Path | None, device: str, tmp: Path, vae_dtype: str = "float32") -> WanVideoPipeline:
    """The model's pipeline, with the VAE cache on; without a model, a tiny random-weight checkpoint
    built in ``tmp`` (warned). ``vae_dtype``: the VAE's weights (``bfloat16`` makes its encode and
    decode ~4x faster on a CPU with bfloat16 units, within one uint8 level of float32's frames)."""
    if model is None:
        from flowstudio.models.factory import build_tiny_checkpoint

        logger.warning("no --model: using a tiny RANDOM-weight checkpoint; the numbers will be meaningless")
        model = build_tiny_checkpoint(tmp / "tiny", seed=0)
    return WanVideoPipeline.from_pretrained(
        model, device=device, vae_dtype=getattr(torch, vae_dtype), vae_cache_bytes=VAE_CACHE_BYTES
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", type=Path, default=None, help="trained toy model (default: tiny RANDOM one)"
    )
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument(
        "--first-pair",
        type=int,
        default=0,
        help="index of the first pair (default 0, the published runs' pairs; e.g. 3000 for 100 pairs no "
        "preset was chosen on: preset_sweep draws from 1000-1999 and 2000-2999)",
    )
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--configs", nargs="+", default=None, help="subset of configuration names")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--vae-dtype",
        default="float32",
        choices=["float32", "bfloat16"],
        help="the VAE's weights for every configuration (the fixed cost of an edit: see guide_edit, Speed)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="results folder (default: see module doc)")
    parser.add_argument("--shard", default="0/1", help="K/N: run only pairs i with i %% N == K")
    parser.add_argument(
        "--types",
        nargs="+",
        default=None,
        help="only the pairs of these edit types (product, color, material, background, style): more "
        "pairs of one type for the same time",
    )
    parser.add_argument("--merge", type=Path, nargs="+", default=None, help="shard folders to combine")
    parser.add_argument(
        "--rechoose",
        type=Path,
        default=None,
        help="re-derive choices and bars from this edit_toy.json (adds identity rows if missing); no edits",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    if args.rechoose:
        rechoose(args.rechoose, args.out)
        return
    if args.merge:
        merge(args.merge, args.out or RESULTS)
        return
    shard = parse_shard(args.shard)
    random_model = args.model is None
    out = args.out or (ROOT / "outputs" / "edit_toy_tiny_random" if random_model else RESULTS)
    configs = select_configs(configurations(args.steps), args.configs)
    pairs = make_pairs(args.pairs, args.frames, args.size, shard, args.types, args.first_pair)

    with tempfile.TemporaryDirectory() as tmp:
        pipe = open_pipeline(args.model, args.device, Path(tmp), args.vae_dtype)
        # rows are appended as they are made, so an interrupted run resumes where it stopped
        run_key = {
            k: str(getattr(args, k)) for k in ("model", "pairs", "frames", "size", "steps", "seed", "shard")
        }
        if args.types:  # absent otherwise, so that runs made before --types resume
            run_key["types"] = str(sorted(args.types))
        if args.vae_dtype != "float32":  # likewise
            run_key["vae_dtype"] = args.vae_dtype
        if args.first_pair:  # likewise
            run_key["first_pair"] = str(args.first_pair)
        rows, progress = _load_progress(out / "edit_toy_progress.jsonl", run_key)
        done = {(r["pair"], r["config"]) for r in rows}
        # the do-nothing reference the choice rule compares with: cheap, always made
        for row in identity_rows([p for p in pairs if (p["index"], IDENTITY) not in done]):
            rows.append(row)
            with progress.open("a") as f:
                f.write(json.dumps(row, default=str) + "\n")
        for pair in pairs:
            for name, options in configs.items():
                if (pair["index"], name) in done:
                    continue
                options = options_for(options, pair["type"])
                if options is None:
                    continue  # not validated: there is no preset to measure for this type
                _, measured = edit_pair(pipe, pair, options, seed=args.seed, device=args.device)
                row = {"config": name, "pair": pair["index"], "type": pair["type"], **measured}
                rows.append(row)
                with progress.open("a") as f:
                    f.write(json.dumps(row, default=str) + "\n")
            logger.info(
                "pair %d (%s) done, %d of this shard's %d",
                pair["index"],
                pair["type"],
                pairs.index(pair) + 1,
                len(pairs),
            )
        rows = [r for r in rows if r["config"] in configs or r["config"] == IDENTITY]

    settings = {
        "model": "tiny RANDOM-weight checkpoint (seed 0): numbers are meaningless"
        if random_model
        else str(args.model),
        "pairs": args.pairs,
        **({"first_pair": args.first_pair} if args.first_pair else {}),
        "eval_seed": EVAL_SEED,
        "frames": args.frames,
        "size": args.size,
        "steps": args.steps,
        "seed": args.seed,
        "shard": args.shard,
        **({"types": sorted(args.types)} if args.types else {}),
        "vae_dtype": args.vae_dtype,
        "threads": torch.get_num_threads(),
        "device": args.device,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "flowstudio": __version__,
        "metrics": "psnr/keep_psnr: bench.metrics.pixel.psnr; attr_acc: bench.metrics.attributes; "
        "warp_error: bench.metrics.temporal",
    }
    write_results(out, settings, rows, random_model)


if __name__ == "__main__":
    main()
