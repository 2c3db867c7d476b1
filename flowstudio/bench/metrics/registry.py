"""The one registry of reference-tier weights (editing and avatar metrics): where each model is, its SHA-256.

Nothing is downloaded. A user puts the files in a local folder and points flowstudio at them, in
this order of precedence:

1. an environment variable per entry (``FLOWSTUDIO_WEIGHTS_CLIP=/models/clip-vit-base-patch32``);
2. a weights config, JSON or YAML, named by ``$FLOWSTUDIO_BENCH_WEIGHTS`` (or passed explicitly)::

       {"clip": {"path": "/models/clip-vit-base-patch32", "sha256": "<sha256 of model.safetensors>"}}

3. ``$FLOWSTUDIO_WEIGHTS_DIR/<default_dir>`` (default ``~/.cache/flowstudio/weights/<default_dir>``).

The expected SHA-256 of each file is the one pinned in the config when given, else the one in
:data:`WEIGHTS` (``None`` when this registry does not pin one). A file whose hash differs, or that has
no expected hash anywhere, is not used: the metric reports ``{"status": "skipped", "reason": ...}``.
``flowstudio bench weights --pin`` records the current hashes into a config once the user has checked
the files (trust on first use, by an explicit command).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowstudio.bench.io import sha256_file

logger = logging.getLogger(__name__)

CONFIG_ENV = "FLOWSTUDIO_BENCH_WEIGHTS"
ROOT_ENV = "FLOWSTUDIO_WEIGHTS_DIR"


@dataclass(frozen=True)
class WeightSpec:
    """One reference-tier model.

    Attributes:
        name: registry key (``clip``, ``dino``, ``lpips``, ``i3d``, ``inception``, ``syncnet``, ...); the
            metrics that use it name it in their declaration (:mod:`flowstudio.metrics`).
        layout: ``hf-folder`` (a transformers ``save_pretrained`` folder) or ``files``.
        files: the files whose SHA-256 is checked, relative to the entry's path, with their pinned
            SHA-256 or ``None``. For ``files`` layouts a path may also point at the single file.
        default_dir: folder name under the weights root.
        obtain: how a user gets the files.
    """

    name: str
    layout: str
    files: dict[str, str | None]
    default_dir: str
    obtain: str

    @property
    def env(self) -> str:
        return f"FLOWSTUDIO_WEIGHTS_{self.name.upper()}"


WEIGHTS: dict[str, WeightSpec] = {
    spec.name: spec
    for spec in (
        WeightSpec(
            "clip",
            "hf-folder",
            {"model.safetensors": None},
            "clip-vit-base-patch32",
            "a CLIPModel folder (config.json, model.safetensors, tokenizer and preprocessor files), e.g. "
            "`hf download openai/clip-vit-base-patch32 --local-dir DIR` on a machine with network",
        ),
        WeightSpec(
            "dino",
            "hf-folder",
            {"model.safetensors": None},
            "dinov2-small",
            "a Dinov2Model or ViTModel folder, e.g. `hf download facebook/dinov2-small --local-dir DIR` "
            "(FiVE-Bench uses DINO-ViT self-similarity, Tumanyan et al. 2022)",
        ),
        WeightSpec(
            "lpips",
            "files",
            {"alexnet.pth": None, "lpips_alex.pth": None},
            "lpips",
            "torchvision's AlexNet state dict saved as alexnet.pth (torchvision.models.alexnet(weights="
            "'IMAGENET1K_V1').state_dict()) and LPIPS v0.1 linear layers weights/v0.1/alex.pth from "
            "github.com/richzhang/PerceptualSimilarity saved as lpips_alex.pth",
        ),
        WeightSpec(
            "i3d",
            "files",
            {"i3d_torchscript.pt": None},
            "i3d",
            "the TorchScript I3D feature extractor used by StyleGAN-V's FVD (i3d_torchscript.pt)",
        ),
        WeightSpec(
            "inception",
            "files",
            {"inception-2015-12-05.pt": None},
            "inception",
            "the TorchScript Inception-v3 feature extractor of NVlabs stylegan2-ada-pytorch metrics "
            "(inception-2015-12-05.pt)",
        ),
        WeightSpec(
            "syncnet",
            "files",
            {"syncnet_v2.model": None},
            "syncnet",
            "the SyncNet v2 model of github.com/joonson/syncnet_python (data/syncnet_v2.model), as used by "
            "Wav2Lip's LSE-C / LSE-D evaluation",
        ),
        WeightSpec(
            "arcface",
            "files",
            {"arcface_r100.onnx": None},
            "arcface",
            "an ArcFace IResNet-100 face-recognition model (e.g. insightface's buffalo_l w600k_r50.onnx or "
            "glint360k r100, saved as arcface_r100.onnx) and a face detector for alignment",
        ),
        WeightSpec(
            "headpose",
            "files",
            {"motion_extractor.pth": None},
            "headpose",
            "LivePortrait's motion extractor (pretrained_weights/liveportrait/base_models/"
            "motion_extractor.pth) for yaw/pitch/roll, or another head-pose estimator saved under that name",
        ),
    )
}


@dataclass
class WeightStatus:
    """Where a registry entry resolved to and whether it may be used."""

    name: str
    status: str  # "ok" or "skipped"
    path: Path | None = None
    sha256: dict[str, str] = field(default_factory=dict)
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": self.status,
            "path": None if self.path is None else str(self.path),
            "sha256": dict(self.sha256),
        }
        if self.reason:
            out["reason"] = self.reason
        return out

    def skipped(self) -> dict[str, str]:
        return {"status": "skipped", "reason": self.reason or "weights unavailable"}


_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def _cached_sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASH_CACHE:
        _HASH_CACHE[key] = sha256_file(path)
    return _HASH_CACHE[key]


def load_config(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The weights config (``path``, else ``$FLOWSTUDIO_BENCH_WEIGHTS``), ``{}`` when none is set."""
    path = path or os.environ.get(CONFIG_ENV)
    if not path:
        return {}
    path = Path(path)
    if not path.is_file():
        logger.warning("weights config %s does not exist; reference metrics will be skipped", path)
        return {}
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        return yaml.safe_load(text) or {}
    return json.loads(text)


def weights_root() -> Path:
    return Path(os.environ.get(ROOT_ENV) or Path.home() / ".cache" / "flowstudio" / "weights")


def _entry_path(spec: WeightSpec, config: dict[str, Any]) -> Path:
    if os.environ.get(spec.env):
        return Path(os.environ[spec.env])
    entry = config.get(spec.name) or {}
    if entry.get("path"):
        return Path(entry["path"])
    return weights_root() / spec.default_dir


def _file_path(spec: WeightSpec, root: Path, name: str) -> Path:
    if root.is_file() and len(spec.files) == 1:
        return root
    return root / name


def resolve(name: str, config: dict[str, Any] | None = None) -> WeightStatus:
    """Find and verify the weights of registry entry ``name`` (never raises for absent weights)."""
    if name not in WEIGHTS:
        raise KeyError(f"unknown weights {name!r}; known: {', '.join(WEIGHTS)}")
    return resolve_spec(WEIGHTS[name], config)


def resolve_spec(spec: WeightSpec, config: dict[str, Any] | None = None) -> WeightStatus:
    """:func:`resolve` for a spec that may be kept outside :data:`WEIGHTS`, with the same environment
    variable, config entry and weights-root rules."""
    name = spec.name
    config = load_config() if config is None else config
    root = _entry_path(spec, config)
    pinned = dict((config.get(name) or {}).get("sha256_files") or {})
    if (config.get(name) or {}).get("sha256") and len(spec.files) == 1:
        pinned[next(iter(spec.files))] = config[name]["sha256"]
    status = WeightStatus(name=name, status="skipped", path=root)
    if not root.exists():
        status.reason = (
            f"{name} weights not found at {root} (set ${spec.env}, a '{name}' entry in "
            f"${CONFIG_ENV}, or put them in ${ROOT_ENV}/{spec.default_dir}); get {spec.obtain}"
        )
        return status
    for file_name, registry_hash in spec.files.items():
        file = _file_path(spec, root, file_name)
        if not file.is_file():
            status.reason = f"{name} weights at {root} lack {file_name}; get {spec.obtain}"
            return status
        actual = _cached_sha256(file)
        status.sha256[file_name] = actual
        expected = pinned.get(file_name) or registry_hash
        if expected is None:
            status.reason = (
                f"{name}: no expected SHA-256 for {file_name} (the registry pins none); check the "
                f"file and record it with `flowstudio bench weights --pin CONFIG`"
            )
            return status
        if actual != expected:
            status.reason = (
                f"{name}: {file} has SHA-256 {actual[:16]}..., expected {expected[:16]}...; "
                "the file is corrupt or a different model"
            )
            return status
    status.status, status.reason = "ok", None
    return status


def pin(config_path: str | os.PathLike[str], names: list[str] | None = None) -> dict[str, Any]:
    """Record the current SHA-256 of every present entry (or ``names``) into the config file (JSON)."""
    config_path = Path(config_path)
    config = load_config(config_path) if config_path.is_file() else {}
    for name in names or list(WEIGHTS):
        spec = WEIGHTS[name]
        root = _entry_path(spec, config)
        files = {f: _file_path(spec, root, f) for f in spec.files}
        if not all(p.is_file() for p in files.values()):
            continue
        config[name] = {"path": str(root), "sha256_files": {f: _cached_sha256(p) for f, p in files.items()}}
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
    return config
