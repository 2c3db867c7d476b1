"""Memory per GPU of DualForce training under FSDP (full shard), estimated from the config.

An estimate, not a measurement: parameter counts are exact (the model is built on the ``meta`` device,
no memory used); the byte counts per parameter follow from the recipe; activations are a rough bound.
``benchmarks/gpu_check.py`` measures the real peak when a GPU is at hand.

The recipe of ``configs/dualforce/accelerate_fsdp.yaml``: FSDP2 full shard, one unit per
``WanTransformerBlock`` and ``BridgeLayer`` plus the root (embeddings, heads, audio module), bf16
mixed precision with fp32 master weights, AdamW, activation checkpointing per unit.

* sharded state: fp32 weights (4 B) + fp32 gradients (4 B: FSDP2 reduces into the sharded parameter's
  dtype) + AdamW moments (8 B) = 16 B per parameter, divided by the number of GPUs (``avatar verify``'s
  unsharded figure counts bf16 gradients, 14 B);
* gathered weights: the bf16 copy of the root (kept during the whole forward/backward) plus two units
  (the one running and the one prefetched), 2 B per parameter;
* activations: with checkpointing, the bf16 input of every unit is kept (tokens x width x 2 B per
  layer), plus one unit recomputed in full during its backward, taken as ~16 values per token and
  width plus the FFN's 2 x ffn_dim (attention through SDPA/flash is linear in the tokens).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from flowstudio.avatar.model.config import DualForceConfig
from flowstudio.avatar.model.rates import BlockLayout, TokenRates

GIB = 1024**3
STATE_BYTES = 16  # fp32 weight + fp32 grad + two fp32 AdamW moments
GATHERED_BYTES = 2  # bf16 working copy of an all-gathered unit


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per GPU, by kind, and the counts they come from."""

    gpus: int
    parameters: int
    largest_unit: int
    root_parameters: int
    video_tokens: int
    struct_tokens: int
    sharded_state_gib: float
    gathered_weights_gib: float
    activations_gib: float

    @property
    def total_gib(self) -> float:
        return self.sharded_state_gib + self.gathered_weights_gib + self.activations_gib

    def to_dict(self) -> dict[str, float | int]:
        return {**asdict(self), "total_gib": self.total_gib}


def _meta_model(config: DualForceConfig) -> torch.nn.Module:
    from flowstudio.avatar.model.dualforce import DualForceModel

    with torch.device("meta"):
        return DualForceModel(config)


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def fsdp_memory(
    config: DualForceConfig, num_chunks: int, gpus: int = 8, batch_size: int = 1
) -> MemoryEstimate:
    """Estimate per-GPU memory of one training step on ``num_chunks`` chunks (plus the sink)."""
    model = _meta_model(config)
    units = [*model.video.blocks, *model.struct.blocks, *model.bridge.layers.values()]
    unit_params = [_count(u) for u in units]
    total = _count(model)
    root = total - sum(unit_params)
    layout = BlockLayout.build(TokenRates.from_config(config.rates), 0, num_chunks, sink=True)
    h, w = config.latent_size
    _, ph, pw = config.video.patch_size
    video_tokens = len(layout.video_pos) * (h // ph) * (w // pw) * batch_size
    struct_tokens = len(layout.struct_pos) * batch_size
    stored = sum(
        tokens * tower.dim * tower.num_layers * 2
        for tokens, tower in ((video_tokens, config.video), (struct_tokens, config.struct))
    )
    recompute = max(
        tokens * (16 * tower.dim + 2 * tower.ffn_dim) * 2
        for tokens, tower in ((video_tokens, config.video), (struct_tokens, config.struct))
    )
    return MemoryEstimate(
        gpus=gpus,
        parameters=total,
        largest_unit=max(unit_params, default=0),
        root_parameters=root,
        video_tokens=video_tokens,
        struct_tokens=struct_tokens,
        sharded_state_gib=total * STATE_BYTES / gpus / GIB,
        gathered_weights_gib=(root + 2 * max(unit_params, default=0)) * GATHERED_BYTES / GIB,
        activations_gib=(stored + recompute) / GIB,
    )
