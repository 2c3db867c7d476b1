"""Shared helpers of the tests/test_edit_*.py files (tiny random checkpoint, a smooth tiny clip)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def gradient_clip(frames: int = 5, height: int = 32, width: int = 64) -> np.ndarray:
    """A smooth moving gradient, uint8 ``(T, H, W, 3)``: deterministic, cheap to encode."""
    yy, xx = np.mgrid[0:height, 0:width]
    clip = [
        np.stack([xx * 255 // width + 10 * t, yy * 255 // height, np.full_like(xx, 90 + 5 * t)], -1)
        for t in range(frames)
    ]
    return np.clip(np.stack(clip), 0, 255).astype(np.uint8)


def one_thread() -> Iterator[None]:
    """Run a test module on one torch thread, then restore: the tiny model is latency-bound, and on a
    shared 2-core machine two threads mostly wait on each other."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def load_pipe(tiny_checkpoint):
    """Body of the module-scoped ``pipe`` fixture: the tiny checkpoint's pipeline on the CPU."""
    from flowstudio.pipeline import WanVideoPipeline

    return WanVideoPipeline.from_pretrained(tiny_checkpoint, device="cpu")


def encode_clip(pipe, clip):
    """Body of the ``x_src`` fixture: the clip's latents."""
    return pipe.encode_video(clip)


def run_edit(pipe, clip, **options):
    """:func:`flowstudio.edit.edit` with the tests' default prompts and 3 steps."""
    from flowstudio.edit import edit

    options.setdefault("source_prompt", "a red ball")
    options.setdefault("target_prompt", "a blue box")
    options.setdefault("steps", 3)
    return edit(clip, model=pipe, **options)


def invoke_edit_command(tmp_path, checkpoint, clip, prompts: tuple[str, str], *flags: str):
    """Run ``flowstudio edit`` on ``clip`` (written as an mp4) with 2 steps and ``flags``: the CLI result
    and the settings recorded in the output's JSON (None when the command failed)."""
    import json

    import typer
    from typer.testing import CliRunner

    from flowstudio.edit.cli import edit_command
    from flowstudio.video import write_video

    app = typer.Typer(pretty_exceptions_enable=False)
    app.command("edit")(edit_command)
    app.command("other")(lambda: None)
    source = tmp_path / "shot.mp4"
    write_video(source, clip, fps=8)
    out = tmp_path / "edited.mp4"
    args = ["edit", str(source), "--model", str(checkpoint), "--source-prompt", prompts[0]]
    args += ["--target-prompt", prompts[1], "--steps", "2", "--out", str(out), *flags]
    result = CliRunner().invoke(app, args)
    settings = json.loads(out.with_suffix(".json").read_text())["settings"] if result.exit_code == 0 else None
    return result, settings
