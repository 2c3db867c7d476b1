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
    db: str = typer.Option(
        "flowstudio-jobs.sqlite",
        help="Job store: a SQLite file, or a SQLAlchemy URL (postgresql+psycopg://user:pw@host/db).",
    ),
    jobs_dir: Path | None = typer.Option(
        None, "--jobs-dir", help="Where job files go (default: a 'jobs' folder beside the SQLite file)."
    ),
    input_root: Path | None = typer.Option(
        None, "--input-root", help="Folder request paths (source, image...) are read from; none: refused."
    ),
    max_queue: int = typer.Option(100, "--max-queue", min=1, help="Queued jobs beyond which 429."),
    tokens: Path | None = typer.Option(
        None,
        "--tokens",
        help="Token file: one 'name token' per line (default: $FLOWSTUDIO_TOKENS; none: open).",
    ),
    open_: bool = typer.Option(
        False, "--open", help="Serve without tokens on a non-loopback address (anyone may run jobs)."
    ),
    max_per_token: int = typer.Option(
        20, "--max-per-token", min=1, help="Queued + running jobs one token may have; beyond, 429."
    ),
    max_upload_mb: float = typer.Option(
        512, "--max-upload-mb", min=0.001, help="Largest submission body (files included), MiB; beyond, 413."
    ),
    worker_name: str = typer.Option(
        "", "--worker-name", help="This server's worker name; distinct per server sharing one --db."
    ),
    device: str = typer.Option("cpu", "--device", help="Where the model runs: cpu, cuda, cuda:1..."),
    studio: bool = typer.Option(True, "--studio/--no-studio", help="The studio page at /ui (studio extra)."),
    keep_days: float | None = typer.Option(
        None,
        "--keep-days",
        min=0.0,
        help="Remove files of jobs finished over N days ago (hourly sweep; rows stay). Default: keep.",
    ),
) -> None:
    """Serve the job API: submit (JSON or multipart uploads), read, list, cancel, delete, follow
    (server-sent events) jobs, fetch result files, /healthz, OpenAPI at /docs."""
    from flowstudio.jobs.errors import cli_errors

    with cli_errors():
        from flowstudio.errors import InputError

        try:
            import uvicorn

            from flowstudio.serve.app import create_app
            from flowstudio.serve.auth import TokenFileError, check_open, load_tokens
        except ImportError as error:
            raise InputError(
                f"flowstudio serve needs the serve extra ({error.name} is missing): "
                "pip install 'flowstudio[serve]'"
            ) from error
        try:
            known = load_tokens(tokens)
        except TokenFileError as error:
            raise InputError(str(error)) from error
        refused = check_open(known, host, open_)
        if refused:
            raise InputError(refused)
        app = create_app(
            db,
            jobs_dir,
            model,
            max_queue=max_queue,
            input_root=input_root,
            tokens=known,
            max_per_token=max_per_token,
            max_upload=int(max_upload_mb * 1024 * 1024),
            worker_name=worker_name,
            device=device,
            keep_days=keep_days,
        )
        if studio:
            from flowstudio.serve.studio_cli import mount_studio_or_say

            mount_studio_or_say(app, max_queue)
    uvicorn.run(app, host=host, port=port)
