"""Command-line interface (typer). Every subcommand is a thin shell over the Python API.

Bad input ends every command the same way (:func:`flowstudio.jobs.errors.cli_errors`): one line
``error: ...`` naming the option and what to do, exit code 2, no traceback.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from pathlib import Path

import typer
from rich.console import Console

from flowstudio import __version__
from flowstudio.avatar.cli import avatar_app
from flowstudio.bench.cli import bench_app
from flowstudio.board.cli import board_app
from flowstudio.checks import markup_safe
from flowstudio.data.cli import data_app
from flowstudio.distill.cli import average_command, distill_command
from flowstudio.edit.cli import edit_command, estimate_memory_command
from flowstudio.jobs.errors import cli_errors
from flowstudio.serve.cli import serve_command
from flowstudio.serve.studio_cli import studio_command
from flowstudio.worlds.cli import worlds_app

console = Console(stderr=True)
app = typer.Typer(
    name="flowstudio",
    help="Video diffusion on the Wan2.2 flow-matching DiT family.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="Inspect and build local diffusers-format checkpoints.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(worlds_app, name="worlds")
app.add_typer(avatar_app, name="avatar")
app.add_typer(bench_app, name="bench")
app.add_typer(board_app, name="board")
app.add_typer(data_app, name="data")
app.command("edit")(edit_command)
app.command("distill")(distill_command)
app.command("distill-average")(average_command)
app.command("edit-memory")(estimate_memory_command)
app.command("serve")(serve_command)
app.command("studio")(studio_command)

MODEL_ENV = "FLOWSTUDIO_MODEL"


class SolverName(StrEnum):
    euler = "euler"
    dpmpp2m = "dpm++2m"
    unipc = "unipc"
    rf_solver = "rf-solver"
    fireflow = "fireflow"
    dmd = "dmd"


class TimestepMode(StrEnum):
    auto = "auto"
    integer = "integer"
    float = "float"


class Offload(StrEnum):
    none = "none"
    model = "model"
    group = "group"


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"flowstudio {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages."),
) -> None:
    """flowstudio: editing, distillation, benchmark and avatar tools for Wan2.2 video diffusion."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )


@models_app.command("check")
def models_check(
    path: Path = typer.Argument(..., help="Folder to check (e.g. Wan2.2-TI2V-5B-Diffusers)."),
) -> None:
    """Say whether PATH is a complete diffusers-format Wan2.2 TI2V checkpoint, and what is missing if not."""
    from flowstudio.weights import check_checkpoint

    with cli_errors():
        report = check_checkpoint(path)
    typer.echo(report.format())
    raise typer.Exit(code=0 if report.ok else 1)


@models_app.command("make-tiny")
def models_make_tiny(
    path: Path = typer.Argument(..., help="Folder to write."),
    seed: int = typer.Option(0, help="Seed of the random weights."),
) -> None:
    """Write a tiny random checkpoint with the exact layout and config keys of Wan2.2-TI2V-5B-Diffusers."""
    from flowstudio.models.factory import build_tiny_checkpoint

    with cli_errors():
        out = build_tiny_checkpoint(path, seed=seed)
    typer.echo(f"wrote tiny random Wan2.2-TI2V-form checkpoint to {out} (random weights: output is noise)")


@app.command()
def generate(
    prompt: str = typer.Option(..., "--prompt", "-p", help="What the video shows (not empty)."),
    out: Path = typer.Option(
        Path("outputs/generate.mp4"), "--out", "-o", help="mp4 to write (+ .json settings)."
    ),
    model: Path | None = typer.Option(
        None, "--model", "-m", help=f"Local checkpoint folder (or ${MODEL_ENV})."
    ),
    image: Path | None = typer.Option(
        None, "--image", help="First frame (image-to-video); resized to the video."
    ),
    negative_prompt: str = typer.Option("", "--negative-prompt", help="What to steer away from (CFG)."),
    frames: int = typer.Option(17, "--frames", help="Number of frames, 4k+1."),
    height: int = typer.Option(128, help="Height in pixels, a multiple of 32."),
    width: int = typer.Option(128, help="Width in pixels, a multiple of 32."),
    steps: int | None = typer.Option(None, help="Denoising steps [default: 30; a DMD student's own]."),
    guidance: float | None = typer.Option(
        None, help="Classifier-free guidance scale, 1 disables it [default: 5; a DMD student's own]."
    ),
    shift: float | None = typer.Option(
        None, help="Flow shift of the sigma schedule [default: 5; a DMD student's own]."
    ),
    solver: SolverName | None = typer.Option(
        None, help="Sampler [default: unipc; dmd for a DMD student (a folder with distill.json)]."
    ),
    timesteps: TimestepMode = typer.Option(
        TimestepMode.auto,
        help="Model timesteps: integer floor(1000 sigma) as stock diffusers WanPipeline, float 1000 sigma; "
        "auto: integer with unipc, float otherwise.",
    ),
    seed: int = typer.Option(0, help="Random seed; one seed gives one video."),
    fps: float = typer.Option(16.0, help="Frame rate of the written mp4."),
    device: str = typer.Option("cpu", help="torch device, e.g. cpu, cuda, cuda:1."),
    dtype: str | None = typer.Option(
        None, help="float32 / bfloat16 / float16 (default: bf16 on GPU, fp32 on CPU)."
    ),
    vae_dtype: str | None = typer.Option(
        None,
        "--vae-dtype",
        help="The VAE's dtype (default float32); bfloat16 runs it 3-4x as fast on a CPU with bf16 "
        "arithmetic (avx512_bf16 / amx_bf16 in lscpu).",
    ),
    offload: Offload = typer.Option(Offload.none, help="CPU offload for small GPUs: none, model, group."),
) -> None:
    """Text-to-video, or text+image-to-video with --image; writes an mp4 and a JSON record.

    Everything is checked before the model loads: the settings, the output paths (an .mp4/.m4v/.mov
    whose .json sibling is not a folder and that is not the --image) and the memory the run needs.
    A thin parser over :func:`flowstudio.jobs.run` with a :class:`~flowstudio.jobs.GenerateRequest`.
    """
    from flowstudio.jobs import GenerateRequest, run
    from flowstudio.jobs.progress import console_progress

    with cli_errors():
        chosen = {
            "steps": steps,
            "guidance_scale": guidance,
            "shift": shift,
            "solver": solver and solver.value,
        }
        request = GenerateRequest(
            prompt=prompt,
            negative_prompt=negative_prompt,
            num_frames=frames,
            height=height,
            width=width,
            # left out when not given, so that a student's distill.json can supply them
            **{k: v for k, v in chosen.items() if v is not None},
            timesteps=timesteps.value,
            seed=seed,
            image=image,
            fps=fps,
            out=out,
            model=model,
            device=device,
            dtype=dtype,
            vae_dtype=vae_dtype,
            offload=offload.value,
        )
        with console_progress() as progress:
            result = run(request, progress=progress)
    used = result.settings
    console.print(
        f"wrote {markup_safe(result.files['video'])} ({frames} frames {height}x{width}, {used['steps']} "
        f"steps, {used['solver']}) and {markup_safe(result.files['record'])}"
    )


if __name__ == "__main__":
    app()
