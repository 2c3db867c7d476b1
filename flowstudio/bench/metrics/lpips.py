"""LPIPS v0.1 with the AlexNet trunk (Zhang et al., "The Unreasonable Effectiveness of Deep Features as
a Perceptual Metric", CVPR 2018), in plain torch so that no torchvision is needed.

Loads two state dicts: torchvision's AlexNet (``features.{0,3,6,8,10}.{weight,bias}``) and the LPIPS
linear heads (``lin{0..4}.model.1.weight``, shapes ``(1, C, 1, 1)``). Inputs are ``(N, 3, H, W)`` in
[-1, 1]. Distance: for each of the 5 ReLU outputs, unit-normalise features over channels, square the
difference, weight channels by the linear head, average over space; sum over layers.
"""

from __future__ import annotations

import os

import torch
from torch import nn

_CHANNELS = (64, 192, 384, 256, 256)


class LPIPS(nn.Module):
    """LPIPS(AlexNet) distance; ``forward(x, y)`` returns ``(N,)``."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, 4, 2),
            nn.ReLU(),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1),
            nn.ReLU(),
        )
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in _CHANNELS)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))

    _TAPS = (1, 4, 7, 9, 11)  # indices of the ReLUs whose outputs are compared

    @classmethod
    def from_files(cls, alexnet: str | os.PathLike[str], heads: str | os.PathLike[str]) -> LPIPS:
        """Build from torchvision AlexNet and LPIPS v0.1 head state dicts (strict key and shape check)."""
        net = cls()
        trunk = torch.load(alexnet, map_location="cpu", weights_only=True)
        net.features.load_state_dict(
            {k.removeprefix("features."): v for k, v in trunk.items() if k.startswith("features.")},
            strict=True,
        )
        lin = torch.load(heads, map_location="cpu", weights_only=True)
        for i, conv in enumerate(net.lins):
            conv.weight.data.copy_(lin[f"lin{i}.model.1.weight"])
        return net

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        x = (x - self.shift) / self.scale
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self._TAPS:
                out.append(x)
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        total = torch.zeros(x.shape[0], device=x.device)
        for fx, fy, lin in zip(self._taps(x), self._taps(y), self.lins, strict=True):
            nx = fx / (fx.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            ny = fy / (fy.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + lin((nx - ny) ** 2).mean(dim=(1, 2, 3))
        return total
