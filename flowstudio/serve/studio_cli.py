"""``flowstudio studio``: the studio page alone, on a job store and worker of its own (``studio`` extra).

``flowstudio serve`` mounts the same page at ``/ui`` beside the REST API; this command is for a
machine that wants the page only. Its jobs go through the same store, worker and ``jobs.run``.
"""

from __future__ import annotations

from pathlib import Path

import typer


def studio_command(
    model: Path | None = typer.Option(
        None, "--model", "-m", help="Checkpoint folder (default: $FLOWSTUDIO_MODEL, else the toy model)."
    ),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(7860, help="Port to listen on."),
    db: str = typer.Option("flowstudio-jobs.sqlite", help="Job store: a SQLite file, or any SQLAlchemy URL."),
    jobs_dir: Path | None = typer.Option(
        None, "--jobs-dir", help="Where job files go (default: a 'jobs' folder beside the SQLite file)."
    ),
    open_: bool = typer.Option(
        False, "--open", help="Serve on a non-loopback address: the page has no login, anyone may run jobs."
    ),
    max_queue: int = typer.Option(
        100, "--max-queue", min=1, help="Queued jobs beyond which a submit is refused."
    ),
    keep_days: float | None = typer.Option(
        None,
        "--keep-days",
        min=0.0,
        help="Remove the files of jobs finished more than N days ago (hourly sweep). Default: keep.",
    ),
) -> None:
    """Serve the studio page alone: edit, generate and avatar tabs over the job layer."""
    from flowstudio.jobs.errors import cli_errors

    with cli_errors():
        from flowstudio.errors import InputError

        try:
            from flowstudio.serve.studio import launch_studio
            from flowstudio.serve.studio.backend import standalone_backend
        except ImportError as error:
            raise InputError(
                f"flowstudio studio needs the studio extra ({error.name} is missing): "
                "pip install 'flowstudio[studio]'"
            ) from error
        from flowstudio.serve.auth import is_loopback

        if not open_ and not is_loopback(host):
            # the page alone has no tokens: off loopback, anyone who reaches it could run jobs
            raise InputError(
                f"--host {host} is not a loopback address and the studio page alone has no login: "
                "pass --open to serve it open on purpose, or use `flowstudio serve --tokens FILE` "
                "(its /ui page asks for a token)"
            )
        backend = standalone_backend(db, jobs_dir, model, max_queue, keep_days=keep_days)
    try:
        launch_studio(backend, host=host, port=port)
    finally:
        backend.worker.stop()
        backend.store.close()


def mount_studio_or_say(app: object, max_queue: int = 100) -> bool:
    """Mount the studio at ``/ui`` on a ``flowstudio serve`` app; without gradio, say so on stderr and
    serve the API alone (the studio is an extra, the API must not need it). Returns whether mounted."""
    try:
        from flowstudio.serve.studio import STUDIO_PATH, mount_studio
    except ImportError as error:
        typer.echo(
            f"studio page not mounted ({error.name} is missing: pip install 'flowstudio[studio]'); "
            "the API is served",
            err=True,
        )
        return False
    mount_studio(app, max_queue=max_queue)
    typer.echo(f"studio page at {STUDIO_PATH}", err=True)
    return True
