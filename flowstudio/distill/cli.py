"""``flowstudio distill``: train (or resume) a DMD2 student and export it as a diffusers folder."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from flowstudio.jobs.errors import cli_errors


def distill_command(
    config: Path = typer.Option(..., "--config", help="Run YAML (configs/distill/toy_4step.yaml)."),
    out: Path = typer.Option(
        Path("outputs/distill"), "--out", "-o", help="Run folder (state, curves, student/)."
    ),
    teacher: str | None = typer.Option(None, help="Teacher model folder (overrides the YAML's `teacher`)."),
    steps: int | None = typer.Option(None, help="Generator updates of the whole run (overrides the YAML)."),
    init_from: str | None = typer.Option(
        None, help="Start from this distill run's student and critic (overrides the YAML's `init_from`)."
    ),
    device: str | None = typer.Option(None, help="torch device (default: cuda when visible, else cpu)."),
    max_minutes: float | None = typer.Option(None, help="Stop after this many minutes (state saved)."),
    max_steps: int | None = typer.Option(None, help="Stop after this many generator updates (state saved)."),
) -> None:
    """Distil a few-step student from a teacher with DMD2; the same command resumes a stopped run.

    Finished runs hold ``OUT/student``: a diffusers folder (the student's EMA weights, its stochastic
    FlowMatch Euler scheduler, ``distill.json``) for ``flowstudio generate --model OUT/student`` and
    stock ``WanPipeline``. TensorBoard: ``OUT/tensorboard``."""
    from flowstudio.distill.train import DistillConfig, distill
    from flowstudio.train import Budget, end_distributed

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with cli_errors():
        settings = DistillConfig.from_yaml(config, teacher=teacher, steps=steps, init_from=init_from)
        budget = Budget(max_steps=max_steps, seconds=max_minutes * 60 if max_minutes else None)
        result = distill(settings, out, device=device, budget=budget)
    end_distributed()
    if not result.main_process:
        return  # one report per run, from the main process
    if result.finished:
        typer.echo(
            f"student: {out / 'student'} ({settings.student_steps} steps; history: {out / 'history.json'})"
        )
    else:
        typer.echo(f"stopped at step {result.step} of {settings.steps}; run the same command again to resume")


def average_command(
    students: list[Path] = typer.Argument(
        ..., help="Exported student folders (RUN/student, RUN/evaluated/step_N)."
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="New folder for the averaged student (must not exist)."
    ),
    weights: str | None = typer.Option(
        None, help="Comma-separated weight per student, normalised to sum 1 (default: equal)."
    ),
) -> None:
    """Average the transformer weights of students of one teacher (a "model soup").

    The students must share their sampling (distill.json) and architecture; the result is a student
    folder like theirs, with average.json naming the sources and weights."""
    from flowstudio.distill.average import average_students, parse_weights

    with cli_errors():
        shares = parse_weights(weights) if weights else None
        folder = average_students(students, out, shares)
    typer.echo(f"averaged student: {folder}")
