"""``flowstudio data``: ShapeWorld footage, and the pair-dataset build for distillation."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import typer

from flowstudio.jobs.errors import cli_errors

data_app = typer.Typer(help="Pair datasets for distillation: footage, build.", no_args_is_help=True)


@data_app.command("footage")
def footage_command(
    out: Path = typer.Argument(..., help="Output folder (video_XXXXX.mp4 + sidecar JSON each)."),
    videos: int = typer.Option(100, help="Number of videos (1 to 3 shots each)."),
    seed: int = typer.Option(0, help="Video i depends only on (seed, i)."),
    defects: bool = typer.Option(True, help="Every 10th video carries a made defect (see the guide)."),
    workers: int = typer.Option(1, help="Parallel worker processes."),
    materials: str | None = typer.Option(
        None, help="Comma-separated materials allowed (default all: matte,glossy,striped,dotted,checkered)."
    ),
) -> None:
    """ShapeWorld multi-shot product videos: the embedded input of `flowstudio data build`."""
    from flowstudio.data.footage import make_footage

    allowed = [m.strip() for m in materials.split(",") if m.strip()] if materials else None
    with cli_errors():
        path = make_footage(out, videos, seed, defects=defects, workers=workers, materials=allowed)
    typer.echo(f"wrote {videos} ShapeWorld videos to {path.parent}")


@data_app.command("build")
def build_command(
    in_dir: Path = typer.Argument(..., help="Folder of videos (searched recursively)."),
    out_dir: Path = typer.Argument(..., help="Output folder (clips, pairs, manifest.parquet, datasheet)."),
    config: Path | None = typer.Option(
        None, "--config", help="Settings YAML (configs/data/shapeworld.yaml)."
    ),
    pairs: bool | None = typer.Option(None, "--pairs/--no-pairs", help="Make pairs (overrides the YAML)."),
    model: str | None = typer.Option(None, help="Editing model folder (default: the toy model)."),
    captioner: str | None = typer.Option(None, help="auto, metadata, sidecar or model."),
    caption_model: Path | None = typer.Option(None, help="Local image-to-text model folder."),
    clip_model: Path | None = typer.Option(None, help="Local CLIP folder (attribute check of own clips)."),
    device: str | None = typer.Option(None, help="torch device of the editing model (default cpu)."),
    workers: int | None = typer.Option(
        None, help="Default: a local Ray with every CPU; 1: in this process (no Ray); N: local Ray, N CPUs."
    ),
    ray_address: str | None = typer.Option(None, "--ray-address", help="Run the tasks on this Ray cluster."),
    max_minutes: float | None = typer.Option(
        None, help="Start no new video after this many minutes; write what is done; rerun to resume."
    ),
) -> None:
    """Clips, near-duplicate removal, filters, captions and edited pairs; resumable; datasheet."""
    from flowstudio.data.build import build
    from flowstudio.data.config import load_build_config

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with cli_errors():
        settings = load_build_config(
            config,
            pairs=pairs,
            model=model,
            captioner=captioner,
            caption_model=str(caption_model) if caption_model else None,
            clip_model=str(clip_model) if clip_model else None,
            device=device,
        )
        if workers is None:  # a local Ray with every CPU (one CPU: in this process, Ray would add nothing)
            workers = os.cpu_count() or 1
        sheet = build(
            in_dir, out_dir, settings, workers=workers, ray_address=ray_address, max_minutes=max_minutes
        )
    typer.echo((Path(out_dir) / "datasheet.md").read_text())
    typer.echo(
        f"{sheet['pairs_kept']} pairs, {sheet['clips_kept']} clips: {Path(out_dir) / 'manifest.parquet'}, "
        f"{Path(out_dir) / 'clips.parquet'}; timing {json.dumps(sheet['timing'])}"
    )
