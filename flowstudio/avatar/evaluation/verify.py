"""``flowstudio avatar verify``: shapes, KV-cache consistency, parameter counts and memory estimates.

* **Shapes** - one full-sequence forward of a (toy or given) config returns velocities shaped like its
  inputs.
* **KV-cache consistency** - the same inputs run (a) as one full-sequence block-causal forward and (b)
  chunk by chunk against the cache (sink committed first, each chunk committed after its call, the
  rolling window evicting old chunks and re-rotating the kept keys) give the same velocities for
  every chunk, for the video tower, the structure tower and therefore the bridge between them (a
  ``bridge=none`` run isolates the towers). (a) runs in the cache's window-relative layout
  (``window_positions=True``: every block sees the sink at 0 and its window from position 1),
  computed another way (the sink's keys rotated forward instead of the window's rotated back).
  Tolerance 1e-4 in float32.
* **Parameter count / memory** - models are built on the meta device (no memory, no init), counted
  per component, and memory is estimated for bf16 weights, AdamW training state and the KV cache of
  a streaming window at the config's resolution.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace

import torch

from flowstudio.avatar.model.config import DualForceConfig, preset
from flowstudio.avatar.model.dualforce import DualForceInputs, DualForceModel
from flowstudio.avatar.model.rates import BlockLayout

logger = logging.getLogger(__name__)

GIB = 1024**3


def random_inputs(
    model: DualForceModel, num_chunks: int, *, generator: torch.Generator, batch: int = 1
) -> DualForceInputs:
    """Random full-sequence inputs (sink + ``num_chunks`` chunks) at the config's latent size.

    Sigmas are drawn per frame and per modality in [0, 1]; the sink frame has sigma 0.
    """
    cfg, rates = model.config, model.rates
    layout = BlockLayout.build(rates, 0, num_chunks, sink=True)
    h, w = cfg.latent_size
    frames, structs, audios = len(layout.video_ids), len(layout.struct_ids), len(layout.audio_ids)
    lat = cfg.video_input.latent_channels
    video = torch.randn(batch, lat, frames, h, w, generator=generator)
    video_sigma = torch.rand(batch, frames, generator=generator)
    video_sigma[:, 0] = 0.0
    struct_sigma = torch.rand(batch, structs, generator=generator)
    struct_sigma[:, 0] = 0.0
    return DualForceInputs(
        video=video,
        video_sigma=video_sigma,
        struct=torch.randn(batch, structs, cfg.struct.in_channels, generator=generator),
        struct_sigma=struct_sigma,
        audio=torch.randn(batch, audios, cfg.audio.feature_dim, generator=generator),
        layout=layout,
        reference=video[:, :, :1].clone(),
    )


def _renoised(part: DualForceInputs, generator: torch.Generator) -> DualForceInputs:
    """The same chunk with fresh latents and one fresh sigma per modality (a denoising call)."""
    return replace(
        part,
        video=torch.randn(part.video.shape, generator=generator),
        video_sigma=torch.full_like(part.video_sigma, float(torch.rand(1, generator=generator))),
        struct=torch.randn(part.struct.shape, generator=generator),
        struct_sigma=torch.full_like(part.struct_sigma, float(torch.rand(1, generator=generator))),
    )


def _replace_block(prefix: DualForceInputs, chunk: DualForceInputs, block: int) -> DualForceInputs:
    """``prefix`` (blocks ``<= block``) with block ``block``'s latents and sigmas taken from ``chunk``."""
    lay = prefix.layout
    v, s = lay.video_ids == block, lay.struct_ids == block
    video, video_sigma = prefix.video.clone(), prefix.video_sigma.clone()
    struct, struct_sigma = prefix.struct.clone(), prefix.struct_sigma.clone()
    video[:, :, v], video_sigma[:, v] = chunk.video, chunk.video_sigma
    struct[:, s], struct_sigma[:, s] = chunk.struct, chunk.struct_sigma
    return replace(prefix, video=video, video_sigma=video_sigma, struct=struct, struct_sigma=struct_sigma)


@dataclass(frozen=True)
class ConsistencyReport:
    """Max abs difference between cached chunked and full-sequence velocities."""

    video_max_abs: float
    struct_max_abs: float
    chunks: int
    window: int | None
    evicted: bool
    tolerance: float

    @property
    def ok(self) -> bool:
        return max(self.video_max_abs, self.struct_max_abs) <= self.tolerance


@torch.no_grad()
def check_cache_consistency(
    model: DualForceModel, num_chunks: int = 5, *, seed: int = 0, tolerance: float = 1e-4
) -> ConsistencyReport:
    """Cached chunk-by-chunk calls against the full-sequence block-causal forward.

    For every chunk: (1) a denoising call (fresh latents, another sigma, ``commit=False``) against the
    cache must equal the full forward of ``[committed past, that noisy chunk]``; (2) the clean pass
    (``commit=True``) must equal the rows of one full forward over all chunks. Old chunks are evicted
    by the rolling window on the way (and the kept keys re-rotated); the full forwards run in the
    same window-relative layout (``window_positions=True``).
    """
    model = model.float().eval()
    inputs = random_inputs(model, num_chunks, generator=torch.Generator().manual_seed(seed))
    full_v, full_s = model(inputs, window_positions=True)
    cache = model.new_cache()
    generator = torch.Generator().manual_seed(seed + 1)
    worst_v = worst_s = 0.0

    def compare(
        out: tuple[torch.Tensor, torch.Tensor],
        ref: tuple[torch.Tensor, torch.Tensor],
        ref_inputs: DualForceInputs,
        block: int,
    ) -> None:
        nonlocal worst_v, worst_s
        v_rows = torch.nonzero(ref_inputs.layout.video_ids == block).squeeze(1)
        s_rows = torch.nonzero(ref_inputs.layout.struct_ids == block).squeeze(1)
        worst_v = max(worst_v, float((out[0] - ref[0].index_select(2, v_rows)).abs().max()))
        worst_s = max(worst_s, float((out[1] - ref[1].index_select(1, s_rows)).abs().max()))

    for block in range(num_chunks + 1):  # block 0: the sink (clean reference pass)
        part = inputs.select(block, block + 1)
        if block:  # a denoising call at another noise level reads the cache and must not change it
            noisy = _renoised(part, generator)
            prefix = _replace_block(inputs.select(0, block + 1), noisy, block)
            compare(model(noisy, cache=cache), model(prefix, window_positions=True), prefix, block)
        compare(model(part, cache=cache, commit=True), (full_v, full_s), inputs, block)  # clean pass commits
    window = model.config.forcing.window_chunks
    evicted = bool(window is not None and cache.video.block_ids.unique().numel() < num_chunks + 1)
    return ConsistencyReport(worst_v, worst_s, num_chunks, window, evicted, tolerance)


@torch.no_grad()
def check_shapes(model: DualForceModel, num_chunks: int = 2, *, seed: int = 0) -> dict[str, list[int]]:
    """Input and output shapes of one full-sequence forward (outputs must match inputs)."""
    inputs = random_inputs(model, num_chunks, generator=torch.Generator().manual_seed(seed))
    v, s = model(inputs)
    if v.shape != inputs.video.shape or s.shape[:2] != inputs.struct.shape[:2]:
        raise AssertionError(
            f"velocity shapes {tuple(v.shape)}, {tuple(s.shape)} do not match inputs "
            f"{tuple(inputs.video.shape)}, {tuple(inputs.struct.shape)}"
        )
    return {
        "video_in": list(inputs.video.shape),
        "video_out": list(v.shape),
        "struct_in": list(inputs.struct.shape),
        "struct_out": list(s.shape),
        "audio_in": list(inputs.audio.shape),
    }


def count_parameters(config: DualForceConfig) -> dict[str, int]:
    """Parameters per component, counted on the meta device (nothing is allocated)."""
    with torch.device("meta"):
        model = DualForceModel(config)
    parts = {
        name: sum(p.numel() for p in module.parameters())
        for name, module in (
            ("video_tower", model.video),
            ("struct_tower", model.struct),
            ("bridge", model.bridge),
            ("audio", model.audio),
        )
    }
    parts["total"] = sum(parts.values())
    return parts


def memory_estimate(
    config: DualForceConfig, *, weight_bytes: int = 2, cache_bytes: int = 2
) -> dict[str, float]:
    """Rough memory (GiB) at the config's resolution.

    * ``weights``: parameters x ``weight_bytes`` (bf16);
    * ``train_states``: fp32 master weights + AdamW moments + bf16 grads = 14 bytes/param (before sharding);
    * ``kv_cache``: (sink + window + current chunk) tokens x (K and V) x layers x width, video + structure
      + bridge, in ``cache_bytes``;
    * ``chunk_activations``: one chunk's largest transient (tokens x ffn_dim + attention scores
      over the cached keys for one layer), ``weight_bytes`` each.
    """
    params = count_parameters(config)["total"]
    h, w = config.latent_size
    _, ph, pw = config.video.patch_size
    per_frame = (h // ph) * (w // pw)
    fpc = config.rates.frames_per_chunk
    window = config.forcing.window_chunks
    frames_cached = 1 + (window + 1) * fpc
    struct_per_latent = int(
        config.rates.struct_rate * config.rates.vae_temporal_stride / config.rates.video_fps
    )
    video_tokens, struct_tokens = frames_cached * per_frame, 1 + (window + 1) * fpc * struct_per_latent
    bridged = len(config.bridge_layers)
    kv = (
        2
        * cache_bytes
        * (
            video_tokens * config.video.dim * (config.video.num_layers + bridged)
            + struct_tokens * config.struct.dim * (config.struct.num_layers + bridged)
        )
    )
    chunk_tokens = fpc * per_frame
    heads = config.video.num_heads
    act = weight_bytes * (
        chunk_tokens * config.video.ffn_dim
        + heads * chunk_tokens * video_tokens
        + 4 * chunk_tokens * config.video.dim
    )
    return {
        "params_billion": params / 1e9,
        "weights_gib": params * weight_bytes / GIB,
        "train_states_gib": params * 14 / GIB,
        "kv_cache_gib": kv / GIB,
        "chunk_activations_gib": act / GIB,
        "tokens_per_latent_frame": float(per_frame),
        "cached_video_tokens": float(video_tokens),
    }


def run_verify(*, seed: int = 0, presets: tuple[str, ...] = ("mova-lite", "mova-360p")) -> dict[str, object]:
    """Everything ``avatar verify`` reports, as a JSON-ready dict."""
    torch.manual_seed(seed)
    toy = preset("toy")
    report: dict[str, object] = {"toy_shapes": check_shapes(DualForceModel(toy), seed=seed)}
    for label, cfg in (
        ("shallow", toy),
        ("full", toy.replace({"bridge": {"strategy": "full"}})),
        ("none", toy.replace({"bridge": {"strategy": "none"}})),
    ):
        torch.manual_seed(seed)
        result = check_cache_consistency(DualForceModel(cfg), seed=seed)
        report[f"cache_consistency_{label}"] = {**asdict(result), "ok": result.ok}
    for name in presets:
        cfg = preset(name)
        report[name] = {"parameters": count_parameters(cfg), "memory": memory_estimate(cfg)}
    return report
