"""``flowstudio serve`` as a child process on a free loopback port: for the restart test and the load
benchmark, which need a real server (a real uvicorn, killable with SIGKILL), not an in-process app."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """``python -m flowstudio.cli serve --host 127.0.0.1 --port <free> <args>``, logging to ``log``.

    :meth:`start` returns once ``/healthz`` says the worker loaded its model.
    """

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.args, self.log, self.env = args, Path(log), env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 180.0) -> ServerProcess:
        command = [sys.executable, "-m", "flowstudio.cli", "serve", "--host", "127.0.0.1"]
        command += ["--port", str(self.port), *self.args]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(self.env or {})}
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}: see {self.log}")
            health = self.health()
            if health is not None and health["worker"]["model_loaded"]:
                return self
            time.sleep(0.2)
        self.kill()
        raise TimeoutError(f"the server did not load its model in {timeout} s: see {self.log}")

    def health(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=5) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:  # 503: up, but unhealthy
            return json.loads(error.read())
        except OSError:
            return None

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs (as a crash or an OOM kill)."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (uvicorn shuts down, the worker stops), SIGKILL if it takes longer than ``timeout``."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
