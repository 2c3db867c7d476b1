"""Bearer tokens: who may use the API, and whose jobs are whose.

Tokens come from a file (``--tokens FILE``) or the ``FLOWSTUDIO_TOKENS`` environment variable, in one
format: entries separated by new lines or commas, each ``name token`` or ``name:token``; ``#`` starts
a comment. The name owns the jobs submitted with the token (and is what the log shows, never the
token). Several tokens may share a name (e.g. an old and a new one while rotating).

No tokens configured: the server is open (every request is the owner ``""``). That is allowed on a
loopback address only unless ``--open`` says so (see :func:`check_open`).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

ENV = "FLOWSTUDIO_TOKENS"
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
#: Shorter tokens are refused: a guessable token is no token.
MIN_TOKEN_CHARS = 16


class TokenFileError(ValueError):
    """A token file or ``FLOWSTUDIO_TOKENS`` that cannot be used, with the line at fault."""


@dataclass(frozen=True)
class Tokens:
    """token -> owner name; empty: the server is open."""

    by_token: dict[str, str]

    @property
    def open(self) -> bool:
        return not self.by_token

    def owner(self, authorization: str | None) -> str | None:
        """The owner of an ``Authorization: Bearer <token>`` header, ``""`` when open, else ``None``."""
        if self.open:
            return ""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        token = token.strip()
        found = None
        for known, name in self.by_token.items():  # compare with every token, in constant time each
            if hmac.compare_digest(known.encode(), token.encode()):
                found = name
        return found


def parse_tokens(text: str, where: str) -> Tokens:
    """Tokens from the text of a token file or of ``FLOWSTUDIO_TOKENS`` (``where`` names it in errors)."""
    by_token: dict[str, str] = {}
    for number, line in enumerate(re.split(r"[\n,]", text), start=1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        name, token = _split(entry)
        if not name or not token:
            raise TokenFileError(f"{where}, entry {number}: expected 'name token' or 'name:token'")
        if not _NAME.match(name):
            raise TokenFileError(f"{where}, entry {number}: name {name!r} must be letters, digits, _.@-")
        if len(token) < MIN_TOKEN_CHARS:
            raise TokenFileError(
                f"{where}, entry {number} ({name}): the token is shorter than {MIN_TOKEN_CHARS} characters"
            )
        if token in by_token:
            raise TokenFileError(f"{where}, entry {number} ({name}): this token is listed twice")
        by_token[token] = name
    return Tokens(by_token)


def _split(entry: str) -> tuple[str, str]:
    parts = entry.split()
    if len(parts) == 2:
        return parts[0], parts[1]
    if len(parts) == 1 and ":" in entry:
        name, _, token = entry.partition(":")
        return name.strip(), token.strip()
    return "", ""


def load_tokens(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Tokens:
    """The tokens of ``path`` if given, else of ``$FLOWSTUDIO_TOKENS``, else none (open)."""
    if path is not None:
        file = Path(path)
        if not file.is_file():
            raise TokenFileError(f"token file {file} does not exist")
        tokens = parse_tokens(file.read_text(), f"token file {file}")
        if tokens.open:
            raise TokenFileError(f"token file {file} lists no token (leave --tokens out to serve open)")
        return tokens
    text = (os.environ if environ is None else environ).get(ENV, "")
    return parse_tokens(text, f"${ENV}")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_open(tokens: Tokens, host: str, allow_open: bool) -> str | None:
    """Why serving ``host`` without tokens is refused, or ``None`` if the configuration is fine."""
    if tokens.open and not allow_open and not is_loopback(host):
        return (
            f"no tokens are configured and {host} is not a loopback address: anyone who reaches it could "
            f"run jobs. Give --tokens FILE (or ${ENV}), or pass --open to serve it open on purpose"
        )
    return None
