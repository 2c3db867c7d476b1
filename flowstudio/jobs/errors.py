"""The one error handler of every command: bad input is one line and exit code 2, never a traceback.

:func:`error_message` words a :class:`~flowstudio.errors.FlowstudioError` or a pydantic
``ValidationError`` (a request that failed validation) as one line that names the field and says
what to do; :func:`cli_errors` wraps a command body and prints it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flowstudio.errors import FlowstudioError

_FIXES = {
    "extra_forbidden": "remove it (see --help for the options)",
    "missing": "give it",
}


def _option_names() -> set[str]:
    """The long option names (``--steps``) of the running click command, if any."""
    try:  # typer >= 0.2x runs its own vendored click; older typer runs click
        from typer._click.globals import get_current_context
    except ImportError:  # pragma: no cover - depends on the typer version
        from click import get_current_context

    context = get_current_context(silent=True)
    if context is None:
        return set()
    return {o for p in context.command.params for o in getattr(p, "opts", ()) if o.startswith("--")}


def _as_option(field: str, message: str, options: set[str]) -> str:
    """``"dtype must be ..."`` -> ``"--dtype must be ..."`` when the command has that very option."""
    for option in (f"--{field}", f"--{field.replace('_', '-')}"):  # vae_dtype -> --vae-dtype
        if option in options and message.startswith(f"{field} "):
            return option + message[len(field) :]
    return message


def _validation_message(error: Any, options: set[str]) -> str:
    """One line for the first problem of a pydantic ``ValidationError``."""
    problems = error.errors(include_url=False)
    first = next((p for p in problems if p["type"] == "value_error"), problems[0])
    field = ".".join(str(part) for part in first["loc"] if not isinstance(part, int)) or "request"
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, Exception):  # a check of flowstudio.checks: already one actionable line
        message = str(cause)
        name = field.rsplit(".", 1)[-1]
        if "." in field and message.startswith(f"{name} "):
            message = f"{field}{message[len(name) :]}"  # name the nested field in full: flowedit.n_avg
        return _as_option(field, message, options)
    if first["type"] == "extra_forbidden":
        return f"unknown option {field!r}: {_FIXES['extra_forbidden']}"
    if first["type"] == "missing":
        return f"{field} is missing: {_FIXES['missing']}"
    value = first.get("input")
    return f"{field}: {first['msg'][:1].lower()}{first['msg'][1:]}, got {value!r}"


def error_message(error: BaseException, options: set[str] | None = None) -> str:
    """One line a user can act on for ``error`` (a project error or a request's ValidationError).

    ``options``: the command's long options; a message that starts with a field of the same name
    is worded with the option (``--dtype must be one of ...``).
    """
    from pydantic import ValidationError

    options = set() if options is None else options
    text = _validation_message(error, options) if isinstance(error, ValidationError) else str(error)
    return " ".join(text.splitlines())  # one line, whatever the message held


def is_input_error(error: BaseException) -> bool:
    """Whether ``error`` is bad input (a project error or a failed request validation)."""
    from pydantic import ValidationError

    return isinstance(error, FlowstudioError | ValidationError)


@contextmanager
def cli_errors() -> Iterator[None]:
    """Run a command body; bad input prints ``error: <one line>`` on stderr and exits with code 2."""
    try:
        yield
    except Exception as error:
        if not is_input_error(error):
            raise
        fail(error)


def fail(error: BaseException) -> None:
    """Print ``error`` as one line on stderr (rich markup escaped) and exit with code 2."""
    import typer
    from rich.console import Console

    from flowstudio.checks import markup_safe

    message = error_message(error, _option_names())
    Console(stderr=True).print(f"[red]error:[/red] {markup_safe(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)
