"""Batched model calls over source and target rows: the one model-call path of every edit.

:class:`EditDenoiser` wraps :class:`flowstudio.denoiser.WanDenoiser` (never the model class). A
call asks for the velocity of one or more *sides* (``"src"``, ``"tgt"``), each with its own latent
``(1, C, T, H, W)`` and :class:`~flowstudio.denoiser.Conditioning` (prompt, CFG scale, TI2V first
frame). All rows (side x CFG branch) go through the transformer in one batch, source rows first, so
controls can read source features and change target rows inside the same forward; ``max_rows``
splits the batch (source chunks still run first) to bound activation memory.

Requests that are identical (same latent values, same conditioning) are evaluated once and share
the result: a reconstruction (target prompt = source prompt) costs one branch, and the velocity
difference FlowEdit integrates is then exactly zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from flowstudio.core.flow import classifier_free_guidance, model_timestep
from flowstudio.core.solvers import VelocityFn
from flowstudio.core.ti2v import per_token_timesteps, pin_first_frame
from flowstudio.denoiser import Conditioning, WanDenoiser
from flowstudio.edit.context import EditContext, Row, Side


@dataclass
class Request:
    """One side of a model call: latent ``x`` ``(1, C, T, H, W)`` under ``cond``."""

    side: Side
    x: torch.Tensor
    cond: Conditioning


def same_conditioning(a: Conditioning, b: Conditioning) -> bool:
    """True when two conditionings give the same model input (prompt states, CFG, first frame)."""
    if a is b:
        return True

    def same(u: torch.Tensor | None, v: torch.Tensor | None) -> bool:
        if u is None or v is None:
            return u is v
        return u.shape == v.shape and bool(torch.equal(u, v))

    return (
        a.guidance_scale == b.guidance_scale
        and a.integer_timesteps == b.integer_timesteps
        and a.uses_cfg == b.uses_cfg
        and same(a.prompt_embeds, b.prompt_embeds)
        and (not a.uses_cfg or same(a.negative_embeds, b.negative_embeds))
        and same(a.first_frame, b.first_frame)
    )


class EditDenoiser:
    """Velocities of source/target requests in one batched transformer call.

    Attributes:
        forward_calls: transformer forwards run so far (one per chunk).
        row_evaluations: rows evaluated so far (the compute that was spent: one row = one CFG
            branch of one side at one point).
    """

    def __init__(self, denoiser: WanDenoiser, context: EditContext, *, max_rows: int | None = None) -> None:
        if max_rows is not None and max_rows < 1:
            raise ValueError(f"max_rows must be >= 1 or None, got {max_rows}")
        self.denoiser = denoiser
        self.context = context
        self.max_rows = max_rows
        self.forward_calls = 0
        self.row_evaluations = 0

    def _timesteps(self, x: torch.Tensor, sigma: float, cond: Conditioning) -> torch.Tensor:
        """Per-token timesteps ``(1, seq)``, 0 on pinned first-frame tokens (always 2-D, so rows stack)."""
        t = torch.tensor(
            model_timestep(
                sigma, integer=cond.integer_timesteps, num_train_timesteps=self.denoiser.num_train_timesteps
            ),
            device=x.device,
            dtype=torch.float32,
        )
        mask = cond.mask
        if mask is None:
            mask = torch.ones(1, 1, *x.shape[2:], device=x.device)
        return per_token_timesteps(mask.to(x.device), t, self.denoiser.patch_size, x.shape[0])

    @torch.no_grad()
    def velocities(self, requests: Sequence[Request], sigma: float) -> dict[Side, torch.Tensor]:
        """Guided velocity ``(1, C, T, H, W)`` per requested side, all rows in one batch."""
        unique: list[Request] = []
        alias: dict[Side, Side] = {}
        for req in requests:
            twin = next(
                (
                    u
                    for u in unique
                    if same_conditioning(u.cond, req.cond)
                    and u.x.shape == req.x.shape
                    and torch.equal(u.x, req.x)
                ),
                None,
            )
            if twin is None:
                unique.append(req)
            alias[req.side] = req.side if twin is None else twin.side
        unique.sort(key=lambda r: r.side != "src")  # source rows first
        self.context.call_id += 1

        rows: list[tuple[Row, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]] = []
        for req in unique:
            x = (
                req.x
                if req.cond.first_frame is None
                else pin_first_frame(req.x, req.cond.first_frame, req.cond.mask)
            )
            t = self._timesteps(x, sigma, req.cond)
            kwargs = req.cond.attention_kwargs
            rows.append((Row(req.side, "cond"), x, t, req.cond.prompt_embeds, kwargs))
            if req.cond.uses_cfg:
                rows.append((Row(req.side, "uncond"), x, t, req.cond.negative_embeds, kwargs))

        outputs: list[torch.Tensor] = []
        for chunk in _chunks(rows, self.max_rows or len(rows)):
            self.context.rows = tuple(r[0] for r in chunk)
            out = self.denoiser.forward_rows(
                torch.cat([r[1] for r in chunk]),
                torch.cat([r[2] for r in chunk]),
                torch.cat([r[3].to(chunk[0][1].device) for r in chunk]),
                chunk[0][4],
            )
            outputs.extend(out.split(1))
            self.forward_calls += 1
            self.row_evaluations += len(chunk)
        self.context.rows = ()

        result: dict[Side, torch.Tensor] = {}
        k = 0
        for req in unique:
            v = outputs[k]
            k += 1
            if req.cond.uses_cfg:
                v = classifier_free_guidance(v, outputs[k], req.cond.guidance_scale)
                k += 1
            if req.cond.mask is not None:
                v = v * req.cond.mask.to(v.dtype)  # pinned tokens do not move
            result[req.side] = v
        return {side: result[alias[side]] for side in alias}

    def side_fn(self, side: Side, cond: Conditioning) -> VelocityFn:
        """``velocity_fn(x, sigma)`` of one side alone, for the sampling loop."""
        return lambda x, sigma: self.velocities([Request(side, x, cond)], sigma)[side]


def _chunks(rows: list, size: int) -> list[list]:
    """Consecutive rows in chunks of at most ``size`` that share one ``attention_kwargs`` (the last
    field of a row; the same dict object, or both empty): one transformer call takes one set, so rows
    whose sets may differ never share a call."""
    chunks: list[list] = []
    for row in rows:
        kwargs, first = row[-1], chunks[-1][0][-1] if chunks else None
        if chunks and len(chunks[-1]) < size and (kwargs is first or (not kwargs and not first)):
            chunks[-1].append(row)
        else:
            chunks.append([row])
    return chunks
