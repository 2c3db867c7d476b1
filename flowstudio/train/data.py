"""The batch stream of a run: batch ``i`` is a pure function of ``i``, made inline or by worker processes.

Why a pure function and not a shuffled ``DataLoader``: a run resumed at step ``k`` must see exactly the
batches an uninterrupted run sees from step ``k`` on, and the only state that needs is ``k`` itself.
Under several processes each one takes its own slice of the global batch (:func:`shard_batch`), so
``N`` processes with batch ``B / N`` each train on the same rows as one process with batch ``B``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import torch

from flowstudio.errors import InputError

BatchFn = Callable[[int], Any]


class _IndexedBatches(torch.utils.data.Dataset):
    """Item ``i`` is the batch of index ``start + i``, so workers can make batches in any process."""

    def __init__(self, make_batch: BatchFn, start: int, stop: int) -> None:
        self.make_batch, self.start, self.stop = make_batch, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, i: int) -> Any:
        return self.make_batch(self.start + i)


def _worker_init(_: int) -> None:
    import cv2

    torch.set_num_threads(1)  # workers render with numpy/OpenCV; torch threads would only spin
    cv2.setNumThreads(1)


def batch_stream(make_batch: BatchFn, start: int, stop: int, workers: int = 0) -> Iterator[Any]:
    """Batches of indices ``start..stop-1`` in order, made inline or by ``workers`` processes.

    Workers are spawned, not forked: a fork of a process that already ran torch (and OpenMP, tqdm or
    loader threads) can deadlock in the child (seen: a training run after another in one pytest
    process hung forever). ``make_batch`` must therefore be picklable (a module-level function or a
    ``functools.partial`` of one)."""
    if workers <= 0 or stop <= start:
        return (make_batch(i) for i in range(start, stop))
    loader = torch.utils.data.DataLoader(
        _IndexedBatches(make_batch, start, stop),
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        prefetch_factor=4,
        worker_init_fn=_worker_init,
        multiprocessing_context="spawn",
    )
    return iter(loader)


def shard_batch(batch: Any, rank: int, world: int) -> Any:
    """Process ``rank``'s contiguous slice of a global batch (rows along dim 0 of every tensor).

    Dicts, lists, tuples and dataclasses are sliced element-wise; 0-dim tensors and other objects
    (seeds, generators, strings) are shared by all processes unchanged. The identity when ``world == 1``."""
    if world == 1:
        return batch
    if isinstance(batch, torch.Tensor):
        if batch.dim() == 0:
            return batch
        if batch.shape[0] % world:
            raise InputError(
                f"a batch of {batch.shape[0]} rows cannot be split over {world} processes; "
                f"use a batch size divisible by {world}"
            )
        rows = batch.shape[0] // world
        return batch[rank * rows : (rank + 1) * rows]
    if isinstance(batch, dict):
        return {k: shard_batch(v, rank, world) for k, v in batch.items()}
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        fields = {f.name: shard_batch(getattr(batch, f.name), rank, world) for f in dataclasses.fields(batch)}
        return dataclasses.replace(batch, **fields)
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a NamedTuple takes its fields positionally
        return type(batch)(*(shard_batch(v, rank, world) for v in batch))
    if isinstance(batch, list | tuple):
        return type(batch)(shard_batch(v, rank, world) for v in batch)
    return batch
