"""Memory estimate of an edit for a model config, video size and length, batch and offload mode.

Parameters are counted exactly by building each model on the ``meta`` device (no memory, no
weights) from its config. Activations are an analytical estimate of the transformer forward of the
diffusers ``WanTransformer3DModel`` at inference (no autograd), per batch row, with
``L`` video tokens, width ``D``, FFN width ``F``::

    persistent over the forward   ~14 L D bytes   (per-token timestep projection (B, L, 6D) in the
                                                   model dtype, hidden states, residual)
    attention phase of a block    ~56 L D bytes   (fp32 modulation table (B, L, 6, D), fp32 norms,
                                                   q/k/v, RoPE temporaries in float64, output)
    feed-forward phase            ~44 L D + 4 L F (modulation table, fp32 norm and gate temporaries,
                                                   FFN hidden + activation in the model dtype)

plus the VAE decode peak (the decoder's widest stage at half resolution, Wan2.2's VAE works on 2x2
patches, for one 4-frame causal chunk, a few live tensors plus its causal cache). The
coefficients come from reading the code, not from a measurement: no GPU was available to
calibrate them; treat the numbers as +-30%. Offload modes are those of
:func:`flowstudio.weights.load_components`: ``none`` (every component resident), ``model`` (one
component at a time), ``group`` (one transformer block at a time).
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from flowstudio.errors import InputError
from flowstudio.weights import WAN22_TI2V_5B_CONFIGS

logger = logging.getLogger(__name__)

GB = 1024**3
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
OFFLOAD_MODES = ("none", "model", "group")

# Activation coefficients (bytes per L*D, per L*F), per batch row; see the module docstring.
PERSISTENT_LD = 14
ATTENTION_LD = 56
FFN_LD, FFN_LF = 44, 4
# VAE decode: live full-width tensors (incl. causal cache) at the widest stage.
VAE_LIVE_TENSORS = 6


def parameter_count(component: str, config: dict[str, Any]) -> int:
    """Exact parameter count of ``transformer``, ``vae`` or ``text_encoder`` built on the meta device."""
    return _parameter_count(component, json.dumps(config, sort_keys=True, default=str))


@functools.lru_cache(maxsize=32)
def _parameter_count(component: str, config_json: str) -> int:
    import torch

    config = json.loads(config_json)
    clean = {k: v for k, v in config.items() if not k.startswith("_")}
    with torch.device("meta"):
        if component == "transformer":
            from diffusers import WanTransformer3DModel

            model = WanTransformer3DModel(**clean)
        elif component == "vae":
            from diffusers import AutoencoderKLWan

            keys = set(inspect.signature(AutoencoderKLWan.__init__).parameters)
            model = AutoencoderKLWan(**{k: v for k, v in clean.items() if k in keys})
        elif component == "text_encoder":
            from transformers import UMT5Config, UMT5EncoderModel

            drop = {"architectures", "torch_dtype", "transformers_version"}
            model = UMT5EncoderModel(UMT5Config(**{k: v for k, v in clean.items() if k not in drop}))
        else:
            raise InputError(f"unknown component {component!r}; use transformer, vae or text_encoder")
    return sum(p.numel() for p in model.parameters())


@dataclass
class MemoryEstimate:
    """Estimated peak device memory (bytes) of one edit; see the module docstring for the model."""

    height: int
    width: int
    frames: int
    batch_rows: int
    offload: str
    dtype: str
    tokens: int
    params: dict[str, int]
    weights_bytes: dict[str, int]
    transformer_activation_bytes: int
    vae_decode_bytes: int
    extra_bytes: int
    phases: dict[str, int] = field(default_factory=dict)

    @property
    def peak_bytes(self) -> int:
        return max(self.phases.values())

    def fits(self, limit_gb: float = 24.0) -> bool:
        """True when the estimated peak is below ``limit_gb`` GiB."""
        return self.peak_bytes <= limit_gb * GB

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"peak_bytes": self.peak_bytes, "peak_gib": round(self.peak_bytes / GB, 2)}


def estimate_memory(
    *,
    height: int = 704,
    width: int = 1280,
    frames: int = 121,
    batch_rows: int = 2,
    offload: str = "model",
    dtype: str = "bfloat16",
    vae_dtype: str = "float32",
    transformer_config: dict[str, Any] | None = None,
    vae_config: dict[str, Any] | None = None,
    text_encoder_config: dict[str, Any] | None = None,
    extra_bytes: int = 0,
) -> MemoryEstimate:
    """Estimate peak memory of an edit (default: the real Wan2.2-TI2V-5B config at 704x1280x121).

    Args:
        height, width, frames: video size (multiples of 32, 4k+1 frames).
        batch_rows: rows per transformer forward (1: no CFG or ``max_batch_rows=1``; 2: CFG of one
            side; 4: source + target with CFG, FlowEdit or recompute-mode controls).
        offload: ``none``, ``model`` or ``group``.
        dtype, vae_dtype: transformer/text-encoder and VAE dtypes.
        transformer_config, vae_config, text_encoder_config: configs (default: Wan2.2-TI2V-5B).
        extra_bytes: anything else kept on the device (feature cache, trajectory).
    """
    if offload not in OFFLOAD_MODES:
        raise InputError(f"unknown offload {offload!r}; choose one of {', '.join(OFFLOAD_MODES)}")
    if dtype not in DTYPE_BYTES or vae_dtype not in DTYPE_BYTES:
        raise InputError(f"dtype must be one of {', '.join(DTYPE_BYTES)}, got {dtype!r} / {vae_dtype!r}")
    if height % 32 or width % 32 or (frames - 1) % 4 or batch_rows < 1:
        raise InputError(
            "size must be multiples of 32 and 4k+1 frames with batch_rows >= 1, "
            f"got {height}x{width}x{frames}, "
            f"batch_rows={batch_rows}"
        )
    tr = transformer_config or WAN22_TI2V_5B_CONFIGS["transformer"]
    vae = vae_config or WAN22_TI2V_5B_CONFIGS["vae"]
    te = text_encoder_config or WAN22_TI2V_5B_CONFIGS["text_encoder"]
    params = {
        "transformer": parameter_count("transformer", tr),
        "vae": parameter_count("vae", vae),
        "text_encoder": parameter_count("text_encoder", te),
    }
    b, vb = DTYPE_BYTES[dtype], DTYPE_BYTES[vae_dtype]
    weights = {
        "transformer": params["transformer"] * b,
        "vae": params["vae"] * vb,
        "text_encoder": params["text_encoder"] * b,
    }
    spatial = int(vae.get("scale_factor_spatial", 16))
    p_t, p_h, p_w = tr["patch_size"]
    t_lat, h_lat, w_lat = (frames - 1) // 4 + 1, height // spatial, width // spatial
    tokens = (t_lat // p_t) * (h_lat // p_h) * (w_lat // p_w)
    dim = tr["num_attention_heads"] * tr["attention_head_dim"]
    ffn = tr["ffn_dim"]
    per_row = PERSISTENT_LD * tokens * dim + max(
        ATTENTION_LD * tokens * dim, FFN_LD * tokens * dim + FFN_LF * tokens * ffn
    )
    activations = batch_rows * per_row * b // 2  # coefficients are for a 2-byte dtype
    patch = int(vae.get("patch_size") or 1)
    widest = int(vae.get("decoder_base_dim") or vae["base_dim"]) * int(vae["dim_mult"][0])
    vae_act = VAE_LIVE_TENSORS * 4 * (height // patch) * (width // patch) * widest * vb
    video = 2 * frames * height * width * 3 * 4  # decoded chunks + their concatenation, fp32
    latent = int(tr["in_channels"]) * t_lat * h_lat * w_lat * 4

    resident = sum(weights.values())
    one_block = weights["transformer"] // max(int(tr["num_layers"]), 1)
    if offload == "none":
        denoise_w = decode_w = encode_w = resident
    elif offload == "model":
        denoise_w, decode_w, encode_w = weights["transformer"], weights["vae"], weights["text_encoder"]
    else:
        denoise_w, decode_w, encode_w = 2 * one_block, weights["vae"] // 4, weights["text_encoder"] // 24
    phases = {
        "encode_prompts": encode_w + 512 * int(te["d_model"]) * b * 8,
        "denoise": denoise_w + activations + 8 * latent + extra_bytes,
        "decode": decode_w + vae_act + video + latent + extra_bytes,
    }
    return MemoryEstimate(
        height=height,
        width=width,
        frames=frames,
        batch_rows=batch_rows,
        offload=offload,
        dtype=dtype,
        tokens=tokens,
        params=params,
        weights_bytes=weights,
        transformer_activation_bytes=activations,
        vae_decode_bytes=vae_act,
        extra_bytes=extra_bytes,
        phases=phases,
    )


def format_estimates(estimates: list[MemoryEstimate], limit_gb: float = 24.0) -> str:
    """Markdown table: offload, rows, phase peaks and whether it fits ``limit_gb`` GiB."""
    lines = [
        "| offload | batch rows | prompts (GiB) | denoise (GiB) | decode (GiB) | peak (GiB) | "
        f"fits {limit_gb:g} GiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in estimates:
        p = {k: v / GB for k, v in e.phases.items()}
        lines.append(
            f"| {e.offload} | {e.batch_rows} | {p['encode_prompts']:.1f} | {p['denoise']:.1f} | "
            f"{p['decode']:.1f} | "
            f"{e.peak_bytes / GB:.1f} | {'yes' if e.fits(limit_gb) else 'no'} |"
        )
    return "\n".join(lines)


def model_configs(model: str | Path) -> dict[str, dict[str, Any]]:
    """The ``transformer``, ``vae`` and ``text_encoder`` configs of a checkpoint folder (those present)."""
    configs: dict[str, dict[str, Any]] = {}
    for name in ("transformer", "vae", "text_encoder"):
        file = Path(model) / name / "config.json"
        try:
            configs[name] = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # a missing or broken config is reported by the loader
    return configs


def available_memory(device: str | Any) -> tuple[int, str] | None:
    """``(bytes, where)`` free on ``device``: the GPU's free memory, else the host's available RAM."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info(dev)
        return int(free), f"{dev} (free GPU memory)"
    if dev.type == "cpu":
        try:
            import psutil
        except ImportError:  # pragma: no cover - psutil ships with the venv
            return None
        return int(psutil.virtual_memory().available), "this machine (available RAM)"
    return None


def check_fits_memory(
    *,
    configs: dict[str, dict[str, Any]],
    height: int,
    width: int,
    frames: int,
    batch_rows: int,
    device: str | Any,
    dtype: str,
    offload: str = "none",
    what: str = "--height/--width/--frames",
) -> MemoryEstimate | None:
    """Refuse a run whose estimated peak memory exceeds what ``device`` has free; return the estimate.

    Uses :func:`estimate_memory` on the checkpoint's own configs. Sizes the estimate cannot take
    (not multiples of 32, not 4k+1 frames) are left to the pipeline's own checks (``None``).
    """
    if "transformer" not in configs or "vae" not in configs or height % 32 or width % 32 or (frames - 1) % 4:
        return None
    estimate = estimate_memory(
        height=height,
        width=width,
        frames=frames,
        batch_rows=batch_rows,
        offload=offload,
        dtype=dtype,
        transformer_config=configs["transformer"],
        vae_config=configs["vae"],
        text_encoder_config=configs.get("text_encoder"),
    )
    free = available_memory(device)
    if free is not None and estimate.peak_bytes > free[0]:
        phases = ", ".join(f"{k} {v / GB:.1f}" for k, v in estimate.phases.items())
        raise InputError(
            f"{frames} frames of {height}x{width} need about {estimate.peak_bytes / GB:.1f} GiB by the "
            f"memory estimate ({phases} GiB; `flowstudio edit-memory` shows it) but {free[1]} has "
            f"{free[0] / GB:.1f} GiB; use a smaller {what}, or a device with more memory"
        )
    return estimate
