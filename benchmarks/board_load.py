"""A bounded load on ``flowstudio board serve`` over loopback: page latency while people view the
board and vote, one submission is checked and scored meanwhile, and no vote is lost.

A real server (``flowstudio board serve`` as a child process: uvicorn, SQLite, the scoring worker) on
a generated ShapeWorld set (``--cases`` cases of ``--frames`` frames at ``--size``), seeded with three
real benchmark runs whose outputs are kept (``identity``, ``ground-truth`` and ``halfway``: the mean
of source and ground truth), so the arena has pairs to show. Then ``--requests`` requests,
``--concurrency`` at a time: a ``--vote`` fraction are votes (a ballot, then a vote on it, by one of
``--raters`` raters), the rest page views (leaderboard, an edit-type tab, a case page with its
pictures, a method card, the JSON board). One submission (the ground truth as H.264 mp4s) is
uploaded when the load starts. Afterwards: every vote the server answered 200 must be in the
database (the ratings JSON counts pair votes and attention checks), the submission must be scored.

Writes ``benchmarks/results/board_load.{json,md}``.

    python benchmarks/board_load.py [--requests 600] [--concurrency 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import httpx
import numpy as np

SUBMITTER = "load-submitter-0123456789"
RATER = "load-rater-{}-0123456789"


class _Halfway:
    """halfway: the mean of the source and the ground truth (a half-done edit)."""

    settings = {"model": None, "steps": 0}

    def __call__(self, case: Any, out_dir: Path, seed: int) -> np.ndarray:
        mixed = (case.load_source().astype(np.uint16) + case.load_target()) // 2
        return mixed.astype(np.uint8)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def prepare(folder: Path, args: argparse.Namespace) -> tuple[Any, Path]:
    """The set, three seeded runs, token files, and the submission's archive."""
    import io
    import zipfile

    from flowstudio.bench import get_method, make_shapeworld, register_method, run_benchmark
    from flowstudio.board.seed import seed_results
    from flowstudio.board.store import BoardStore
    from flowstudio.video import write_video

    register_method("halfway", _Halfway(), overwrite=True)
    testset = make_shapeworld(
        folder / "set", num_cases=args.cases, num_frames=args.frames, height=args.size, width=args.size
    )
    store = BoardStore(folder / "board.sqlite")
    store.sync_cases(testset)
    for name in ("identity", "ground-truth", "halfway"):
        run_benchmark(name, get_method(name), testset, folder / "runs" / name, progress=False)
        seed_results(store, testset, folder / "runs" / name / "results.json")
    store.close()
    (folder / "tokens").write_text(f"loader {SUBMITTER}\n")
    (folder / "raters").write_text("".join(f"r{i} {RATER.format(i)}\n" for i in range(args.raters)))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for case in testset:
            clip = write_video(folder / "clips" / f"{case.id}.mp4", case.load_target(), fps=16.0)
            archive.write(clip, f"{case.id}.mp4")
    (folder / "submission.zip").write_bytes(buffer.getvalue())
    return testset, folder / "submission.zip"


class BoardServer:
    """``flowstudio board serve`` on a free loopback port, logging to ``folder/server.log``."""

    def __init__(self, folder: Path, testset: Any) -> None:
        from flowstudio.serve.process import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-c", "from flowstudio.cli import app; app()", "board", "serve"]
        command += [
            "--testset",
            str(testset.path),
            "--db",
            str(folder / "board.sqlite"),
            "--port",
            str(self.port),
        ]
        command += ["--tokens", str(folder / "tokens"), "--rater-tokens", str(folder / "raters")]
        command += ["--daily-cap", "100000"]
        self.log = folder / "server.log"
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=folder)

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the board exited with {self.process.returncode}: see {self.log}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=5) as response:
                    if json.loads(response.read())["worker_alive"]:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"the board did not start in {timeout} s: see {self.log}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


async def load(url: str, testset: Any, archive: Path, args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    cases = [c.id for c in testset]
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    latency: dict[str, list[float]] = {}
    codes: dict[str, int] = {}
    errors: list[str] = []
    transport: list[str] = []
    recorded = 0  # votes answered 200: each must be in the database
    gate = asyncio.Semaphore(args.concurrency)

    def note(kind: str, started: float, response: httpx.Response) -> None:
        latency.setdefault(kind, []).append((time.perf_counter() - started) * 1000)
        label = f"{kind} {response.status_code}"
        codes[label] = codes.get(label, 0) + 1
        if response.status_code >= 500:
            errors.append(f"{label}: {response.text[:200]}")

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:

        async def view() -> None:
            case = rng.choice(cases)
            page = rng.choice(["board", "tab", "case", "method", "json"])
            path = {
                "board": "/board",
                "tab": "/board?edit_type=" + testset.by_id(case).edit_type,
                "case": f"/cases/{case}",
                "method": "/methods/identity",
                "json": "/api/board",
            }[page]
            started = time.perf_counter()
            response = await client.get(path)
            if page == "case" and response.status_code == 200:  # the page's pictures, as a browser would
                for kind in ("source", "target", "mask"):
                    await client.get(f"/media/cases/{case}/{kind}.png")
            note(f"page {page}", started, response)

        async def vote() -> None:
            nonlocal recorded
            headers = {"Authorization": f"Bearer {RATER.format(rng.randrange(args.raters))}"}
            started = time.perf_counter()
            ballot = await client.post("/api/arena/ballots", headers=headers)
            note("ballot", started, ballot)
            if ballot.status_code != 200:
                return
            body = ballot.json()
            await client.get(body["left"])
            await client.get(body["right"])
            started = time.perf_counter()
            choice = rng.choice(["left", "right", "tie", "both_bad"])
            answer = await client.post(
                "/api/arena/votes", json={"ballot": body["id"], "vote": choice}, headers=headers
            )
            note("vote", started, answer)
            recorded += answer.status_code == 200

        async def one() -> None:
            async with gate:
                try:
                    await (vote() if rng.random() < args.vote else view())
                except httpx.TransportError as error:
                    transport.append(type(error).__name__)

        async def submit() -> str:
            started = time.perf_counter()
            response = await client.post(
                "/api/submissions",
                data={"method": "load-submission"},
                files={"archive": ("sub.zip", archive.read_bytes(), "application/zip")},
                headers={"Authorization": f"Bearer {SUBMITTER}"},
            )
            note("submit", started, response)
            return response.json()["id"] if response.status_code == 202 else ""

        load_start = time.perf_counter()
        submitted, *_ = await asyncio.gather(submit(), *(one() for _ in range(args.requests)))
        load_seconds = time.perf_counter() - load_start

        status, deadline = "", time.monotonic() + args.drain_timeout
        while submitted and time.monotonic() < deadline:
            status = (await client.get(f"/api/submissions/{submitted}")).json()["status"]
            if status not in ("queued", "scoring"):
                break
            await asyncio.sleep(0.5)
        ratings = (await client.get("/api/ratings")).json()
    stored = ratings["votes"] + ratings["checks"]
    pages = [v for k, values in latency.items() if k.startswith("page") for v in values]
    return {
        "load_seconds": round(load_seconds, 2),
        "requests_per_second": round(args.requests / load_seconds, 1),
        "page_views": len(pages),
        "page_p50_ms": round(statistics.median(pages), 1),
        "page_p95_ms": round(_percentile(pages, 0.95), 1),
        "by_kind_p95_ms": {k: round(_percentile(v, 0.95), 1) for k, v in sorted(latency.items())},
        "votes_answered_200": recorded,
        "votes_stored": stored,
        "lost_votes": recorded - stored,
        "submission_status": status,
        "submission_latency_ms": round(latency.get("submit", [float("nan")])[0], 1),
        "responses": dict(sorted(codes.items())),
        "errors": errors[:20],
        "transport_errors": len(transport),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Prepare, serve, load; the report (also for tests, with small numbers)."""
    load_before = os.getloadavg()
    folder = Path(tempfile.mkdtemp(prefix="board-load-"))
    testset, archive = prepare(folder, args)
    server = BoardServer(folder, testset)
    try:
        server.wait_ready()
        results = asyncio.run(load(server.url, testset, archive, args))
    finally:
        server.stop()
    load_after = os.getloadavg()
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    report = {
        "command": "python benchmarks/board_load.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, run on CPUs {cpus}, "
        f"Python {platform.python_version()}",
        "load_average_1min": {"before": round(load_before[0], 2), "after": round(load_after[0], 2)},
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "results": results,
        "folder": str(folder),
    }
    if ok(results):
        shutil.rmtree(folder, ignore_errors=True)
    return report


def ok(results: dict[str, Any]) -> bool:
    return (
        results["lost_votes"] == 0
        and not results["errors"]
        and results["transport_errors"] == 0
        and results["submission_status"] == "scored"
    )


def markdown(report: dict[str, Any]) -> str:
    s, r = report["settings"], report["results"]
    lines = [
        "# board_load: a bounded load on `flowstudio board serve` over loopback",
        "",
        f"`{report['command']}` on {report['machine']}; 1-minute load average "
        f"{report['load_average_1min']['before']} before, {report['load_average_1min']['after']} after "
        "(other work shared the machine: latencies are those of a busy core, not of an idle server).",
        "",
        f"{s['requests']} requests, {s['concurrency']} at a time: {s['vote']:.0%} votes (a ballot, its two "
        f"pictures, the vote) by {s['raters']} raters, the rest page views (leaderboard, edit-type tab, case "
        f"page with its 3 pictures, method card, JSON board); one archive submission ({s['cases']} cases of "
        f"{s['frames']} frames at {s['size']}x{s['size']}) uploaded as the load starts and scored by the "
        "server's worker meanwhile. Client and server share the CPUs listed.",
        "",
        "| measure | value |",
        "| --- | --- |",
        f"| page views | {r['page_views']} |",
        f"| page latency p50 / p95 | {r['page_p50_ms']} / {r['page_p95_ms']} ms |",
        f"| p95 by kind | {r['by_kind_p95_ms']} |",
        f"| requests per second (whole load) | {r['requests_per_second']} |",
        f"| votes answered 200 / stored in the database / lost | {r['votes_answered_200']} / "
        f"{r['votes_stored']} / {r['lost_votes']} |",
        f"| the submission: upload + check latency, final status | {r['submission_latency_ms']} ms, "
        f"{r['submission_status']} |",
        f"| 5xx answers | {len(r['errors'])} |",
        f"| requests without an HTTP answer | {r['transport_errors']} |",
        "",
        f"Responses: {r['responses']}.",
        "",
        "**No vote lost, no 5xx, the submission scored.**" if ok(r) else "**CHECK FAILED.**",
        "",
    ]
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=600)
    p.add_argument("--concurrency", type=int, default=30)
    p.add_argument("--vote", type=float, default=0.3, help="fraction of requests that vote")
    p.add_argument("--raters", type=int, default=10)
    p.add_argument("--cases", type=int, default=20)
    p.add_argument("--frames", type=int, default=17)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--drain-timeout", type=float, default=600.0)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    return p


def main() -> None:
    args = parser().parse_args()
    report = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "board_load.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "board_load.md").write_text(markdown(report))
    print(markdown(report))
    raise SystemExit(0 if ok(report["results"]) else 1)


if __name__ == "__main__":
    main()
