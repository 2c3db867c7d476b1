"""LivePortrait's motion extractor (the "M" of the paper) from a local weight folder.

The folder is LivePortrait's ``pretrained_weights`` (``huggingface-cli download KwaiVGI/LivePortrait
--local-dir pretrained_weights``; nothing is downloaded here)::

    liveportrait/base_models/motion_extractor.pth      <- the only file this module reads
    liveportrait/base_models/appearance_feature_extractor.pth, spade_generator.pth, warping_module.pth
    liveportrait/retargeting_models/stitching_retargeting_module.pth

``motion_extractor.pth`` is the ``state_dict`` of LivePortrait's ``MotionExtractor``: a ConvNeXtV2
(``detector.downsample_layers.* / detector.stages.* / detector.norm``; tiny: depths 3-3-9-3, dims
96-192-384-768) with heads ``fc_kp, fc_exp`` (3 x 21 keypoints), ``fc_pitch/yaw/roll`` (66 bins),
``fc_t`` (3) and ``fc_scale`` (1). :class:`ConvNeXtV2Motion` rebuilds that network exactly (module
names, shapes, LayerNorm eps 1e-6, GRN) with depths, widths, keypoints and bins read from the state
dict, so a tiny random checkpoint with the same layout loads through the same code (tests do that).

Input: RGB face crops resized to 256 x 256, in ``[0, 1]`` (LivePortrait's ``prepare_source``).
Output per frame (LivePortrait's ``get_kp_info``): pitch / yaw / roll in degrees
(``softmax(bins) . [0..65] * 3 - 97.5``), translation ``t`` (3), ``scale`` (1), canonical keypoints
``kp`` (K, 3) and expression deltas ``exp`` (K, 3). The structure latent in the flowstudio layout is
``[yaw, pitch, roll (radians), tx, ty, tz, scale, (kp + exp) (K x 3)]``: keypoints in the head frame
after expression, as the TalkingShapes world defines it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from flowstudio.errors import CheckpointError

MOTION_FILE = Path("liveportrait/base_models/motion_extractor.pth")
INPUT_SIZE = 256
HEADS = ("fc_kp", "fc_scale", "fc_pitch", "fc_yaw", "fc_roll", "fc_t", "fc_exp")


class _ChannelsFirstLayerNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class _GRN(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gx = torch.norm(x, p=2, dim=(1, 2), keepdim=True)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
        return self.gamma * (x * nx) + self.beta + x


class _Block(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.grn = _GRN(4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(self.grn(self.act(self.pwconv1(self.norm(y)))))
        return x + y.permute(0, 3, 1, 2)


class _ConvNeXtV2(nn.Module):
    def __init__(self, depths: list[int], dims: list[int], num_kp: int, num_bins: int) -> None:
        super().__init__()
        self.downsample_layers = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(3, dims[0], kernel_size=4, stride=4), _ChannelsFirstLayerNorm(dims[0]))]
        )
        for i in range(len(dims) - 1):
            self.downsample_layers.append(
                nn.Sequential(
                    _ChannelsFirstLayerNorm(dims[i]), nn.Conv2d(dims[i], dims[i + 1], kernel_size=2, stride=2)
                )
            )
        self.stages = nn.ModuleList(
            [
                nn.Sequential(*[_Block(dim) for _ in range(depth)])
                for depth, dim in zip(depths, dims, strict=True)
            ]
        )
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.fc_kp = nn.Linear(dims[-1], 3 * num_kp)
        self.fc_scale = nn.Linear(dims[-1], 1)
        self.fc_pitch = nn.Linear(dims[-1], num_bins)
        self.fc_yaw = nn.Linear(dims[-1], num_bins)
        self.fc_roll = nn.Linear(dims[-1], num_bins)
        self.fc_t = nn.Linear(dims[-1], 3)
        self.fc_exp = nn.Linear(dims[-1], 3 * num_kp)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        for down, stage in zip(self.downsample_layers, self.stages, strict=True):
            x = stage(down(x))
        x = self.norm(x.mean([-2, -1]))
        return {name[3:]: getattr(self, name)(x) for name in HEADS}


class ConvNeXtV2Motion(nn.Module):
    """LivePortrait's ``MotionExtractor`` (its single child is named ``detector``, as in the checkpoint)."""

    def __init__(self, depths: list[int], dims: list[int], num_kp: int = 21, num_bins: int = 66) -> None:
        super().__init__()
        self.detector = _ConvNeXtV2(depths, dims, num_kp, num_bins)
        self.num_kp, self.num_bins = num_kp, num_bins

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.detector(x)


def architecture_from_state(state: dict[str, torch.Tensor], path: Path) -> dict[str, object]:
    """Depths, widths, keypoints and bins of a ``MotionExtractor`` state dict (raises on a wrong layout)."""
    depths = []
    while f"detector.stages.{len(depths)}.0.dwconv.weight" in state:
        depth = 0
        while f"detector.stages.{len(depths)}.{depth}.dwconv.weight" in state:
            depth += 1
        depths.append(depth)
    if not depths or "detector.downsample_layers.0.0.weight" not in state:
        raise CheckpointError(
            f"{path}: not LivePortrait's motion extractor (no detector.downsample_layers.* / "
            "detector.stages.* tensors); expected liveportrait/base_models/motion_extractor.pth"
        )
    dims = [int(state[f"detector.stages.{i}.0.dwconv.weight"].shape[0]) for i in range(len(depths))]
    missing = [h for h in HEADS if f"detector.{h}.weight" not in state]
    if missing:
        raise CheckpointError(f"{path}: motion extractor heads missing: {', '.join(missing)}")
    num_kp3 = int(state["detector.fc_kp.weight"].shape[0])
    if num_kp3 % 3:
        raise CheckpointError(f"{path}: fc_kp has {num_kp3} outputs, not 3 x keypoints")
    return {"depths": depths, "dims": dims, "num_kp": num_kp3 // 3,
            "num_bins": int(state["detector.fc_pitch.weight"].shape[0])}  # fmt: skip


class LivePortraitMotion:
    """Frames -> LivePortrait motion latents (``<folder>/liveportrait/base_models/motion_extractor.pth``)."""

    def __init__(self, folder: str | Path, *, device: str | torch.device = "cpu") -> None:
        root = Path(folder)
        path = root / MOTION_FILE
        if not path.is_file():
            raise CheckpointError(
                f"LivePortrait folder {str(root)!r} has no {MOTION_FILE}; pass the folder that holds "
                "liveportrait/base_models/ (LivePortrait's pretrained_weights, downloaded by you from "
                "KwaiVGI/LivePortrait)"
            )
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises several types for a damaged or non-tensor file
            raise CheckpointError(f"{path}: not a readable state dict ({err})") from err
        if not isinstance(state, dict):
            raise CheckpointError(f"{path}: holds a {type(state).__name__}, expected a state dict")
        self.architecture = architecture_from_state(state, path)
        self.model = ConvNeXtV2Motion(**self.architecture)  # type: ignore[arg-type]
        try:
            self.model.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise CheckpointError(f"{path}: does not match LivePortrait's motion extractor ({err})") from err
        self.device = torch.device(device)
        self.model.to(self.device).eval().requires_grad_(False)

    @torch.no_grad()
    def __call__(self, frames: np.ndarray, batch_size: int = 16) -> dict[str, np.ndarray]:
        """uint8 ``(T, H, W, 3)`` face crops -> per-frame ``pitch yaw roll`` (degrees), ``t``, ``scale``,
        ``kp``, ``exp`` (``(T, K, 3)``) and ``structure`` ``(T, 7 + 3K)`` (module docstring)."""
        outputs: dict[str, list[torch.Tensor]] = {}
        bins = torch.arange(self.model.num_bins, dtype=torch.float32, device=self.device)
        for start in range(0, len(frames), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(frames[start : start + batch_size])).to(self.device)
            x = x.permute(0, 3, 1, 2).float() / 255.0
            if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
                x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
            raw = self.model(x.clamp(0, 1))
            for key in ("pitch", "yaw", "roll"):
                raw[key] = (F.softmax(raw[key].float(), dim=1) * bins).sum(1) * 3 - 97.5
            for key, value in raw.items():
                outputs.setdefault(key, []).append(value.float().cpu())
        out = {k: torch.cat(v).numpy() for k, v in outputs.items()}
        count = len(frames)
        out["kp"] = out["kp"].reshape(count, -1, 3)
        out["exp"] = out["exp"].reshape(count, -1, 3)
        angles = np.stack([out["yaw"], out["pitch"], out["roll"]], 1) * (math.pi / 180)
        out["structure"] = np.concatenate(
            [angles, out["t"], out["scale"], (out["kp"] + out["exp"]).reshape(count, -1)], axis=1
        ).astype(np.float32)
        return out
