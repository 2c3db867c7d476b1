"""Local diffusers-format Wan2.2-TI2V-5B checkpoints: check the folder, load it, encode prompts.

Everything here reads a folder the user gives; nothing is ever downloaded. The expected folder is
the one of ``Wan-AI/Wan2.2-TI2V-5B-Diffusers`` (or a tiny/toy model of the same form)::

    model_index.json
    transformer/   config.json + diffusion_pytorch_model.safetensors (or a sharded index + shards)
    vae/           config.json + diffusion_pytorch_model.safetensors (or a sharded index + shards)
    text_encoder/  config.json + model.safetensors (or model.safetensors.index.json + shards)
    tokenizer/     tokenizer_config.json + spiece.model and/or tokenizer.json
    scheduler/     scheduler_config.json

:func:`check_checkpoint` reads JSON files and safetensors headers only (never tensor data) and
returns a :class:`CheckReport` listing every problem with a hint on how to fix it.
:func:`load_components` checks first, then loads each component with ``from_pretrained(...,
local_files_only=True)``. :func:`encode_prompts` reproduces ``WanPipeline._get_t5_prompt_embeds``.

"TI2V form" means: 48 latent channels (VAE ``z_dim`` == transformer ``in_channels`` ==
``out_channels`` == 48), 16x spatial compression (VAE patch 2 x three 2x downsamples) and 4x
temporal compression, one transformer (``transformer_2`` null) and per-token timesteps
(``expand_timesteps: true`` in ``model_index.json``).

:mod:`flowstudio.weights.check` (layout, reference configs, :func:`check_checkpoint`),
:mod:`flowstudio.weights.load` (:func:`load_components`, offload placement) and
:mod:`flowstudio.weights.encode` (:func:`encode_prompts`) hold the three jobs; every public name is
importable from here.
"""

from __future__ import annotations

from flowstudio.weights.check import (
    LATENT_CHANNELS,
    REQUIRED_LAYOUT,
    SCALE_FACTOR_SPATIAL,
    SCALE_FACTOR_TEMPORAL,
    WAN22_TI2V_5B_CONFIGS,
    WAN22_TI2V_5B_REPO,
    CheckReport,
    ComponentSpec,
    Problem,
    check_checkpoint,
)
from flowstudio.weights.encode import encode_prompts
from flowstudio.weights.load import (
    OffloadMode,
    WanComponents,
    default_dtype,
    load_components,
)

__all__ = [
    "LATENT_CHANNELS",
    "REQUIRED_LAYOUT",
    "SCALE_FACTOR_SPATIAL",
    "SCALE_FACTOR_TEMPORAL",
    "WAN22_TI2V_5B_CONFIGS",
    "WAN22_TI2V_5B_REPO",
    "CheckReport",
    "ComponentSpec",
    "OffloadMode",
    "Problem",
    "WanComponents",
    "check_checkpoint",
    "default_dtype",
    "encode_prompts",
    "load_components",
]
