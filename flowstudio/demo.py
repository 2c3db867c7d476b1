"""`make demo`: run the main jobs end to end on the embedded model and say where the output is.

Every job goes through :func:`flowstudio.jobs.run` with a typed request (as the CLI does), on one
pipeline loaded once; each output mp4 has its JSON record beside it.

It edits a ShapeWorld product clip (red -> blue) with the ``color`` preset when a benchmark run
validated it on the model (``flowstudio.edit.presets``; else with explicit FlowEdit settings), reads
the object's colour with the project's readers in the source, the edit and the exact ground truth
(``summary.json`` says whether the edit reached the target colour), and draws ``edit_frames.png``
(rows source / edit / ground truth). It also generates a text-to-video and an image-to-video clip
(its first frame a ShapeWorld render, so the summary also gives the PSNR against the true
continuation) with the packaged ShapeWorld toy model (``flowstudio/assets/toy-shapes``). A source
checkout without it falls back to a tiny *random-weight* checkpoint with the exact
Wan2.2-TI2V-5B-Diffusers layout (built on the fly): every stage runs for real, but the pictures are
noise, and the demo says so.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from flowstudio.models.factory import build_tiny_checkpoint
from flowstudio.pipeline import WanVideoPipeline
from flowstudio.video import write_video

logger = logging.getLogger("flowstudio.demo")


def _gradient_image(height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    return np.stack([xx * 255 // width, yy * 255 // height, np.full_like(xx, 128)], axis=-1).astype(np.uint8)


#: The demo's explicit edit settings, used only where the ``color`` preset is not validated (a tiny
#: random checkpoint, or a model no benchmark run chose it on): plain FlowEdit, CFG 1.5 / 5.
DEMO_EDIT_STEPS = 20
NO_PRESET_NOTE = (
    "explicit FlowEdit settings: the 'color' preset is not validated "
    "(benchmarks/results/edit_toy.md: no configuration edits colour significantly more than doing nothing)"
)


def _demo_edit_options(steps: int) -> dict[str, Any]:
    """:class:`~flowstudio.jobs.EditRequest` fields of the demo's edit without a preset."""
    return {"method": "flowedit", "steps": steps, "source_guidance": 1.5, "target_guidance": 5.0}


def _demo_edit_choice(steps: int, trained: bool) -> tuple[dict[str, Any], str]:
    """``(request fields, note)``: the validated ``color`` preset on the toy model, else explicit options."""
    from flowstudio.edit.presets import PRESETS

    preset = PRESETS["color"]
    if trained and preset.available:
        note = f"preset 'color' ({preset.evidence}; {preset.results})"
        if preset.below_bar:
            note += f"; below its bar: {preset.below_bar}"
        return {"preset": "color"}, note
    return _demo_edit_options(steps), NO_PRESET_NOTE


def _read_color(clip: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
    from flowstudio.worlds.readers import read_color

    name, confidence = read_color(clip, mask)
    return {"color": name, "confidence": round(confidence, 3)}


def edit_frames_figure(
    rows: dict[str, np.ndarray], path: Path, *, frames: int = 5, title: str | None = None
) -> Path:
    """PNG of ``frames`` evenly spaced frames of each clip in ``rows`` (label -> uint8 ``(T, H, W, 3)``),
    one labelled row per clip; returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    length = min(len(clip) for clip in rows.values())
    picks = np.linspace(0, length - 1, frames).round().astype(int)
    fig, axes = plt.subplots(len(rows), frames, figsize=(1.9 * frames, 2.0 * len(rows)), squeeze=False)
    for r, (label, clip) in enumerate(rows.items()):
        for c, t in enumerate(picks):
            ax = axes[r][c]
            ax.imshow(clip[t])
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"frame {t}", fontsize=9)
            if c == 0:
                ax.set_ylabel(label, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _edit_demo(pipe: WanVideoPipeline, out: Path, *, steps: int, seed: int, trained: bool) -> dict[str, Any]:
    """The main job: edit a rendered product clip's colour, with the exact ground truth beside it, and
    what the colour reader sees in each."""
    from flowstudio.jobs import EditRequest, run
    from flowstudio.worlds import SceneSpec, edit_prompt_pair, render_clip
    from flowstudio.worlds.shapes import render_mask

    source = SceneSpec(shape="bottle", color="red", material="glossy", background="wood", seed=seed)
    target = SceneSpec(**{**source.to_dict(), "color": "blue"})
    source_prompt, target_prompt = edit_prompt_pair(source, target, seed)
    source_clip, truth = render_clip(source), render_clip(target)
    source_path = write_video(out / "edit_source.mp4", source_clip, fps=16)
    write_video(out / "edit_ground_truth.mp4", truth, fps=16)
    options, note = _demo_edit_choice(steps, trained)
    request = EditRequest(
        source=source_path,
        source_prompt=source_prompt,
        target_prompt=target_prompt,
        seed=seed,
        out=out / "edit.mp4",
        **options,
    )
    start = time.perf_counter()
    result = run(request, model=pipe)
    seconds = round(time.perf_counter() - start, 2)
    # a colour edit keeps the geometry: the source's true mask is where the object is in all three
    mask = render_mask(source)
    edited = result.frames[: len(mask)]
    read = {
        "source": _read_color(source_clip, mask),
        "edit": _read_color(edited, mask[: len(edited)]),
        "ground_truth": _read_color(truth, render_mask(target)),
    }
    reached = read["edit"]["color"] == target.color
    figure = edit_frames_figure(
        {"source": source_clip, "edit": edited, "ground truth": truth},
        out / "edit_frames.png",
        title=(
            f"{source.color} -> {target.color}; the colour reader sees: source {read['source']['color']}, "
            f"edit {read['edit']['color']}, ground truth {read['ground_truth']['color']}"
        ),
    )
    return {
        "video": str(result.files["video"]),
        "side_by_side": str(result.files["side_by_side"]),
        "record": str(result.files["record"]),
        "frames_png": str(figure),
        "source": str(source_path),
        "ground_truth": str(out / "edit_ground_truth.mp4"),
        "source_prompt": source_prompt,
        "target_prompt": target_prompt,
        "settings": result.settings,
        "preset": note,
        "source_color": source.color,
        "target_color": target.color,
        "colour_read": read,
        "colour_reader": "flowstudio.worlds.readers.read_color with the true object mask",
        "edit_reached_target": reached,
        "seconds": seconds,
        "model_calls": result.model_calls,
    }


def _model(out: Path, seed: int) -> tuple[Path, str, bool]:
    """``(folder, description, trained)``: the packaged toy model, or a tiny random one built on the fly."""
    from flowstudio.models import TOY_MODEL, toy_model_available

    if toy_model_available():
        return TOY_MODEL, "ShapeWorld toy model (trained; flowstudio/assets/toy-shapes)", True
    model = out / "tiny-checkpoint"
    if not (model / "model_index.json").exists():
        build_tiny_checkpoint(model, seed=seed)
    return model, "tiny random-weight checkpoint (the packaged toy model is missing)", False


def run(out: Path, *, steps: int | None = None, seed: int = 0) -> dict:
    """Edit, text-to-video and image-to-video into ``out``; returns the summary written."""
    from PIL import Image

    from flowstudio.bench.metrics.pixel import psnr
    from flowstudio.jobs import GenerateRequest, run
    from flowstudio.jobs.progress import console_progress
    from flowstudio.worlds import SceneSpec, caption, render_clip

    out.mkdir(parents=True, exist_ok=True)
    model, kind, trained = _model(out, seed)
    steps = steps or (30 if trained else 12)
    pipe = WanVideoPipeline.from_pretrained(model, device="cpu")
    summary = {"model": str(model), "model_kind": kind, "trained": trained, "outputs": {}}
    summary["outputs"]["edit"] = _edit_demo(
        pipe, out, steps=DEMO_EDIT_STEPS if trained else steps, seed=seed, trained=trained
    )
    scene = SceneSpec(shape="vase", color="green", material="matte", background="plain", seed=seed + 1)
    truth = render_clip(scene)
    prompt = caption(scene, np.random.default_rng(seed))
    first_frame = out / "image_to_video_first_frame.png"  # a request names files: the render's frame 0
    Image.fromarray(truth[0]).save(first_frame)
    for name, image in (("text_to_video", None), ("image_to_video", first_frame)):
        request = GenerateRequest(prompt=prompt, steps=steps, seed=seed, image=image, out=out / f"{name}.mp4")
        with console_progress(f"{name} ") as progress:
            result = run(request, model=pipe, progress=progress)
        summary["outputs"][name] = {
            "video": str(result.files["video"]),
            "record": str(result.files["record"]),
            "seconds": round(result.timings["run"], 2),
            "model_calls": result.model_calls,
            "settings": result.settings,
        }
        if image is not None:  # the world knows the true continuation of that first frame
            summary["outputs"][name]["psnr_vs_true_render_frames_1_16"] = round(
                psnr(result.frames[1:], truth[1 : len(result.frames)]), 2
            )
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"))
    parser.add_argument("--steps", type=int, default=None, help="default: 30 (toy model), 12 (tiny random)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    summary = run(args.out, steps=args.steps)
    for name, item in summary["outputs"].items():
        logger.info(
            "%s: %s (%.1f s, %d model calls)", name, item["video"], item["seconds"], item["model_calls"]
        )
    e = summary["outputs"]["edit"]
    read = e["colour_read"]
    logger.info(
        "edit %s -> %s: the colour reader sees %s (confidence %.2f) in the edit; source %s, ground truth %s;"
        " target reached: %s",
        e["source_color"],
        e["target_color"],
        read["edit"]["color"],
        read["edit"]["confidence"],
        read["source"]["color"],
        read["ground_truth"]["color"],
        "yes" if e["edit_reached_target"] else "no",
    )
    logger.info("edit frames (source / edit / ground truth): %s", e["frames_png"])
    # the preset's whole evidence is a paragraph: summary.json keeps it, the console names the preset
    settings = e["preset"]
    if e["settings"].get("preset"):
        where = args.out / "summary.json"
        settings = f"preset {e['settings']['preset']!r} (its evidence: {where}, edit.preset)"
    logger.info("edit settings: %s", settings)
    if summary["trained"]:
        logger.info("model: %s", summary["model_kind"])
    else:
        logger.info(
            "NOTE: %s -- the videos show that every stage runs; their content is noise.",
            summary["model_kind"],
        )
    logger.info("summary: %s", args.out / "summary.json")


if __name__ == "__main__":
    main()
