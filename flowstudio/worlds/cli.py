"""`flowstudio worlds ...`: make toy-world datasets and train the toy models."""

from __future__ import annotations

from pathlib import Path

import typer

from flowstudio.checks import check_writable_folder
from flowstudio.errors import FlowstudioError

worlds_app = typer.Typer(
    help="Procedural toy worlds: datasets with ground truth, toy-model training.", no_args_is_help=True
)
make_app = typer.Typer(help="Write a toy-world dataset.", no_args_is_help=True)
train_app = typer.Typer(help="Train a toy model.", no_args_is_help=True)
worlds_app.add_typer(make_app, name="make")
worlds_app.add_typer(train_app, name="train")


def _fail(error: Exception) -> None:
    from flowstudio.jobs.errors import fail

    fail(error)  # the one error handler of every command: one line, exit code 2


@make_app.command("shapes")
def make_shapes(
    out: Path = typer.Argument(..., help="Output folder (mp4 + JSON + masks per clip, manifest.jsonl)."),
    clips: int = typer.Option(1000, help="Number of clips."),
    seed: int = typer.Option(0, help="Dataset seed; clip i depends only on (seed, i)."),
    frames: int = typer.Option(17, help="Frames per clip, 4k+1."),
    height: int = typer.Option(128, help="Height, a multiple of 32."),
    width: int = typer.Option(128, help="Width, a multiple of 32."),
    edits: bool = typer.Option(True, help="Also write one ground-truth edit per clip."),
    workers: int = typer.Option(2, help="Parallel worker processes."),
    resume: bool = typer.Option(True, help="Skip clips already written with the same settings."),
) -> None:
    """ShapeWorld product clips with captions, exact masks and ground-truth edits."""
    from flowstudio.worlds.dataset import make_shapes_dataset

    try:
        check_writable_folder(out, "OUT")
        path = make_shapes_dataset(
            out,
            clips,
            seed=seed,
            num_frames=frames,
            height=height,
            width=width,
            with_edits=edits,
            workers=workers,
            resume=resume,
        )
    except FlowstudioError as error:
        _fail(error)
    typer.echo(f"wrote {clips} ShapeWorld clips to {path}")


@make_app.command("faces")
def make_faces(
    out: Path = typer.Argument(..., help="Output folder (mp4 + JSON + npz per clip, manifest.jsonl)."),
    clips: int = typer.Option(1000, help="Number of clips."),
    seed: int = typer.Option(0, help="Dataset seed; clip i depends only on (seed, i)."),
    seconds: float = typer.Option(4.0, help="Clip length in seconds (25 fps)."),
    height: int = typer.Option(128, help="Height, a multiple of 32."),
    width: int = typer.Option(128, help="Width, a multiple of 32."),
    workers: int = typer.Option(2, help="Parallel worker processes."),
    resume: bool = typer.Option(True, help="Skip clips already written with the same settings."),
    engine: str = typer.Option("procedural", help="Voice: 'procedural' or 'espeak' (needs espeak-ng)."),
) -> None:
    """TalkingShapes talking-head clips with speech, structure latents and mouth ground truth."""
    from flowstudio.worlds.faces_dataset import make_faces_dataset

    try:
        check_writable_folder(out, "OUT")
        path = make_faces_dataset(
            out,
            clips,
            seed=seed,
            seconds=seconds,
            height=height,
            width=width,
            workers=workers,
            resume=resume,
            engine=engine,
        )
    except FlowstudioError as error:
        _fail(error)
    typer.echo(f"wrote {clips} TalkingShapes clips to {path}")


@train_app.command("snapshot")
def train_snapshot_command(
    run: Path = typer.Argument(..., help="A run folder of `worlds train shapes` (training may go on)."),
    out: Path = typer.Argument(..., help="Model folder to write (diffusers layout)."),
) -> None:
    """Export a run's latest transformer checkpoint with its VAE as a model, to measure it mid-run."""
    from flowstudio.worlds.train_shapes import export_snapshot

    try:
        summary = export_snapshot(run, out)
    except FlowstudioError as error:
        _fail(error)
    typer.echo(f"wrote {out}: transformer at step {summary['snapshot_step']} of {summary['dit_steps']}")


@train_app.command("shapes")
def train_shapes_command(
    out: Path = typer.Option(Path("outputs/toy-shapes"), help="Run folder (state, curves, model/)."),
    config: Path | None = typer.Option(
        None, help="YAML overriding ShapesTrainConfig fields (configs/toy/shapes.yaml is the full run)."
    ),
    device: str | None = typer.Option(None, help="torch device (default: cuda when visible, else cpu)."),
    max_minutes: float | None = typer.Option(None, help="Stop after this many minutes (state saved)."),
    max_steps: int | None = typer.Option(None, help="Stop after this many optimisation steps (state saved)."),
    reuse_stages_from: Path | None = typer.Option(
        None, help="A finished run folder: take over its VAE and latent cache, train only the transformer."
    ),
    vae_from: Path | None = typer.Option(
        None,
        help="A trained model folder (e.g. flowstudio/assets/toy-shapes): take its VAE as finished, "
        "re-encode the latent cache, train only the transformer; when the config's vae_steps is past the "
        "model's, train that VAE on first.",
    ),
    dit_from: Path | None = typer.Option(
        None,
        help="A trained model folder: take its VAE (as --vae-from) and its transformer, and train the "
        "transformer on from the step it was trained to, up to the config's dit_steps. With "
        "--reuse-stages-from a run that trained this model's VAE on, its transformer trains on that "
        "run's latents.",
    ),
) -> None:
    """Train the ShapeWorld toy Wan2.2 model (VAE, latent cache, transformer); resumes from OUT/state."""
    from flowstudio.worlds.train_shapes import Budget, ShapesTrainConfig, train_shapes

    settings = ShapesTrainConfig.from_yaml(config) if config else ShapesTrainConfig()
    budget = Budget(max_steps=max_steps, seconds=max_minutes * 60 if max_minutes else None)
    result = train_shapes(
        out,
        settings,
        device=device,
        budget=budget,
        reuse_stages_from=reuse_stages_from,
        vae_from=vae_from,
        dit_from=dit_from,
    )
    if result.finished:
        typer.echo(f"trained model: {result.model_dir} (curves: {out / 'losses.png'})")
    else:
        typer.echo(f"stopped early, state saved in {out / 'state'}; run the same command again to resume")


@train_app.command("decoder")
def train_decoder(
    out: Path = typer.Option(Path("outputs/decoder_ft"), help="Run folder (state, history, model/)."),
    model: Path = typer.Option(
        Path("flowstudio/assets/toy-shapes"), help="The toy model whose decoder to train."
    ),
    steps: int = typer.Option(2000, help="Decoder updates of the whole run (one whole clip each)."),
    lr: float = typer.Option(1e-4, help="Learning rate (cosine to a tenth over the last 20%)."),
    max_minutes: float | None = typer.Option(None, help="Stop after this many minutes (state saved)."),
) -> None:
    """Fine-tune the VAE decoder of a toy model on whole clips, the encoder frozen (the transformer's
    latents keep their meaning); writes OUT/model, the model with the new decoder. Resumable."""
    from flowstudio.train import Budget
    from flowstudio.worlds.finetune_decoder import DecoderFinetuneConfig, finetune_decoder

    try:
        config = DecoderFinetuneConfig(steps=steps, lr=lr)
        result = finetune_decoder(
            model, out, config, budget=Budget(seconds=max_minutes * 60 if max_minutes else None)
        )
    except FlowstudioError as error:
        _fail(error)
    evals = result["step_evals"]
    last = f"; held-out PSNR {evals[-1][1]:.2f} dB at step {evals[-1][0]}" if evals else ""
    if result["finished"]:
        typer.echo(f"model with the fine-tuned decoder: {result['model_dir']}{last}")
    else:
        typer.echo(f"stopped early, state saved in {out / 'state'}{last}; run the same command to resume")
