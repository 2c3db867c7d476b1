"""A tiny random Wan2.2-TI2V checkpoint, for tests and examples that need real components.

:func:`build_tiny_checkpoint` writes a folder with the same layout and the same config keys as
``Wan-AI/Wan2.2-TI2V-5B-Diffusers`` (see :data:`flowstudio.weights.WAN22_TI2V_5B_CONFIGS`) and
the same TI2V form (48 latent channels, VAE patch 2 and three 2x downsamples = 16x spatial, 4x
temporal, per-token timesteps), with every width shrunk: it builds in about a second on a CPU
and weighs a few MB. The weights are random (seeded); nothing is downloaded: the UMT5 tokenizer
is a Unigram tokenizer over a small built-in English vocabulary.
"""

from __future__ import annotations

import inspect
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from flowstudio.errors import InputError
from flowstudio.weights import WAN22_TI2V_5B_CONFIGS

logger = logging.getLogger(__name__)

__all__ = ["TINY_VOCABULARY", "VOCABULARY_FILE", "build_tiny_checkpoint"]

VOCABULARY_FILE = "vocabulary.txt"
"""Whole-word vocabulary of a toy tokenizer; prompts with other words get a warning."""

# Words of the toy worlds' captions (and a few common ones); anything else falls back to letters.
_VOCABULARY_TEXT = """
    a an the of on in at to with and or is are it its this that from by for as over under
    red green blue yellow orange purple pink white black gray grey brown gold silver cyan
    bottle box ball cup cone cylinder vase can jar mug bag shoe watch lamp chair product object
    shiny matte glossy metal metallic wooden wood marble glass plastic paper fabric leather
    striped dotted checkered plain gradient sky wall floor table background studio light
    turntable rotating spinning turning moving slowly quickly camera pan zoom in out left right
    video frame scene shot close up view top side front
    cat dog person man woman head face talking speaking smiling blinking nodding looking mouth eyes
    high quality low bright dark colorful soft sharp blurry static still
"""
TINY_VOCABULARY: tuple[str, ...] = tuple(_VOCABULARY_TEXT.split())


def _tokenizer_vocab(vocabulary: tuple[str, ...] = TINY_VOCABULARY) -> list[tuple[str, float]]:
    """Unigram pieces in UMT5 order: <pad>=0, </s>=1, <unk>=2, then words, letters, marks."""
    pieces: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -4.0)]
    pieces += [(f"\u2581{w}", -3.0 - 0.001 * i) for i, w in enumerate(dict.fromkeys(vocabulary))]
    chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    pieces += [(f"\u2581{ch}", -7.5) for ch in chars] + [(ch, -8.0) for ch in chars]
    pieces += [(ch, -6.0) for ch in ".,!?;:'\"-()/&%+"]
    return pieces


def component_seed(seed: int, component: str) -> int:
    """The torch seed of one component's initial weights: a pure function of ``(seed, component)``."""
    import numpy as np

    return int(np.random.SeedSequence([seed, *component.encode()]).generate_state(1)[0])


STALE_REFERENCE_KEYS: frozenset[str] = frozenset({"clip_output"})
"""Keys of the reference configs that the installed diffusers no longer takes: written, they make
every load print "The config attributes {'clip_output': False} were passed to AutoencoderKLWan, but
are not expected"; the tiny and toy checkpoints leave them out (the checker does not require them)."""


def _rewrite_config(file: Path, reference: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
    """Give a saved diffusers config the reference key set, keeping the saved values.

    Keys the installed diffusers writes but the reference file lacks are dropped (they hold
    their defaults); reference keys it no longer reads (:data:`STALE_REFERENCE_KEYS`, the VAE's
    ``clip_output``) are left out, so that loading prints no "not expected" warning.
    """
    saved = json.loads(file.read_text(encoding="utf-8"))
    dropped = sorted(set(saved) - set(reference))
    if dropped:
        logger.debug("%s: dropping keys absent from the reference config: %s", file, dropped)
    merged = {k: saved.get(k, v) for k, v in reference.items() if k not in STALE_REFERENCE_KEYS}
    merged["_diffusers_version"] = saved.get("_diffusers_version", reference.get("_diffusers_version"))
    merged.update(extra or {})
    file.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def build_tiny_checkpoint(
    path: str | Path,
    *,
    seed: int = 0,
    num_layers: int = 2,
    num_attention_heads: int = 2,
    attention_head_dim: int = 16,
    text_dim: int = 32,
    ffn_dim: int = 64,
    freq_dim: int = 32,
    patch_size: int = 2,
    vae_base_dim: int = 8,
    vae_decoder_base_dim: int = 12,
    vae_num_res_blocks: int = 1,
    text_encoder_layers: int = 2,
    text_encoder_heads: int = 4,
    sharded: bool = True,
    overwrite: bool = False,
    vocabulary: tuple[str, ...] = TINY_VOCABULARY,
) -> Path:
    """Write a tiny random Wan2.2-TI2V checkpoint folder and return its path.

    The layout is the one of ``Wan-AI/Wan2.2-TI2V-5B-Diffusers``: ``model_index.json``
    (``WanPipeline``, ``expand_timesteps: true``, ``transformer_2: [null, null]``,
    ``boundary_ratio: null``), ``transformer/`` (``WanTransformer3DModel``, patch (1, 2, 2),
    48 in/out channels), ``vae/`` (``AutoencoderKLWan`` in Wan2.2 form: z_dim 48, residual,
    patch 2, 12 in/out channels, dim_mult [1, 2, 4, 4] = 16x spatial, 4x temporal, the real
    48-value latents_mean/std), ``text_encoder/`` (``UMT5EncoderModel``), ``tokenizer/``
    (``T5Tokenizer``, Unigram) and ``scheduler/`` (``UniPCMultistepScheduler``, flow sigmas,
    flow_shift 5.0). As in the real checkpoint, the transformer and text encoder weights are
    sharded (an index plus shards) unless ``sharded=False``.

    Args:
        path: folder to create (must be absent or empty unless ``overwrite``).
        seed: seeds every weight; one seed gives identical files. The caller's global torch RNG
            state is left untouched.
        num_layers, num_attention_heads, attention_head_dim, ffn_dim, freq_dim: transformer sizes.
        patch_size: the transformer's spatial patch, ``(1, p, p)``; 2 as the real checkpoint. A toy
            model at 128 px may use 1: a 2x2 patch of the 16x VAE's latent covers 32x32 pixels.
        text_dim: UMT5 ``d_model`` and transformer ``text_dim`` (they must match).
        vae_base_dim, vae_decoder_base_dim, vae_num_res_blocks: VAE widths and depth.
        text_encoder_layers, text_encoder_heads: UMT5 depth and heads (``d_kv = text_dim // heads``).
        sharded: shard the transformer and text encoder weights, as the real checkpoint does.
        overwrite: replace an existing non-empty folder.
        vocabulary: whole words the tokenizer keeps as single pieces (a toy world's caption words);
            other words are spelled out letter by letter. Saved as ``tokenizer/vocabulary.txt``.

    Returns:
        The checkpoint folder.
    """
    import torch
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import T5Tokenizer, UMT5Config, UMT5EncoderModel
    from transformers.utils import logging as hf_logging

    if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
        raise InputError(f"patch_size must be a whole number >= 1, got {patch_size!r}")
    root = Path(path)
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            raise InputError(f"path: {root} exists and is not empty; pass overwrite=True to replace it")
        shutil.rmtree(root)
    if text_dim % text_encoder_heads:
        raise InputError(f"text_encoder_heads: {text_encoder_heads} must divide text_dim = {text_dim}")
    root.mkdir(parents=True, exist_ok=True)
    ref = WAN22_TI2V_5B_CONFIGS

    def shard_size(model: torch.nn.Module) -> int | str:
        total = sum(p.numel() * p.element_size() for p in model.state_dict().values())
        return total // 2 + 1 if sharded else "10GB"

    with torch.random.fork_rng(devices=[]):
        # Each component draws from its own stream (seed, component), so that changing one
        # component's size leaves the others' initial weights unchanged.
        torch.manual_seed(component_seed(seed, "transformer"))

        # 1. transformer: reference config with tiny widths.
        sizes = {
            "num_layers": num_layers,
            "num_attention_heads": num_attention_heads,
            "attention_head_dim": attention_head_dim,
            "text_dim": text_dim,
            "ffn_dim": ffn_dim,
            "freq_dim": freq_dim,
            "patch_size": [1, patch_size, patch_size],
        }
        tr_config = {k: v for k, v in ref["transformer"].items() if not k.startswith("_")} | sizes
        transformer = WanTransformer3DModel(**tr_config)
        transformer.save_pretrained(root / "transformer", max_shard_size=shard_size(transformer))
        _rewrite_config(root / "transformer" / "config.json", ref["transformer"])

        # 2. VAE in Wan2.2 form (48 channels, residual, patch 2, 16x / 4x), tiny widths.
        vae_keys = set(inspect.signature(AutoencoderKLWan.__init__).parameters)
        vae_config = {k: v for k, v in ref["vae"].items() if k in vae_keys} | {
            "base_dim": vae_base_dim,
            "decoder_base_dim": vae_decoder_base_dim,
            "num_res_blocks": vae_num_res_blocks,
        }
        torch.manual_seed(component_seed(seed, "vae"))
        vae = AutoencoderKLWan(**vae_config)
        vae.save_pretrained(root / "vae")
        _rewrite_config(root / "vae" / "config.json", ref["vae"])

        # 3. tokenizer (Unigram over a built-in vocabulary) and UMT5 encoder.
        tokenizer = T5Tokenizer(vocab=_tokenizer_vocab(tuple(vocabulary)), extra_ids=0)
        tokenizer.save_pretrained(root / "tokenizer")
        (root / "tokenizer" / VOCABULARY_FILE).write_text("\n".join(dict.fromkeys(vocabulary)) + "\n")
        te_config = UMT5Config(
            **{
                k: v
                for k, v in ref["text_encoder"].items()
                if k not in {"architectures", "torch_dtype", "transformers_version"}
            }
            | {
                "vocab_size": -(-len(tokenizer) // 64) * 64,
                "d_model": text_dim,
                "d_kv": text_dim // text_encoder_heads,
                "d_ff": 2 * text_dim,
                "num_heads": text_encoder_heads,
                "num_layers": text_encoder_layers,
                "num_decoder_layers": text_encoder_layers,
            }
        )
        te_config.architectures = ["UMT5EncoderModel"]
        torch.manual_seed(component_seed(seed, "text_encoder"))
        text_encoder = UMT5EncoderModel(te_config)
        bars_were_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            text_encoder.save_pretrained(root / "text_encoder", max_shard_size=shard_size(text_encoder))
        finally:
            if bars_were_on:
                hf_logging.enable_progress_bar()

    # 4. scheduler and model_index: the reference files, stamped with this diffusers version.
    import diffusers

    for rel, reference in (
        ("scheduler/scheduler_config.json", ref["scheduler"]),
        ("model_index.json", ref["model_index"]),
    ):
        file = root / rel
        file.parent.mkdir(parents=True, exist_ok=True)
        data = reference | {"_diffusers_version": diffusers.__version__}
        file.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    logger.info("wrote tiny Wan2.2-TI2V checkpoint to %s (seed %d)", root, seed)
    return root
