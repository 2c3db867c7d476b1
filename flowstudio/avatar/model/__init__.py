"""DualForce model: configs, token rates, KV cache, attention, towers, bridge, audio conditioning,
the dual-tower ``DualForceModel`` (:mod:`.dualforce`), diffusion-forcing noise levels, the toy latent
codec and MOVA checkpoint conversion."""
