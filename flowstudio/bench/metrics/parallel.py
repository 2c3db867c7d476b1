"""Frame-parallel scoring: the per-frame work of the offline tier split over processes, same numbers.

:func:`prefill` computes, in ``workers`` processes over chunks of consecutive frames, the per-frame
intermediates the offline metrics then only reduce: the SSIM maps of the output against the source and
the ground truth, the squared error to the ground truth, the CIEDE2000 maps over the kept and edit
regions, the output's forward flow and the per-pair warp error and flicker (backward flow included), and
the source's flow. Each is the concatenation of per-frame (or per-frame-pair) results that do not depend
on the other frames, so it is the same array the one-process path makes; it is put in the case's cache
under the keys the metrics read, and the metrics' reductions (means over frames and regions) run as
before in this process. Each worker runs OpenCV and BLAS on one thread.

Chunks overlap by one frame for the flows (pair ``t`` needs frames ``t`` and ``t + 1``).

Workers start from a fork server: a script that scores with ``workers > 1`` needs the usual
``if __name__ == "__main__":`` guard. Measured on one core only (2 workers sharing it: ~0.5 s more than
one process on a 17-frame 480x832 case, the cost of moving ~240 MB of frames and maps through pipes);
the speed-up on several cores is unmeasured.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from flowstudio.metrics.inputs import Inputs

_POOLS: dict[int, ProcessPoolExecutor] = {}


def _init_worker() -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    import cv2

    cv2.setNumThreads(1)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # torch is optional here
        pass


def pool(workers: int) -> ProcessPoolExecutor:
    """A process pool of ``workers`` single-threaded workers, kept for later calls.

    Workers start from a fork server, not by forking this process: a fork of a process whose OpenMP or
    OpenCV thread pools are running (torch loaded, a model on the CPU) can deadlock in the child.
    """
    if workers not in _POOLS:
        context = multiprocessing.get_context("forkserver")
        _POOLS[workers] = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker)
    return _POOLS[workers]


def _chunk(job: dict[str, Any]) -> dict[str, Any]:
    """The intermediates of frames ``[0, n)`` of a chunk (flows: the pairs that start there)."""
    from flowstudio.bench.metrics import color, pixel, temporal

    n = job["n"]
    out = job["output"]
    mine = out[:n]
    result: dict[str, Any] = {}
    refs = {name: job[name][:n] for name in job["ssim"]}
    if refs:
        result["ssim_maps"] = pixel.ssim_maps_against(mine, refs)
    if "truth" in job:
        result["gt_error"] = pixel.squared_error_map(mine, job["truth"][:n])
    result["delta_e"] = {
        (ref, region): color.delta_e_map(mine, job[ref][:n], job[region][:n])
        for ref, region in job["delta_e"]
    }
    if job["flow"]:  # a one-frame chunk gives no pair: empty flows and lists
        flow = temporal.optical_flow(out)
        back = temporal.optical_flow(out, backward=True)
        result["flow"] = flow
        result["warp"] = temporal.warp_pairs(out, flow, back)
    if job["source_flow"]:
        result["source_flow"] = temporal.optical_flow(job["source"])
    return result


def _bounds(frames: int, workers: int) -> list[tuple[int, int]]:
    """``workers`` (or fewer) chunks of consecutive frames, as even as possible."""
    edges = np.linspace(0, frames, min(workers, frames) + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


def prefill(x: Inputs, workers: int) -> None:
    """Compute the per-frame intermediates of the offline tier of case ``x`` in ``workers`` processes."""
    from flowstudio.bench.metrics import content_cache, temporal
    from flowstudio.metrics.library import _shared

    output = x["output"]
    frames = output.shape[0]
    names = {"source", "truth"}
    ssim = [name for name in ("source", "truth") if _shared._wants(x, name)]
    delta_e = [
        (ref, region)
        for ref, region in (("source", "kept_region"), ("truth", "edit_region"))
        if x.has(ref) and x.has(region)
    ]
    source_key = _shared._key(x, "source") if x.has("source") else None
    need_source_flow = (
        x.has("source") and frames >= 2 and ("flow", source_key) not in content_cache.CACHE._items
    )
    jobs = []
    for start, stop in _bounds(frames, workers):
        end = min(stop + 1, frames)  # one frame more: the last pair of the chunk
        job: dict[str, Any] = {
            "n": stop - start,
            "output": output[start:end],
            "ssim": ssim,
            "delta_e": delta_e,
        }
        job["flow"] = True
        job["source_flow"] = need_source_flow
        for name in names:
            if x.has(name):
                job[name] = x[name][start:end]
        for _, region in delta_e:
            job[region] = x[region][start:end]
        jobs.append(job)
    parts = list(pool(workers).map(_chunk, jobs))
    if ssim:
        x.cached("ssim_maps", lambda: {n: np.concatenate([p["ssim_maps"][n] for p in parts]) for n in ssim})
    if x.has("truth"):
        x.cached("gt_error", lambda: np.concatenate([p["gt_error"] for p in parts]))
    for ref, region in delta_e:
        key = _shared.delta_e_key(ref, region)
        x.cached(
            key, lambda ref=ref, region=region: np.concatenate([p["delta_e"][ref, region] for p in parts])
        )
    if frames >= 2:
        x.cached("flow", lambda: np.concatenate([p["flow"] for p in parts]))
        errors = [e for p in parts for e in p["warp"][0]]
        flickers = [f for p in parts for f in p["warp"][1]]
        x.cached("warp_stats", lambda: temporal.warp_summary(errors, flickers))
        if need_source_flow:
            flow = np.concatenate([p["source_flow"] for p in parts])
            content_cache.CACHE.get("flow", source_key, lambda: flow)
