"""DMD2 on the one trainer: ``flowstudio distill``.

Three copies of the teacher's transformer:

* the **teacher**, frozen, queried with classifier-free guidance (the velocity form
  ``v_u + s (v_c - v_u)``, :func:`flowstudio.distill.dmd.cfg_x0`);
* the **student** (part ``generator``), initialised from the teacher, full fine-tuning, with an EMA copy
  (:class:`StudentWithEMA`) that is what gets exported;
* the **fake-score critic** (part ``critic``), initialised from the teacher and trained with flow
  matching on detached student samples, ``critic_steps`` updates per generator update (DMD2's
  two-time-scale rule, default 5).

One optimisation step of :class:`~flowstudio.train.Trainer` is ``critic_steps`` critic updates, then one
generator update (:func:`dmd_step`). Every random draw of step ``k`` (prompts, noises, levels, which
student step a row trains) comes from the batch function of ``k``, so a resumed run is bit-identical.
TI2V rows (``i2v_prob``) pin the clean first-frame latent at every model input and leave latent frame 0
out of every loss.

Options:

* DMD2's GAN term (``gan_weight``; :mod:`flowstudio.distill.gan`): a head on the frozen teacher's
  features, a third part ``disc`` updated with each critic update (its own rate ``gan_lr`` and noise
  levels ``gan_shift``);
* LoRA students (``lora_rank``; :mod:`flowstudio.distill.lora`), merged at export;
* a second stage (``init_from``): the student, EMA and critic of another run instead of the teacher.

Prompts, first frames and the GAN term's real clips come from ShapeWorld, from a dataset folder made
by ``flowstudio data build`` (its clips and its pairs' targets), or from a prompt file (text only):
:mod:`flowstudio.distill.prompts`.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flowstudio.core.flow import shift_sigmas
from flowstudio.core.ti2v import pin_first_frame
from flowstudio.denoiser import WanDenoiser
from flowstudio.distill import dmd, gan, regression
from flowstudio.distill.monitor import StudentMonitor
from flowstudio.distill.prompts import SHAPEWORLD, PromptBank, build_prompt_bank, holding, is_dataset
from flowstudio.distill.regression import RegressionPairs
from flowstudio.errors import InputError
from flowstudio.train import (
    Budget,
    LatestFile,
    Part,
    StepContext,
    Trainer,
    TrainerConfig,
    constant,
    cosine_tail,
)
from flowstudio.worlds._writer import write_text_atomic

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistillConfig:
    """A DMD2 run (YAML keys of ``flowstudio distill --config``)."""

    teacher: str  # a diffusers-format model folder (flowstudio/assets/toy-shapes, Wan2.2-TI2V-5B-Diffusers)
    student_steps: int = 4
    guidance_scale: float = 5.0  # the teacher's CFG scale
    shift: float | None = (
        None  # flow shift of the student's levels and of the loss levels; None: the teacher's
    )
    critic_steps: int = 5  # critic updates per generator update
    steps: int = 1000  # generator updates
    batch: int = 2
    lr: float = 2e-5  # generator
    critic_lr: float = 2e-5
    ema_decay: float = 0.99  # 0: no EMA (the student itself is exported)
    grad_clip: float = 1.0
    sigma_low: float = 0.02  # distribution-matching / critic levels: uniform in [low, high], then shifted
    sigma_high: float = 0.98
    i2v_prob: float = 0.5  # rows conditioned on a first frame (needs a source with frames)
    prompts: str = SHAPEWORLD  # or a `flowstudio data build` folder, or a text file (one prompt per line)
    num_prompts: int = 512
    negative_prompt: str = ""
    num_frames: int = 17
    height: int = 128
    width: int = 128
    seed: int = 0
    checkpoint_every: int = 50
    log_every: int = 10
    lora_rank: int = 0  # > 0: a LoRA student (flowstudio.distill.lora); 0: full fine-tuning
    lora_alpha: float | None = None  # None: the rank
    gan_weight: float = 0.0  # DMD2's GAN term (flowstudio.distill.gan); 0: off
    gan_layer: int | None = None  # teacher block the head reads; None: the middle one
    gan_lr: float | None = None  # the head's learning rate; None: critic_lr
    # the flow shift of the GAN term's noise levels (the same uniform draws, warped by this instead);
    # None: the run's shift. 1: uniform levels, as DMD2 (at shift 5 most levels are above 0.8)
    gan_shift: float | None = None
    # a stopped or finished distill run (its folder or state.pt) whose student, EMA and critic (and
    # GAN head, when both have one) this run starts from, with fresh optimizers; None: the teacher
    init_from: str | None = None
    sample_every: int = 0  # TensorBoard image of the EMA student's samples every N steps (0: off)
    eval_every: int = 0  # ShapeWorld readers' accuracy on the EMA student's samples every N steps (0: off)
    eval_prompts: int = 8
    # export the EMA student at every held-out evaluation to OUT/evaluated/step_NNNNNN (a runnable
    # student folder) and list the accuracies in OUT/evaluated/index.json: pick a checkpoint by them
    export_evaluated: bool = False
    # every learning rate (generator, critic, GAN head) falls by a cosine to lr_floor x its value over
    # the last lr_decay_fraction of `steps` (0: constant). Damps a GAN stage that swings late
    # (guide_distill.md); `steps` sets where the tail starts, so raising it on resume moves the tail
    lr_decay_fraction: float = 0.0
    lr_floor: float = 0.1
    # oversample prompts: a caption holding the phrase KEY (case-insensitive) is drawn WEIGHT times as
    # often (weights of several matching phrases multiply). For a rare case the student loses, e.g.
    # {"plain background": 3, "plain backdrop": 3}; None: every prompt equally often
    prompt_weights: dict[str, float] | None = None
    # DMD's paired regression term (flowstudio.distill.regression): the student's prediction at each of
    # its levels is pulled (latent MSE, this weight) to the teacher's sample made from a pair's noise
    # with regression_steps of regression_solver and CFG, once at the start (OUT/regression_pairs.pt);
    # regression_phrases: only prompts holding one of them (None: all); 0: off
    regression_weight: float = 0.0
    regression_pairs: int = 64
    regression_phrases: list[str] | None = None
    regression_steps: int = 30
    regression_solver: str = "unipc"
    mixed_precision: str = "auto"
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes kept in the run's config.json

    def __post_init__(self) -> None:
        from flowstudio.checks import check_int, check_number, check_text

        check_text("teacher", self.teacher, "the teacher's model folder")
        for name, minimum in (("student_steps", 1), ("critic_steps", 1), ("steps", 1), ("batch", 1),
                              ("num_prompts", 1), ("num_frames", 1), ("height", 1), ("width", 1),
                              ("seed", None), ("checkpoint_every", 1), ("log_every", 1), ("sample_every", 0),
                              ("eval_every", 0), ("eval_prompts", 1), ("lora_rank", 0)):  # fmt: skip
            check_int(name, getattr(self, name), minimum=minimum)
        for name in ("lr", "critic_lr"):  # PyYAML reads `1e-5` (no dot) as text
            check_number(name, getattr(self, name), positive=True, what="; in YAML write 1.0e-5, not 1e-5")
        for name in (
            "guidance_scale",
            "ema_decay",
            "grad_clip",
            "sigma_low",
            "sigma_high",
            "i2v_prob",
            "gan_weight",
        ):
            check_number(name, getattr(self, name))
        for name in ("lr_decay_fraction", "lr_floor"):
            value = getattr(self, name)
            check_number(name, value)
            if not 0.0 <= value <= 1.0:
                raise InputError(f"{name} must be in [0, 1], got {value}")
        if self.prompt_weights is not None:
            if not isinstance(self.prompt_weights, dict) or not self.prompt_weights:
                raise InputError("prompt_weights must map caption phrases to weights: {plain backdrop: 3}")
            for phrase, weight in self.prompt_weights.items():
                check_text("a prompt_weights phrase", phrase, "a phrase of the captions")
                check_number(f"prompt_weights[{phrase!r}]", weight, positive=True, what="; a weight > 0")
        check_number("regression_weight", self.regression_weight)
        if self.regression_weight < 0:
            raise InputError(f"regression_weight must be >= 0, got {self.regression_weight}")
        check_int("regression_pairs", self.regression_pairs, minimum=1)
        check_int("regression_steps", self.regression_steps, minimum=1)
        from flowstudio.core.solvers import SOLVERS

        teacher_solvers = sorted(set(SOLVERS) - {"dmd"})  # dmd: a student's stochastic sampler
        if self.regression_solver not in teacher_solvers:
            raise InputError(
                f"regression_solver {self.regression_solver!r} is not a teacher solver; "
                f"use one of {teacher_solvers}"
            )
        if self.regression_phrases is not None:
            if not isinstance(self.regression_phrases, list) or not self.regression_phrases:
                raise InputError('regression_phrases must be a list of caption phrases: ["plain backdrop"]')
            for phrase in self.regression_phrases:
                check_text("a regression_phrases phrase", phrase, "a phrase of the captions")
        if self.gan_shift is not None:
            check_number("gan_shift", self.gan_shift, positive=True, what="; 1 gives uniform levels")
        if self.gan_lr is not None:
            check_number("gan_lr", self.gan_lr, positive=True, what="; in YAML write 1.0e-4, not 1e-4")
        if self.init_from is not None:
            check_text("init_from", self.init_from, "a distill run folder or its state.pt")
        if self.shift is not None:
            check_number("shift", self.shift, positive=True, what="; the flow shift, 5 is usual")
        if not 0.0 <= self.ema_decay < 1.0:
            raise InputError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if not 0.0 < self.sigma_low < self.sigma_high < 1.0:
            raise InputError(f"need 0 < sigma_low < sigma_high < 1, got {self.sigma_low}, {self.sigma_high}")
        if not 0.0 <= self.i2v_prob <= 1.0:
            raise InputError(f"i2v_prob must be in [0, 1], got {self.i2v_prob}")
        has_clips = self.prompts == SHAPEWORLD or is_dataset(self.prompts)
        if self.i2v_prob > 0 and not has_clips:
            raise InputError(
                "i2v_prob > 0 needs first frames: use prompts: shapeworld or a `flowstudio data build` "
                "folder, or set i2v_prob: 0"
            )
        if self.gan_weight < 0:
            raise InputError(f"gan_weight must be >= 0, got {self.gan_weight}")
        if self.gan_weight > 0 and not has_clips:
            raise InputError(
                "the GAN term needs real clips: use prompts: shapeworld or a `flowstudio data build` folder, "
                "or set gan_weight: 0"
            )
        if self.eval_every and self.prompts != SHAPEWORLD:
            raise InputError(
                "eval_every reads ShapeWorld attributes: use prompts: shapeworld, or set eval_every: 0"
            )

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> DistillConfig:
        from flowstudio.recipes import read_recipe

        data = read_recipe(path, hint="see configs/distill/toy_4step.yaml")
        data.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise InputError(
                f"{path}: unknown keys {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}"
            )
        return cls(**data)


class StudentWithEMA(torch.nn.Module):
    """The student and its exponential moving average in one module, so the trainer checkpoints both.

    ``forward`` is the student's; the optimizer holds only ``student``'s parameters and the EMA's
    never require gradients (DDP ignores them)."""

    def __init__(self, student: torch.nn.Module, decay: float) -> None:
        super().__init__()
        self.student = student
        self.decay = decay
        self.ema = copy.deepcopy(student).requires_grad_(False) if decay > 0 else None

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.student(*args, **kwargs)

    @torch.no_grad()
    def update_ema(self) -> None:
        if self.ema is None:
            return
        for mine, averaged in zip(self.student.parameters(), self.ema.parameters(), strict=True):
            if mine.requires_grad:  # frozen weights (a LoRA student's base) never move
                averaged.lerp_(mine.detach().to(averaged.dtype), 1.0 - self.decay)

    def exported(self) -> torch.nn.Module:
        """The weights a user gets: the EMA when there is one, adapters merged (a plain transformer)."""
        from flowstudio.distill.lora import has_lora, merged

        chosen = self.ema if self.ema is not None else self.student
        return merged(chosen) if has_lora(chosen) else chosen


@dataclass
class DistillBatch:
    """Every draw of one step (a pure function of the step)."""

    rows: torch.Tensor  # (B,) prompt-bank indices
    i2v: torch.Tensor  # (B,) bool
    stop: torch.Tensor  # (B,) which student level the generator trains at
    noise: torch.Tensor  # (B, C, T, H, W) the student's starting noise
    loss_sigma: torch.Tensor  # (B,) distribution-matching level
    loss_noise: torch.Tensor
    critic: list[dict[str, torch.Tensor]]  # per critic update: stop, noise, sigma, loss noise
    seed: torch.Tensor  # (B,) per-row seeds of the backward simulation's re-noising (one stream per row)
    # the regression term's draws, when it is on: "index" (B,) pairs, "stop" (B,) student levels,
    # "noise" (B, C, T, H, W) the re-noising of the teacher's sample to levels after the first
    regression: dict[str, torch.Tensor] | None = None


class DMDObjective:
    """The losses of one step, given the teacher, the bank and the parts' bare modules."""

    def __init__(
        self,
        config: DistillConfig,
        teacher: torch.nn.Module,
        student: StudentWithEMA,
        critic: torch.nn.Module,
        bank: PromptBank,
        shift: float,
        device: torch.device,
        expand_timesteps: bool = False,
        head: torch.nn.Module | None = None,
        pairs: RegressionPairs | None = None,
    ) -> None:
        self.config, self.bank, self.shift, self.device = config, bank, shift, device
        self.teacher = WanDenoiser(teacher, expand_timesteps=expand_timesteps)
        self.student, self.critic = student, critic
        self.expand = expand_timesteps
        self.sigmas = dmd.student_sigmas(config.student_steps, shift)
        self.head = head  # the GAN term's discriminator head (bare module), or None
        self.pairs = pairs  # the regression term's (noise, teacher sample) pairs, or None
        if head is not None:
            layer = config.gan_layer if config.gan_layer is not None else len(teacher.blocks) // 2
            self.features = gan.TeacherFeatures(teacher, layer)
        # shifts compose by multiplying (they scale the level's odds): re-warp a level drawn at `shift`
        self.gan_rewarp = None if config.gan_shift is None else config.gan_shift / shift

    def gan_levels(self, sigma: torch.Tensor) -> torch.Tensor:
        """The GAN term's levels: the loss levels re-warped from the run's shift to ``gan_shift``."""
        if self.gan_rewarp is None:
            return sigma
        return shift_sigmas(sigma.double(), self.gan_rewarp).to(sigma.dtype)

    # -- conditioning -------------------------------------------------------------------------
    def _text(self, rows: torch.Tensor) -> torch.Tensor:
        return self.bank.embeds[rows].to(self.device)

    def _mask(self, batch: DistillBatch, shape: tuple[int, ...]) -> torch.Tensor:
        """``(B, 1, T, H, W)``: 0 on latent frame 0 of I2V rows, 1 elsewhere."""
        mask = torch.ones(shape[0], 1, *shape[2:], device=self.device)
        mask[batch.i2v.to(self.device), :, 0] = 0.0
        return mask

    def _pin(self, batch: DistillBatch, mask: torch.Tensor):
        if not bool(batch.i2v.any()):
            return lambda z: z
        first = self.bank.first_frames[batch.rows].to(self.device)
        return lambda z: pin_first_frame(z, first, mask)

    def _velocity(self, denoiser: WanDenoiser, x, sigma, text, mask) -> torch.Tensor:
        timestep = denoiser.row_timesteps(sigma, mask if (self.expand or not bool(mask.all())) else None)
        return denoiser.forward_rows(x, timestep, text, {})

    def _x0(self, denoiser: WanDenoiser, x, sigma, text, mask) -> torch.Tensor:
        v = self._velocity(denoiser, x, sigma, text, mask)
        return x - dmd._rows(sigma, x) * v

    # -- the student's samples -----------------------------------------------------------------
    def student_inputs(self, batch: DistillBatch, stop: torch.Tensor, noise: torch.Tensor, mask, pin):
        """Backward simulation with the current student (no gradients) to each row's level
        (:func:`flowstudio.distill.dmd.backward_simulate`); returns the inputs and their levels."""
        student = WanDenoiser(self.student.student)
        text = self._text(batch.rows)

        def x0_fn(x: torch.Tensor, sigma: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            return self._x0(student, x, sigma, text[rows], mask[rows])

        x = dmd.backward_simulate(x0_fn, noise, self.sigmas, stop, batch.seed, pin)
        return x, self.sigmas.to(torch.float32)[stop].to(self.device)

    # -- losses ------------------------------------------------------------------------------
    def generator_loss(self, module: torch.nn.Module, batch: DistillBatch) -> dict[str, torch.Tensor]:
        noise = batch.noise.to(self.device)
        mask = self._mask(batch, tuple(noise.shape))
        pin = self._pin(batch, mask)
        text = self._text(batch.rows)
        x_in, level = self.student_inputs(batch, batch.stop, noise, mask, pin)
        student = WanDenoiser(self.student.student, forward_module=module)
        x = pin(self._x0(student, x_in, level, text, mask))  # with gradients: the student's sample
        sigma = batch.loss_sigma.to(self.device)
        x_t = pin(dmd.noised(x.detach(), batch.loss_noise.to(self.device), sigma))
        with torch.no_grad():
            both = torch.cat([text, self.bank.negative.to(self.device).expand_as(text)])
            v = self._velocity(
                self.teacher, torch.cat([x_t, x_t]), torch.cat([sigma, sigma]), both, torch.cat([mask, mask])
            )
            v_cond, v_uncond = v.chunk(2)
            x0_real = dmd.cfg_x0(x_t, sigma, v_cond, v_uncond, self.config.guidance_scale)
            x0_fake = self._x0(WanDenoiser(self.critic), x_t, sigma, text, mask)
        grad = dmd.dm_gradient(x, x0_real, x0_fake, mask)
        loss = dmd.dmd_loss(x, grad, mask)
        terms = {"dm_grad": grad.abs().mean()}
        if self.head is not None:
            # through the frozen teacher's features to the student's sample (same level and noise)
            level = self.gan_levels(sigma)
            x_t_grad = pin(dmd.noised(x, batch.loss_noise.to(self.device), level))
            adversarial = gan.generator_loss(self._logits(self.head, x_t_grad, level, text, mask))
            loss = loss + self.config.gan_weight * adversarial
            terms["gan_generator"] = adversarial.detach()
        if self.pairs is not None and batch.regression is not None:
            term = self.regression_term(module, batch.regression)
            loss = loss + self.config.regression_weight * term
            terms["regression"] = term.detach()
        return {"loss": loss, **terms}

    def regression_term(self, module: torch.nn.Module, draw: dict[str, torch.Tensor]) -> torch.Tensor:
        """DMD's regression loss at the student's levels (text-to-video rows): at the first level the
        input is the pair's own noise (DMD's coupling); at a later level ``k`` it is the teacher's
        sample re-noised to ``sigmas[k]`` with fresh noise, which is the form the stochastic sampler's
        input has there (``renoise`` of the previous prediction). The target is the teacher's sample."""
        index, stop = draw["index"], draw["stop"].to(self.device)
        target = self.pairs.target[index].to(self.device)
        level = self.sigmas.to(torch.float32).to(self.device)[stop]
        later = dmd.noised(target, draw["noise"].to(self.device), level)
        first = (stop == 0).view(-1, *([1] * (target.dim() - 1)))
        x_in = torch.where(first, self.pairs.noise[index].to(self.device), later)
        text = self.bank.embeds[self.pairs.rows[index]].to(self.device)
        mask = torch.ones(target.shape[0], 1, *target.shape[2:], device=self.device)
        student = WanDenoiser(self.student.student, forward_module=module)
        return regression.regression_loss(self._x0(student, x_in, level, text, mask), target)

    def _logits(self, head, x_t, sigma, text, mask) -> torch.Tensor:
        """The head's logits for noised clips, from the teacher's block features (conditional branch)."""
        features = self.features(lambda: self._velocity(self.teacher, x_t, sigma, text, mask))
        return head(features, gan.token_weights(mask, self.teacher.patch_size))

    def disc_loss(self, module: torch.nn.Module, batch: DistillBatch, k: int) -> torch.Tensor:
        """The head's update: true clips of the rows' prompts against critic update ``k``'s student
        samples, both noised to that update's levels."""
        draw = batch.critic[k]
        fake = draw["_sample"]  # left by critic_loss(k): the same detached student sample
        mask = self._mask(batch, tuple(fake.shape))
        pin = self._pin(batch, mask)
        text = self._text(batch.rows)
        sigma, eps = self.gan_levels(draw["sigma"].to(self.device)), draw["loss_noise"].to(self.device)
        real = pin(self.bank.real_latents[batch.rows].to(self.device))
        with torch.no_grad():
            both = torch.cat([pin(dmd.noised(real, eps, sigma)), pin(dmd.noised(fake, eps, sigma))])
            features = self.features(
                lambda: self._velocity(
                    self.teacher,
                    both,
                    torch.cat([sigma, sigma]),
                    torch.cat([text, text]),
                    torch.cat([mask, mask]),
                )
            )
        weights = gan.token_weights(torch.cat([mask, mask]), self.teacher.patch_size)
        logits = module(features, weights)
        real_logits, fake_logits = logits.chunk(2)
        return gan.discriminator_loss(real_logits, fake_logits)

    def critic_loss(self, module: torch.nn.Module, batch: DistillBatch, k: int) -> torch.Tensor:
        draw = batch.critic[k]
        noise = draw["noise"].to(self.device)
        mask = self._mask(batch, tuple(noise.shape))
        pin = self._pin(batch, mask)
        text = self._text(batch.rows)
        x_in, level = self.student_inputs(batch, draw["stop"], noise, mask, pin)
        with torch.no_grad():
            x0 = pin(self._x0(WanDenoiser(self.student.student), x_in, level, text, mask))
        draw["_sample"] = x0  # the GAN head's update of this critic step reads the same sample
        sigma, eps = draw["sigma"].to(self.device), draw["loss_noise"].to(self.device)
        x_t = pin(dmd.noised(x0, eps, sigma))
        v = self._velocity(WanDenoiser(self.critic, forward_module=module), x_t, sigma, text, mask)
        return dmd.flow_matching_loss(v, x0, eps, mask)


def prompt_draw_weights(prompts: list[str], phrases: dict[str, float]) -> torch.Tensor:
    """Each prompt's draw weight under ``prompt_weights``; a phrase no caption holds is an error (a typo
    would otherwise train on the uniform draw without a word)."""
    weights = torch.ones(len(prompts), dtype=torch.float64)
    for phrase, weight in phrases.items():
        weights[torch.tensor(holding(prompts, phrase, "prompt_weights"))] *= float(weight)
    return weights


def make_batch_fn(
    config: DistillConfig,
    bank: PromptBank,
    latent_shape: tuple[int, ...],
    shift: float,
    num_pairs: int = 0,
):
    """The batch of step ``k``: a pure function of ``(config.seed, k)``. ``num_pairs`` > 0: each step also
    draws ``batch`` regression pairs, from a stream of its own (runs without the term draw as before)."""
    shape = (config.batch, *latent_shape[1:])
    with_frames = bank.first_frames is not None
    weights = prompt_draw_weights(bank.prompts, config.prompt_weights) if config.prompt_weights else None

    def make_batch(step: int) -> DistillBatch:
        g = torch.Generator().manual_seed(
            int(np.random.SeedSequence([config.seed, 17, step]).generate_state(1)[0])
        )
        if weights is None:  # the uniform draw as before (runs without weights resume bit for bit)
            rows = torch.randint(0, len(bank.prompts), (config.batch,), generator=g)
        else:
            rows = torch.multinomial(weights, config.batch, replacement=True, generator=g)
        i2v = torch.rand(config.batch, generator=g) < (config.i2v_prob if with_frames else 0.0)

        def draw() -> dict[str, torch.Tensor]:
            return {
                "stop": torch.randint(0, config.student_steps, (config.batch,), generator=g),
                "noise": torch.randn(shape, generator=g),
                "sigma": dmd.sample_sigmas(config.batch, g, shift, config.sigma_low, config.sigma_high),
                "loss_noise": torch.randn(shape, generator=g),
            }

        main = draw()
        return DistillBatch(
            rows=rows,
            i2v=i2v,
            stop=main["stop"],
            noise=main["noise"],
            loss_sigma=main["sigma"],
            loss_noise=main["loss_noise"],
            critic=[draw() for _ in range(config.critic_steps)],
            seed=torch.randint(0, 2**62, (config.batch,), generator=g),
            regression=regression_draw(step) if num_pairs else None,
        )

    def regression_draw(step: int) -> dict[str, torch.Tensor]:
        # seeded like pair `step`'s noise (both on PAIR_STREAM): step k's re-noising is then a shifted
        # copy of pair k's starting noise, still white noise and used at a level pair k's own noise is
        # not; kept so that the measured runs (guide_distill.md) replay bit for bit
        state = np.random.SeedSequence([config.seed, regression.PAIR_STREAM, step]).generate_state(1)[0]
        generator = torch.Generator().manual_seed(int(state))
        return {
            "index": torch.randint(0, num_pairs, (config.batch,), generator=generator),
            "stop": torch.randint(0, config.student_steps, (config.batch,), generator=generator),
            "noise": torch.randn(shape, generator=generator),
        }

    return make_batch


def dmd_step(objective: DMDObjective, critic_steps: int):
    """``critic_steps`` critic updates, then one generator update and the EMA."""

    def step(ctx: StepContext, batches: list[DistillBatch]) -> dict[str, torch.Tensor]:
        critic, disc = {}, {}
        for k in range(critic_steps):
            critic = ctx.accumulate("critic", batches, lambda m, b, k=k: objective.critic_loss(m, b, k))
            if objective.head is not None:
                disc = ctx.accumulate("disc", batches, lambda m, b, k=k: objective.disc_loss(m, b, k))
        terms = ctx.accumulate("generator", batches, objective.generator_loss)
        objective.student.update_ema()
        out = {"generator": terms.pop("loss"), "critic": critic["loss"], **terms}
        if disc:
            out["disc"] = disc["loss"]
        return out

    return step


@dataclass
class DistillResult:
    out: Path
    finished: bool
    step: int
    history: dict[str, list[float]]
    main_process: bool = True  # False on the other ranks of a multi-process run


@dataclass
class DistillRun:
    """A prepared run: what :func:`distill` fits (tests drive single updates through it)."""

    config: DistillConfig
    out: Path
    trainer: Trainer
    objective: DMDObjective
    make_batch: Any
    shift: float
    stored_dtype: torch.dtype
    monitor: StudentMonitor

    def step_fn(self):
        return dmd_step(self.objective, self.config.critic_steps)


def prepare(
    config: DistillConfig, out: str | Path, *, device: str | None = None, progress: bool = True
) -> DistillRun:
    """Load the teacher, build (or read) the prompt bank, make the student, its EMA and the critic."""
    from accelerate import PartialState

    from flowstudio.pipeline import WanVideoPipeline

    out = Path(out)
    wanted = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    # the process state of a launcher (torchrun / accelerate launch), or of one process: it names
    # this process's device (cuda:LOCAL_RANK) and lets the main process write the shared files first
    state = PartialState(cpu=wanted.type == "cpu")
    target = state.device if wanted.type == state.device.type else wanted
    pipeline = WanVideoPipeline.from_pretrained(config.teacher, device="cpu")
    pipeline.check_inputs(num_frames=config.num_frames, height=config.height, width=config.width, steps=1)
    shift = config.shift if config.shift is not None else teacher_shift(Path(config.teacher))
    bank_path = out / "prompt_bank.pt"
    with state.main_process_first():  # the others read what the main process checked and wrote
        out.mkdir(parents=True, exist_ok=True)
        _check_same_run(out, config, write=state.is_main_process)
        if bank_path.exists():
            bank = PromptBank.load(bank_path)
        else:
            bank = build_prompt_bank(
                pipeline,
                config.prompts,
                config.num_prompts,
                config.seed,
                config.num_frames,
                config.height,
                config.width,
                config.negative_prompt,
                real_clips=config.gan_weight > 0,
            )
            bank.save(bank_path)
    stored_dtype = pipeline.components.transformer.dtype
    latent_shape = pipeline.latent_shape(config.num_frames, config.height, config.width)
    pairs = None
    if config.regression_weight > 0:
        with state.main_process_first():
            pairs = regression_pairs(pipeline, config, bank, latent_shape, shift, out, progress)
    base = pipeline.components.transformer.float().requires_grad_(False).eval()
    trainee = copy.deepcopy(base).requires_grad_(True).train()
    if config.lora_rank > 0:
        from flowstudio.distill.lora import DEFAULT_TARGETS, add_lora

        add_lora(trainee, config.lora_rank, config.lora_alpha, DEFAULT_TARGETS)
    student = StudentWithEMA(trainee, config.ema_decay)
    critic = copy.deepcopy(base).requires_grad_(True).train()
    teacher = base.to(target)
    if target.type == "cuda":
        # the frozen teacher computes in bf16 on a GPU (less memory beside the trained float32 copies),
        # loaded by diffusers so that its float32-only modules stay float32
        teacher = type(base).from_pretrained(Path(config.teacher) / "transformer", torch_dtype=torch.bfloat16)
        teacher = teacher.requires_grad_(False).eval().to(target)

    def schedule(lr: float):
        if config.lr_decay_fraction == 0:
            return constant(lr)
        return cosine_tail(lr, config.steps, config.lr_decay_fraction, config.lr_floor)

    parts = {
        "generator": Part(
            student,
            torch.optim.AdamW([p for p in student.student.parameters() if p.requires_grad], lr=config.lr),
            schedule(config.lr),
        ),
        "critic": Part(
            critic, torch.optim.AdamW(critic.parameters(), lr=config.critic_lr), schedule(config.critic_lr)
        ),
    }
    head = None
    if config.gan_weight > 0:
        with torch.random.fork_rng(devices=[]):  # the head's initial weights: a function of the seed alone
            torch.manual_seed(config.seed)
            head = gan.FeatureHead(int(base.config.num_attention_heads * base.config.attention_head_dim))
        head_lr = config.gan_lr if config.gan_lr is not None else config.critic_lr
        parts["disc"] = Part(head, torch.optim.AdamW(head.parameters(), lr=head_lr), schedule(head_lr))
    if config.init_from is not None and LatestFile(out / "state.pt").latest() is None:
        start_from(Path(config.init_from), {"generator": student, "critic": critic, "disc": head})
    settings = TrainerConfig(
        name="distill",
        steps=config.steps,
        grad_clip=config.grad_clip,
        mixed_precision=config.mixed_precision,
        checkpoint_every=config.checkpoint_every,
        log_every=config.log_every,
        eval_every=config.eval_every,
        sample_every=config.sample_every,
        progress=progress,
        logdir=out / "tensorboard",
    )
    trainer = Trainer(settings, parts, cpu=target.type == "cpu")
    objective = DMDObjective(
        config,
        teacher,
        student,
        critic,
        bank,
        shift,
        trainer.device,
        expand_timesteps=bool(pipeline.components.model_index.get("expand_timesteps", False)),
        head=head,
        pairs=pairs,
    )
    make_batch = make_batch_fn(config, bank, latent_shape, shift, len(pairs) if pairs is not None else 0)
    monitor = StudentMonitor(
        pipeline,
        student,
        steps=config.student_steps,
        shift=shift,
        size=(config.num_frames, config.height, config.width),
        prompts=config.eval_prompts,
    )
    return DistillRun(config, out, trainer, objective, make_batch, shift, stored_dtype, monitor)


def regression_pairs(
    pipeline, config: DistillConfig, bank: PromptBank, latent_shape, shift: float, out: Path, progress: bool
) -> RegressionPairs:
    """The run's regression pairs: read from ``OUT/regression_pairs.pt``, or made with the teacher and
    saved there (by the main process; a stopped run reads them back instead of sampling again)."""
    path = out / "regression_pairs.pt"
    if path.exists():
        return RegressionPairs.load(path)
    rows = regression.pair_rows(bank.prompts, config.regression_phrases, config.regression_pairs)
    logger.info("making %d regression pairs: %d %s steps each", len(rows), config.regression_steps,
                config.regression_solver)  # fmt: skip
    pairs = regression.build_pairs(
        pipeline,
        bank.embeds,
        bank.negative,
        rows,
        latent_shape,
        seed=config.seed,
        steps=config.regression_steps,
        solver=config.regression_solver,
        guidance_scale=config.guidance_scale,
        shift=shift,
        progress=progress,
    )
    pairs.save(path)
    return pairs


def start_from(source: Path, modules: dict[str, torch.nn.Module | None]) -> None:
    """A new run's weights from another run's checkpoint (``init_from``): the student with its EMA and
    the critic must be there; the GAN head is taken when both runs have one, else it starts fresh.
    Optimizer moments are not taken (a run that changes its objective should not inherit them)."""
    from flowstudio.train.checkpoint import read

    path = source / "state.pt" if source.is_dir() else source
    if not path.is_file():
        raise InputError(f"init_from: {path} not found; give a distill run folder (it holds state.pt)")
    try:
        saved = read(path, ["generator", "critic"])
    except Exception as err:  # a torn or foreign file: say which, not a pickle traceback
        raise InputError(f"init_from: {path} is not a readable distill checkpoint ({err})") from err
    models = saved.get("models")
    if models is None:
        raise InputError(
            f"init_from: {path} is sharded (FSDP); init_from reads whole checkpoints: merge the shards "
            "first (`accelerate merge-weights`) or start from a run trained without FSDP"
        )
    for name, module in modules.items():
        if module is None or (name == "disc" and name not in models):
            continue
        if name not in models:
            raise InputError(f"init_from: {path} has no {name!r} weights (it holds {sorted(models)})")
        try:
            module.load_state_dict(models[name])
        except RuntimeError as err:
            raise InputError(
                f"init_from: {path}'s {name!r} does not fit this run (another teacher, LoRA rank or "
                f"EMA setting?): {str(err).splitlines()[0]}"
            ) from err
    logger.info("started from %s (its step %s)", path, saved.get("step"))


def distill(
    config: DistillConfig,
    out: str | Path,
    *,
    device: str | None = None,
    budget: Budget | None = None,
    progress: bool = True,
) -> DistillResult:
    """Train (or resume) a DMD2 student of ``config.teacher`` into ``out``; export it when finished
    (``out/student``, a diffusers folder: :mod:`flowstudio.distill.export`)."""
    run = prepare(config, out, device=device, progress=progress)
    main = run.trainer.is_main_process
    evaluate: Callable[[], dict[str, float]] | None = None
    on_step = None
    if config.eval_every and config.export_evaluated:
        evaluate = exporting = _ExportingEvaluation(run, main)
        on_step = exporting.on_step
    elif config.eval_every:
        evaluate = run.monitor.evaluate
    result = run.trainer.fit(
        run.step_fn(),
        run.make_batch,
        LatestFile(run.out / "state.pt"),
        budget=budget,
        evaluate=evaluate,
        sample=run.monitor.sample if config.sample_every else None,
        on_step=on_step,
    )
    if main:  # the run's files: written once, by the main process
        (run.out / "history.json").write_text(json.dumps(result.history))
        if result.finished:
            _export(run, run.out / "student")
    return DistillResult(run.out, result.finished, result.step, result.history, main)


def _export(run: DistillRun, folder: Path) -> Path:
    from flowstudio.distill.export import export_student

    return export_student(
        Path(run.config.teacher),
        run.objective.student.exported(),
        folder,
        run.config.student_steps,
        run.shift,
        run.stored_dtype,
    )


class _ExportingEvaluation:
    """The monitor's evaluation that also exports the student it measured (``export_evaluated``).
    The loop calls ``on_step(step, metrics)`` before it evaluates that step: the folder's name."""

    def __init__(self, run: DistillRun, main: bool) -> None:
        self.run, self.main, self.step = run, main, 0

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        self.step = step

    def __call__(self) -> dict[str, float]:
        accuracy = self.run.monitor.evaluate()
        if self.main:
            folder = self.run.out / "evaluated"
            _export(self.run, folder / f"step_{self.step:06d}")
            record_evaluated(folder, self.step, accuracy, self.run.config.eval_prompts)
        return accuracy


def record_evaluated(folder: Path, step: int, accuracy: dict[str, float], prompts: int) -> dict[str, Any]:
    """Add ``step``'s accuracies to ``folder/index.json`` (a resumed run replaces a step it redid) and
    name the best step: the highest mean accuracy over the attributes, the earlier step on a tie."""
    path = folder / "index.json"
    index = json.loads(path.read_text()) if path.is_file() else {"students": []}
    rows = [row for row in index["students"] if row["step"] != step]
    rows.append({"step": step, "folder": f"step_{step:06d}", "accuracy": accuracy,
                 "mean": float(np.mean(list(accuracy.values())))})  # fmt: skip
    rows.sort(key=lambda row: row["step"])
    best = max(rows, key=lambda row: (row["mean"], -row["step"]))
    index = {
        "rule": "highest mean of the readers' accuracies on the run's evaluation prompts; earlier on a tie",
        "eval_prompts": prompts,
        "best": best["folder"],
        "students": rows,
    }
    write_text_atomic(path, json.dumps(index, indent=1))
    return index


def teacher_shift(model_dir: Path) -> float:
    """The flow shift of the teacher's own scheduler config (5.0 when it names none)."""
    path = model_dir / "scheduler" / "scheduler_config.json"
    if not path.is_file():
        raise InputError(
            f"{model_dir} has no scheduler/scheduler_config.json; is it a diffusers model folder?"
        )
    data = json.loads(path.read_text())
    return float(data.get("flow_shift", data.get("shift", 5.0)))


# settings a resumed run may change: how long it trains and what it logs, not what it learns
FREE_KEYS = frozenset(
    {
        "steps",
        "checkpoint_every",
        "log_every",
        "sample_every",
        "eval_every",
        "eval_prompts",
        "export_evaluated",
    }
)


def _check_same_run(out: Path, config: DistillConfig, *, write: bool = True) -> None:
    """A run folder belongs to one config: resuming with other settings would mix two runs."""
    path = out / "config.json"
    mine = json.loads(json.dumps(asdict(config)))
    if path.exists():
        # a key the stored config lacks was added to DistillConfig after the run began: the run had
        # its default, so resuming with the default is the same run (and any other value is not)
        defaults = json.loads(json.dumps(asdict(DistillConfig(teacher=config.teacher))))
        stored = {**defaults, **json.loads(path.read_text())}
        changed = sorted(
            k for k in set(stored) | set(mine) if stored.get(k) != mine.get(k) and k not in FREE_KEYS
        )
        if changed:
            raise InputError(
                f"{out} holds a run with other settings ({', '.join(changed)}); use a new folder, "
                f"or the same config (only {', '.join(sorted(FREE_KEYS))} may change)"
            )
    if write:
        path.write_text(json.dumps(mine, indent=2))
