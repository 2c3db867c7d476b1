"""The math of the editing metrics (pure functions of numpy arrays) and the reference-tier weights.

Offline tier: :mod:`.pixel` (PSNR, SSIM, masked), :mod:`.color` (CIELAB, CIEDE2000), :mod:`.temporal`
(optical-flow warp error, flicker, motion fidelity), :mod:`.attributes` (ShapeWorld attribute
accuracy). Reference tier: :mod:`.reference` (models loaded from local weights verified by SHA-256),
with every weight file registered in :mod:`.registry`.

What each metric *is* (name, tier, direction, unit, version, inputs, weights) is declared once in the
one registry of editing and avatar metrics, :mod:`flowstudio.metrics`.
"""
