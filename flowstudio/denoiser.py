"""The one denoiser contract: ``denoiser(x_t, sigma, cond) -> velocity``.

:class:`WanDenoiser` wraps a diffusers ``WanTransformer3DModel`` (never copies it). It applies
Wan2.2 TI2V first-frame conditioning (clean frame-0 latent, per-token timestep 0) and
classifier-free guidance, with both CFG branches in one batched model call by default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from flowstudio.core.flow import NUM_TRAIN_TIMESTEPS, classifier_free_guidance, model_timestep
from flowstudio.core.solvers import VelocityFn
from flowstudio.core.ti2v import per_token_timesteps, pin_first_frame


@dataclass
class Conditioning:
    """What the model is conditioned on for one trajectory.

    ``prompt_embeds`` / ``negative_embeds``: ``(B, L, D)`` text-encoder states (same ``L``).
    ``first_frame``: clean latent of the conditioning image ``(B, C, 1, H, W)``, or ``None``
    for text-to-video. ``mask``: ``(1, 1, T, H, W)``, 0 on pinned positions (see ``core.ti2v``).
    ``integer_timesteps``: feed the model ``floor(1000 sigma)`` instead of ``1000 sigma``, as
    diffusers' Wan pipelines do with UniPC (see :func:`flowstudio.core.flow.model_timestep`);
    generation sets it, inversion and editing leave it off (they need the exact float timestep).
    """

    prompt_embeds: torch.Tensor
    negative_embeds: torch.Tensor | None = None
    guidance_scale: float = 1.0
    first_frame: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    attention_kwargs: dict[str, Any] = field(default_factory=dict)
    integer_timesteps: bool = False

    @property
    def uses_cfg(self) -> bool:
        return self.negative_embeds is not None and self.guidance_scale != 1.0


class WanDenoiser:
    """Velocity of a ``WanTransformer3DModel`` at ``(x, sigma)`` under a :class:`Conditioning`.

    Inputs and outputs are float32 latents ``(B, C, T, H, W)``; the model runs in its own dtype.
    ``batch_cfg=False`` runs the two CFG branches as two calls (half the activation memory).
    ``expand_timesteps=True`` (Wan2.2 TI2V checkpoints: ``expand_timesteps`` in ``model_index.json``)
    feeds per-token timesteps ``(B, seq_len)`` also without a first frame, as diffusers'
    ``WanPipeline`` does for those checkpoints: the same values as one timestep per row, but the
    model's time embedding then runs per token, which rounds differently (~3e-6 per call on the
    toy model), so this is needed to match stock diffusers to 1e-5.

    ``forward_module``: the module to call when training runs the transformer inside a wrapper (DDP or
    FSDP, prepared by :mod:`flowstudio.train`): its gradient synchronisation happens only when the
    wrapper is called, while config and dtype are read from the bare ``transformer``.
    """

    def __init__(
        self,
        transformer: torch.nn.Module,
        *,
        batch_cfg: bool = True,
        num_train_timesteps: int = NUM_TRAIN_TIMESTEPS,
        expand_timesteps: bool = False,
        forward_module: torch.nn.Module | None = None,
    ) -> None:
        self.transformer = transformer
        self.forward_module = forward_module if forward_module is not None else transformer
        self.batch_cfg = batch_cfg
        self.num_train_timesteps = num_train_timesteps
        self.expand_timesteps = expand_timesteps
        self.patch_size = tuple(transformer.config.patch_size)

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the transformer computes in (inputs are cast to it).

        Not simply the first parameter's: loaded with ``torch_dtype=torch.bfloat16``, diffusers keeps
        the class's ``_keep_in_fp32_modules`` in float32, and Wan's first parameter
        (``scale_shift_table``) is one of them, so bf16 inputs would be fed as float32 and the patch
        embedding would refuse them. diffusers' ``ModelMixin.dtype`` skips those modules.
        """
        dtype = getattr(self.transformer, "dtype", None)
        return dtype if isinstance(dtype, torch.dtype) else next(self.transformer.parameters()).dtype

    def _timestep(self, x: torch.Tensor, sigma: float, cond: Conditioning) -> torch.Tensor:
        t = torch.tensor(
            model_timestep(
                sigma, integer=cond.integer_timesteps, num_train_timesteps=self.num_train_timesteps
            ),
            device=x.device,
            dtype=torch.float32,
        )
        mask = cond.mask
        if mask is None:
            if not self.expand_timesteps:
                return t.expand(x.shape[0])
            mask = torch.ones(1, 1, *x.shape[2:], device=x.device)
        return per_token_timesteps(mask.to(x.device), t, self.patch_size, x.shape[0])

    def row_timesteps(self, sigma: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Model timesteps for rows at their own noise levels ``sigma`` ``(B,)`` (training draws one per row).

        ``mask`` ``(B, 1, T, H, W)``, 0 on pinned positions (per row: T2V rows all ones, I2V rows 0 on
        latent frame 0), gives per-token timesteps ``(B, seq)``; without it ``(B,)``. Float timesteps
        ``1000 sigma`` (training needs the exact value; no integer truncation).
        """
        t = model_timestep(sigma.float(), num_train_timesteps=self.num_train_timesteps)
        if mask is None:
            return t
        return torch.cat(
            [per_token_timesteps(mask[b : b + 1], t[b], self.patch_size, 1) for b in range(sigma.shape[0])]
        )

    def forward_rows(
        self, x: torch.Tensor, timestep: torch.Tensor, embeds: torch.Tensor, attention_kwargs: dict[str, Any]
    ) -> torch.Tensor:
        """One transformer call on stacked rows: raw velocities ``(B, C, T, H, W)`` in float32.

        ``timestep`` is ``(B,)`` or per-token ``(B, seq)``; no pinning, guidance or masking here (the
        callers, :meth:`__call__` and the paired editing denoiser, apply those once).
        """
        out = self.forward_module(
            hidden_states=x.to(self.dtype),
            timestep=timestep,
            encoder_hidden_states=embeds.to(self.dtype),
            attention_kwargs=attention_kwargs or None,
            return_dict=False,
        )[0]
        return out.float()

    def __call__(self, x: torch.Tensor, sigma: float, cond: Conditioning) -> torch.Tensor:
        if cond.first_frame is not None:
            x = pin_first_frame(x, cond.first_frame, cond.mask)
        timestep = self._timestep(x, sigma, cond)
        if not cond.uses_cfg:
            velocity = self.forward_rows(x, timestep, cond.prompt_embeds, cond.attention_kwargs)
        elif self.batch_cfg:
            both = self.forward_rows(
                torch.cat([x, x]),
                torch.cat([timestep, timestep]),
                torch.cat([cond.prompt_embeds, cond.negative_embeds]),
                cond.attention_kwargs,
            )
            v_cond, v_uncond = both.chunk(2)
            velocity = classifier_free_guidance(v_cond, v_uncond, cond.guidance_scale)
        else:
            v_cond = self.forward_rows(x, timestep, cond.prompt_embeds, cond.attention_kwargs)
            v_uncond = self.forward_rows(x, timestep, cond.negative_embeds, cond.attention_kwargs)
            velocity = classifier_free_guidance(v_cond, v_uncond, cond.guidance_scale)
        if cond.mask is not None:
            # Pinned tokens do not move: a zero velocity keeps multistep histories consistent with that.
            velocity = velocity * cond.mask.to(velocity.dtype)
        return velocity

    def bind(self, cond: Conditioning) -> VelocityFn:
        """``velocity_fn(x, sigma)`` for the solvers, with ``cond`` fixed."""
        return lambda x, sigma: self(x, sigma, cond)
