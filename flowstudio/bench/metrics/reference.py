"""Reference-tier metrics: CLIP, DINO structure, LPIPS, FVD (I3D), FID (Inception), from local weights only.

Every model is loaded from the folder or file that :mod:`flowstudio.bench.metrics.registry` resolves
and verifies; transformers models with ``local_files_only=True``. When the weights are absent or
their SHA-256 differs, every metric of that model returns ``{"status": "skipped", "reason": ...}``:
never a number.

Definitions (frames uint8 ``(T, H, W, 3)``):

* ``clip_text``: mean over frames of the cosine similarity between the CLIP image embedding of the
  frame and the CLIP text embedding of the target prompt (CLIPScore without the 2.5 rescale;
  Hessel et al. 2021; used by LOVEU-TGVE, V2VBench, FiVE-Bench).
* ``clip_frame``: mean cosine similarity of the CLIP image embeddings of consecutive frames
  (frame consistency, LOVEU-TGVE / VBench).
* ``dino_structure``: mean over frames of the mean squared difference between the cosine
  self-similarity matrices of the DINO patch tokens of source and output frames (structure distance
  of Tumanyan et al., "Splicing ViT Features", CVPR 2022, as FiVE-Bench uses it; tokens of the last
  hidden state rather than last-layer keys). Lower keeps the structure better.
* ``lpips_bg``: LPIPS v0.1 (AlexNet; Zhang et al. CVPR 2018) between source and output, the output's
  pixels outside the kept region replaced by the source's, so that only the kept region (the
  background, for most edits) can differ (FiVE-Bench's masked background LPIPS); whole frame when
  the case has no mask.
* ``fvd``: Fréchet distance between I3D features of the output clips and of the reference clips
  (ground-truth targets, else the sources), set level (Unterthiner et al. 2018).
* ``fid``: Fréchet distance between Inception-v3 pool features of all output frames and all
  reference frames, set level (Heusel et al. 2017).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from flowstudio.bench.metrics.registry import WEIGHTS, WeightStatus, load_config, resolve

logger = logging.getLogger(__name__)

Result = float | dict[str, Any]


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))`` (Dowson & Landau 1982), float64.

    ``tr((S1 S2)^(1/2))`` is the sum of square roots of the eigenvalues of the symmetric PSD matrix
    ``S1^(1/2) S2 S1^(1/2)``, which has the same eigenvalues as ``S1 S2``.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    w, v = np.linalg.eigh((s1 + s1.T) / 2)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    middle = root1 @ s2 @ root1
    eig = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_sqrt = float(np.sqrt(np.clip(eig, 0, None)).sum())
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * trace_sqrt)


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (``ddof=1``) of ``(N, D)`` features."""
    features = np.asarray(features, np.float64)
    return features.mean(axis=0), np.cov(features, rowvar=False)


class ReferenceScorer:
    """Lazy loader and evaluator of the reference tier. Models load on first use; CPU by default.

    Args:
        config: weights config (see the registry); ``None`` reads ``$FLOWSTUDIO_BENCH_WEIGHTS``.
        device: torch device for the models.
        enabled: metric names to compute (default: every reference metric of the registry).
    """

    def __init__(
        self,
        config: dict[str, Any] | None = None,
        device: str = "cpu",
        enabled: tuple[str, ...] | None = None,
    ) -> None:
        self.config = load_config() if config is None else config
        self.device = device
        self.enabled = tuple(enabled) if enabled is not None else None
        self._status: dict[str, WeightStatus] = {}
        self._models: dict[str, Any] = {}

    # -- weights -------------------------------------------------------------------------------
    def status(self, name: str) -> WeightStatus:
        if name not in self._status:
            self._status[name] = resolve(name, self.config)
            if self._status[name].status != "ok":
                logger.info("reference metric weights %s skipped: %s", name, self._status[name].reason)
        return self._status[name]

    def weights_report(self) -> dict[str, Any]:
        """Status, path and SHA-256 of every registry entry (for the results JSON)."""
        return {name: self.status(name).to_dict() for name in WEIGHTS}

    def _model(self, name: str) -> Any:
        if name not in self._models:
            loader = {
                "clip": self._load_clip,
                "dino": self._load_dino,
                "lpips": self._load_lpips,
                "i3d": self._load_script,
                "inception": self._load_script,
            }[name]
            self._models[name] = loader(self.status(name))
        return self._models[name]

    def _load_clip(self, status: WeightStatus) -> Any:
        from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

        model = CLIPModel.from_pretrained(status.path, local_files_only=True).to(self.device).eval()
        return (
            model,
            AutoTokenizer.from_pretrained(status.path, local_files_only=True),
            AutoImageProcessor.from_pretrained(status.path, local_files_only=True),
        )

    def _load_dino(self, status: WeightStatus) -> Any:
        from transformers import AutoImageProcessor, AutoModel

        model = AutoModel.from_pretrained(status.path, local_files_only=True).to(self.device).eval()
        return model, AutoImageProcessor.from_pretrained(status.path, local_files_only=True)

    def _load_lpips(self, status: WeightStatus) -> Any:
        from flowstudio.bench.metrics.lpips import LPIPS

        assert status.path is not None
        return (
            LPIPS.from_files(status.path / "alexnet.pth", status.path / "lpips_alex.pth")
            .to(self.device)
            .eval()
        )

    def _load_script(self, status: WeightStatus) -> Any:
        import torch

        assert status.path is not None
        file = status.path if status.path.is_file() else status.path / next(iter(WEIGHTS[status.name].files))
        return torch.jit.load(str(file), map_location=self.device).eval()

    def _available(self, metric: str, weights: str) -> dict[str, str] | None:
        """``None`` when ``metric`` can run, else its skipped record."""
        if self.enabled is not None and metric not in self.enabled:
            return {"status": "skipped", "reason": f"{metric} not enabled"}
        status = self.status(weights)
        return None if status.status == "ok" else status.skipped()

    # -- per-case metrics ----------------------------------------------------------------------
    def score_case(
        self, output: np.ndarray, source: np.ndarray, target_prompt: str, preserve_region: np.ndarray | None
    ) -> dict[str, Result]:
        """Every case-level reference metric of the editing suite on one case (through the registry):
        ``{name: value | {"status": "skipped", "reason"}}``."""
        from flowstudio.metrics import Inputs, score_case

        values = {"output": output, "source": source, "prompt": target_prompt}
        if preserve_region is not None:
            values["kept_region"] = preserve_region
        scores = score_case("edit", Inputs(values, reference=self), tier="reference")
        skipped = {
            name: {"status": "skipped", "reason": reason} for name, reason in scores["skipped"].items()
        }
        return {**scores["metrics"], **skipped}

    def clip_similarities(self, frames: np.ndarray, prompt: str) -> tuple[float, float | None]:
        """(mean frame-prompt cosine, mean consecutive-frame cosine or ``None`` for one frame)."""
        import torch

        with torch.no_grad():
            return self._clip(frames, prompt)

    def _clip(self, frames: np.ndarray, prompt: str) -> tuple[float, float | None]:
        import torch

        model, tokenizer, processor = self._model("clip")
        pixels = processor(images=list(frames), return_tensors="pt")["pixel_values"].to(self.device)
        image = projected_embedding(model.get_image_features(pixel_values=pixels))
        max_length = model.config.text_config.max_position_embeddings  # 77 for the released CLIP models
        tokens = tokenizer(
            [prompt], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        tokens = tokens.to(self.device)
        text = projected_embedding(model.get_text_features(**tokens))
        image = torch.nn.functional.normalize(image.float(), dim=-1)
        text = torch.nn.functional.normalize(text.float(), dim=-1)
        text_sim = float((image @ text.T).mean())
        frame_sim = float((image[:-1] * image[1:]).sum(-1).mean()) if len(image) > 1 else None
        return text_sim, frame_sim

    def dino_structure(self, source: np.ndarray, output: np.ndarray) -> float:
        """Mean squared difference of the DINO patch self-similarity matrices of source and output."""
        import torch

        with torch.no_grad():
            return self._dino(source, output)

    def _dino(self, source: np.ndarray, output: np.ndarray) -> float:
        import torch

        model, processor = self._model("dino")

        def self_similarity(frames: np.ndarray) -> torch.Tensor:
            pixels = processor(images=list(frames), return_tensors="pt")["pixel_values"].to(self.device)
            tokens = model(pixel_values=pixels).last_hidden_state[:, 1:].float()  # drop CLS
            tokens = torch.nn.functional.normalize(tokens, dim=-1)
            return tokens @ tokens.transpose(1, 2)

        return float(((self_similarity(source) - self_similarity(output)) ** 2).mean())

    def lpips(self, source: np.ndarray, output: np.ndarray, region: np.ndarray | None) -> float:
        """LPIPS of source and output, the output outside ``region`` (when given) replaced by the source."""
        import torch

        with torch.no_grad():
            return self._lpips(source, output, region)

    def _lpips(self, source: np.ndarray, output: np.ndarray, region: np.ndarray | None) -> float:
        import torch

        net = self._model("lpips")
        if region is not None:
            output = np.where(region[..., None], output, source)
        to = lambda x: torch.from_numpy(x).permute(0, 3, 1, 2).float().div(127.5).sub(1).to(self.device)  # noqa: E731
        return float(net(to(source), to(output)).mean())

    # -- set-level metrics ---------------------------------------------------------------------
    def video_features(self, frames: np.ndarray) -> np.ndarray | None:
        """I3D features ``(D,)`` of one clip, or ``None`` when the I3D weights are unavailable."""
        import torch

        if self._available("fvd", "i3d") is not None:
            return None
        detector = self._model("i3d")
        video = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float().div(127.5).sub(1).to(self.device)
        with torch.no_grad():
            features = detector(video, rescale=False, resize=True, return_features=True)
        return features.reshape(-1).cpu().numpy().astype(np.float64)

    def image_features(self, frames: np.ndarray) -> np.ndarray | None:
        """Inception pool features ``(T, D)`` of a clip's frames, or ``None`` without weights."""
        import torch

        if self._available("fid", "inception") is not None:
            return None
        detector = self._model("inception")
        images = torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous().to(self.device)
        with torch.no_grad():
            features = detector(images, return_features=True)
        return features.reshape(len(frames), -1).cpu().numpy().astype(np.float64)

    def frechet(self, metric: str, outputs: list[np.ndarray], references: list[np.ndarray]) -> Result:
        """FVD or FID from per-clip features (lists as returned by the feature methods)."""
        weights = "i3d" if metric == "fvd" else "inception"
        skipped = self._available(metric, weights)
        if skipped is not None:
            return skipped
        a, b = (
            np.concatenate([np.atleast_2d(x) for x in outputs]),
            np.concatenate([np.atleast_2d(x) for x in references]),
        )
        if min(len(a), len(b)) < 2:
            return {
                "status": "skipped",
                "reason": f"{metric} needs at least 2 samples on each side, got {len(a)} and {len(b)}",
            }
        return frechet_distance(*feature_stats(a), *feature_stats(b))


def projected_embedding(output: Any) -> Any:
    """The projected embedding from ``get_*_features`` (a tensor, or an output with ``pooler_output``)."""
    if hasattr(output, "pooler_output"):
        return output.pooler_output
    return output
