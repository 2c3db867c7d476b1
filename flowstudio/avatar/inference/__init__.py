"""DualForce inference: the autoregressive streaming generator and files in, mp4 out."""
