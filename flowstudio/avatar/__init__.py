"""DualForce: real-time talking heads from one reference image + audio (3D-aware autoregressive
diffusion forcing on a MOVA-style dual-tower Wan DiT).

| module | job |
|---|---|
| ``model.config`` | typed frozen configs; presets ``toy``, ``mova-lite`` (~2B), ``mova-360p`` |
| ``model.rates`` | token-rate alignment (6.25 Hz latents, 25 Hz structure, 50 Hz audio), block layout |
| ``model.kv_cache`` | explicit per-layer KV cache: sink + rolling window, commit as its own step |
| ``model.attention`` | block-causal masks and diffusers attention processors (no monkey-patching) |
| ``model.towers`` | video / structure towers of diffusers ``WanTransformerBlock``; DualAdaLNZero |
| ``model.bridge`` | bidirectional block-causal cross-attention (shallow / full / none) |
| ``model.audio`` | log-mel / HuBERT features at 50 Hz; AudioConditioningModule |
| ``model.dualforce`` | ``DualForceModel``: one velocity call for training, denoising and cache commits |
| ``model.diffusion_forcing`` | per-frame, per-modality noise levels; inference schedules |
| ``model.codec`` | toy latent codec |
| ``model.convert`` | MOVA checkpoint conversion |
| ``inference.streaming`` | the autoregressive generator |
| ``inference.generate`` | files in, mp4 out |
| ``training.train`` | accelerate training loop |
| ``training.losses`` | L_video, L_struct, L_flame, L_lip_sync |
| ``training.toy_data`` | the toy TalkingShapes dataset |
| ``evaluation.evaluate`` | clip / set / model evaluation into the one results format |
| ``evaluation.metrics`` | metric math (lip-sync, structure, identity) |
| ``evaluation.features`` | toy video feature extractor (FVD-style distance) |
| ``evaluation.ablate`` | ablation runs |
| ``evaluation.verify`` | shapes, cache consistency, parameter counts, memory |
| ``cli`` | ``avatar_app`` (typer) |
"""
