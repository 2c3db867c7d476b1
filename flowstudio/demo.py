"""`make demo`: run the main jobs end to end on the embedded model and say where the output is.

It edits a ShapeWorld product clip (red -> blue, FlowEdit with the ``color`` preset), and generates
a text-to-video and an image-to-video clip (its first frame a ShapeWorld render, so the summary also
gives the PSNR against the true continuation) with the packaged ShapeWorld toy model
(``flowstudio/assets/toy-shapes``). A source checkout without it falls back to a tiny *random-weight*
checkpoint with the exact Wan2.2-TI2V-5B-Diffusers layout (built on the fly): every stage runs for
real, but the pictures are noise, and the demo says so.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from flowstudio.pipeline import GenerationSettings, WanVideoPipeline
from flowstudio.testing.tiny_checkpoint import build_tiny_checkpoint
from flowstudio.video import write_video

logger = logging.getLogger("flowstudio.demo")


def _gradient_image(height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    return np.stack([xx * 255 // width, yy * 255 // height, np.full_like(xx, 128)], axis=-1).astype(np.uint8)


def _edit_demo(pipe: WanVideoPipeline, out: Path, *, steps: int | None, seed: int) -> dict:
    """The main job: edit a rendered product clip's colour, with the exact ground truth beside it."""
    from flowstudio.edit import edit
    from flowstudio.worlds import SceneSpec, edit_prompt_pair, render_clip

    source = SceneSpec(shape="bottle", color="red", material="glossy", background="wood", seed=seed)
    target = SceneSpec(**{**source.to_dict(), "color": "blue"})
    source_prompt, target_prompt = edit_prompt_pair(source, target, seed)
    source_path = write_video(out / "edit_source.mp4", render_clip(source), fps=16)
    write_video(out / "edit_ground_truth.mp4", render_clip(target), fps=16)
    start = time.perf_counter()
    result = edit(
        source_path,
        source_prompt=source_prompt,
        target_prompt=target_prompt,
        model=pipe,
        preset="color",
        **({"steps": steps} if steps else {}),  # None: the preset's own steps (its n_max counts steps)
        seed=seed,
        out=out / "edit.mp4",
    )
    return {
        "video": str(result.outputs["video"]),
        "side_by_side": str(result.outputs["side_by_side"]),
        "source": str(source_path),
        "ground_truth": str(out / "edit_ground_truth.mp4"),
        "source_prompt": source_prompt,
        "target_prompt": target_prompt,
        "seconds": round(time.perf_counter() - start, 2),
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
    from flowstudio.bench.metrics.pixel import psnr
    from flowstudio.worlds import SceneSpec, caption, render_clip

    out.mkdir(parents=True, exist_ok=True)
    model, kind, trained = _model(out, seed)
    steps = steps or (30 if trained else 12)
    pipe = WanVideoPipeline.from_pretrained(model, device="cpu")
    summary = {"model": str(model), "model_kind": kind, "trained": trained, "outputs": {}}
    summary["outputs"]["edit"] = _edit_demo(pipe, out, steps=None if trained else steps, seed=seed)
    scene = SceneSpec(shape="vase", color="green", material="matte", background="plain", seed=seed + 1)
    truth = render_clip(scene)
    prompt = caption(scene, np.random.default_rng(seed))
    for name, first_frame in (("text_to_video", None), ("image_to_video", truth[0])):
        settings = GenerationSettings(
            prompt=prompt, steps=steps, seed=seed, image_conditioned=first_frame is not None
        )
        start = time.perf_counter()
        result = pipe.generate(settings, image=first_frame, progress=True)
        seconds = time.perf_counter() - start
        path = write_video(out / f"{name}.mp4", result.frames, fps=16)
        summary["outputs"][name] = {
            "video": str(path),
            "seconds": round(seconds, 2),
            "model_calls": result.model_calls,
            "settings": settings.to_dict(),
        }
        if first_frame is not None:  # the world knows the true continuation of that first frame
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
