"""MOVA checkpoint -> DualForce: state-dict names, shapes and config, read from the checkpoint.

MOVA (OpenMOSS, arXiv:2602.08794) ships one folder per module, each with a ``config.json`` and
weights: ``video_dit/`` (+ ``video_dit_2/``, the low-noise expert), ``audio_dit/`` and
``dual_tower_bridge/``. Names and shapes below follow MOVA's public source (the DiffSynth-style
``WanModel`` in ``mova/diffusion/models/wan_video_dit.py`` and ``DualTowerConditionalBridge`` in
``mova/diffusion/models/interactionv2.py``, read through a public fork); they are **not yet checked
against a downloaded MOVA checkpoint**. :func:`mova_state_shapes` is that documented list; the tests
build a synthetic checkpoint from it.

Mapping (``i`` a layer index)::

    MOVA video_dit / audio_dit                 DualForce video / struct tower
    patch_embedding.{weight,bias}              video.patch_embedding.*       (video only; shapes equal)
    time_embedding.0 / .2                      <tower>.time.time_embedder.linear_1 / linear_2
    time_projection.1                          <tower>.time.time_proj
    blocks.i.self_attn.{q,k,v,o}               <tower>.blocks.i.attn1.{to_q,to_k,to_v,to_out.0}
    blocks.i.self_attn.norm_{q,k}              <tower>.blocks.i.attn1.norm_{q,k}
    blocks.i.cross_attn.*  (text)              <tower>.blocks.i.attn2.*  (audio; repurposed init)
    blocks.i.norm3 (cross-attn norm, affine)   <tower>.blocks.i.norm2    (diffusers' order)
    blocks.i.ffn.0 / .2                        <tower>.blocks.i.ffn.net.0.proj / ffn.net.2
    blocks.i.modulation (1, 6, D)              <tower>.blocks.i.scale_shift_table
    head.head                                  video.proj_out                (video only)
    head.modulation (1, 2, D)                  <tower>.scale_shift_table

    MOVA dual_tower_bridge                     DualForce bridge
    audio_to_video_conditioners.i.y_norm       bridge.layers.i.struct_to_video.y_norm
    audio_to_video_conditioners.i.inner.X      bridge.layers.i.struct_to_video.X   (X: q k v o norm_q norm_k)
    video_to_audio_conditioners.i.*            bridge.layers.i.video_to_struct.*

Dropped: ``text_embedding.*`` (DualForce has no text), the audio tower's ``patch_embedding`` and
``head.head`` (MOVA's 128-channel DAC latents vs. our structure latents: re-initialised). Every
dropped or re-initialised tensor is listed in the :class:`ConversionReport`.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from flowstudio.avatar.model.config import (
    AudioConfig,
    BridgeConfig,
    DualForceConfig,
    RatesConfig,
    StructureLayout,
    TowerConfig,
    VideoInputConfig,
)
from flowstudio.errors import CheckpointError

logger = logging.getLogger(__name__)

MOVA_FOLDERS = ("video_dit", "audio_dit", "dual_tower_bridge")

_BLOCK_RULES: tuple[tuple[str, str], ...] = (
    (r"self_attn\.q\.", "attn1.to_q."),
    (r"self_attn\.k\.", "attn1.to_k."),
    (r"self_attn\.v\.", "attn1.to_v."),
    (r"self_attn\.o\.", "attn1.to_out.0."),
    (r"self_attn\.norm_q\.", "attn1.norm_q."),
    (r"self_attn\.norm_k\.", "attn1.norm_k."),
    (r"cross_attn\.q\.", "attn2.to_q."),
    (r"cross_attn\.k\.", "attn2.to_k."),
    (r"cross_attn\.v\.", "attn2.to_v."),
    (r"cross_attn\.o\.", "attn2.to_out.0."),
    (r"cross_attn\.norm_q\.", "attn2.norm_q."),
    (r"cross_attn\.norm_k\.", "attn2.norm_k."),
    (r"norm3\.", "norm2."),
    (r"ffn\.0\.", "ffn.net.0.proj."),
    (r"ffn\.2\.", "ffn.net.2."),
    (r"modulation$", "scale_shift_table"),
)
_TOP_RULES: tuple[tuple[str, str], ...] = (
    (r"^time_embedding\.0\.", "time.time_embedder.linear_1."),
    (r"^time_embedding\.2\.", "time.time_embedder.linear_2."),
    (r"^time_projection\.1\.", "time.time_proj."),
    (r"^head\.modulation$", "scale_shift_table"),
    (r"^head\.head\.", "proj_out."),
    (r"^patch_embedding\.", "patch_embedding."),
)
_BRIDGE_INNER = ("q", "k", "v", "o", "norm_q", "norm_k")


@dataclass
class ConversionReport:
    """What happened to every tensor."""

    mapped: dict[str, str] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    reinitialised: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"mapped": len(self.mapped), "dropped": self.dropped, "reinitialised": self.reinitialised}


def tower_name(mova_key: str, tower: str) -> str | None:
    """DualForce name of a MOVA DiT key for ``tower`` (``"video"`` or ``"struct"``), ``None`` if dropped."""
    match = re.match(r"^blocks\.(\d+)\.(.+)$", mova_key)
    if match:
        rest = match.group(2)
        for pattern, repl in _BLOCK_RULES:
            if re.match(pattern, rest):
                return f"{tower}.blocks.{match.group(1)}.{re.sub(pattern, repl, rest, count=1)}"
        return None
    if tower == "struct" and (mova_key.startswith("patch_embedding.") or mova_key.startswith("head.head.")):
        return None
    for pattern, repl in _TOP_RULES:
        if re.match(pattern, mova_key):
            return f"{tower}.{re.sub(pattern, repl, mova_key, count=1)}"
    return None


def bridge_name(mova_key: str) -> str | None:
    """DualForce name of a MOVA ``dual_tower_bridge`` key."""
    match = re.match(
        r"^(audio_to_video|video_to_audio)_conditioners\.(\d+)\.(y_norm|inner\.(\w+))\.(weight|bias)$",
        mova_key,
    )
    if not match:
        return None
    direction = "struct_to_video" if match.group(1) == "audio_to_video" else "video_to_struct"
    part = "y_norm" if match.group(3) == "y_norm" else match.group(4)
    if part not in (*_BRIDGE_INNER, "y_norm"):
        return None
    return f"bridge.layers.{match.group(2)}.{direction}.{part}.{match.group(5)}"


def config_from_mova(
    video_cfg: dict[str, Any],
    audio_cfg: dict[str, Any],
    bridge_cfg: dict[str, Any],
    *,
    structure: StructureLayout,
    audio: AudioConfig,
    image_size: tuple[int, int],
    name: str = "mova-converted",
) -> DualForceConfig:
    """A DualForce config whose tower and bridge shapes come from MOVA's three ``config.json`` files.

    Only what MOVA does not have comes from the arguments: the structure layout, the audio-feature
    extractor and the image size.
    """

    def need(cfg: dict[str, Any], key: str, where: str) -> Any:
        if key not in cfg:
            raise CheckpointError(f"MOVA {where}/config.json has no {key!r}; is this a MOVA checkpoint?")
        return cfg[key]

    v_in, v_out = int(need(video_cfg, "in_dim", "video_dit")), int(need(video_cfg, "out_dim", "video_dit"))
    extra = v_in - v_out
    video_input = (
        VideoInputConfig(latent_channels=v_out)
        if extra == 0
        else VideoInputConfig(latent_channels=v_out, mask_channels=extra - v_out, concat_reference=True)
    )
    if video_input.in_channels != v_in:
        raise CheckpointError(
            f"MOVA video_dit in_dim {v_in} is neither out_dim ({v_out}) nor out_dim + mask + "
            "first-frame latent; cannot map its input layout"
        )
    video = TowerConfig(
        dim=int(need(video_cfg, "dim", "video_dit")),
        num_layers=int(need(video_cfg, "num_layers", "video_dit")),
        num_heads=int(need(video_cfg, "num_heads", "video_dit")),
        ffn_dim=int(need(video_cfg, "ffn_dim", "video_dit")),
        in_channels=v_in,
        out_channels=v_out,
        patch_size=tuple(need(video_cfg, "patch_size", "video_dit")),
        freq_dim=int(need(video_cfg, "freq_dim", "video_dit")),
        eps=float(need(video_cfg, "eps", "video_dit")),
    )
    struct = TowerConfig(
        dim=int(need(audio_cfg, "dim", "audio_dit")),
        num_layers=int(need(audio_cfg, "num_layers", "audio_dit")),
        num_heads=int(need(audio_cfg, "num_heads", "audio_dit")),
        ffn_dim=int(need(audio_cfg, "ffn_dim", "audio_dit")),
        in_channels=structure.channels,
        out_channels=structure.channels,
        patch_size=(1, 1, 1),
        freq_dim=int(need(audio_cfg, "freq_dim", "audio_dit")),
        eps=float(need(audio_cfg, "eps", "audio_dit")),
    )
    strategy = need(bridge_cfg, "interaction_strategy", "dual_tower_bridge")
    head_dim = int(need(bridge_cfg, "head_dim", "dual_tower_bridge"))
    both = min(video.num_layers, struct.num_layers)
    if strategy == "full":
        bridge = BridgeConfig(strategy="full", num_layers=both, head_dim=head_dim)
    elif strategy == "shallow_focus":
        bridge = BridgeConfig(strategy="shallow", num_layers=min(10, both // 3), head_dim=head_dim)
    else:
        raise CheckpointError(
            f"MOVA bridge strategy {strategy!r} is not supported (DualForce bridges a contiguous "
            "first-N block: 'shallow_focus' or 'full')"
        )
    audio_fps = float(need(bridge_cfg, "audio_fps", "dual_tower_bridge"))
    return DualForceConfig(
        name=name,
        video=video,
        struct=struct,
        video_input=video_input,
        structure=structure,
        bridge=bridge,
        audio=audio,
        rates=RatesConfig(audio_rate=audio_fps, frames_per_chunk=3),
        image_size=image_size,
    )


def map_state_dict(
    video_sd: dict[str, torch.Tensor], audio_sd: dict[str, torch.Tensor], bridge_sd: dict[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], ConversionReport]:
    """Rename MOVA tensors to DualForce names (values untouched)."""
    out: dict[str, torch.Tensor] = {}
    report = ConversionReport()
    for prefix, sd, namer in (
        ("video_dit", video_sd, lambda k: tower_name(k, "video")),
        ("audio_dit", audio_sd, lambda k: tower_name(k, "struct")),
        ("dual_tower_bridge", bridge_sd, bridge_name),
    ):
        for key, value in sd.items():
            new = namer(key)
            if new is None:
                report.dropped.append(f"{prefix}/{key}")
            else:
                out[new] = value
                report.mapped[f"{prefix}/{key}"] = new
    return out, report


def unmap_state_dict(
    state: dict[str, torch.Tensor], report: ConversionReport
) -> dict[str, dict[str, torch.Tensor]]:
    """Inverse of :func:`map_state_dict` for the mapped tensors: ``{folder: {mova_name: tensor}}``."""
    out: dict[str, dict[str, torch.Tensor]] = {name: {} for name in MOVA_FOLDERS}
    for mova, ours in report.mapped.items():
        folder, key = mova.split("/", 1)
        out[folder][key] = state[ours]
    return out


def mova_state_shapes(
    video_cfg: dict[str, Any], audio_cfg: dict[str, Any], bridge_cfg: dict[str, Any]
) -> dict[str, dict[str, tuple[int, ...]]]:
    """MOVA's documented state-dict names and shapes per folder, from its config dicts."""

    def dit(cfg: dict[str, Any], conv: str) -> dict[str, tuple[int, ...]]:
        d, f, text, freq = cfg["dim"], cfg["ffn_dim"], cfg.get("text_dim", 4096), cfg.get("freq_dim", 256)
        patch = tuple(cfg["patch_size"])
        kernel = (d, cfg["in_dim"], *patch) if conv == "3d" else (d, cfg["in_dim"], patch[0])
        shapes: dict[str, tuple[int, ...]] = {
            "patch_embedding.weight": kernel,
            "patch_embedding.bias": (d,),
            "text_embedding.0.weight": (d, text),
            "text_embedding.0.bias": (d,),
            "text_embedding.2.weight": (d, d),
            "text_embedding.2.bias": (d,),
            "time_embedding.0.weight": (d, freq),
            "time_embedding.0.bias": (d,),
            "time_embedding.2.weight": (d, d),
            "time_embedding.2.bias": (d,),
            "time_projection.1.weight": (6 * d, d),
            "time_projection.1.bias": (6 * d,),
            "head.head.weight": (cfg["out_dim"] * int(torch.tensor(patch).prod()), d),
            "head.head.bias": (cfg["out_dim"] * int(torch.tensor(patch).prod()),),
            "head.modulation": (1, 2, d),
        }
        for i in range(cfg["num_layers"]):
            for attn in ("self_attn", "cross_attn"):
                for lin in ("q", "k", "v", "o"):
                    shapes[f"blocks.{i}.{attn}.{lin}.weight"] = (d, d)
                    shapes[f"blocks.{i}.{attn}.{lin}.bias"] = (d,)
                shapes[f"blocks.{i}.{attn}.norm_q.weight"] = (d,)
                shapes[f"blocks.{i}.{attn}.norm_k.weight"] = (d,)
            shapes.update(
                {
                    f"blocks.{i}.norm3.weight": (d,),
                    f"blocks.{i}.norm3.bias": (d,),
                    f"blocks.{i}.ffn.0.weight": (f, d),
                    f"blocks.{i}.ffn.0.bias": (f,),
                    f"blocks.{i}.ffn.2.weight": (d, f),
                    f"blocks.{i}.ffn.2.bias": (d,),
                    f"blocks.{i}.modulation": (1, 6, d),
                }
            )
        return shapes

    v_dim, a_dim = bridge_cfg["visual_hidden_dim"], bridge_cfg["audio_hidden_dim"]
    both = min(bridge_cfg["visual_layers"], bridge_cfg["audio_layers"])
    layers = range(both) if bridge_cfg["interaction_strategy"] == "full" else range(min(10, both // 3))
    bridge: dict[str, tuple[int, ...]] = {}
    for i in layers:
        for name, dim, kv in (("audio_to_video", v_dim, a_dim), ("video_to_audio", a_dim, v_dim)):
            p = f"{name}_conditioners.{i}"
            bridge.update(
                {
                    f"{p}.y_norm.weight": (kv,),
                    f"{p}.y_norm.bias": (kv,),
                    f"{p}.inner.q.weight": (dim, dim),
                    f"{p}.inner.q.bias": (dim,),
                    f"{p}.inner.k.weight": (dim, kv),
                    f"{p}.inner.k.bias": (dim,),
                    f"{p}.inner.v.weight": (dim, kv),
                    f"{p}.inner.v.bias": (dim,),
                    f"{p}.inner.o.weight": (dim, dim),
                    f"{p}.inner.o.bias": (dim,),
                    f"{p}.inner.norm_q.weight": (dim,),
                    f"{p}.inner.norm_k.weight": (dim,),
                }
            )
    return {"video_dit": dit(video_cfg, "3d"), "audio_dit": dit(audio_cfg, "1d"), "dual_tower_bridge": bridge}


def read_module(folder: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``config.json`` and all weights (``*.safetensors``, else ``*.bin``) of one MOVA module folder."""
    from safetensors.torch import load_file

    if not (folder / "config.json").is_file():
        raise CheckpointError(
            f"{folder}: missing config.json; a MOVA checkpoint has video_dit/, audio_dit/ and "
            "dual_tower_bridge/ folders, each with config.json and weights"
        )
    config = json.loads((folder / "config.json").read_text())
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    if not files:
        raise CheckpointError(f"{folder}: no *.safetensors or *.bin weights found")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(
            load_file(str(file))
            if file.suffix == ".safetensors"
            else torch.load(file, map_location="cpu", weights_only=True)
        )
    return config, state


def convert_mova(
    src: str | Path,
    dst: str | Path,
    *,
    num_keypoints: int,
    audio: AudioConfig,
    image_size: tuple[int, int],
    expert: str = "video_dit",
    dtype: torch.dtype = torch.bfloat16,
) -> ConversionReport:
    """Convert a MOVA checkpoint folder into a DualForce folder (``config.json`` + ``model.safetensors``).

    Shapes are checked tensor by tensor against a DualForce model built from the checkpoint's own
    configs (in ``dtype``); mismatches raise :class:`CheckpointError`. Tensors MOVA does not have are
    freshly initialised and listed in ``conversion.json``.
    """
    from flowstudio.avatar.model.dualforce import CONFIG_NAME, DualForceModel

    root = Path(src)
    if not root.is_dir():
        raise CheckpointError(f"MOVA checkpoint folder {str(root)!r} not found")
    video_cfg, video_sd = read_module(root / expert)
    audio_cfg, audio_sd = read_module(root / "audio_dit")
    bridge_cfg, bridge_sd = read_module(root / "dual_tower_bridge")
    config = config_from_mova(
        video_cfg,
        audio_cfg,
        bridge_cfg,
        structure=StructureLayout(num_keypoints),
        audio=audio,
        image_size=image_size,
    )
    state, report = map_state_dict(video_sd, audio_sd, bridge_sd)
    report.config = config.to_dict()
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # one CPU copy in the target dtype (bf16: ~37 GB for MOVA-360p)
    try:
        model = DualForceModel(config)
    finally:
        torch.set_default_dtype(previous)
    fresh = model.state_dict()
    for key, value in state.items():
        if key not in fresh:
            raise CheckpointError(f"converted tensor {key} has no place in the DualForce model")
        if tuple(value.shape) != tuple(fresh[key].shape):
            raise CheckpointError(
                f"{key}: MOVA shape {tuple(value.shape)} != DualForce {tuple(fresh[key].shape)}"
            )
    report.reinitialised = sorted(set(fresh) - set(state))
    model.load_state_dict({**fresh, **{k: v.to(fresh[k].dtype) for k, v in state.items()}})
    out = Path(dst)
    model.save_pretrained(out)
    (out / "conversion.json").write_text(
        json.dumps({**report.summary(), "source": str(root), "expert": expert}, indent=2)
    )
    logger.info(
        "converted %d MOVA tensors into %s (%d dropped, %d re-initialised); config from %s",
        len(report.mapped),
        out,
        len(report.dropped),
        len(report.reinitialised),
        CONFIG_NAME,
    )
    return report
