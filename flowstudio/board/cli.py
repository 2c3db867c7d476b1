"""``flowstudio board``: the leaderboard site (``serve``), seeding it from benchmark results (``seed``).

Registered by the main CLI as ``app.add_typer(board_app, name="board")``; every command is a thin shell
over :mod:`flowstudio.board`.
"""

from __future__ import annotations

from pathlib import Path

import typer

board_app = typer.Typer(
    help="Leaderboard web site: scored submissions per test set and edit type.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

DB_HELP = "Board database: a SQLite file, or a SQLAlchemy URL (postgresql+psycopg://user:pw@host/db)."


def _testset(name: str, set_seed: int):  # type: ignore[no-untyped-def]
    from flowstudio.bench.sets import resolve_testset

    return resolve_testset(name, seed=set_seed)


@board_app.command("serve")
def serve(
    testset: str = typer.Option("shapeworld-v1", "--testset", "-t", help="shapeworld-v1 or a manifest path."),
    set_seed: int = typer.Option(0, help="Seed of a generated built-in test set."),
    db: str = typer.Option("flowstudio-board.sqlite", help=DB_HELP),
    data_dir: Path | None = typer.Option(
        None,
        "--data-dir",
        help="Submissions and picture cache (default: 'board-data' beside the SQLite file).",
    ),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8100, help="Port to listen on."),
    tokens: Path | None = typer.Option(
        None, "--tokens", help="Token file, as `flowstudio serve` reads it (default: $FLOWSTUDIO_TOKENS)."
    ),
    open_: bool = typer.Option(
        False, "--open", help="Accept submissions without tokens on a non-loopback address."
    ),
    rater_tokens: Path | None = typer.Option(
        None, "--rater-tokens", help="Arena raters' token file (same format; none: the arena is closed)."
    ),
    daily_cap: int = typer.Option(200, "--daily-cap", min=1, help="Arena votes per rater per UTC day."),
    max_upload_mb: float = typer.Option(
        256, "--max-upload-mb", min=0.001, help="Largest archive, MiB; beyond, 413."
    ),
    score_workers: int = typer.Option(
        1,
        "--score-workers",
        min=1,
        help="Processes for the per-frame scoring of each case of a submission (offline tier; the same "
        "numbers). 1 = the scoring thread itself.",
    ),
) -> None:
    """Serve the leaderboard: pages at /board, JSON at /api, submissions at POST /api/submissions."""
    from flowstudio.jobs.errors import cli_errors

    with cli_errors():
        import uvicorn

        from flowstudio.board.app import create_app
        from flowstudio.board.arena import ArenaSettings
        from flowstudio.board.context import Limits
        from flowstudio.errors import InputError
        from flowstudio.serve.auth import TokenFileError, check_open, load_tokens

        try:
            known = load_tokens(tokens)
        except TokenFileError as error:
            raise InputError(str(error)) from error
        refused = check_open(known, host, open_)
        if refused:
            raise InputError(refused.replace("run jobs", "submit"))
        try:
            raters = load_tokens(rater_tokens) if rater_tokens is not None else None
        except TokenFileError as error:
            raise InputError(str(error)) from error
        folder = data_dir or _default_data_dir(db)
        app = create_app(
            db,
            _testset(testset, set_seed),
            folder,
            tokens=known,
            limits=Limits(max_upload=int(max_upload_mb * 2**20)),
            rater_tokens=raters,
            arena=ArenaSettings(daily_cap=daily_cap),
            score_workers=score_workers,
        )
    uvicorn.run(app, host=host, port=port)


def _default_data_dir(db: str) -> Path:
    return Path(db).expanduser().parent / "board-data" if "://" not in db else Path("board-data")


@board_app.command("seed")
def seed(
    results: list[Path] = typer.Argument(
        None, help="Results files or run folders (default: the editing results in benchmarks/results/)."
    ),
    testset: str = typer.Option("shapeworld-v1", "--testset", "-t", help="shapeworld-v1 or a manifest path."),
    set_seed: int = typer.Option(0, help="Seed of a generated built-in test set."),
    db: str = typer.Option("flowstudio-board.sqlite", help=DB_HELP),
    run: list[str] = typer.Option(
        [], "--run", help="Also run this method first (repeatable), e.g. identity, flowstudio-edit:flowedit."
    ),
    runs_dir: Path = typer.Option(
        Path("board-runs"), "--runs-dir", help="Where --run writes its run folders."
    ),
    limit: int | None = typer.Option(None, min=1, help="--run: only the first N cases."),
    edit_type: list[str] = typer.Option(
        [],
        "--edit-type",
        help="--run: only the cases of this edit type (repeatable; before --limit). A run that covers "
        "every case of a type is ranked in that type's tab.",
    ),
) -> None:
    """Put benchmark runs on the board: results files as `bench run` wrote them (nothing typed in)."""
    from flowstudio.jobs.errors import cli_errors

    with cli_errors():
        from flowstudio.board.seed import (
            check_run,
            default_files,
            run_and_seed,
            run_fingerprint,
            seed_results,
        )
        from flowstudio.board.store import BoardStore
        from flowstudio.errors import InputError
        from flowstudio.metrics.results import read_results

        chosen = _testset(testset, set_seed)
        store = BoardStore(db)
        try:
            store.sync_cases(chosen)
            files = list(results or [])
            found = not files and not run
            if found:
                files = default_files()
            seeded: dict[str, Path] = {}
            for path in files:
                if found:  # files found by looking: one for another build of the set is skipped, said why
                    results_found = read_results(path)
                    problems = check_run(results_found, chosen, str(path))
                    if problems:
                        typer.echo(f"skipped {'; '.join(problems)}")
                        continue
                    # the same run committed twice (a benchmark's anchor and the board's seed): one row
                    twin = seeded.setdefault(run_fingerprint(results_found), path)
                    if twin != path:
                        typer.echo(
                            f"skipped {path}: the same run as {twin} (method, set build, every number)"
                        )
                        continue
                sub = seed_results(store, chosen, path)
                typer.echo(f"{path}: {sub.cases_scored} cases, composite {sub.composite}")
            if found and not store.leaderboard(chosen.name):
                raise InputError(
                    f"no results in benchmarks/results/ are runs on this build of {chosen.name}: pass "
                    "results files, or run methods with --run METHOD"
                )
            for name in run:
                out = runs_dir / name.replace(":", "_")
                sub = run_and_seed(store, chosen, name, out, limit=limit, edit_types=edit_type)
                typer.echo(f"{name} ({out}): {sub.cases_scored} cases, composite {sub.composite}")
        finally:
            store.close()
