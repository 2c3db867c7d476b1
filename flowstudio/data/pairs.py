"""Stage 2 of ``flowstudio data build``, one task per input video: a source -> target pair per kept
clip, made by the training-free editing engine and kept only if the benchmark's checks pass.

Per clip (the draws are seeded by ``seed`` and the clip's id, so a re-run makes the same pairs):

1. **The edit.** An edit type from ``edit_types``. ShapeWorld clips (sidecar metadata): the scene's
   attribute changed by :func:`~flowstudio.worlds.edits.edit_spec`, the prompts from
   :func:`~flowstudio.worlds.edits.edit_prompt_pair`, and the engine gets the region it may change
   (the object for colour and product edits, all but the object for background edits), as the
   benchmark gives it. Own clips: colour edits only, by swapping the caption's colour word; no mask.
2. **The engine.** :func:`flowstudio.edit.edit` with the type's validated preset
   (:mod:`flowstudio.edit.presets`) and ``edit_options`` over it.
3. **The checks** (each recorded; a pair is kept when all pass):

   * ``attribute``: ShapeWorld: the world's reader names the target value on the edit
     (:func:`~flowstudio.bench.metrics.attributes.attribute_accuracy`). Own clips: CLIP scores the edit
     closer to the target prompt than to the source prompt by more than ``clip_margin``, and by more
     than the source clip itself is (the edit moved toward the target).
   * ``others`` (ShapeWorld): the attributes the edit does not target (shape, colour, background;
     those with readers) read the same on the edit as on the source.
   * ``keep``: PSNR of the edit against the source outside the edited region (ShapeWorld: the
     benchmark's kept region from both objects' masks) >= ``min_keep_psnr``; own clips: SSIM of the
     whole frame >= ``min_keep_ssim``.
   * ``temporal``: the edit's warp error (motion-compensated frame difference) <= ``max_warp_ratio``
     x the source's (floored at 1 level, so a near-still source does not make any motion fail).

   ShapeWorld pairs also record ``truth_psnr``: the edit against the world's true render of the target
   (not a check; the datasheet reports it for kept and rejected pairs).

Output of a video::

    OUT/pairs/<video_id>/<segment_id>.mp4     the target clip of each kept pair
    OUT/pairs/<video_id>/rejected/<id>.mp4    the edit of each rejected pair (to audit the checks)
    OUT/done/pairs/<video_id>.json            its done-record (all pairs, kept or not): written last
"""

from __future__ import annotations

import functools
import json
import logging
import re
import shutil
import zlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from flowstudio.bench.metrics.reference import projected_embedding
from flowstudio.data.config import BuildConfig
from flowstudio.data.segments import fit_frames
from flowstudio.errors import FlowstudioError, InputError
from flowstudio.video import read_video, write_video
from flowstudio.worlds._writer import write_text_atomic

# /2: the material (its pattern family) joined the attributes an edit must keep
FORMAT = "flowstudio.data.pairs/2"
#: edit type -> (ShapeWorld edit type, what the benchmark keeps)
EDIT_TYPES: dict[str, tuple[str, str]] = {
    "color": ("color", "outside_mask"),
    "product": ("product", "outside_mask"),
    "background": ("background", "inside_mask"),
}
#: colour words a caption's colour can be swapped between (own clips)
COLOR_WORDS = (
    "red",
    "orange",
    "yellow",
    "green",
    "blue",
    "purple",
    "pink",
    "white",
    "black",
    "brown",
    "grey",
)
WARP_FLOOR = 1.0
#: every check a pair can have, in the order a rejection names its first failure
CHECKS = ("attribute", "others", "keep", "temporal")
#: ShapeWorld attributes with readers; those an edit does not target must read the same after it
#: (the material by its pattern family: matte and glossy are often told apart by no pixel)
OTHER_FIELDS = ("shape", "color", "background", "material")


class _Once(logging.Filter):
    """Let each message through once per process: attached to the presets' logger only while pairs
    are made, so the below-bar warning of a preset is said once per worker, not once per edit."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message in self.seen:
            return False
        self.seen.add(message)
        return True


_ONCE = _Once()


def pair_task_digest(config: BuildConfig, segment_ids: list[str]) -> str:
    """What a video's pair done-record depends on: the settings and which of its clips survived dedup."""
    import hashlib

    text = FORMAT + ":" + config.pair_digest() + ":" + ",".join(sorted(segment_ids))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def _pipeline(model: str, device: str, dtype: str | None, vae_dtype: str | None) -> Any:
    from flowstudio.checks import parse_dtype
    from flowstudio.pipeline import WanVideoPipeline

    return WanVideoPipeline.from_pretrained(
        model, device=device, dtype=parse_dtype(dtype), vae_dtype=parse_dtype(vae_dtype)
    )


def model_path(config: BuildConfig) -> str:
    """The editing model's folder (the packaged toy model when none is set)."""
    if config.model:
        return str(Path(config.model).resolve())
    from flowstudio.models import TOY_MODEL

    return str(TOY_MODEL)


def check_presets(config: BuildConfig) -> None:
    """Refuse, before any clip, edit types whose preset is not validated on the model."""
    from flowstudio.edit.bench_adapter import PRESET_FOR_EDIT_TYPE
    from flowstudio.edit.presets import PRESETS

    for kind in config.edit_types:
        preset = PRESETS[PRESET_FOR_EDIT_TYPE[EDIT_TYPES[kind][0]]]
        if not preset.available:
            raise InputError(f"edit_types: {preset.unavailable_message()}")


def _rng(config: BuildConfig, segment_id: str) -> np.random.Generator:
    return np.random.default_rng([config.seed, zlib.crc32(segment_id.encode())])


def plan_edit(segment: dict[str, Any], config: BuildConfig) -> dict[str, Any] | None:
    """The edit of one clip (type, prompts, target value, masks' specs); ``None`` when none applies."""
    rng = _rng(config, segment["id"])
    scene = segment.get("world")
    if isinstance(scene, dict):
        from flowstudio.worlds.edits import edit_prompt_pair, edit_spec
        from flowstudio.worlds.shapes import SceneSpec

        kind = config.edit_types[int(rng.integers(len(config.edit_types)))]
        spec = SceneSpec.from_dict(scene["spec"])
        target = edit_spec(spec, EDIT_TYPES[kind][0], rng)
        source_prompt, target_prompt = edit_prompt_pair(spec, target)
        return {
            "edit_type": kind,
            "source_prompt": source_prompt,
            "target_prompt": target_prompt,
            "source_spec": spec.to_dict(),
            "target_spec": target.to_dict(),
        }
    if "color" not in config.edit_types:
        return None
    caption = segment["caption"]
    found = [w for w in COLOR_WORDS if re.search(rf"\b{w}\b", caption, re.IGNORECASE)]
    if not found:
        return None
    word = found[0]
    others = [w for w in COLOR_WORDS if w != word]
    new = others[int(rng.integers(len(others)))]
    target_prompt = re.sub(rf"\b{word}\b", new, caption, count=1, flags=re.IGNORECASE)
    return {
        "edit_type": "color",
        "source_prompt": caption,
        "target_prompt": target_prompt,
        "source_value": word,
        "target_value": new,
    }


def _world_masks(segment: dict[str, Any], plan: dict[str, Any], config: BuildConfig) -> tuple:
    from flowstudio.worlds.shapes import SceneSpec, render_scene

    scene = segment["world"]
    h, w = segment["geometry"]
    window = slice(scene["offset"], scene["offset"] + segment["num_frames"])
    renders = [
        render_scene(SceneSpec.from_dict(plan[key]), scene["shot_frames"], h, w)
        for key in ("source_spec", "target_spec")
    ]
    masks = [fit_frames(r.mask[window], config.height, config.width, nearest=True) for r in renders]
    truth = fit_frames(renders[1].frames[window], config.height, config.width)
    return masks[0], masks[1], truth


class ClipJudge:
    """CLIP image-text similarity from a local folder (transformers, ``local_files_only``)."""

    def __init__(self, folder: str, device: str = "cpu") -> None:
        from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

        try:
            self.model = CLIPModel.from_pretrained(folder, local_files_only=True).to(device).eval()
            self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            self.processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError) as err:
            raise InputError(f"cannot load CLIP from {folder} (attribute_check 'clip'): {err}") from err
        self.device = device

    def similarity(self, frames: np.ndarray, texts: list[str]) -> np.ndarray:
        """Mean over 4 evenly spaced frames of the cosine similarity to each text, ``(len(texts),)``."""
        import torch

        picks = np.unique(np.linspace(0, len(frames) - 1, 4).round().astype(int))
        with torch.inference_mode():
            pixels = self.processor(images=[frames[i] for i in picks], return_tensors="pt").to(self.device)
            image = projected_embedding(self.model.get_image_features(**pixels))
            tokens = self.tokenizer(texts, padding=True, return_tensors="pt").to(self.device)
            text = projected_embedding(self.model.get_text_features(**tokens))
            image, text = (
                torch.nn.functional.normalize(image, dim=-1),
                torch.nn.functional.normalize(text, dim=-1),
            )
        return (image @ text.T).mean(0).float().cpu().numpy()


@functools.lru_cache(maxsize=1)
def _clip_judge(folder: str, device: str) -> ClipJudge:
    return ClipJudge(folder, device)


def judge(
    source: np.ndarray,
    edited: np.ndarray,
    segment: dict[str, Any],
    plan: dict[str, Any],
    config: BuildConfig,
    masks: tuple | None,
) -> dict[str, Any]:
    """The checks of one pair (module docstring): values, pass/fail each, and ``kept``."""
    from flowstudio.bench.metrics.attributes import attribute_accuracy
    from flowstudio.bench.metrics.pixel import psnr, ssim
    from flowstudio.bench.metrics.temporal import warp_error
    from flowstudio.bench.scoring import regions

    checks: dict[str, Any] = {}
    if masks is not None and config.attribute_check in ("auto", "readers"):
        source_mask, target_mask, truth = masks
        field = {"color": "color", "product": "shape", "background": "background"}[plan["edit_type"]]
        read = attribute_accuracy(
            edited,
            {
                "world": "shapeworld",
                "field": field,
                "source": plan["source_spec"],
                "target": plan["target_spec"],
            },
            target_mask,
        )
        if "value" not in read:
            raise InputError(f"the {field} reader could not run: {read.get('reason')}")
        checks["attribute"] = {
            "read": read["read"],
            "expected": read["expected"],
            "pass": read["value"] == 1.0,
        }
        kept_region = regions(
            SimpleNamespace(preserve=EDIT_TYPES[plan["edit_type"]][1]),
            source_mask,
            target_mask,
            source_mask.shape,
        )[1]
        keep = psnr(edited, source, kept_region)
        checks["keep"] = {"psnr": keep, "pass": keep is not None and keep >= config.min_keep_psnr}
        checks["others"] = _others_kept(source, edited, field, plan, target_mask)
        checks["truth_psnr"] = psnr(edited, truth)
    else:
        if not config.clip_model:
            raise InputError(
                f"clip {segment['id']} has no ShapeWorld metadata: its attribute check needs CLIP "
                "(set clip_model to a local CLIP folder) or pairs: false"
            )
        clip = _clip_judge(str(Path(config.clip_model).resolve()), config.device)
        texts = [plan["target_prompt"], plan["source_prompt"]]
        after, before = clip.similarity(edited, texts), clip.similarity(source, texts)
        gain, base = float(after[0] - after[1]), float(before[0] - before[1])
        checks["attribute"] = {
            "clip_gain": gain,
            "clip_gain_source": base,
            "pass": gain > config.clip_margin and gain > base,
        }
        keep = ssim(edited, source)
        checks["keep"] = {"ssim": keep, "pass": keep is not None and keep >= config.min_keep_ssim}
    warp_edit, warp_source = warp_error(edited), warp_error(source)
    ratio = None if warp_edit is None or warp_source is None else warp_edit / max(warp_source, WARP_FLOOR)
    checks["temporal"] = {
        "warp_error": warp_edit,
        "source_warp_error": warp_source,
        "ratio": ratio,
        "pass": ratio is not None and ratio <= config.max_warp_ratio,
    }
    checks["kept"] = all(checks[k]["pass"] for k in CHECKS if k in checks)
    return checks


def _others_kept(
    source: np.ndarray, edited: np.ndarray, field: str, plan: dict[str, Any], mask: np.ndarray
) -> dict[str, Any]:
    """The attributes the edit must not change (ShapeWorld's readers: shape, colour, background and the
    material's pattern family), read on the edit and on the source: they must read the same (a
    recoloured box that turned into a blob fails on shape, a striped one that came out plain on
    material)."""
    from flowstudio.bench.metrics.attributes import attribute_accuracy
    from flowstudio.worlds.readers import material_family

    reads: dict[str, Any] = {}
    for other in OTHER_FIELDS:
        if other == field:
            continue
        case = {
            "world": "shapeworld",
            "field": other,
            "source": plan["source_spec"],
            "target": plan["source_spec"],
        }
        before, after = attribute_accuracy(source, case, mask), attribute_accuracy(edited, case, mask)
        if "read" in before and "read" in after:
            reads[other] = {"source": before["read"], "edit": after["read"]}
            if other == "material":
                reads[other] = {k: material_family(v) for k, v in reads[other].items()}
    return {"reads": reads, "pass": all(r["source"] == r["edit"] for r in reads.values())}


def make_pairs(vid: str, segments: list[dict[str, Any]], out: str, config: BuildConfig) -> dict[str, Any]:
    """Stage 2 on one video's clips (those kept after dedup); writes targets and the done-record."""
    from flowstudio.edit.api import edit
    from flowstudio.edit.bench_adapter import PRESET_FOR_EDIT_TYPE

    out_dir = Path(out)
    pair_dir = out_dir / "pairs" / vid
    shutil.rmtree(pair_dir, ignore_errors=True)
    record: dict[str, Any] = {
        "format": FORMAT,
        "video_id": vid,
        "status": "ok",
        "digest": pair_task_digest(config, [s["id"] for s in segments]),
        "pairs": [],
    }
    presets_logger = logging.getLogger("flowstudio.edit.presets")
    presets_logger.addFilter(_ONCE)
    try:
        pipeline = _pipeline(model_path(config), config.device, config.dtype, config.vae_dtype)
        for segment in segments:
            plan = plan_edit(segment, config)
            if plan is None:
                record["pairs"].append(
                    {
                        "segment": segment["id"],
                        "kept": False,
                        "stage": "plan",
                        "reason": "no_editable_attribute",
                    }
                )
                continue
            source = read_video(out_dir / segment["video"]).frames
            world = isinstance(segment.get("world"), dict)
            masks = _world_masks(segment, plan, config) if world else None
            region = None
            if masks is not None:
                region = masks[0] if EDIT_TYPES[plan["edit_type"]][1] == "outside_mask" else ~masks[0]
            preset = PRESET_FOR_EDIT_TYPE[EDIT_TYPES[plan["edit_type"]][0]]
            result = edit(
                source,
                source_prompt=plan["source_prompt"],
                target_prompt=plan["target_prompt"],
                model=pipeline,
                preset=preset,
                mask=region,
                seed=config.seed,
                **config.edit_options,
            )
            checks = judge(source, result.frames, segment, plan, config, masks)
            pair = {
                "id": segment["id"],
                "segment": segment["id"],
                **plan,
                "preset": preset,
                "checks": checks,
                "kept": checks["kept"],
                "edit_seconds": round(result.seconds, 3),
                "model_calls": result.model_calls,
            }
            if checks["kept"]:
                pair_dir.mkdir(parents=True, exist_ok=True)
                target = pair_dir / f"{segment['id']}.mp4"
                write_video(target, result.frames, config.fps, crf=config.crf, preset="veryfast")
                pair["target_video"] = f"pairs/{vid}/{segment['id']}.mp4"
            else:
                failed = [k for k in CHECKS if k in checks and not checks[k]["pass"]]
                pair.update(stage="checks", reason=failed[0], failed=failed)
                # every rejected edit is kept too, to audit the checks (and for the examples grid)
                rejected = pair_dir / "rejected" / f"{segment['id']}.mp4"
                rejected.parent.mkdir(parents=True, exist_ok=True)
                write_video(rejected, result.frames, config.fps, crf=config.crf, preset="veryfast")
                pair["edited_video"] = f"pairs/{vid}/rejected/{segment['id']}.mp4"
            record["pairs"].append(pair)
    except FlowstudioError as error:
        shutil.rmtree(pair_dir, ignore_errors=True)
        record.update(status="error", reason=type(error).__name__, detail=str(error), pairs=[])
    finally:
        presets_logger.removeFilter(_ONCE)
    done = out_dir / "done" / "pairs"
    done.mkdir(parents=True, exist_ok=True)
    write_text_atomic(done / f"{vid}.json", json.dumps(record, indent=1, sort_keys=True, default=_json))
    return record


def _json(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
