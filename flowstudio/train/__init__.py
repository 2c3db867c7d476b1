"""ONE trainer on accelerate (resume, TensorBoard, gradient accumulation, mixed precision, FSDP by an
accelerate config); the toy model (:mod:`flowstudio.worlds.train_shapes`), DualForce
(:mod:`flowstudio.avatar.training.train`) and distillation are its clients. See ``docs/training.md``.

* :mod:`.loop` -- :class:`Trainer`, :class:`Part`, :class:`StepContext`, :func:`loss_step`, :class:`Budget`
* :mod:`.checkpoint` -- where checkpoints live (:class:`LatestFile`, :class:`StepFolders`), their format
* :mod:`.data` -- the batch stream (a pure function of the index) and its split over processes
* :mod:`.tracking` -- TensorBoard scalars and sample images
"""

from flowstudio.train.checkpoint import LatestFile, StepFolders, atomic_save
from flowstudio.train.data import batch_stream, shard_batch
from flowstudio.train.loop import (
    Budget,
    FitResult,
    Part,
    StepContext,
    StopSignals,
    Trainer,
    TrainerConfig,
    constant,
    cosine_tail,
    end_distributed,
    loss_step,
    resolve_mixed_precision,
)
from flowstudio.train.tracking import RunLog, image_grid

__all__ = [
    "Budget",
    "FitResult",
    "LatestFile",
    "Part",
    "RunLog",
    "StepContext",
    "StepFolders",
    "StopSignals",
    "Trainer",
    "TrainerConfig",
    "atomic_save",
    "batch_stream",
    "constant",
    "cosine_tail",
    "end_distributed",
    "image_grid",
    "loss_step",
    "resolve_mixed_precision",
    "shard_batch",
]
