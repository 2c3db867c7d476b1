"""DualForce evaluation: clip and set evaluation, metric math, toy features, ablations and verify
(shapes, cache consistency, parameter counts, memory)."""
