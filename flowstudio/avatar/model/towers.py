"""The two DiT towers: video (Wan patches of latent frames) and structure (one token per 25 Hz frame).

Both are stacks of diffusers' ``WanTransformerBlock`` (self-attention with Wan's 3D rotary
embedding, cross-attention, feed-forward, AdaLN modulation with per-token timesteps as in Wan2.2
TI2V). The self-attention gets :class:`~flowstudio.avatar.model.attention.CausalSelfAttnProcessor`
(block-causal + KV cache) and the cross-attention, which here attends to *audio* tokens, gets
:class:`~flowstudio.avatar.model.attention.AlignedCrossAttnProcessor`. The model runs the towers layer by
layer in lockstep (the bridge sits between layers), so a tower exposes ``embed`` / ``block`` /
``head`` rather than one ``forward``. ``block`` takes the per-call
:class:`~flowstudio.avatar.model.attention.AttentionCall` (block ids, window, the caller's cache) as an
argument; a tower stores nothing per call or per stream.

Timestep modulation is :class:`DualAdaLNZero`: a tower's tokens are modulated by their own
modality's sigma and, through a zero-initialised branch, by the other modality's sigma at the same
time (so the video knows how clean the structure it reads is, and vice versa).
"""

from __future__ import annotations

import math

import torch
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.normalization import FP32LayerNorm
from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed, WanTransformerBlock
from torch import nn

from flowstudio.avatar.model.attention import (
    AlignedCrossAttnProcessor,
    AttentionCall,
    CausalSelfAttnProcessor,
)
from flowstudio.avatar.model.config import TowerConfig
from flowstudio.avatar.model.kv_cache import SINK_BLOCK
from flowstudio.core.flow import NUM_TRAIN_TIMESTEPS
from flowstudio.errors import InputError
from flowstudio.wan_attention import apply_rotary


class DualAdaLNZero(nn.Module):
    """Per-token AdaLN parameters from two sigmas.

    ``e = Emb(1000 sigma_self)``; ``mod = Lin(silu(e)) + Lin0(silu(Emb'(1000 sigma_other)))`` with
    ``Lin0`` zero-initialised. Returns ``e`` ``(B, L, D)`` (for the output head) and ``mod``
    ``(B, L, 6, D)`` (shift/scale/gate of attention and feed-forward, Wan's per-token layout).
    """

    def __init__(self, dim: int, freq_dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.timesteps_proj = Timesteps(freq_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedder = TimestepEmbedding(freq_dim, dim)
        self.other_embedder = TimestepEmbedding(freq_dim, dim)
        self.time_proj = nn.Linear(dim, 6 * dim)
        self.other_proj = nn.Linear(dim, 6 * dim)
        nn.init.zeros_(self.other_proj.weight)
        nn.init.zeros_(self.other_proj.bias)

    def _embed(self, embedder: TimestepEmbedding, sigma: torch.Tensor) -> torch.Tensor:
        freq = self.timesteps_proj(sigma.reshape(-1) * NUM_TRAIN_TIMESTEPS)
        dtype = embedder.linear_1.weight.dtype
        return embedder(freq.to(dtype)).unflatten(0, sigma.shape)

    def forward(
        self, sigma_self: torch.Tensor, sigma_other: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self._embed(self.time_embedder, sigma_self)
        other = self._embed(self.other_embedder, sigma_other)
        mod = self.time_proj(nn.functional.silu(emb)) + self.other_proj(nn.functional.silu(other))
        return emb, mod.unflatten(-1, (6, self.dim))


def rotary_for(
    rope: WanRotaryPosEmbed, t_pos: torch.Tensor, h: int, w: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Wan 3D rotary tables for frames at absolute temporal positions ``t_pos`` ``(F,)`` on an ``h x w`` grid.

    Same tables as ``WanRotaryPosEmbed.forward`` (which always starts at frame 0), but at arbitrary
    frame positions so that a chunk gets the positions it has in the whole stream. Returns
    ``(cos, sin)``, each ``(1, F * h * w, 1, head_dim)`` float32.
    """
    if t_pos.numel() and int(t_pos.max()) >= rope.max_seq_len:
        raise InputError(
            f"temporal position {int(t_pos.max())} exceeds the rotary table ({rope.max_seq_len} "
            "frames); raise rope_max_positions in the config or stream shorter clips"
        )
    frames = t_pos.numel()
    out = []
    for table in (rope.freqs_cos, rope.freqs_sin):
        t_tab, h_tab, w_tab = table.split([rope.t_dim, rope.h_dim, rope.w_dim], dim=1)
        t_part = t_tab[t_pos.to(table.device)].view(frames, 1, 1, -1).expand(frames, h, w, -1)
        h_part = h_tab[:h].view(1, h, 1, -1).expand(frames, h, w, -1)
        w_part = w_tab[:w].view(1, 1, w, -1).expand(frames, h, w, -1)
        out.append(torch.cat([t_part, h_part, w_part], dim=-1).reshape(1, frames * h * w, 1, -1).float())
    return out[0], out[1]


def temporal_rotation(rope: WanRotaryPosEmbed, delta: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(cos, sin)``, each ``(1, 1, 1, head_dim)`` float32, that turn a key rotated at temporal
    position ``p`` into the same key at ``p + delta`` (``delta`` may be negative); the spatial (h, w)
    parts of the head are left as they are (angle 0: cos 1, sin 0, exact).

    Rotations compose, ``R(delta) R(p) = R(p + delta)``, and ``R(-delta)`` is ``R(delta)`` with the
    sine negated, so one table row of the tower's own rotary table serves both directions.
    """
    cos, sin = rotary_for(rope, torch.tensor([abs(delta)]), 1, 1)
    return cos, (sin if delta >= 0 else -sin)


def run_wan_block(
    block: WanTransformerBlock,
    hidden: torch.Tensor,
    context: torch.Tensor,
    mod: torch.Tensor,
    rotary: tuple[torch.Tensor, torch.Tensor],
    call: AttentionCall,
) -> torch.Tensor:
    """``WanTransformerBlock.forward`` (per-token ``mod`` ``(B, L, 6, D)``, Wan2.2 TI2V layout), with
    ``call`` handed to both attention processors.

    diffusers' block calls ``attn1(x, None, None, rotary)`` and ``attn2(x, context, None, None)`` and
    has no way to pass anything else; this is the same computation, op for op, plus ``call=call``.
    """
    if mod.ndim != 4:
        raise ValueError(f"run_wan_block takes per-token modulation (B, L, 6, D), got {tuple(mod.shape)}")
    shift_msa, scale_msa, gate_msa, c_shift_msa, c_scale_msa, c_gate_msa = (
        part.squeeze(2) for part in (block.scale_shift_table.unsqueeze(0) + mod.float()).chunk(6, dim=2)
    )

    norm = (block.norm1(hidden.float()) * (1 + scale_msa) + shift_msa).type_as(hidden)
    attn_output = block.attn1(norm, None, None, rotary, call=call)
    hidden = (hidden.float() + attn_output * gate_msa).type_as(hidden)

    norm = block.norm2(hidden.float()).type_as(hidden)
    attn_output = block.attn2(norm, context, None, None, call=call)
    hidden = hidden + attn_output

    norm = (block.norm3(hidden.float()) * (1 + c_scale_msa) + c_shift_msa).type_as(hidden)
    ff_output = block.ffn(norm)
    return (hidden.float() + ff_output.float() * c_gate_msa).type_as(hidden)


class Tower(nn.Module):
    """Shared part of both towers: Wan blocks with block-causal processors, DualAdaLNZero, output head."""

    def __init__(self, config: TowerConfig) -> None:
        super().__init__()
        self.config = config
        self.time = DualAdaLNZero(config.dim, config.freq_dim)
        self.rope = WanRotaryPosEmbed(config.head_dim, config.patch_size, config.rope_max_positions)
        self.blocks = nn.ModuleList(
            WanTransformerBlock(
                config.dim, config.ffn_dim, config.num_heads, cross_attn_norm=True, eps=config.eps
            )
            for _ in range(config.num_layers)
        )
        for index, block in enumerate(self.blocks):
            block.attn1.set_processor(CausalSelfAttnProcessor(index))
            block.attn2.set_processor(AlignedCrossAttnProcessor())
        self.norm_out = FP32LayerNorm(config.dim, config.eps, elementwise_affine=False)
        self.scale_shift_table = nn.Parameter(torch.randn(1, 2, config.dim) / config.dim**0.5)
        self.proj_out = nn.Linear(config.dim, config.out_channels * math.prod(config.patch_size))

    def block(
        self,
        index: int,
        hidden: torch.Tensor,
        context: torch.Tensor,
        mod: torch.Tensor,
        rotary: tuple[torch.Tensor, torch.Tensor],
        call: AttentionCall,
    ) -> torch.Tensor:
        """Run block ``index`` (``hidden``: ``(B, L, D)``, ``context``: audio tokens ``(B, A, D)``)
        with this call's mask inputs and cache ``call``."""
        return run_wan_block(self.blocks[index], hidden, context, mod, rotary, call)

    def rerotate(self, keys: torch.Tensor, delta: int) -> torch.Tensor:
        """Cached self-attention keys ``(B, L, heads, head_dim)`` moved back by ``delta`` temporal
        positions (``R(p) k -> R(p - delta) k``): the KV cache's re-rotation on eviction."""
        cos, sin = temporal_rotation(self.rope, -delta)
        return apply_rotary(keys, cos.to(keys.device), sin.to(keys.device))

    def head(self, hidden: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """Modulated final norm and projection, ``(B, L, D) -> (B, L, out * prod(patch))``."""
        shift, scale = (self.scale_shift_table.unsqueeze(0) + emb.float().unsqueeze(2)).chunk(2, dim=2)
        hidden = self.norm_out(hidden.float()) * (1 + scale.squeeze(2)) + shift.squeeze(2)
        return self.proj_out(hidden.type_as(emb))


class VideoTower(Tower):
    """Video tower over latent frames ``(B, C_in, F, H, W)``, patchified by a Conv3d as in Wan."""

    def __init__(self, config: TowerConfig) -> None:
        super().__init__(config)
        self.patch_embedding = nn.Conv3d(config.in_channels, config.dim, config.patch_size, config.patch_size)

    def embed(
        self, x: torch.Tensor, t_pos: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[int, int, int], tuple[torch.Tensor, torch.Tensor]]:
        """Tokens ``(B, F h w, D)``, the token grid ``(F, h, w)`` and rotary tables at positions ``t_pos``."""
        tokens = self.patch_embedding(x)
        frames, h, w = tokens.shape[2:]
        return tokens.flatten(2).transpose(1, 2), (frames, h, w), rotary_for(self.rope, t_pos, h, w)

    def unpatchify(self, out: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """``(B, F h w, C p_t p_h p_w) -> (B, C, F p_t, h p_h, w p_w)``."""
        frames, h, w = grid
        pt, ph, pw = self.config.patch_size
        out = out.reshape(out.shape[0], frames, h, w, pt, ph, pw, -1)
        return out.permute(0, 7, 1, 4, 2, 5, 3, 6).reshape(out.shape[0], -1, frames * pt, h * ph, w * pw)


class StructureTower(Tower):
    """Structure tower over motion latents ``(B, S, C_s)`` at 25 Hz: one token per structure frame.

    Block-0 tokens are the structure sink: their input is replaced by a learned embedding (the
    reference has no structure at inference; the sink learns it from the reference video tokens
    through the bridge).
    """

    def __init__(self, config: TowerConfig) -> None:
        super().__init__(config)
        self.embedding = nn.Linear(config.in_channels, config.dim)
        self.sink = nn.Parameter(torch.zeros(1, 1, config.dim))

    def embed(
        self, x: torch.Tensor, ids: torch.Tensor, t_pos: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Tokens ``(B, S, D)`` (sink tokens replaced) and 1D rotary tables at positions ``t_pos``."""
        tokens = self.embedding(x)
        is_sink = (ids == SINK_BLOCK).to(tokens.device)[None, :, None]
        tokens = torch.where(is_sink, self.sink.to(tokens.dtype).expand_as(tokens), tokens)
        return tokens, rotary_for(self.rope, t_pos, 1, 1)
