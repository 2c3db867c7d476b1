"""`make demo`: run the main jobs end to end on the embedded model and say where the output is.

It edits a ShapeWorld product clip (red -> blue, FlowEdit with the ``color`` preset), and generates
a text-to-video and an image-to-video clip. Until the trained ShapeWorld toy model ships, the demo
runs on a tiny *random-weight* checkpoint with the exact Wan2.2-TI2V-5B-Diffusers layout (built on
the fly): every stage runs for real, but the generated pictures are noise. The demo says so.
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


def _edit_demo(pipe: WanVideoPipeline, out: Path, *, steps: int, seed: int) -> dict:
    """The main job: edit a rendered product clip's colour, with the exact ground truth beside it."""
    from flowstudio.edit import edit
    from flowstudio.worlds import SceneSpec, edit_prompt_pair, render_clip

    source = SceneSpec(shape="bottle", color="red", material="glossy", background="wood", seed=seed)
    target = SceneSpec(**{**source.to_dict(), "color": "blue"})
    source_prompt, target_prompt = edit_prompt_pair(source, target, seed)
    source_path = write_video(out / "edit_source.mp4", render_clip(source), fps=16)
    write_video(out / "edit_ground_truth.mp4", render_clip(target), fps=16)
    start = time.perf_counter()
    result = edit(source_path, source_prompt=source_prompt, target_prompt=target_prompt, model=pipe,
                  preset="color", steps=steps, seed=seed, out=out / "edit.mp4")
    return {"video": str(result.outputs["video"]), "side_by_side": str(result.outputs["side_by_side"]),
            "source": str(source_path), "ground_truth": str(out / "edit_ground_truth.mp4"),
            "source_prompt": source_prompt, "target_prompt": target_prompt,
            "seconds": round(time.perf_counter() - start, 2), "model_calls": result.model_calls}


def run(out: Path, *, steps: int = 12, seed: int = 0) -> dict:
    """Generate a text-to-video and an image-to-video clip into ``out``; returns the summary written."""
    out.mkdir(parents=True, exist_ok=True)
    model = out / "tiny-checkpoint"
    if not (model / "model_index.json").exists():
        build_tiny_checkpoint(model, seed=seed)
    pipe = WanVideoPipeline.from_pretrained(model, device="cpu")
    summary = {
        "model": str(model),
        "model_kind": "tiny random-weight checkpoint (toy model not shipped yet)",
        "outputs": {},
    }
    summary["outputs"]["edit"] = _edit_demo(pipe, out, steps=steps, seed=seed)
    image = _gradient_image(128, 128)
    for name, first_frame in (("text_to_video", None), ("image_to_video", image)):
        settings = GenerationSettings(
            prompt="a red bottle turning on a wooden table",
            steps=steps,
            seed=seed,
            image_conditioned=first_frame is not None,
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
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"))
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    summary = run(args.out, steps=args.steps)
    for name, item in summary["outputs"].items():
        logger.info(
            "%s: %s (%.1f s, %d model calls)", name, item["video"], item["seconds"], item["model_calls"]
        )
    logger.info(
        "NOTE: %s -- the videos show that every stage runs; their content is noise.", summary["model_kind"]
    )
    logger.info("summary: %s", args.out / "summary.json")


if __name__ == "__main__":
    main()
