"""Wan2.2 TI2V pipeline over local components: encode -> prepare latents -> solve -> decode.

Thin on purpose: the math lives in ``flowstudio.core``, the loop in ``flowstudio.sampling``, the
model call in ``flowstudio.denoiser``. Editing methods reuse :meth:`WanVideoPipeline.encode_video`,
:meth:`WanVideoPipeline.conditioning` and the loop with their own controllers.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flowstudio.core.solvers import make_solver
from flowstudio.core.stochastic import StochasticSolver
from flowstudio.core.ti2v import first_frame_mask
from flowstudio.denoiser import Conditioning, WanDenoiser
from flowstudio.errors import InputError
from flowstudio.models.factory import VOCABULARY_FILE
from flowstudio.sampling import Controller, Direction, FirstFramePin, LoopState, run_loop
from flowstudio.video import frames_to_tensor, tensor_to_frames
from flowstudio.weights import WanComponents, encode_prompts, load_components

logger = logging.getLogger(__name__)


TIMESTEP_MODES: tuple[str, ...] = ("auto", "integer", "float")


class VaeCache:
    """Results of the VAE keyed by their input's content: an exact, bounded (LRU) memo.

    Why: a benchmark edits one source clip with many configurations, and each edit encodes the same
    frames again; configurations that differ only after decoding (a pixel composite) decode the same
    latents again. The VAE is deterministic, so a result found by the input's bytes (BLAKE2b-128 of
    them, with shape and dtype) is the one a new call would compute, bit for bit. Off unless
    ``max_bytes > 0``. ``saved_seconds`` adds up the compute time of every entry served from the cache,
    so that a caller timing an edit can report what it would have cost on its own.
    """

    def __init__(self, max_bytes: int = 0) -> None:
        self.max_bytes = max_bytes
        self.saved_seconds = 0.0
        self.hits = 0
        self._items: OrderedDict[tuple, tuple[torch.Tensor | np.ndarray, float, int]] = OrderedDict()

    @staticmethod
    def key(kind: str, value: torch.Tensor | np.ndarray) -> tuple:
        """``(kind, shape, dtype, digest of the bytes)`` of a tensor (any dtype, any device) or array."""
        if isinstance(value, torch.Tensor):
            data = value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
        else:
            data = np.ascontiguousarray(value)
        digest = hashlib.blake2b(data.data, digest_size=16).hexdigest()
        return kind, tuple(value.shape), str(value.dtype), digest

    def get(self, key: tuple) -> torch.Tensor | np.ndarray | None:
        """A copy of the cached result (callers may change it in place), or ``None``."""
        if key not in self._items:
            return None
        self._items.move_to_end(key)
        value, seconds, _ = self._items[key]
        self.hits += 1
        self.saved_seconds += seconds
        return value.clone() if isinstance(value, torch.Tensor) else value.copy()

    def put(self, key: tuple, value: torch.Tensor | np.ndarray, seconds: float) -> None:
        size = value.numel() * value.element_size() if isinstance(value, torch.Tensor) else value.nbytes
        if size > self.max_bytes:
            return
        copy = value.clone() if isinstance(value, torch.Tensor) else value.copy()
        self._items[key] = (copy, seconds, size)
        while sum(entry[2] for entry in self._items.values()) > self.max_bytes:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()


@dataclass(frozen=True)
class GenerationSettings:
    """Everything that determines a generation; saved beside outputs.

    ``timesteps`` is what the transformer is fed at each step: ``"integer"`` is ``floor(1000 sigma)``
    as stock diffusers' ``WanPipeline`` / ``WanImageToVideoPipeline`` do (their UniPC scheduler
    casts its timesteps to int64; the solver keeps the float sigmas); ``"float"`` is the exact
    ``1000 sigma``; ``"auto"`` (default) is ``integer`` with the ``unipc`` solver and ``float``
    with the others. Why integer for UniPC: with it ``generate`` equals stock ``WanPipeline``
    loaded from the same folder (same seed, steps, guidance, shift) to ~1e-6 in latents instead of
    ~1e-2 (``tests/test_diffusers_parity.py``), and Wan2.2's own sampler feeds integer timesteps
    too, so the default is the behaviour the released weights were sampled with. Euler and the
    midpoint solvers have no integer-timestep counterpart in diffusers (its FlowMatch Euler
    scheduler feeds floats; midpoints lie off any grid), so they stay float. Inversion and editing
    do not use these settings: they always feed the exact float timestep, which exact inversion
    needs.
    """

    prompt: str
    negative_prompt: str = ""
    num_frames: int = 17
    height: int = 128
    width: int = 128
    steps: int = 30
    guidance_scale: float = 5.0
    shift: float = 5.0
    solver: str = "unipc"
    seed: int = 0
    image_conditioned: bool = False
    timesteps: str = "auto"

    def __post_init__(self) -> None:
        """Refuse unusable values up front (a run would crash or give NaN minutes later)."""
        from flowstudio.checks import check_int, check_number, check_text
        from flowstudio.core.solvers import SOLVERS

        check_text("prompt", self.prompt, "what the video shows")
        if not isinstance(self.negative_prompt, str):
            raise InputError(f"negative_prompt must be a text ('' for none), got {self.negative_prompt!r}")
        for name in ("num_frames", "height", "width", "steps"):
            check_int(name, getattr(self, name), minimum=1)
        check_int("seed", self.seed)
        check_number("guidance_scale", self.guidance_scale, what="; 1 disables guidance, 5 is usual")
        check_number("shift", self.shift, positive=True, what="; the flow shift of the schedule, 5 is usual")
        if self.solver not in SOLVERS:
            raise InputError(f"unknown solver {self.solver!r}; choose one of {', '.join(sorted(SOLVERS))}")
        if self.timesteps not in TIMESTEP_MODES:
            raise InputError(
                f"unknown timesteps {self.timesteps!r}; choose one of {', '.join(TIMESTEP_MODES)} "
                "(integer: floor(1000 sigma) as diffusers' Wan pipelines; float: exact 1000 sigma)"
            )

    @property
    def integer_timesteps(self) -> bool:
        """Whether the model is fed ``floor(1000 sigma)`` (``timesteps`` resolved for this solver)."""
        if self.timesteps == "auto":
            return self.solver == "unipc"
        return self.timesteps == "integer"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GenerationResult:
    frames: np.ndarray  # uint8 (T, H, W, 3)
    latents: torch.Tensor  # (1, C, T', H', W')
    settings: GenerationSettings
    model_calls: int
    extras: dict[str, Any] = field(default_factory=dict)


class WanVideoPipeline:
    """Text(+image)-to-video on any Wan2.2-TI2V-form checkpoint (real or toy), one code path."""

    def __init__(
        self,
        components: WanComponents,
        *,
        device: torch.device | str = "cpu",
        # Two model calls per step (one per CFG branch), as stock WanPipeline makes: batched GEMMs
        # round differently (~3e-6 per call on CPU), which the trained toy model amplifies to ~2e-5
        # in the final latents; unbatched, generation equals stock diffusers bit for bit. Batching
        # was not faster on CPU (toy clip 4.3-4.5 s batched vs 3.9-4.2 s serial) and doubles the
        # activation memory; ``batch_cfg=True`` remains an option.
        batch_cfg: bool = False,
        max_sequence_length: int = 512,
        prompt_cache_size: int = 64,
        vae_cache_bytes: int = 0,
    ) -> None:
        self.components = components
        self.device = torch.device(device)
        self.max_sequence_length = max_sequence_length
        self.denoiser = WanDenoiser(
            components.transformer,
            batch_cfg=batch_cfg,
            expand_timesteps=bool(components.model_index.get("expand_timesteps", False)),
        )
        vae_config = components.vae.config
        self.spatial_scale = int(getattr(vae_config, "scale_factor_spatial", 16))
        self.temporal_scale = int(getattr(vae_config, "scale_factor_temporal", 4))
        self.size_multiple = self.spatial_scale * int(components.transformer.config.patch_size[-1])
        self._latents_mean = torch.tensor(vae_config.latents_mean, dtype=torch.float32).view(1, -1, 1, 1, 1)
        self._latents_std = torch.tensor(vae_config.latents_std, dtype=torch.float32).view(1, -1, 1, 1, 1)
        # most recently used prompts' states; bounded so that a long-lived pipeline serving many callers
        # (server, benchmark) does not grow without limit
        self._prompt_cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.prompt_cache_size = prompt_cache_size
        # off by default: a benchmark that encodes one source for many edits turns it on
        self.vae_cache = VaeCache(vae_cache_bytes)
        self.vocabulary = _toy_vocabulary(components)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | None = None,
        vae_dtype: torch.dtype | None = None,
        offload: str = "none",
        **options: Any,
    ) -> WanVideoPipeline:
        """Load from a local diffusers-format folder; never downloads. ``dtype``: the transformer's
        and text encoder's; ``vae_dtype``: the VAE's (default float32)."""
        components = load_components(path, device=device, dtype=dtype, vae_dtype=vae_dtype, offload=offload)
        return cls(components, device=device, **options)

    # -- checks ---------------------------------------------------------------------------------
    def check_inputs(self, *, num_frames: int, height: int, width: int, steps: int) -> None:
        """Validate sizes against the model; messages name the argument, the rule and the value."""
        if num_frames < 1 or (num_frames - 1) % self.temporal_scale:
            raise InputError(
                f"num_frames must be {self.temporal_scale}k+1 (1, 5, 9, 13, 17, ...), got {num_frames}; "
                "normalise the clip with flowstudio.video.normalize_clip"
            )
        for name, value in (("height", height), ("width", width)):
            if value < self.size_multiple or value % self.size_multiple:
                raise InputError(
                    f"{name} must be a positive multiple of {self.size_multiple} for this model, got {value}"
                )
        if steps < 1:
            raise InputError(f"steps must be >= 1, got {steps}")

    # -- encoders -------------------------------------------------------------------------------
    def encode_prompt(self, prompt: str) -> torch.Tensor:
        """Text-encoder states ``(1, L, D)``; the last ``prompt_cache_size`` prompts are kept (editing
        encodes the same prompts often), least recently used first out."""
        if prompt in self._prompt_cache:
            self._prompt_cache.move_to_end(prompt)
            return self._prompt_cache[prompt]
        self._warn_unknown_words(prompt)
        embeds, _ = encode_prompts(self.components, [prompt], max_sequence_length=self.max_sequence_length)
        self._prompt_cache[prompt] = embeds = embeds.to(self.device)
        while len(self._prompt_cache) > max(self.prompt_cache_size, 0):
            self._prompt_cache.popitem(last=False)
        return embeds

    def _warn_unknown_words(self, prompt: str) -> None:
        if self.vocabulary is None:
            return
        unknown = sorted({w for w in re.findall(r"[a-z]+", prompt.lower())} - self.vocabulary)
        if unknown:
            logger.warning(
                "prompt words outside this toy model's vocabulary: %s; the model never saw them "
                "and will mostly ignore them (known words: %s/tokenizer/%s)",
                ", ".join(unknown),
                self.components.path,
                VOCABULARY_FILE,
            )

    @torch.no_grad()
    def encode_video(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 ``(T, H, W, 3)`` -> normalised latents ``(1, C, T', H', W')`` (VAE mode, float32)."""
        key = VaeCache.key("encode", frames) if self.vae_cache.max_bytes > 0 else None
        cached = None if key is None else self.vae_cache.get(key)
        if cached is not None:
            return cached  # type: ignore[return-value]
        start = time.perf_counter()
        vae = self.components.vae
        video = frames_to_tensor(frames).to(self.device, dtype=vae.dtype)
        latents = vae.encode(video).latent_dist.mode().float()
        latents = (latents - self._latents_mean.to(latents.device)) / self._latents_std.to(latents.device)
        if key is not None:
            if latents.device.type == "cuda":
                torch.cuda.synchronize(latents.device)  # the time the encode took, not its launch
            self.vae_cache.put(key, latents, time.perf_counter() - start)
        return latents

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> np.ndarray:
        """Normalised latents -> uint8 frames ``(T, H, W, 3)``."""
        key = VaeCache.key("decode", latents) if self.vae_cache.max_bytes > 0 else None
        cached = None if key is None else self.vae_cache.get(key)
        if cached is not None:
            return cached  # type: ignore[return-value]
        start = time.perf_counter()
        vae = self.components.vae
        raw = latents * self._latents_std.to(latents.device) + self._latents_mean.to(latents.device)
        video = vae.decode(raw.to(vae.dtype), return_dict=False)[0]
        frames = tensor_to_frames(video.float().cpu())
        if key is not None:
            self.vae_cache.put(key, frames, time.perf_counter() - start)
        return frames

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int, int]:
        channels = int(self.components.transformer.config.in_channels)
        return (
            1,
            channels,
            (num_frames - 1) // self.temporal_scale + 1,
            height // self.spatial_scale,
            width // self.spatial_scale,
        )

    def conditioning(
        self,
        prompt: str,
        *,
        negative_prompt: str = "",
        guidance_scale: float = 5.0,
        image: np.ndarray | None = None,
        latent_shape: Sequence[int] | None = None,
        integer_timesteps: bool = False,
    ) -> Conditioning:
        """Bundle prompt states, CFG and (optionally) the TI2V first frame for the denoiser.

        ``image`` is uint8 ``(H, W, 3)``; its latent becomes the pinned latent frame 0.
        ``integer_timesteps`` feeds the model ``floor(1000 sigma)`` as diffusers does (generation
        only; see :class:`GenerationSettings`); inversion and editing keep the float default.
        """
        first_frame, mask = None, None
        if image is not None:
            if latent_shape is None:
                raise InputError("latent_shape is required with an image")
            if image.ndim != 3 or image.shape[-1] != 3:
                raise InputError(f"image must be uint8 (H, W, 3), got shape {image.shape}")
            expected = (latent_shape[3] * self.spatial_scale, latent_shape[4] * self.spatial_scale)
            if image.shape[:2] != expected:
                raise InputError(
                    f"image is {image.shape[0]}x{image.shape[1]} but the video is "
                    f"{expected[0]}x{expected[1]}; resize the image to the video size"
                )
            first_frame = self.encode_video(image[None])
            mask = first_frame_mask(tuple(latent_shape), device=self.device)
        use_cfg = guidance_scale != 1.0
        return Conditioning(
            prompt_embeds=self.encode_prompt(prompt),
            negative_embeds=self.encode_prompt(negative_prompt) if use_cfg else None,
            guidance_scale=guidance_scale,
            first_frame=first_frame,
            mask=mask,
            integer_timesteps=integer_timesteps,
        )

    # -- generation -----------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        settings: GenerationSettings,
        *,
        image: np.ndarray | None = None,
        controllers: Sequence[Controller] = (),
        progress: bool = True,
    ) -> GenerationResult:
        """Text-to-video, or text+image-to-video when ``image`` (uint8 ``(H, W, 3)``) is given."""
        s = settings
        # 1. check inputs
        self.check_inputs(num_frames=s.num_frames, height=s.height, width=s.width, steps=s.steps)
        # 2. encode prompts and the first frame
        shape = self.latent_shape(s.num_frames, s.height, s.width)
        cond = self.conditioning(
            s.prompt,
            negative_prompt=s.negative_prompt,
            guidance_scale=s.guidance_scale,
            image=image,
            latent_shape=shape,
            integer_timesteps=s.integer_timesteps,
        )
        # 3. prepare latents (seeded on CPU so that CPU and GPU runs start from the same noise)
        generator = torch.Generator().manual_seed(s.seed)
        noise = torch.randn(shape, generator=generator).to(self.device)
        # 4. solve; a DMD student's sampler re-noises from the same generator, as stock WanPipeline does
        state = self.solve(
            noise,
            cond,
            steps=s.steps,
            shift=s.shift,
            solver=s.solver,
            controllers=controllers,
            progress=progress,
            generator=generator,
        )
        # 5. decode
        frames = self.decode_latents(state.x)
        return GenerationResult(
            frames=frames,
            latents=state.x,
            settings=s,
            model_calls=state.model_calls,
            extras={"integer_timesteps": s.integer_timesteps},
        )

    @torch.no_grad()
    def solve(
        self,
        x: torch.Tensor,
        cond: Conditioning,
        *,
        steps: int,
        shift: float = 5.0,
        solver: str = "unipc",
        direction: Direction = "denoise",
        controllers: Sequence[Controller] = (),
        progress: bool = False,
        generator: torch.Generator | None = None,
    ) -> LoopState:
        """Run the one loop on the shifted flow grid: denoise noise -> latents, or invert latents -> noise.

        ``solver="dmd"`` (a distilled student, :mod:`flowstudio.core.stochastic`) walks the student's own
        levels and draws its fresh noise from ``generator``."""
        pin = None if cond.first_frame is None else FirstFramePin(condition=cond.first_frame, mask=cond.mask)
        # the one solver that draws noise takes the generator; every solver names its own grid
        stepper = StochasticSolver(generator) if solver == StochasticSolver.name else make_solver(solver)
        return run_loop(
            self.denoiser.bind(cond),
            x,
            stepper.grid(steps, shift),
            stepper,
            direction=direction,
            controllers=controllers,
            pin=pin,
            model=self.components.transformer,
            progress=progress,
            description=direction,
        )

    def invert(
        self,
        latents: torch.Tensor,
        cond: Conditioning,
        *,
        steps: int,
        shift: float = 5.0,
        solver: str = "euler",
        **options: Any,
    ) -> torch.Tensor:
        """Map clean latents to the noise that regenerates them under ``cond`` (same grid as generation)."""
        return self.solve(
            latents, cond, steps=steps, shift=shift, solver=solver, direction="invert", **options
        ).x


def _toy_vocabulary(components: WanComponents) -> set[str] | None:
    """Whole-word vocabulary of a toy checkpoint's tokenizer, if it ships one (real checkpoints do not)."""
    file = Path(components.path) / "tokenizer" / VOCABULARY_FILE
    return set(file.read_text().split()) if file.exists() else None
