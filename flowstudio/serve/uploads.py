"""Reading a ``POST /v1/jobs`` body: JSON, or multipart with the request and its input files.

Multipart: a form field ``request`` holds the request as JSON; each input file is a part named after
the request field it fills (``source``, ``image``, ``audio``, ``mask``, ``target_image``). Files are
streamed into ``<job folder>/inputs/<field><suffix>`` (through a ``.part`` name, renamed when
complete). The whole body is counted as it arrives: past ``limit`` bytes reading stops and
:class:`ApiError` 413 is raised; the caller removes the job folder on any error, so nothing
half-written stays.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from python_multipart.multipart import MultipartParser, parse_options_header

from flowstudio.serve.errors import ApiError, invalid

#: Request fields that name an input file on the server (and so may be uploaded).
PATH_FIELDS = ("source", "image", "audio", "mask", "target_image")
#: The ``request`` form field is JSON of a few kB; a larger one is not a request.
MAX_REQUEST_FIELD = 1 << 20
_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,10}$")


@dataclass
class Submission:
    """A read body: the request data, and the uploaded files (field -> path, field -> sha256)."""

    data: Any
    files: dict[str, Path] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)


def too_large(limit: int) -> ApiError:
    return ApiError(413, "too_large", f"the request body is larger than this server's limit of {limit} bytes")


async def counted_stream(stream: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    """The chunks of ``stream``; 413 as soon as more than ``limit`` bytes came (nothing more is read)."""
    seen = 0
    async for chunk in stream:
        seen += len(chunk)
        if seen > limit:
            raise too_large(limit)
        yield chunk


def declared_too_large(headers: Any, limit: int) -> bool:
    """True when the request says (Content-Length) it is larger than ``limit`` bytes: refuse it unread."""
    try:
        return int(headers.get("content-length", "0")) > limit
    except ValueError:
        return False


async def read_submission(request: Any, inputs: Path, limit: int) -> Submission:
    """The body of ``request`` (a Starlette request); uploads go into the folder ``inputs``."""
    if declared_too_large(request.headers, limit):
        raise too_large(limit)
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type == b"multipart/form-data":
        boundary = options.get(b"boundary")
        if not boundary:
            raise invalid("request", "a multipart body needs a boundary in its Content-Type")
        return await _read_multipart(counted_stream(request.stream(), limit), boundary, inputs)
    if content_type not in (b"", b"application/json") and not content_type.endswith(b"+json"):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"the body must be application/json or multipart/form-data, not {content_type.decode()!r}",
        )
    body = b"".join([chunk async for chunk in counted_stream(request.stream(), limit)])
    return Submission(_json(body, "the body"))


def _json(raw: bytes, what: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError as error:
        raise invalid("request", f"{what} is not JSON: {error}") from error


class MultipartCallbacks:
    """python-multipart's header bookkeeping, shared by the form readers (the job API's and the board's).

    Subclasses implement ``_headers_finished`` (the part's name from :meth:`_part_name`), ``_data``
    and ``_end``; ``callbacks()`` is what ``MultipartParser`` takes.
    """

    def __init__(self) -> None:
        self._header, self._value, self._disposition = b"", b"", b""
        self._name: str | None = None

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda d, s, e: setattr(self, "_header", self._header + d[s:e]),
            "on_header_value": lambda d, s, e: setattr(self, "_value", self._value + d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._data,
            "on_part_end": self._end,
        }

    def _begin(self) -> None:
        self._disposition, self._name = b"", None

    def _header_end(self) -> None:
        if self._header.lower() == b"content-disposition":
            self._disposition = self._value
        self._header, self._value = b"", b""

    def _part_name(self) -> tuple[str, dict[bytes, bytes]]:
        """The current part's form-field name and its Content-Disposition options."""
        _, options = parse_options_header(self._disposition)
        return options.get(b"name", b"").decode("utf-8", "replace"), options

    def _headers_finished(self) -> None:
        raise NotImplementedError

    def _data(self, data: bytes, start: int, end: int) -> None:
        raise NotImplementedError

    def _end(self) -> None:
        raise NotImplementedError


class _Parts(MultipartCallbacks):
    """python-multipart's callbacks: text fields kept, file parts written as they arrive."""

    def __init__(self, inputs: Path) -> None:
        super().__init__()
        self.inputs = inputs
        self.fields: dict[str, bytearray] = {}
        self.files: dict[str, Path] = {}
        self.digests: dict[str, str] = {}
        self.problems: list[dict[str, str]] = []
        self._file: BinaryIO | None = None
        self._partial: Path | None = None
        self._hash: Any = None

    def _headers_finished(self) -> None:
        name, options = self._part_name()
        if name in self.fields or name in self.files:
            raise invalid(name, f"the form field {name!r} is given twice")
        self._name = name
        if name == "request":
            self.fields[name] = bytearray()
        elif name in PATH_FIELDS:
            filename = options.get(b"filename", b"").decode("utf-8", "replace")
            suffix = Path(filename).suffix
            final = self.inputs / f"{name}{suffix if _SUFFIX.match(suffix) else ''}"
            self.inputs.mkdir(parents=True, exist_ok=True)
            self._partial = final.with_name(final.name + ".part")
            self._file = self._partial.open("wb")
            self._hash = hashlib.sha256()
            self.files[name] = final
        else:
            expected = ", ".join(("request", *PATH_FIELDS))
            raise invalid(name or "form", f"unknown form field {name!r} (expected: {expected})")

    def _data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._file is not None:
            self._file.write(chunk)
            self._hash.update(chunk)
        elif self._name == "request":
            if len(self.fields["request"]) + len(chunk) > MAX_REQUEST_FIELD:
                raise invalid("request", f"the request field is larger than {MAX_REQUEST_FIELD} bytes")
            self.fields["request"].extend(chunk)

    def _end(self) -> None:
        if self._file is not None and self._name is not None and self._partial is not None:
            self._file.close()
            self._file = None
            os.replace(self._partial, self.files[self._name])
            self.digests[self._name] = self._hash.hexdigest()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


async def _read_multipart(stream: AsyncIterator[bytes], boundary: bytes, inputs: Path) -> Submission:
    parts = _Parts(inputs)
    parser = MultipartParser(boundary, parts.callbacks())
    try:
        async for chunk in stream:
            parser.write(chunk)
        parser.finalize()
    except ApiError:
        raise
    except Exception as error:  # python-multipart's parse errors: the body is not valid multipart
        raise invalid("request", f"the multipart body cannot be read: {error}") from error
    finally:
        parts.close()
    if "request" not in parts.fields:
        raise invalid("request", "a multipart submission needs a 'request' field holding the request JSON")
    if set(parts.files) != set(parts.digests):
        raise invalid("request", "the multipart body ended inside a file")
    data = _json(bytes(parts.fields["request"]), "the request field")
    return Submission(data, parts.files, parts.digests)


def fingerprint(request: dict[str, Any], digests: dict[str, str]) -> str:
    """sha256 of a validated request with each uploaded file as its content's digest."""
    same = {**request, **{name: f"upload:sha256:{digest}" for name, digest in digests.items()}}
    return hashlib.sha256(json.dumps(same, sort_keys=True, default=str).encode()).hexdigest()


_JOB_ID = re.compile(r"^[0-9a-f]{32}$")


def sweep_orphans(jobs_dir: Path, store: Any, older_than: float = 3600.0) -> list[str]:
    """Remove job folders left by submissions that died mid-upload (a crash, a kill); returns them.

    A folder is an orphan if its name is a job id, no job has that id, and it holds nothing but
    ``inputs/``, untouched for ``older_than`` seconds (so an upload in flight on another server
    sharing the folder is left alone).
    """
    removed = []
    if not jobs_dir.is_dir():
        return removed
    now = time.time()
    for folder in jobs_dir.iterdir():
        if not (folder.is_dir() and _JOB_ID.match(folder.name)):
            continue
        if [p.name for p in folder.iterdir()] != ["inputs"]:
            continue
        newest = max([folder.stat().st_mtime] + [p.stat().st_mtime for p in folder.rglob("*")])
        if now - newest < older_than or store.get(folder.name) is not None:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder.name)
    return removed
