"""``flowstudio serve``: the REST job API on uvicorn (needs the ``serve`` extra)."""

from __future__ import annotations

from pathlib import Path

import typer


def serve_command(
    model: Path | None = typer.Option(
        None, "--model", "-m", help="Checkpoint folder (default: $FLOWSTUDIO_MODEL, else the toy model)."
    ),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    db: str = typer.Option("flowstudio-jobs.sqlite", help="Job store: a SQLite file, or any SQLAlchemy URL."),
    jobs_dir: Path | None = typer.Option(
        None, "--jobs-dir", help="Where job files go (default: a 'jobs' folder beside the SQLite file)."
    ),
    input_root: Path | None = typer.Option(
        None, "--input-root", help="Folder request paths (source, image...) are read from; none: refused."
    ),
    max_queue: int = typer.Option(100, "--max-queue", min=1, help="Queued jobs beyond which 429."),
) -> None:
    """Serve the job API: submit, read, list and cancel jobs, fetch result files, /healthz."""
    from flowstudio.jobs.errors import cli_errors

    with cli_errors():
        try:
            import uvicorn

            from flowstudio.serve.app import create_app
        except ImportError as error:
            from flowstudio.errors import InputError

            raise InputError(
                f"flowstudio serve needs the serve extra ({error.name} is missing): "
                "pip install 'flowstudio[serve]'"
            ) from error
        app = create_app(db, jobs_dir, model, max_queue=max_queue, input_root=input_root)
    uvicorn.run(app, host=host, port=port)
