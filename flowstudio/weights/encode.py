"""Encode prompts with a loaded checkpoint's UMT5, as diffusers' ``WanPipeline`` does."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowstudio.errors import InputError
from flowstudio.weights.check import _is_int

if TYPE_CHECKING:
    import torch

    from flowstudio.weights.load import WanComponents

__all__ = ["encode_prompts"]


def encode_prompts(
    components: WanComponents,
    prompts: list[str] | str,
    max_sequence_length: int = 512,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode prompts with UMT5 exactly as diffusers' ``WanPipeline._get_t5_prompt_embeds``.

    Each prompt is cleaned with diffusers' ``prompt_clean`` (ftfy when installed, HTML unescape,
    whitespace collapse), tokenized with ``padding="max_length"``, ``truncation=True`` and the
    end token, run through the encoder with its attention mask, and every position at or past
    the prompt's token count is set to zero (Wan conditions on zero-padded embeddings; the
    transformer takes no text mask). Runs under ``torch.no_grad``.

    Args:
        components: loaded checkpoint (:func:`load_components`).
        prompts: one prompt or a list of them.
        max_sequence_length: L, the padded token count (512 in WanPipeline's ``__call__``).
        device: where the result goes; default ``components.device``.
        dtype: result dtype; default the text encoder's dtype (as diffusers).

    Returns:
        ``(embeds, mask)``: embeds ``(B, L, d_model)``, zero past each prompt's length; mask
        ``(B, L)`` bool, True at real tokens (including the end token).
    """
    import torch
    from diffusers.pipelines.wan.pipeline_wan import prompt_clean
    from diffusers.utils.torch_utils import get_module_execution_device

    if isinstance(prompts, str):
        prompts = [prompts]
    if not isinstance(prompts, list | tuple) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise InputError(f"prompts: must be a non-empty list of strings, got {prompts!r}")
    if not _is_int(max_sequence_length):
        raise InputError(f"max_sequence_length: must be a positive integer, got {max_sequence_length!r}")
    text_encoder = components.text_encoder
    out_device = torch.device(device) if device is not None else components.device
    out_dtype = dtype or text_encoder.dtype

    cleaned = [prompt_clean(p) for p in prompts]
    tokens = components.tokenizer(
        cleaned,
        padding="max_length",
        max_length=max_sequence_length,
        truncation=True,
        add_special_tokens=True,
        return_attention_mask=True,
        return_tensors="pt",
    )
    input_ids, attention_mask = tokens.input_ids, tokens.attention_mask
    seq_lens = attention_mask.gt(0).sum(dim=1).long()
    model_device = get_module_execution_device(text_encoder)
    with torch.no_grad():
        hidden = text_encoder(input_ids.to(model_device), attention_mask.to(model_device)).last_hidden_state
    hidden = hidden.to(dtype=out_dtype, device=out_device)
    positions = torch.arange(max_sequence_length, device=out_device)
    mask = positions[None, :] < seq_lens.to(out_device)[:, None]
    embeds = torch.where(mask[..., None], hidden, torch.zeros((), dtype=hidden.dtype, device=out_device))
    return embeds, mask
