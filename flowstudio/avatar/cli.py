"""``flowstudio avatar ...``: thin typer shells over :mod:`flowstudio.avatar` (exported as ``avatar_app``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer

from flowstudio.errors import FlowstudioError

logger = logging.getLogger(__name__)

avatar_app = typer.Typer(
    help="DualForce: real-time talking heads from one image + audio.", no_args_is_help=True
)


def _fail(error: Exception) -> None:
    typer.echo(f"error: {error}", err=True)
    raise typer.Exit(code=2)


@avatar_app.command("generate")
def generate_command(
    image: Path = typer.Option(
        ..., "--image", help="Reference image (PNG/JPEG) at the model's size (toy: 64x64)."
    ),
    audio: Path = typer.Option(..., "--audio", help="Speech audio (wav/mp3/m4a)."),
    out: Path = typer.Option(..., "--out", help="Output mp4 (audio muxed)."),
    checkpoint: Path | None = typer.Option(
        None, help="DualForce checkpoint folder; default: random toy model."
    ),
    steps: int | None = typer.Option(None, help="Denoising steps per chunk (default: config)."),
    seed: int = typer.Option(0, help="Noise seed."),
    device: str = typer.Option("cpu", help="torch device."),
) -> None:
    """Stream a talking-head video chunk by chunk and write it with the audio."""
    from flowstudio.avatar.generate import generate

    try:
        report = generate(image, audio, out, checkpoint=checkpoint, steps=steps, seed=seed, device=device)
    except FlowstudioError as error:
        _fail(error)
        return
    note = (
        " NOTE: randomly initialised toy model (no trained DualForce toy model yet; pass --checkpoint)"
        if report.random_weights
        else ""
    )
    typer.echo(
        f"wrote {report.out}: {report.frames} frames ({report.seconds:.2f} s) "
        f"in {report.wall_seconds:.2f} s, "
        f"real-time factor {report.realtime_factor:.2f}, "
        f"first chunk {report.first_chunk_seconds:.2f} s.{note}"
    )
    typer.echo(json.dumps(report.to_dict()))


@avatar_app.command("verify")
def verify_command(
    out: Path | None = typer.Option(None, help="Also write the report as JSON here."),
    seed: int = typer.Option(0, help="Seed of the random models and inputs."),
) -> None:
    """Shapes, KV-cache consistency (1e-4, fp32) and MOVA-Lite / MOVA-360p parameter and memory estimates."""
    from flowstudio.avatar.verify import run_verify

    report = run_verify(seed=seed)
    text = json.dumps(report, indent=2)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    typer.echo(text)
    failed = [k for k, v in report.items() if isinstance(v, dict) and v.get("ok") is False]
    if failed:
        typer.echo(f"FAILED: {failed}", err=True)
        raise typer.Exit(code=1)


@avatar_app.command("train")
def train_command(
    config: Path = typer.Option(..., "--config", help="Run YAML (configs/dualforce/toy.yaml)."),
    resume: bool = typer.Option(True, help="Resume from the newest checkpoint in the output folder."),
) -> None:
    """Train DualForce with multimodal diffusion forcing (accelerate; FSDP via `accelerate launch`)."""
    from flowstudio.avatar.train import train_from_yaml

    try:
        records = train_from_yaml(config, resume=resume)
    except FlowstudioError as error:
        _fail(error)
        return
    last = records[-1] if records else {}
    typer.echo(f"trained to step {int(last.get('step', 0))}, last loss {last.get('total', float('nan')):.4f}")


@avatar_app.command("convert-mova")
def convert_command(
    src: Path = typer.Argument(
        ..., help="MOVA checkpoint folder (video_dit/, audio_dit/, dual_tower_bridge/)."
    ),
    dst: Path = typer.Argument(..., help="Output DualForce folder."),
    keypoints: int = typer.Option(
        21, help="Implicit 3D keypoints K of the structure latent (7 + 3K channels)."
    ),
    hubert_path: Path | None = typer.Option(None, help="Local HuBERT-Large folder for the audio features."),
    height: int = typer.Option(352, help="Frame height."),
    width: int = typer.Option(640, help="Frame width."),
    expert: str = typer.Option("video_dit", help="Which MOVA video expert: video_dit or video_dit_2."),
) -> None:
    """Map MOVA's state dict onto DualForce; shapes and config come from the checkpoint."""
    from flowstudio.avatar.config import AudioConfig
    from flowstudio.avatar.convert import convert_mova

    audio = AudioConfig(
        feature="hubert",
        feature_dim=1024,
        hidden_dim=1024,
        hubert_path=str(hubert_path) if hubert_path else None,
    )
    try:
        report = convert_mova(
            src, dst, num_keypoints=keypoints, audio=audio, image_size=(height, width), expert=expert
        )
    except FlowstudioError as error:
        _fail(error)
        return
    typer.echo(json.dumps(report.summary(), indent=2))
