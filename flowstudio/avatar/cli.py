"""``flowstudio avatar ...``: thin typer shells over :mod:`flowstudio.avatar` (exported as ``avatar_app``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer

from flowstudio.errors import FlowstudioError, InputError
from flowstudio.jobs.errors import cli_errors, fail

logger = logging.getLogger(__name__)

avatar_app = typer.Typer(
    help="DualForce: real-time talking heads from one image + audio.", no_args_is_help=True
)


def _fail(error: Exception) -> None:
    fail(error)  # the one error handler of every command


@avatar_app.command("generate")
def generate_command(
    image: Path = typer.Option(
        ...,
        "--image",
        help="Reference image (PNG/JPEG); another size than the model's (toy: 64x64) is center-cropped "
        "to its aspect ratio and resized (said in the JSON's reference_image).",
    ),
    audio: Path = typer.Option(..., "--audio", help="Speech audio (wav/mp3/m4a)."),
    out: Path = typer.Option(..., "--out", help="Output mp4 (audio muxed)."),
    checkpoint: Path | None = typer.Option(
        None, help="DualForce checkpoint folder; default: random toy model."
    ),
    steps: int | None = typer.Option(None, help="Denoising steps per chunk, >= 1 (default: config)."),
    seed: int = typer.Option(0, help="Noise seed."),
    device: str = typer.Option("cpu", help="torch device."),
    audio_guidance: float | None = typer.Option(
        None,
        help="Classifier-free guidance on the audio against silence; 1 = off, > 1 costs 2x compute "
        "(default: the model's config).",
    ),
    context_sigma: float | None = typer.Option(
        None, help="Noise level generated chunks are committed at, 0 <= s < 1 (default: the model's config)."
    ),
) -> None:
    """Stream a talking-head video chunk by chunk; write it with the audio, and a JSON record beside it."""
    from flowstudio.jobs import AvatarRequest, run
    from flowstudio.jobs.progress import console_progress

    with cli_errors():
        request = AvatarRequest(
            image=image,
            audio=audio,
            out=out,
            checkpoint=checkpoint,
            steps=steps,
            seed=seed,
            device=device,
            audio_guidance=audio_guidance,
            context_sigma=context_sigma,
        )
        with console_progress() as progress:
            report = run(request, progress=progress).engine
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
    from flowstudio.avatar.evaluation.verify import run_verify

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
    from flowstudio.avatar.training.train import train_from_yaml

    try:
        records = train_from_yaml(config, resume=resume)
    except FlowstudioError as error:
        _fail(error)
        return
    from flowstudio.train import end_distributed

    end_distributed()  # under `accelerate launch`: a clean exit for every rank
    last = records[-1] if records else {}
    typer.echo(f"trained to step {int(last.get('step', 0))}, last loss {last.get('total', float('nan')):.4f}")


@avatar_app.command("export")
def export_command(
    run_dir: Path = typer.Argument(..., help="A training run's output_dir (holds checkpoints/step-N/)."),
    out: Path = typer.Argument(..., help="Model folder to write (config.json + model.safetensors)."),
    step: int | None = typer.Option(None, help="The checkpoint's step (default: the newest)."),
    raw: bool = typer.Option(False, "--raw", help="The trained weights, not the run's EMA of them."),
) -> None:
    """Write one checkpoint of a run as a model folder (the EMA when the run keeps one)."""
    from flowstudio.avatar.training.export import export_checkpoint

    try:
        folder = export_checkpoint(run_dir, step, out, raw=raw)
    except FlowstudioError as error:
        _fail(error)
        return
    typer.echo(f"wrote {folder}")


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
    from flowstudio.avatar.model.config import AudioConfig
    from flowstudio.avatar.model.convert import convert_mova

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


@avatar_app.command("eval")
def eval_command(
    data: Path = typer.Option(
        ..., "--data", help="TalkingShapes dataset (worlds make faces) of a seed training never used."
    ),
    generated: Path | None = typer.Option(
        None, "--generated", help="Score these mp4s (audio muxed), named like the dataset's clips."
    ),
    checkpoint: Path | None = typer.Option(
        None, help="DualForce checkpoint to generate with; default: packaged toy model, else random (said)."
    ),
    clips: int | None = typer.Option(None, help="Score the first N clips (default: all; 8 when generating)."),
    features: Path | None = typer.Option(
        None, "--features", help="Toy feature extractor folder (avatar train-features) for fvd_toy."
    ),
    out: Path | None = typer.Option(None, "--out", help="Write the report as JSON here."),
    save: Path | None = typer.Option(None, help="When generating: also write the clips (mp4 + npz) here."),
    steps: int | None = typer.Option(None, help="Denoising steps per chunk when generating."),
    seed: int = typer.Option(0, help="Noise seed when generating."),
    device: str = typer.Option("cpu", help="torch device."),
    max_offset: int = typer.Option(5, help="Lip-sync: largest audio-video lag searched, frames."),
    audio_guidance: float | None = typer.Option(
        None,
        help="When generating: guidance on the audio against silence; 1 = off, > 1 costs 2x compute "
        "(default: the model's config).",
    ),
    context_sigma: float | None = typer.Option(
        None, help="When generating: noise level chunks are committed at (default: the model's config)."
    ),
    truth_structure: bool = typer.Option(
        False,
        "--truth-structure",
        help="When generating: drive the video with each clip's true structure instead of the structure "
        "tower's (does the video follow its structure?).",
    ),
) -> None:
    """Score talking heads on the TalkingShapes world: lip-sync, structure, identity, flicker, FVD-style."""
    from rich.console import Console

    from flowstudio.avatar.evaluation.evaluate import (
        evaluate_generated,
        evaluate_model,
        report_table,
        write_report,
    )

    try:
        if generated is not None:
            if truth_structure:
                raise InputError("--truth-structure drives a generation; it does nothing with --generated")
            if checkpoint is not None:
                raise InputError(
                    "give either --generated (score existing mp4s) or --checkpoint (generate), not both"
                )
            report = evaluate_generated(
                data, generated, clips=clips, features=features, max_offset=max_offset
            )
        else:
            report = evaluate_model(
                data,
                checkpoint=checkpoint,
                clips=8 if clips is None else clips,
                steps=steps,
                seed=seed,
                device=device,
                features=features,
                save_dir=save,
                max_offset=max_offset,
                audio_guidance=audio_guidance,
                context_sigma=context_sigma,
                truth_structure=truth_structure,
            )
    except FlowstudioError as error:
        _fail(error)
        return
    console = Console()
    console.print(report_table(report))
    for note in report.get("notes", []):
        console.print(f"NOTE: {note}")
    if out is not None:
        typer.echo(f"report written to {write_report(report, out)}")


@avatar_app.command("train-features")
def train_features_command(
    out: Path = typer.Option(..., "--out", help="Output folder (config.json + model.safetensors)."),
    steps: int = typer.Option(800, help="Optimiser steps."),
    clips: int = typer.Option(256, help="Training clips (0.64 s at 64x64 each, rendered in memory)."),
    batch_size: int = typer.Option(64, help="Frames per step."),
    seed: int = typer.Option(0, help="Initialisation and sampling seed."),
    threads: int | None = typer.Option(None, help="torch CPU threads (1 is fastest on a busy 2-core box)."),
) -> None:
    """Train the toy video feature extractor behind `avatar eval`'s FVD-style metric (CPU, minutes)."""
    from flowstudio.avatar.evaluation.features import train_feature_extractor

    try:
        config = train_feature_extractor(
            out, steps=steps, num_clips=clips, batch_size=batch_size, seed=seed, threads=threads
        )
    except FlowstudioError as error:
        _fail(error)
        return
    typer.echo(
        f"wrote {out}: loss {config['first_loss']:.3f} -> {config['final_loss']:.3f}, validation R^2 "
        + ", ".join(f"{k} {v:.2f}" for k, v in config["validation_r2"].items())
        + f" ({config['train_seconds']:.0f} s)"
    )


@avatar_app.command("ablate")
def ablate_command(
    data: Path = typer.Option(
        ..., "--data", help="Held-out TalkingShapes dataset (`flowstudio worlds make faces --seed 1000`)."
    ),
    out: Path = typer.Option(Path("runs/dualforce-ablations"), "--out", help="One folder per run + tables."),
    base: Path = typer.Option(
        Path("configs/dualforce/toy_packaged.yaml"), help="The full model's run YAML (the packaged recipe)."
    ),
    folder: Path = typer.Option(Path("configs/dualforce/ablations"), help="Folder of ablation run YAMLs."),
    only: list[str] | None = typer.Option(
        None, "--only", help="Run only these (repeatable; 'full' is the base)."
    ),
    steps: int | None = typer.Option(None, help="Training steps of every run (default: each YAML's)."),
    clips: int = typer.Option(8, help="Held-out clips scored per run."),
    features: Path | None = typer.Option(
        None, help="Toy feature extractor folder (for the FVD-style metric)."
    ),
    seeds: int = typer.Option(
        1, "--seeds", min=1, help="Seeds per run (0..N-1: training seed and evaluation noise); mean +- std."
    ),
    threads: int | None = typer.Option(None, help="torch CPU threads."),
    stored_only: bool = typer.Option(
        False,
        "--stored-only",
        help="Train and score nothing: assemble the table from the stored eval.json files; "
        "an error lists every run and seed that has none matching these settings.",
    ),
) -> None:
    """Train and evaluate the full model and every ablation (once per seed); write
    ablations.{json,md,png} to --out."""
    import torch

    from flowstudio.avatar.evaluation.ablate import HEADLINE, run_ablations

    if threads:
        torch.set_num_threads(threads)
    try:
        table = run_ablations(
            out,
            data,
            base=base,
            folder=folder,
            only=only,
            steps=steps,
            clips=clips,
            features=features,
            seeds=range(seeds),
            stored_only=stored_only,
        )
    except FlowstudioError as error:
        _fail(error)
        return
    for name, run in table["runs"].items():
        cells = ", ".join(f"{label} {run['metrics'].get(key)}" for key, label, _ in HEADLINE[:3])
        typer.echo(f"{name}: {cells}")
    typer.echo(f"wrote {out / 'ablations.md'}, {out / 'ablations.json'}, {out / 'ablations.png'}")


@avatar_app.command("preprocess")
def preprocess_command(
    in_dir: Path = typer.Argument(..., help="Folder of talking-head videos (HDTF, CelebV-HQ, any folder)."),
    out_dir: Path = typer.Argument(..., help="Output folder (clips/, done/, manifest.jsonl, report.*)."),
    layout: str = typer.Option("auto", help="auto, folder, hdtf, celebvhq or talkingshapes (identities)."),
    detector: str = typer.Option(
        "mediapipe", help="mediapipe (face extra) or talkingshapes (the toy world's TRUE face box, toy only)."
    ),
    structure: str = typer.Option("none", help="none, liveportrait or talkingshapes (toy truth)."),
    liveportrait: Path | None = typer.Option(None, help="LivePortrait pretrained_weights folder."),
    hubert: Path | None = typer.Option(None, help="HuBERT-Large folder; default: toy log-mel."),
    syncnet: Path | None = typer.Option(None, help="SyncNet folder (checked; no network yet)."),
    size: int = typer.Option(128, help="Output crop side (multiple of 32)."),
    min_seconds: float = typer.Option(1.0, help="Shortest input video and kept segment."),
    max_seconds: float = typer.Option(120.0, help="Longest input video (decoded whole into memory)."),
    sync_min_confidence: float = typer.Option(0.5, help="Refuse segments whose sync correlation is lower."),
    vae: str = typer.Option("toy", help="toy (the toy codec) or none."),
    workers: int = typer.Option(1, help="1: in this process; more: local Ray with that many CPUs."),
    ray_address: str | None = typer.Option(None, "--ray-address", help="Run the tasks on this Ray cluster."),
) -> None:
    """The 7 preprocessing steps over a folder of videos; resumable; report per stage and reason."""
    from flowstudio.avatar.preprocess import PreprocessConfig, preprocess

    with cli_errors():
        config = PreprocessConfig(
            layout=layout,
            detector=detector,
            structure=structure,
            liveportrait_path=str(liveportrait) if liveportrait else None,
            audio_features="hubert" if hubert else "logmel",
            hubert_path=str(hubert) if hubert else None,
            syncnet_path=str(syncnet) if syncnet else None,
            size=size,
            min_seconds=min_seconds,
            max_seconds=max_seconds,
            sync_min_confidence=sync_min_confidence,
            vae=vae,
        )
        report = preprocess(in_dir, out_dir, config, workers=workers, ray_address=ray_address)
    typer.echo((Path(out_dir) / "report.md").read_text())
    typer.echo(f"{report['segments_kept']} segments written to {out_dir}/manifest.jsonl")
