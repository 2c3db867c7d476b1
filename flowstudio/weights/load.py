"""Load a local Wan2.2-TI2V checkpoint folder (never downloads) and place it on a device.

:func:`load_components` checks first (:func:`flowstudio.weights.check.check_checkpoint`), then
loads each component with ``from_pretrained(..., local_files_only=True)`` and applies the offload
mode.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from flowstudio.errors import CheckpointError, InputError
from flowstudio.weights.check import check_checkpoint

if TYPE_CHECKING:
    import torch
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import PreTrainedTokenizerBase, UMT5EncoderModel

logger = logging.getLogger(__name__)

__all__ = ["OffloadMode", "WanComponents", "default_dtype", "load_components"]

OffloadMode = Literal["none", "model", "group"]


@dataclass
class WanComponents:
    """The loaded parts of a Wan2.2-TI2V checkpoint.

    Attributes:
        transformer: the DiT, ``(B, 48, T, H, W)`` latents in, velocity out.
        vae: the 48-channel, 16x spatial / 4x temporal video VAE.
        text_encoder: the UMT5 encoder.
        tokenizer: its tokenizer.
        scheduler_config: ``scheduler/scheduler_config.json`` as a dict (build a scheduler with
            ``UniPCMultistepScheduler.from_config(...)`` or take sigmas from it).
        model_index: ``model_index.json`` as a dict.
        path: the checkpoint folder.
        device: where computation runs (with offload, weights may rest on the CPU).
        dtype: the transformer's dtype.
        offload: the offload mode that was applied (``"none"`` on a CPU device).
        offload_hooks: accelerate hooks of ``offload="model"`` (see :meth:`offload_all`).
    """

    transformer: WanTransformer3DModel
    vae: AutoencoderKLWan
    text_encoder: UMT5EncoderModel
    tokenizer: PreTrainedTokenizerBase
    scheduler_config: dict[str, Any]
    model_index: dict[str, Any]
    path: Path
    device: torch.device
    dtype: torch.dtype
    offload: OffloadMode = "none"
    offload_hooks: list[Any] = field(default_factory=list, repr=False)

    def offload_all(self) -> None:
        """With ``offload="model"``, move every component back to the CPU now.

        The hooks move a component to the device when it runs and the previous one back; the
        last one used stays on the device until this is called (as diffusers'
        ``maybe_free_model_hooks``). A no-op for other modes.
        """
        for hook in self.offload_hooks:
            hook.offload()


def default_dtype(device: str | torch.device) -> torch.dtype:
    """The compute dtype flowstudio uses on ``device``: bfloat16 on CUDA, float32 elsewhere."""
    import torch

    return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32


def _resolve_device(device: str | torch.device) -> torch.device:
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(
            f"device: {device!r} is not a torch device ({exc}); use e.g. 'cpu' or 'cuda:0'"
        ) from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(
            f"device: {str(dev)!r} was asked for but torch sees no CUDA device; use device='cpu'"
        )
    return dev


def _apply_placement(components: WanComponents, offload: OffloadMode) -> None:
    """Put the components on ``components.device`` according to ``offload``.

    - ``"none"``: every component moves to the device.
    - ``"model"``: accelerate ``cpu_offload_with_hook`` chained text_encoder -> transformer ->
      vae (what diffusers' ``enable_model_cpu_offload`` does): weights rest on the CPU, a
      component moves to the device when its forward (or the VAE's ``encode``/``decode``) runs
      and the previous one moves back. Peak memory: the largest component.
    - ``"group"``: diffusers ``apply_group_offloading(offload_type="block_level",
      num_blocks_per_group=1)`` on all three models: one block of a model on the device at a
      time, the rest on the CPU. Lowest memory, slower (weights stream every step).
    """
    device = components.device
    models = [components.text_encoder, components.transformer, components.vae]
    if offload == "none":
        for m in models:
            m.to(device)
    elif offload == "model":
        from accelerate import cpu_offload_with_hook

        hook = None
        for m in models:
            _, hook = cpu_offload_with_hook(m, execution_device=device, prev_module_hook=hook)
            components.offload_hooks.append(hook)
    elif offload == "group":
        import torch
        from diffusers.hooks import apply_group_offloading

        for m in models:
            apply_group_offloading(
                m,
                onload_device=device,
                offload_device=torch.device("cpu"),
                offload_type="block_level",
                num_blocks_per_group=1,
            )
    components.offload = offload


def load_components(
    path: str | Path,
    *,
    device: str | torch.device,
    dtype: torch.dtype | None = None,
    text_encoder_dtype: torch.dtype | None = None,
    vae_dtype: torch.dtype | None = None,
    offload: OffloadMode = "none",
) -> WanComponents:
    """Load a local Wan2.2-TI2V checkpoint folder (never downloads).

    Runs :func:`check_checkpoint` first and raises :class:`CheckpointError` listing every
    problem if the folder is not usable. Each component is loaded with
    ``from_pretrained(folder/<component>, local_files_only=True, ...)``.

    Args:
        path: the checkpoint folder (holding ``model_index.json``).
        device: where to compute, e.g. ``"cpu"`` or ``"cuda:0"``.
        dtype: transformer dtype; default :func:`default_dtype` of ``device`` (bf16 on CUDA,
            fp32 on CPU). diffusers keeps the norms, RoPE and time embedding in fp32.
        text_encoder_dtype: UMT5 dtype; default ``dtype``.
        vae_dtype: VAE dtype; default float32 (as Wan recommends: its decoder is sensitive).
        offload: ``"none"`` (all on ``device``), ``"model"`` (one whole model on the device at
            a time) or ``"group"`` (one block at a time); see ``docs/checkpoints.md``. On a CPU
            device offloading means nothing and is skipped with a logged note.

    Returns:
        A :class:`WanComponents`.

    Raises:
        CheckpointError: the folder is missing, incomplete or not in TI2V form.
        InputError: a bad ``device`` or ``offload`` value.
    """
    import torch

    if offload not in ("none", "model", "group"):
        raise InputError(f"offload: must be 'none', 'model' or 'group', got {offload!r}")
    dev = _resolve_device(device)
    report = check_checkpoint(path)
    if not report.ok:
        raise CheckpointError(f"cannot load checkpoint:\n{report.format()}")
    for warning in report.warnings:
        logger.warning("checkpoint %s: %s", report.path, warning.detail)

    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import AutoTokenizer, UMT5EncoderModel

    root = report.path
    dtype = dtype or default_dtype(dev)
    text_encoder_dtype = text_encoder_dtype or dtype
    vae_dtype = vae_dtype or torch.float32
    logger.info(
        "loading %s (transformer %s, text encoder %s, vae %s) for %s, offload=%s",
        root,
        dtype,
        text_encoder_dtype,
        vae_dtype,
        dev,
        offload,
    )
    transformer = WanTransformer3DModel.from_pretrained(
        root / "transformer", local_files_only=True, torch_dtype=dtype
    )
    vae = AutoencoderKLWan.from_pretrained(root / "vae", local_files_only=True, torch_dtype=vae_dtype)
    text_encoder = UMT5EncoderModel.from_pretrained(
        root / "text_encoder", local_files_only=True, dtype=text_encoder_dtype
    )
    tokenizer = AutoTokenizer.from_pretrained(root / "tokenizer", local_files_only=True)
    scheduler_config = json.loads((root / "scheduler" / "scheduler_config.json").read_text(encoding="utf-8"))
    model_index = json.loads((root / "model_index.json").read_text(encoding="utf-8"))
    for m in (transformer, vae, text_encoder):
        m.eval()

    components = WanComponents(
        transformer=transformer,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler_config=scheduler_config,
        model_index=model_index,
        path=root,
        device=dev,
        dtype=dtype,
    )
    if offload != "none" and dev.type == "cpu":
        logger.info("offload=%r has no effect on a CPU device; keeping every component on the CPU", offload)
        offload = "none"
    _apply_placement(components, offload)
    return components
