"""LoRA students (``lora_rank > 0``): the student is the teacher plus low-rank adapters (peft, through
diffusers' ``add_adapter``), only the adapters train, and the export merges them into plain weights.

Why an option: a LoRA student of a 5B teacher keeps one copy of the base weights trainable-free, so the
student's gradients and AdamW states are the adapters' only (DMD's critic stays a full copy). Full
fine-tuning stays the default, as in DMD2.
"""

from __future__ import annotations

import copy

import torch

# the projections of every WanTransformerBlock: self- and cross-attention, and the feed-forward
DEFAULT_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2")


def add_lora(transformer: torch.nn.Module, rank: int, alpha: float | None, targets: tuple[str, ...]) -> None:
    """Freeze ``transformer`` and add trainable rank-``rank`` adapters on ``targets`` (in place)."""
    from peft import LoraConfig

    transformer.requires_grad_(False)
    transformer.add_adapter(
        LoraConfig(r=rank, lora_alpha=alpha if alpha is not None else rank, target_modules=list(targets))
    )
    for name, parameter in transformer.named_parameters():
        parameter.requires_grad_("lora_" in name)


def merged(transformer: torch.nn.Module) -> torch.nn.Module:
    """A plain copy of an adapted transformer (same class and config) with the adapters merged in."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    adapted = copy.deepcopy(transformer)
    for module in adapted.modules():
        if isinstance(module, BaseTunerLayer):
            module.merge()
    state = {k.replace(".base_layer", ""): v for k, v in adapted.state_dict().items() if "lora_" not in k}
    plain = type(transformer).from_config(transformer.config)
    plain.load_state_dict(state, strict=True)
    return plain.to(next(transformer.parameters()).dtype)


def has_lora(transformer: torch.nn.Module) -> bool:
    return any("lora_" in name for name, _ in transformer.named_parameters())
