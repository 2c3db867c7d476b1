"""DualForce: real-time talking heads from one reference image + audio (3D-aware autoregressive
diffusion forcing on a MOVA-style dual-tower Wan DiT).

| module | job |
|---|---|
| ``config`` | typed frozen configs; presets ``toy``, ``mova-lite`` (~2B), ``mova-360p`` |
| ``rates`` | token-rate alignment (6.25 Hz latents, 25 Hz structure, 50 Hz audio), block layout |
| ``kv_cache`` | explicit per-layer KV cache: sink + rolling window, commit as its own step |
| ``attention`` | block-causal masks and diffusers attention processors (no monkey-patching) |
| ``towers`` | video / structure towers of diffusers ``WanTransformerBlock``; DualAdaLNZero |
| ``bridge`` | bidirectional block-causal cross-attention (shallow / full / none) |
| ``audio`` | log-mel / HuBERT features at 50 Hz; AudioConditioningModule |
| ``model`` | ``DualForceModel``: one velocity call for training, denoising and cache commits |
| ``diffusion_forcing`` | per-frame, per-modality noise levels; inference schedules |
| ``losses`` | L_video, L_struct, L_flame, L_lip_sync |
| ``streaming`` | the autoregressive generator |
| ``codec`` | toy latent codec |
| ``generate`` | files in, mp4 out |
| ``verify`` | shapes, cache consistency, parameter counts, memory |
| ``convert`` | MOVA checkpoint conversion |
| ``train`` | accelerate training loop |
| ``cli`` | ``avatar_app`` (typer) |
"""
