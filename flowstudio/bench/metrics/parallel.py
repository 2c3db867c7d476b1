"""Frame-parallel scoring: the per-frame work of the offline tier split over processes, same numbers.

:func:`prefill` computes, in ``workers`` processes over chunks of consecutive frames, the per-frame
intermediates of the offline metrics: the SSIM maps of the output against the source and the ground
truth, the squared error to the ground truth and to the source, the CIEDE2000 maps over the kept and edit
regions, the output's forward flow and the per-pair warp error and flicker (backward flow included), and
the source's flow. Each is the concatenation of per-frame (or per-frame-pair) results that do not depend
on the other frames, so it is the same array the one-process path makes; it is put in the case's cache
under the keys the metrics read. The workers also reduce the maps to the per-frame values the metrics
average (:data:`_REDUCTIONS`: :func:`~flowstudio.bench.metrics.pixel.frame_means` and ``frame_psnrs``
over the same regions), so this process only averages lists; the motion end-point error (one mean over
every pixel of every pair) is still taken here from the flows. Each worker runs OpenCV and BLAS on one
thread. The flows are submitted first: the workers compute them while this process reads, checks and
hashes the ground truth and the masks that the maps need.

Chunks overlap by one frame for the flows (pair ``t`` needs frames ``t`` and ``t + 1``).

No large array goes through a pipe: the inputs and the maps live in one shared-memory file (an
:class:`_Arena` under ``/dev/shm``), which this process fills with the inputs and each worker maps and
writes its frames of the results into; this process then reads the maps where they lie (no copy).
Pickling them (~240 MB per 17-frame 480x832 case) cost ~0.5 s, as much as a core's share of the work.
Arenas are kept for the next case (fresh shared memory costs ~2 us a page to fault in) and reused only
once no view of them is left; the source's flow gets an arena of its own, which the content cache then
holds. They are ``/dev/shm/flowstudio-arena-*`` files, removed at exit (a killed process leaves them).

Chunk ``i`` always goes to worker ``i`` (one single-process pool per worker), so a worker sees the same
frames of a case again when the next method is scored on it: like the one-process path, it keeps what
does not depend on the output (its frames' SSIM moments of the source and ground truth, their CIELAB
over the regions, the source's flow) in its own :mod:`~flowstudio.bench.metrics.content_cache`, keyed by
the content hash this process computed for the whole clip and the chunk's frame range.
:func:`clear_workers` empties those caches (a cold start).

Workers start from a fork server: a script that scores with ``workers > 1`` needs the usual
``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import atexit
import contextlib
import math
import mmap
import multiprocessing
import os
import sys
import tempfile
import threading
from concurrent.futures import Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np

from flowstudio.metrics.inputs import Inputs

_POOLS: dict[int, list[ProcessPoolExecutor]] = {}
_ALIGN = 4096  # arrays start on page boundaries
Layout = dict[str, tuple[int, int, tuple[int, ...], str]]  # name -> (arena index, byte offset, shape, dtype)


def _init_worker() -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    import cv2

    cv2.setNumThreads(1)
    from flowstudio.bench.metrics.memory import keep_freed_memory

    keep_freed_memory()  # a worker allocates and frees the same arrays case after case
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # torch is optional here
        pass


def pool(workers: int) -> list[ProcessPoolExecutor]:
    """``workers`` single-process pools of single-threaded workers, kept for later calls.

    One pool per worker (not one pool of ``workers``) so that chunk ``i`` always runs in the same
    process, whose cache then holds that chunk's reference intermediates. Workers start from a fork
    server, not by forking this process: a fork of a process whose OpenMP or OpenCV thread pools are
    running (torch loaded, a model on the CPU) can deadlock in the child.
    """
    if workers not in _POOLS:
        context = multiprocessing.get_context("forkserver")
        _POOLS[workers] = [
            ProcessPoolExecutor(1, mp_context=context, initializer=_init_worker) for _ in range(workers)
        ]
    return _POOLS[workers]


def _clear_cache() -> None:
    from flowstudio.bench.metrics import content_cache

    content_cache.clear()


def clear_workers() -> None:
    """Empty the content caches of every started worker (a cold start for the next :func:`prefill`)."""
    for pools in _POOLS.values():
        for executor in [p.submit(_clear_cache) for p in pools]:
            executor.result()


def _shared_dir() -> str:
    """``/dev/shm`` (memory) where there is one, else the temporary folder."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else tempfile.gettempdir()


class _Arena:
    """One memory-mapped file shared by this process and the workers, holding named arrays.

    Arenas are kept and reused, mapped in every process: a fresh page of shared memory costs ~2 us to
    fault in (~0.2 s for the ~300 MB of a 17-frame 480x832 case, in the workers and here), a page
    already mapped nothing. An arena is reused only when no array view of it is left (the maps of the
    case that used it are gone).
    """

    def __init__(self, path: str, size: int, buffer: mmap.mmap) -> None:
        self.path, self.size, self._buffer = path, size, buffer
        self.owner = os.getpid()  # a forked child inherits the list, not the file: it must not remove it

    @classmethod
    def create(cls, size: int) -> _Arena:
        fd, path = tempfile.mkstemp(prefix="flowstudio-arena-", dir=_shared_dir())
        try:
            os.ftruncate(fd, size)
            buffer = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        return cls(path, size, buffer)

    @classmethod
    def attach(cls, path: str, size: int) -> _Arena:
        with open(path, "r+b") as file:
            return cls(path, size, mmap.mmap(file.fileno(), size))

    def view(self, offset: int, shape: tuple[int, ...], dtype: str) -> np.ndarray:
        """The array at ``offset`` (the view keeps the mapping alive as long as it lives)."""
        return np.frombuffer(self._buffer, dtype, math.prod(shape), offset).reshape(shape)

    def in_use(self) -> bool:
        # every array made by view() holds a reference to the buffer (its views hold that array);
        # the two others are this object's and getrefcount's argument
        return sys.getrefcount(self._buffer) > 2

    def drop(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # the memory goes when the last mapping (here, in a worker) does


_ARENAS: list[_Arena] = []  # this process's arenas, kept for reuse
_KEEP_BYTES = 2**30  # arenas beyond this total are dropped once free (a 17-frame 480x832 case: ~0.3 GB)
_ATTACHED: dict[str, _Arena] = {}  # in a worker: the arenas it has mapped, by path
_LOCK = threading.Lock()
#: Submit the flows before reading the ground truth and masks (so the workers start while this process
#: reads, checks and hashes them); False fills every input first.
_FLOWS_FIRST = True


def _arena(size: int, taken: list[_Arena]) -> _Arena:
    """A free arena of at least ``size`` bytes, not one of ``taken`` (a new one when none is free); drops
    free ones beyond :data:`_KEEP_BYTES`."""
    mine = [a for a in _ARENAS if a.owner == os.getpid()]  # a forked child shares its parent's mappings
    free = [a for a in mine if not a.in_use() and all(a is not t for t in taken)]
    fits = [a for a in free if a.size >= size]
    arena = min(fits, key=lambda a: a.size) if fits else _Arena.create(-(-size // _ALIGN) * _ALIGN)
    if arena not in _ARENAS:
        _ARENAS.append(arena)
    for other in sorted(free, key=lambda a: a.size):
        if sum(a.size for a in _ARENAS if a.owner == os.getpid()) <= _KEEP_BYTES:
            break
        if other is not arena:
            other.drop()
            _ARENAS.remove(other)
    return arena


@atexit.register
def _drop_arenas() -> None:
    for arena in _ARENAS:
        if arena.owner == os.getpid():
            arena.drop()


def _layout(groups: list[dict[str, tuple[tuple[int, ...], Any]]]) -> tuple[Layout, list[int]]:
    """Where the arrays of each group ``{name: (shape, dtype)}`` lie in arena ``i`` of the group (page-
    aligned), and the bytes each arena needs."""
    layout: Layout = {}
    sizes = []
    for index, specs in enumerate(groups):
        size = 0
        for name, (shape, dtype) in specs.items():
            layout[name] = (index, size, tuple(shape), np.dtype(dtype).str)
            size += -(-math.prod(shape) * np.dtype(dtype).itemsize // _ALIGN) * _ALIGN
        sizes.append(max(size, _ALIGN))
    return layout, sizes


def _attach(path: str, size: int, live: list[str]) -> _Arena:
    """In a worker: the arena at ``path``, mapped once; arenas no longer ``live`` in the parent are let go."""
    for gone in [p for p in _ATTACHED if p not in live]:
        del _ATTACHED[gone]
    if path not in _ATTACHED or _ATTACHED[path].size != size:
        _ATTACHED[path] = _Arena.attach(path, size)
    return _ATTACHED[path]


def _viewer(arenas: list[_Arena], layout: Layout) -> Any:
    """``array(name)``: the named array of ``layout`` in its arena."""

    def array(name: str) -> np.ndarray:
        index, offset, shape, dtype = layout[name]
        return arenas[index].view(offset, shape, dtype)

    return array


def _job_arrays(job: dict[str, Any]) -> tuple[Any, Any]:
    """In a worker: ``array(name)`` over the job's arenas, and ``cached(kind, names, compute)`` in this
    worker's content cache, keyed by the parent's content hash of each named whole input and the
    chunk's frames."""
    from flowstudio.bench.metrics import content_cache

    array = _viewer([_attach(path, size, job["live"]) for path, size in job["arenas"]], job["layout"])
    span = f"@{job['start']}:{job.get('stop')}:{job.get('end')}"

    def cached(kind: str, names: list[str], compute: Any) -> Any:
        return content_cache.CACHE.get(kind, "+".join(job["keys"][n] for n in names) + span, compute)

    return array, cached


def _flows(job: dict[str, Any]) -> tuple[list[float], list[float]]:
    """The flows of the pairs that start in frames ``[start, stop)`` into the arena (and the source's,
    when asked); returns the pairs' warp errors and flickers."""
    from flowstudio.bench.metrics import temporal

    array, cached = _job_arrays(job)
    start, end = job["start"], job["end"]
    if end - start < 2:  # a one-frame chunk (the clip's last) has no pair
        return [], []
    out = array("output")[start:end]
    flow = temporal.optical_flow(out)
    array("flow")[start : end - 1] = flow
    if job["source_flow"]:
        source = array("source")[start:end]
        array("source_flow")[start : end - 1] = cached(
            "flow", ["source"], lambda: temporal.optical_flow(source)
        )
    return temporal.warp_pairs(out, flow, temporal.optical_flow(out, backward=True))


#: The per-frame values the offline metrics average, reduced in the workers from the maps:
#: ``{name: (kind, map, region)}`` (names as :func:`flowstudio.metrics.library._shared.frames` keys them;
#: region ``None``: the whole frame, ``border``: its interior, ``~r``: outside r, ``eroded:r``: r eroded
#: by the SSIM window radius, as ``bg_ssim`` takes it). The CIEDE2000 ones are named by ``delta_e_key``.
_REDUCTIONS = {
    "bg_psnr": ("psnr", "bg_error", "kept_region"),
    "bg_ssim": ("mean", "ssim:source", "eroded:kept_region"),
    "delta_e_map:source:kept_region": ("mean", "delta_e:source:kept_region", "kept_region"),
    "gt_psnr": ("psnr", "gt_error", None),
    "gt_ssim": ("mean", "ssim:truth", "border"),
    "gt_psnr_edit": ("psnr", "gt_error", "edit_region"),
    "gt_ssim_edit": ("mean", "ssim:truth", "edit_region"),
    "gt_ssim_outside": ("mean", "ssim:truth", "~edit_region"),
    "delta_e_map:truth:edit_region": ("mean", "delta_e:truth:edit_region", "edit_region"),
}


def _reductions(layout: Layout) -> list[str]:
    """The reductions whose map and region the arena holds."""
    return [
        name
        for name, (_, maps, region) in _REDUCTIONS.items()
        if maps in layout and (region in (None, "border") or region.split(":")[-1].lstrip("~") in layout)
    ]


def _reduce(array: Any, frames: slice, name: str) -> list[float | None]:
    """Reduction ``name`` of :data:`_REDUCTIONS` over ``frames``: the metric's own per-frame values."""
    from flowstudio.bench.metrics import pixel
    from flowstudio.metrics.library.edit_background import erode

    kind, maps, region = _REDUCTIONS[name]
    values = array(maps)[frames]
    if kind == "psnr":
        return pixel.frame_psnrs(values, None if region is None else array(region)[frames])
    if region == "border":
        return pixel.frame_means(values, None, border=pixel.SSIM_BORDER)
    if region.startswith("~"):
        return pixel.frame_means(values, ~array(region[1:])[frames])
    if region.startswith("eroded:"):
        return pixel.frame_means(values, erode(array(region.split(":")[1])[frames], pixel.SSIM_BORDER))
    return pixel.frame_means(values, array(region)[frames])


def _maps(job: dict[str, Any]) -> dict[str, list[float | None]]:
    """Frames ``[start, stop)`` of the SSIM, squared-error and CIEDE2000 maps into the arena; returns
    their per-frame reductions (:data:`_REDUCTIONS`), so that this process only averages them."""
    from flowstudio.bench.metrics import color, pixel

    array, cached = _job_arrays(job)
    frames = slice(job["start"], job["stop"])
    mine = array("output")[frames]
    if job["ssim"]:
        refs = {name: array(name)[frames] for name in job["ssim"]}
        moments = {
            name: cached("ssim_moments", [name], lambda ref=ref: pixel.reference_moments(ref))
            for name, ref in refs.items()
        }
        for name, maps in pixel.ssim_maps_against(mine, refs, moments).items():
            array(f"ssim:{name}")[frames] = maps
    for name, ref in (("gt_error", "truth"), ("bg_error", "source")):
        if name in job["layout"]:
            array(name)[frames] = pixel.squared_error_map(mine, array(ref)[frames])
    for ref, region in job["delta_e"]:
        clip, inside = array(ref)[frames], array(region)[frames]
        lab = cached("lab", [ref, region], lambda clip=clip, inside=inside: color.region_lab(clip, inside))
        array(f"delta_e:{ref}:{region}")[frames] = color.delta_e_map(mine, clip, inside, lab)
    return {name: _reduce(array, frames, name) for name in _reductions(job["layout"])}


def _bounds(frames: int, workers: int) -> list[tuple[int, int]]:
    """``workers`` (or fewer) chunks of consecutive frames, as even as possible."""
    edges = np.linspace(0, frames, min(workers, frames) + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


def _pair_bounds(frames: int, maps: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The frame pairs (flows, warp) of each worker, consecutive, so that its maps and pairs together
    take about as long as every other worker's: a frame's maps cost about two pairs (measured ~1.7 warm,
    ~1.9 cold at 480x832), so a worker with a frame more of maps gets two pairs fewer (17 frames, 2
    workers: maps 8 + 9 frames, pairs 9 + 7). A worker may get none."""
    pairs = max(frames - 1, 0)
    units = 2 * frames + pairs
    edges = [0]
    for i, (_, stop) in enumerate(maps):
        target = round(units * (i + 1) / len(maps) - 2 * stop)
        edges.append(pairs if i == len(maps) - 1 else min(max(target, edges[-1]), pairs))
    return list(zip(edges[:-1], edges[1:], strict=True))


def _specs(
    x: Inputs, ssim: list[str], delta_e: list[tuple[str, str]], errors: list[str], source_flow: bool
) -> tuple[list[dict[str, tuple[tuple[int, ...], Any]]], list[str]]:
    """The arrays ``{name: (shape, dtype)}`` of each arena, and the names of the inputs among them.

    The first arena holds the inputs the workers read, then the maps they write; the second, when the
    source's flow is computed, that flow alone: it goes to the content cache as it is (no copy), and
    only keeps that arena from being reused while the cache holds it.
    """
    output = x["output"]
    frames, height, width = output.shape[:3]
    maps = (frames, height, width)
    inputs = {"output", *ssim, *(n for pair in delta_e for n in pair)}
    inputs.update({"gt_error": "truth", "bg_error": "source"}[name] for name in errors)
    if source_flow:
        inputs.add("source")
    # shapes known without reading the files (the clips are the output's shape, the regions its frames')
    specs = {
        name: (maps, bool) if name.endswith("_region") else (output.shape, np.uint8)
        for name in sorted(inputs)
    }
    specs.update({f"ssim:{name}": (maps, np.float32) for name in ssim})
    specs.update({name: (maps, np.float32) for name in errors})
    specs.update({f"delta_e:{ref}:{region}": (maps, np.float32) for ref, region in delta_e})
    groups = [specs]
    if frames >= 2:
        specs["flow"] = ((frames - 1, height, width, 2), np.float32)
        if source_flow:
            groups.append({"source_flow": ((frames - 1, height, width, 2), np.float32)})
    return groups, sorted(inputs)


def _fill(array: Any, x: Inputs, names: list[str]) -> None:
    """Copy inputs ``names`` of ``x`` into the arena (after checking their shapes)."""
    for name in names:
        value, target = x[name], array(name)
        if value.shape != target.shape:
            raise ValueError(f"{name} is {value.shape}, the output {target.shape}: they must match")
        target[...] = value


def prefill(x: Inputs, workers: int) -> None:
    """Compute the per-frame intermediates of the offline tier of case ``x`` in ``workers`` processes."""
    with _LOCK:  # one case at a time: the workers are shared, and an arena must not be handed out twice
        _prefill(x, workers)


def _prefill(x: Inputs, workers: int) -> None:
    from flowstudio.bench.metrics import content_cache, temporal
    from flowstudio.metrics.library import _shared

    output = x["output"]
    frames = output.shape[0]
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
    errors = [name for name, ref in (("gt_error", "truth"), ("bg_error", "source")) if x.has(ref)]
    if not x.has("kept_region"):
        errors = [name for name in errors if name != "bg_error"]  # only bg_psnr needs it
    groups, inputs = _specs(x, ssim, delta_e, errors, need_source_flow)
    layout, sizes = _layout(groups)
    arenas: list[_Arena] = []
    for size in sizes:
        arenas.append(_arena(size, arenas))
    array = _viewer(arenas, layout)
    common = {
        "arenas": [(arena.path, arena.size) for arena in arenas],
        "live": [arena.path for arena in _ARENAS],
        "layout": layout,
    }
    chunks = [{**common, "start": a, "stop": b} for a, b in _bounds(frames, workers)]
    # pairs [a, b) need frames [a, b + 1)
    pairs = [{**common, "start": a, "end": b + 1} for a, b in _pair_bounds(frames, _bounds(frames, workers))]
    executors = pool(workers)
    submitted: list[Future] = []
    try:
        # The flows need only the output (and the source): they start first, and the workers compute
        # them while this process reads, checks and hashes the ground truth and the masks for the maps.
        first = ["output", "source"] if need_source_flow else ["output"]
        _fill(array, x, first)
        if not _FLOWS_FIRST:
            _fill(array, x, [name for name in inputs if name not in first])
        if frames >= 2:
            flow_job = {"source_flow": need_source_flow, "keys": {"source": source_key}}
            submitted += [executors[i].submit(_flows, {**job, **flow_job}) for i, job in enumerate(pairs)]
        if _FLOWS_FIRST:
            _fill(array, x, [name for name in inputs if name not in first])
        map_job = {
            "ssim": ssim,
            "delta_e": delta_e,
            "keys": {n: _shared._key(x, n) for n in inputs if n != "output"},
        }
        submitted += [executors[i].submit(_maps, {**job, **map_job}) for i, job in enumerate(chunks)]
        results = [future.result() for future in submitted]
    finally:
        wait(submitted)  # on an error too: no worker may still write into an arena handed out again
    parts = results[: len(pairs)] if frames >= 2 else []
    for name in _reductions(layout):  # the per-frame values, in frame order
        per_frame = [v for reduced in results[-len(chunks) :] for v in reduced[name]]
        _shared.frames(x, name, lambda per_frame=per_frame: per_frame)
    if ssim:
        x.cached("ssim_maps", lambda: {name: array(f"ssim:{name}") for name in ssim})
    for name in errors:
        x.cached(name, lambda name=name: array(name))
    for ref, region in delta_e:
        x.cached(_shared.delta_e_key(ref, region), lambda key=f"delta_e:{ref}:{region}": array(key))
    if frames >= 2:
        x.cached("flow", lambda: array("flow"))
        warp_errors = [e for p in parts for e in p[0]]
        flickers = [f for p in parts for f in p[1]]
        x.cached("warp_stats", lambda: temporal.warp_summary(warp_errors, flickers))
        if need_source_flow:
            content_cache.CACHE.get("flow", source_key, lambda: array("source_flow"))
