"""ONE training loop on HuggingFace accelerate, for the toy model, DualForce and distillation.

A run is a set of named :class:`Part` s (a model with its optimizer and learning-rate schedule), a
batch function (batch ``i`` is a pure function of ``i``) and a step function. :meth:`Trainer.fit` owns
everything around the step: resume, the batch stream, LR, progress, TensorBoard, held-out evaluations,
sample images, checkpoints and a time/step budget. The step function owns the optimisation of one
step, so several optimizers with several updates per step fit (DMD: ``critic_steps`` critic updates,
then one generator update)::

    def dmd_step(ctx: StepContext, batches: list[DMDBatch]) -> dict[str, torch.Tensor]:
        for k in range(critic_steps):
            critic = ctx.accumulate("critic", [b.critic[k] for b in batches], critic_loss)
        student = ctx.accumulate("generator", [b.student for b in batches], generator_loss)
        return {"critic": critic["loss"], "generator": student["loss"]}

The common one-model case is :func:`loss_step` (``loss_fn(model, batch) -> loss``).

Rules that keep a run correct under DDP/FSDP and bit-identical after resume:

* Loss functions get the *prepared* module (``ctx.models[name]``, the DDP/FSDP wrapper) and must
  call it: calling the bare module (``accelerator.unwrap_model``) skips the wrapper's gradient
  synchronisation. Work that is not the module's ``forward`` (a VAE's ``encode`` + ``decode``) goes
  into a small ``nn.Module`` given as :attr:`Part.forward`.
* Batches and noise come from the batch function of the step (seeded by the step), not from global
  random state; global RNG states are checkpointed anyway, for modules that draw from them (dropout).
* The LR is a pure function of the step (:attr:`Part.lr`), so the step alone restores the schedule.

Gradient accumulation: a step is ``grad_accum`` micro-batches, ``make_batch(step * grad_accum + j)``
(with ``grad_accum=1`` the batch of step ``k`` is ``make_batch(k)``). Under ``N`` processes each takes
its ``1/N`` slice of every micro-batch (:func:`~flowstudio.train.data.shard_batch`) and gradients are
averaged, so a mean-over-rows loss trains as one process with the whole batch.

Mixed precision by device (``mixed_precision="auto"``): bf16 autocast on a CUDA device that supports
it, full precision otherwise (a client may still autocast a forward itself, as the toy VAE's
``vae_autocast`` does on CPU). FSDP and multi-GPU come from an accelerate config file:
``accelerate launch --config_file configs/dualforce/accelerate_fsdp.yaml -m ...`` (docs/training.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from flowstudio.errors import InputError
from flowstudio.train import checkpoint as ckpt
from flowstudio.train.data import BatchFn, batch_stream, shard_batch
from flowstudio.train.tracking import RunLog

logger = logging.getLogger(__name__)

MIXED_PRECISION = ("auto", "no", "bf16", "fp16")


@dataclass
class Budget:
    """Stops a run early (state saved) after ``max_steps`` optimisation steps or ``seconds`` of wall time,
    counted over every :meth:`Trainer.fit` it is given; the next invocation resumes where this one stopped."""

    max_steps: int | None = None
    seconds: float | None = None
    steps_done: int = 0
    started: float = dataclasses.field(default_factory=time.perf_counter)

    def exhausted(self) -> bool:
        if self.max_steps is not None and self.steps_done >= self.max_steps:
            return True
        return self.seconds is not None and time.perf_counter() - self.started >= self.seconds


@dataclass
class Part:
    """One trained model: its weights (``model``: what is checkpointed), optimizer and LR schedule.

    ``lr(step)``: the learning rate of step ``step`` (a pure function: resume needs only the step);
    ``None`` leaves the optimizer's own. ``forward``: the module the step calls when it is not ``model``
    itself, e.g. a loss module holding ``model`` as a submodule (same parameters, same order).
    ``ema_decay``: > 0 keeps an exponential moving average of ``model``'s weights, updated after every
    step (``ema <- decay * ema + (1 - decay) * model``), checkpointed with the run and given by
    :meth:`Trainer.ema`; it starts from the weights the run starts from (no bias correction: at decay
    0.999 the start weighs 0.999**steps, 5e-3 after 5000 steps). Not under FSDP (sharded weights)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    lr: Callable[[int], float] | None = None
    forward: torch.nn.Module | None = None
    ema_decay: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.ema_decay < 1.0:
            raise InputError(f"ema_decay must be in [0, 1), got {self.ema_decay}")


def constant(lr: float) -> Callable[[int], float]:
    """A constant learning-rate schedule."""
    return lambda step: lr


def cosine_tail(base: float, steps: int, decay_fraction: float, floor: float = 0.1) -> Callable[[int], float]:
    """Constant ``base``, then a cosine down to ``floor * base`` over the last ``decay_fraction`` of
    ``steps`` (0: constant throughout). A pure function of the step, so a resumed run stays bit-identical,
    and a constant-rate prefix can be extended by a later run with the tail."""
    if not 0.0 <= decay_fraction <= 1.0:
        raise ValueError(f"decay_fraction must be in [0, 1], got {decay_fraction}")
    decay_steps = int(round(steps * decay_fraction))
    start = steps - decay_steps

    def lr(step: int) -> float:
        if decay_steps <= 0 or step < start:
            return base
        progress = (step - start) / decay_steps
        return base * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress)))

    return lr


@dataclass(frozen=True)
class TrainerConfig:
    """Settings of :meth:`Trainer.fit` (the client's own settings stay in the client's config)."""

    name: str  # progress-bar label
    steps: int  # optimisation steps of the whole run (a resumed run continues to this)
    grad_accum: int = 1  # micro-batches per optimisation step
    grad_clip: float | None = 1.0  # max global gradient norm per part; None: no clipping
    mixed_precision: str = "auto"  # "auto" (bf16 on CUDA when supported, else "no"), "no", "bf16", "fp16"
    checkpoint_every: int = 200  # also at the last step and when the budget stops the run
    log_every: int = 20  # progress-bar loss: mean of the last `log_every` steps
    eval_every: int = 0  # held-out evaluation every N steps and at the last step (0: off)
    eval_name: str = "held_out"  # TensorBoard tag `eval/<eval_name>` of a float evaluation
    sample_every: int = 0  # sample image every N steps and at the last step (0: off)
    data_workers: int = 0  # processes that make batches ahead of the optimiser (0: inline)
    progress: bool = True
    logdir: Path | None = None  # TensorBoard event folder (None: no TensorBoard)

    def __post_init__(self) -> None:
        if self.mixed_precision not in MIXED_PRECISION:
            raise InputError(
                f"mixed_precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}"
            )
        if self.grad_accum < 1:
            raise InputError(f"grad_accum must be >= 1, got {self.grad_accum}")
        if self.checkpoint_every < 1 or self.log_every < 1:
            raise InputError("checkpoint_every and log_every must be >= 1")


def resolve_mixed_precision(choice: str, cpu: bool) -> str:
    """``"auto"``: bf16 where a CUDA device supports it, full precision (``"no"``) elsewhere."""
    if choice != "auto":
        return choice
    if not cpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "no"


@dataclass
class FitResult:
    """``history``: each metric per step over the whole run (resumed steps included); ``evals``:
    ``[step, value]`` pairs; ``finished``: False when the budget stopped the run; ``start``: the step
    this invocation began at."""

    history: dict[str, list[float]]
    evals: list[list[Any]]
    finished: bool
    start: int
    step: int
    interrupted: str | None = None  # the signal that stopped the run ("SIGTERM", "SIGINT"), if one did


class StopSignals:
    """SIGINT and SIGTERM while a run fits: the step under way finishes, the state is saved and
    :meth:`Trainer.fit` returns unfinished, as when a budget runs out; a second signal has its usual
    effect at once. Why: a scheduler's preemption (SIGTERM) or a Ctrl-C would otherwise lose every
    step since the last checkpoint. Handlers are installed only in the main thread (Python's rule) and
    restored on exit; under several processes the main process's signal decides for all."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, name: str) -> None:
        self.name = name
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for number in self.SIGNALS:
                self._previous[number] = signal.getsignal(number)
                signal.signal(number, self._handle)
        return self

    def _handle(self, number: int, frame: Any) -> None:
        if self.received is not None:  # asked twice: stop now, the usual way
            signal.signal(number, self._previous.get(number, signal.SIG_DFL))
            signal.raise_signal(number)
            return
        self.received = signal.Signals(number).name
        logger.warning(
            "%s: %s received; finishing this step, saving the state, then stopping (again: stop now)",
            self.name,
            self.received,
        )

    def __exit__(self, *exc: Any) -> None:
        for number, previous in self._previous.items():
            signal.signal(number, previous)
        self._previous.clear()


LossFn = Callable[[torch.nn.Module, Any], "torch.Tensor | Mapping[str, torch.Tensor]"]


class StepContext:
    """What a step function sees: the prepared modules and the gradient bookkeeping of one step."""

    def __init__(self, trainer: Trainer, step: int) -> None:
        self.trainer = trainer
        self.step = step
        self.accelerator = trainer.accelerator
        self.models = trainer.models
        self.device = trainer.device
        self.process_index = trainer.accelerator.process_index
        self.num_processes = trainer.accelerator.num_processes

    def accumulate(
        self, name: str, batches: list[Any], loss_fn: LossFn, loss_key: str = "loss"
    ) -> dict[str, torch.Tensor]:
        """One optimizer update of part ``name`` over micro-``batches``: ``loss_fn(module, batch)`` on each
        (gradient sync only on the last), then :meth:`update`. ``loss_fn`` returns the loss or a dict of
        terms whose ``loss_key`` is backpropagated; returns every term's mean over the micro-batches
        (detached)."""
        model, n = self.models[name], len(batches)
        # from zero: another part's loss may have left gradients here (a generator loss through the critic)
        self.trainer.optimizers[name].zero_grad(set_to_none=True)
        means: dict[str, torch.Tensor] = {}
        for i, batch in enumerate(batches):
            last = i == n - 1
            with contextlib.nullcontext() if last else self.accelerator.no_sync(model):
                out = loss_fn(model, batch)
                terms = dict(out) if isinstance(out, Mapping) else {loss_key: out}
                self.accelerator.backward(terms[loss_key] / n if n > 1 else terms[loss_key])
            for key, value in terms.items():
                value = value.detach() if n == 1 else value.detach() / n
                means[key] = value if key not in means else means[key] + value
        self.update(name)
        return means

    def update(self, name: str) -> None:
        """Clip part ``name``'s gradients (``grad_clip``), step its optimizer, zero its gradients."""
        clip = self.trainer.config.grad_clip
        if clip:
            self.accelerator.clip_grad_norm_(self.models[name].parameters(), clip)
        optimizer = self.trainer.optimizers[name]
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


StepFn = Callable[[StepContext, list[Any]], Mapping[str, torch.Tensor]]


def end_distributed() -> None:
    """Tear down the process group a launcher made, once, when a process's training is over.

    Without it gloo's worker threads are still alive at interpreter exit and a rank can abort with
    "terminate called without an active exception" after a run that finished. Not done per
    :class:`Trainer`: one process may run several trainers (the toy model's VAE, then DiT stages).
    A no-op when no process group exists (one process)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()  # no rank leaves while another still sends
        torch.distributed.destroy_process_group()


def loss_step(loss_fn: LossFn, part: str = "model", loss_key: str = "loss") -> StepFn:
    """The step of a one-model run: one accumulated update of ``part`` with ``loss_fn``."""
    return lambda ctx, batches: ctx.accumulate(part, batches, loss_fn, loss_key)


def check_fsdp_granted(accelerator) -> None:
    """Refuse a run whose launcher asked for FSDP (``ACCELERATE_USE_FSDP``, from an accelerate config
    with ``distributed_type: FSDP``) but which accelerate set up otherwise. accelerate (1.16) turns FSDP
    on only for several accelerator processes: on CPU processes the same config silently gives DDP,
    which keeps a whole copy of every model per process, the memory FSDP was chosen to avoid."""
    import os

    from accelerate.utils import DistributedType

    asked = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    if asked and accelerator.distributed_type != DistributedType.FSDP:
        raise InputError(
            f"the accelerate config asks for FSDP, but this run was set up as "
            f"{accelerator.distributed_type.value} on {accelerator.device}: accelerate shards models only "
            "across two or more GPU (or other accelerator) processes. Launch on GPUs, num_processes >= 2, "
            "or use a DDP config on CPU (`accelerate launch --cpu --num_processes N ...`)."
        )


class Trainer:
    """Prepares the parts with accelerate and runs :meth:`fit`.

    ``cpu=True`` keeps the run on the CPU even when a GPU is visible (accelerate picks the device
    otherwise: ``cuda:LOCAL_RANK`` under a launcher). ``trainer.models[name]`` is the prepared module to
    call; ``trainer.parts[name].model`` the bare one (for saving, exporting and non-training use)."""

    def __init__(self, config: TrainerConfig, parts: dict[str, Part], *, cpu: bool = False) -> None:
        from accelerate import Accelerator

        self.config = config
        self.parts = parts
        self.accelerator = Accelerator(
            cpu=cpu, mixed_precision=resolve_mixed_precision(config.mixed_precision, cpu)
        )
        check_fsdp_granted(self.accelerator)
        if ckpt._is_fsdp(self.accelerator) and any(p.ema_decay > 0 for p in parts.values()):
            raise InputError(
                "an EMA of the weights (ema_decay > 0) is not kept under FSDP (each process holds a shard): "
                "set ema_decay to 0 for FSDP runs, or train with DDP"
            )
        self.emas: dict[str, torch.nn.Module] = {}  # filled by fit: the restored or the starting weights
        names = list(parts)
        modules = [p.forward if p.forward is not None else p.model for p in parts.values()]
        prepared = self.accelerator.prepare(*modules, *[p.optimizer for p in parts.values()])
        prepared = prepared if isinstance(prepared, tuple | list) else (prepared,)
        self.models: dict[str, torch.nn.Module] = dict(zip(names, prepared[: len(names)], strict=True))
        self.optimizers = dict(zip(names, prepared[len(names) :], strict=True))

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def is_main_process(self) -> bool:
        return self.accelerator.is_main_process

    def _train_mode(self, on: bool) -> None:
        for name, part in self.parts.items():
            for module in (part.model, self.models[name]):
                module.train(on)

    def _set_lr(self, step: int) -> dict[str, float]:
        rates = {}
        for name, part in self.parts.items():
            if part.lr is not None:
                for group in part.optimizer.param_groups:
                    group["lr"] = part.lr(step)
            rates[name] = float(part.optimizer.param_groups[0]["lr"])
        return rates

    def _stop(self, budget: Budget | None, signals: StopSignals | None = None) -> bool:
        """The budget's (or a stop signal's) decision, the main process's under several (each must stop
        at the same step)."""
        stop = (budget is not None and budget.exhausted()) or (
            signals is not None and signals.received is not None
        )
        if self.accelerator.num_processes > 1:
            from accelerate.utils import broadcast

            stop = bool(broadcast(torch.tensor([int(stop)], device=self.device), from_process=0).item())
        return stop

    def _reduce(self, metrics: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """Each metric's mean over processes, as floats (one collective for all of them)."""
        if self.accelerator.num_processes == 1:
            return {k: float(v) for k, v in metrics.items()}
        stacked = torch.stack([v.detach().float().reshape(()) for v in metrics.values()]).to(self.device)
        mean = self.accelerator.reduce(stacked, reduction="mean")
        return dict(zip(metrics, mean.tolist(), strict=True))

    def ema(self, name: str) -> torch.nn.Module | None:
        """Part ``name``'s moving average of weights (a copy of its bare model), or ``None`` without one."""
        return self.emas.get(name)

    def _start_emas(self, saved: dict[str, Any] | None) -> None:
        """The averages of the parts that keep one: from the checkpoint resumed, else the current weights."""
        import copy

        saved = saved or {}
        for name, part in self.parts.items():
            if part.ema_decay <= 0:
                continue
            average = copy.deepcopy(part.model).requires_grad_(False)
            if name in saved:
                average.load_state_dict(saved[name])
            else:  # a fresh run, or a checkpoint written without one
                logger.info("%s: the EMA of %r starts from the current weights", self.config.name, name)
            self.emas[name] = average.eval()

    @torch.no_grad()
    def _update_emas(self) -> None:
        for name, average in self.emas.items():
            part = self.parts[name]
            for mine, averaged in zip(part.model.parameters(), average.parameters(), strict=True):
                averaged.lerp_(mine.detach().to(averaged.dtype), 1.0 - part.ema_decay)
            for mine, averaged in zip(part.model.buffers(), average.buffers(), strict=True):
                averaged.copy_(mine)  # running statistics and the like follow the model

    def save(
        self, store: ckpt.CheckpointStore, step: int, history: dict[str, list[float]], evals: list[list[Any]]
    ) -> Path:
        path = store.path(step)
        extra: dict[str, Any] = {"history": history, "evals": evals}
        if self.emas:
            extra["ema"] = {n: m.state_dict() for n, m in self.emas.items()}
        ckpt.save(
            path,
            self.accelerator,
            step,
            {n: p.model for n, p in self.parts.items()},
            {n: p.optimizer for n, p in self.parts.items()},
            extra,
        )
        return path

    def fit(
        self,
        step_fn: StepFn,
        make_batch: BatchFn,
        store: ckpt.CheckpointStore,
        *,
        budget: Budget | None = None,
        evaluate: Callable[[], float | dict[str, float]] | None = None,
        sample: Callable[[int], np.ndarray | torch.Tensor] | None = None,
        on_step: Callable[[int, dict[str, float]], None] | None = None,
        resume: bool = True,
    ) -> FitResult:
        """Run (or resume from ``store.latest()``) to ``config.steps``; return the run's history.

        ``evaluate()`` (eval mode, no gradients, every process) gives a held-out value or a dict of them;
        ``sample(step)`` an ``(H, W, 3)`` image for TensorBoard; ``on_step(step, metrics)`` (main process)
        sees each finished step (1-based) with its process-mean metrics. ``resume=False`` starts from
        step 0 even where ``store`` holds a checkpoint (later saves overwrite it)."""
        cfg, acc = self.config, self.accelerator
        start, history, evals = 0, {}, []
        latest = store.latest() if resume else None
        restored: dict[str, Any] = {}
        if latest is not None:
            restored = ckpt.load(
                latest,
                acc,
                {n: p.model for n, p in self.parts.items()},
                {n: p.optimizer for n, p in self.parts.items()},
            )
            start, history, evals = restored["step"], restored["history"], restored["evals"]
            logger.info("%s: resuming at step %d of %d from %s", cfg.name, start, cfg.steps, latest)
        self._start_emas(restored.get("ema"))
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        log = RunLog(cfg.logdir, enabled=acc.is_main_process)
        bar = tqdm(
            total=cfg.steps,
            initial=start,
            desc=cfg.name,
            disable=not (cfg.progress and acc.is_local_main_process),
        )
        accum = cfg.grad_accum
        stream = batch_stream(make_batch, start * accum, cfg.steps * accum, cfg.data_workers)
        self._train_mode(True)
        with StopSignals(cfg.name) as signals:
            try:
                for step in range(start, cfg.steps):
                    if self._stop(budget, signals):
                        self.save(store, step, history, evals)
                        logger.info(
                            "%s: %s at step %d of %d; state saved, run again to resume",
                            cfg.name,
                            f"stopped by {signals.received}" if signals.received else "budget exhausted",
                            step,
                            cfg.steps,
                        )
                        return FitResult(history, evals, False, start, step, signals.received)
                    if budget is not None:
                        budget.steps_done += 1
                    rates = self._set_lr(step)
                    batches = [
                        shard_batch(next(stream), acc.process_index, acc.num_processes)
                        for _ in range(cfg.grad_accum)
                    ]
                    metrics = self._reduce(step_fn(StepContext(self, step), batches))
                    self._update_emas()
                    for key, value in metrics.items():
                        history.setdefault(key, []).append(value)
                    done = step + 1
                    log.scalars(
                        done,
                        {
                            **{f"train/{k}": v for k, v in metrics.items()},
                            **{f"lr/{k}": v for k, v in rates.items()},
                        },
                    )
                    if on_step is not None and acc.is_main_process:
                        on_step(done, metrics)
                    bar.update(1)
                    if done % cfg.log_every == 0 and metrics:
                        key = next(iter(metrics))
                        bar.set_postfix({key: f"{np.mean(history[key][-cfg.log_every :]):.4f}"})
                    last = done == cfg.steps
                    if evaluate is not None and cfg.eval_every and (done % cfg.eval_every == 0 or last):
                        value = self._evaluate(evaluate)
                        evals.append([done, value])
                        log.scalars(done, {f"eval/{k}": v for k, v in _named(value, cfg.eval_name).items()})
                        logger.info("%s: step %d held-out %s", cfg.name, done, value)
                    if sample is not None and cfg.sample_every and (done % cfg.sample_every == 0 or last):
                        image = self._evaluate(sample, done)
                        log.image("samples", done, image)
                    if done % cfg.checkpoint_every == 0 or last:
                        self.save(store, done, history, evals)
                        log.flush()
            finally:
                bar.close()
                log.close()
                self._train_mode(False)
        return FitResult(history, evals, True, start, max(start, cfg.steps))

    def _evaluate(self, fn: Callable[..., Any], *args: Any) -> Any:
        self._train_mode(False)
        try:
            with torch.no_grad():
                value = fn(*args)
        finally:
            self._train_mode(True)
        return float(value) if isinstance(value, float | int | np.floating) else value


def _named(value: float | dict[str, float], name: str) -> dict[str, float]:
    return {k: float(v) for k, v in value.items()} if isinstance(value, dict) else {name: float(value)}
