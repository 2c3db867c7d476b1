"""A bounded load on ``flowstudio serve`` over loopback: latency of status calls, jobs per minute,
429s, and that no job was lost or duplicated.

A real server (``flowstudio serve`` as a child process: uvicorn, the SQLite job store, one worker on
the packaged toy model) gets ``--requests`` calls, ``--concurrency`` at a time: a ``--submit``
fraction are submissions (each with its own ``Idempotency-Key``; a ``--resubmit`` fraction of those
repeat an earlier key with the same request, which must give the same job), the rest are status
polls of jobs submitted so far. The queue is bounded (``--max-queue``), so some submissions get 429.
After the load, every accepted job is waited for; then the job list must hold exactly the accepted
ids, each once.

Writes ``benchmarks/results/serve_load.{json,md}``.

    python benchmarks/serve_load.py [--requests 500] [--concurrency 50] [--steps 2]
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
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from flowstudio.serve.process import ServerProcess

TOKEN = "bench-token-0123456789abcdef"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _load(url: str, args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    job = {"kind": "generate", "prompt": "a red ball", "num_frames": 5, "height": 64, "width": 64}
    job["steps"] = args.steps
    headers = {"Authorization": f"Bearer {TOKEN}"}
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    accepted: dict[str, str] = {}  # idempotency key -> job id
    repeats: list[tuple[str, str, str]] = []  # key, first id, id of the repeat
    status_ms: list[float] = []
    submit_ms: list[float] = []
    codes: dict[str, int] = {}
    errors: list[str] = []
    transport: list[str] = []  # requests whose connection failed (no HTTP answer)
    gate = asyncio.Semaphore(args.concurrency)

    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60) as client:
        first = await client.post(
            "/v1/jobs", json={**job, "seed": 1_000_000}, headers={"Idempotency-Key": "k-seed"}
        )
        accepted["k-seed"] = first.json()["id"]

        async def one(index: int) -> None:
            async with gate:
                kind = "submit" if rng.random() < args.submit else "status"
                started = time.perf_counter()
                if kind == "submit":
                    repeat = accepted and rng.random() < args.resubmit
                    key = rng.choice(sorted(accepted)) if repeat else f"k{index}"
                    seed = 1_000_000 if key == "k-seed" else int(key[1:]) if repeat else index
                    body, key_header = {**job, "seed": seed}, {"Idempotency-Key": key}
                    try:
                        response = await client.post("/v1/jobs", json=body, headers=key_header)
                    except httpx.TransportError as error:
                        # the answer was lost: the key makes a retry safe (the same job, or none)
                        transport.append(f"submit {key}: {type(error).__name__}, retried")
                        response = await client.post("/v1/jobs", json=body, headers=key_header)
                    submit_ms.append((time.perf_counter() - started) * 1000)
                    if response.status_code == 202:
                        job_id = response.json()["id"]
                        if key in accepted:
                            repeats.append((key, accepted[key], job_id))
                        else:
                            accepted[key] = job_id
                else:
                    job_id = rng.choice(sorted(accepted.values()))
                    try:
                        response = await client.get(f"/v1/jobs/{job_id}")
                    except httpx.TransportError as error:
                        transport.append(f"status {job_id}: {type(error).__name__}")
                        return
                    status_ms.append((time.perf_counter() - started) * 1000)
                label = f"{kind} {response.status_code}"
                codes[label] = codes.get(label, 0) + 1
                if response.status_code >= 500 or (kind == "status" and response.status_code != 200):
                    errors.append(f"{label}: {response.text[:200]}")

        load_start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(args.requests)))
        load_seconds = time.perf_counter() - load_start

        # every accepted job finishes; then the list must be exactly the accepted ids
        ids = set(accepted.values())
        deadline = time.monotonic() + args.drain_timeout
        while True:
            listed = await _all_jobs(client)
            if all(j["status"] in ("succeeded", "failed", "cancelled") for j in listed) or (
                time.monotonic() > deadline
            ):
                break
            await asyncio.sleep(0.5)
    listed_ids = [j["id"] for j in listed]
    finished = [j for j in listed if j["status"] == "succeeded"]
    span = max(j["finished_at"] for j in finished) - min(j["started_at"] for j in finished)
    return {
        "load_seconds": round(load_seconds, 2),
        "requests_per_second": round(args.requests / load_seconds, 1),
        "status_calls": len(status_ms),
        "status_p50_ms": round(statistics.median(status_ms), 1),
        "status_p95_ms": round(_percentile(status_ms, 0.95), 1),
        "submissions": len(submit_ms),
        "submit_p50_ms": round(statistics.median(submit_ms), 1),
        "submit_p95_ms": round(_percentile(submit_ms, 0.95), 1),
        "accepted_jobs": len(ids),
        "resubmitted_same_key": len(repeats),
        "resubmits_given_the_same_job": sum(first == again for _, first, again in repeats),
        "responses": dict(sorted(codes.items())),
        "count_429": sum(n for label, n in codes.items() if label.endswith(" 429")),
        "jobs_succeeded": len(finished),
        "jobs_by_status": {
            s: sum(j["status"] == s for j in listed) for s in sorted({j["status"] for j in listed})
        },
        "worker_jobs_per_minute": round(len(finished) / span * 60, 1) if span > 0 else None,
        "lost": sorted(ids - set(listed_ids)),
        "unexpected": sorted(set(listed_ids) - ids),
        "duplicated": sorted({i for i in listed_ids if listed_ids.count(i) > 1}),
        "errors": errors[:20],
        "transport_errors": len(transport),
        "transport_error_examples": transport[:10],
    }


async def _all_jobs(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = []
    while True:
        page = (await client.get("/v1/jobs", params={"limit": 500, "offset": len(jobs)})).json()
        jobs += page["jobs"]
        if len(jobs) >= page["total"] or not page["jobs"]:
            return jobs


def _markdown(report: dict[str, Any]) -> str:
    s, r = report["settings"], report["results"]
    ok = not (r["lost"] or r["unexpected"] or r["duplicated"] or r["errors"])
    lines = [
        "# serve_load: a bounded load on `flowstudio serve` over loopback",
        "",
        f"`{report['command']}` on {report['machine']}; 1-minute load average "
        f"{report['load_average_1min']['before']} before, {report['load_average_1min']['after']} after "
        "(other work shared the machine: latencies are those of a busy core, not of an idle server).",
        "",
        f"{s['requests']} requests, {s['concurrency']} at a time: {s['submit']:.0%} submissions "
        f"({s['resubmit']:.0%} of them repeating an earlier Idempotency-Key), the rest status polls; "
        f"toy model, generate {s['steps']} steps, 5 frames 64x64; --max-queue {s['max_queue']}. "
        "Client and server share the CPUs listed.",
        "",
        "| measure | value |",
        "| --- | --- |",
        f"| status calls | {r['status_calls']} |",
        f"| status latency p50 / p95 | {r['status_p50_ms']} / {r['status_p95_ms']} ms |",
        f"| submission latency p50 / p95 | {r['submit_p50_ms']} / {r['submit_p95_ms']} ms |",
        f"| requests per second (whole load) | {r['requests_per_second']} |",
        f"| submissions / accepted jobs | {r['submissions']} / {r['accepted_jobs']} |",
        f"| 429 answers | {r['count_429']} |",
        f"| same-key resubmissions given the same job | "
        f"{r['resubmits_given_the_same_job']} of {r['resubmitted_same_key']} |",
        f"| jobs per minute (the worker, first start to last finish) | {r['worker_jobs_per_minute']} |",
        f"| jobs by status after draining | {r['jobs_by_status']} |",
        f"| lost / unexpected / duplicated jobs | {len(r['lost'])} / {len(r['unexpected'])} / "
        f"{len(r['duplicated'])} |",
        f"| 5xx or failed status calls | {len(r['errors'])} |",
        f"| requests without an HTTP answer (connection failed) | {r['transport_errors']} |",
        "",
        f"Responses: {r['responses']}.",
        "",
        "**Every accepted job was listed exactly once, none unexpected.**" if ok else "**CHECK FAILED.**",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--submit", type=float, default=0.2, help="fraction of requests that submit")
    parser.add_argument("--resubmit", type=float, default=0.1, help="fraction of submissions repeating a key")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--max-queue", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()

    load_before = os.getloadavg()
    folder = tempfile.mkdtemp(prefix="serve-load-")  # kept: its server.log, if something fails
    server_args = ["--db", f"{folder}/jobs.sqlite", "--max-queue", str(args.max_queue)]
    server_args += ["--max-per-token", "100000"]  # the queue bound is what this load measures
    log = Path(folder) / "server.log"
    with ServerProcess(server_args, log, env={"FLOWSTUDIO_TOKENS": f"bench:{TOKEN}"}) as server:
        results = asyncio.run(_load(server.url, args))
    load_after = os.getloadavg()
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    report = {
        "command": "python benchmarks/serve_load.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("out",)),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, run on CPUs {cpus}, "
        f"Python {platform.python_version()}",
        # other work on the machine shares the CPUs: the 1-minute load average says how much
        "load_average_1min": {"before": round(load_before[0], 2), "after": round(load_after[0], 2)},
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serve_load.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "serve_load.md").write_text(_markdown(report))
    print(_markdown(report))
    failed = results["lost"] or results["unexpected"] or results["duplicated"] or results["errors"]
    if failed or results["transport_errors"]:
        print(f"server log: {log}")
    else:
        shutil.rmtree(folder, ignore_errors=True)
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
