"""Reference tier: weight registry (absent, unpinned, mismatched, verified) and loaders on tiny checkpoints.

The tiny checkpoints have the folder layout and config keys of the real ones (a CLIPModel and a
Dinov2Model saved with ``save_pretrained`` plus tokenizer / preprocessor files; LPIPS and TorchScript
feature extractors as single files), with random weights: the numbers are meaningless, the loading,
hash checks and metric plumbing are real.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from flowstudio.bench.io import sha256_file
from flowstudio.bench.metrics import registry
from flowstudio.bench.metrics.lpips import LPIPS
from flowstudio.bench.metrics.reference import ReferenceScorer, frechet_distance
from flowstudio.metrics import for_suite


@pytest.fixture(autouse=True)
def _no_user_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never see the user's weights config or weights folder."""
    for spec in registry.WEIGHTS.values():
        monkeypatch.delenv(spec.env, raising=False)
    monkeypatch.delenv(registry.CONFIG_ENV, raising=False)
    monkeypatch.setenv(registry.ROOT_ENV, str(tmp_path / "no-weights-here"))


def build_tiny_clip(folder: Path) -> Path:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    folder.mkdir(parents=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in "abcdefghijklmnopqrstuvwxyz":
        vocab[char] = len(vocab)
        vocab[f"{char}</w>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(vocab_file=str(folder / "vocab.json"), merges_file=str(folder / "merges.txt"))
    text = dict(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        vocab_size=len(vocab),
        max_position_embeddings=32,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    vision = dict(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
    )
    torch.manual_seed(0)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=8)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        folder
    )
    (folder / "vocab.json").unlink()
    (folder / "merges.txt").unlink()
    return folder


def build_tiny_dino(folder: Path) -> Path:
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    torch.manual_seed(1)
    config = Dinov2Config(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, mlp_ratio=2, image_size=32, patch_size=8
    )
    Dinov2Model(config).save_pretrained(folder)
    BitImageProcessor(
        size={"shortest_edge": 32},
        crop_size={"height": 32, "width": 32},
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    ).save_pretrained(folder)
    return folder


def build_tiny_lpips(folder: Path) -> Path:
    folder.mkdir(parents=True)
    torch.manual_seed(2)
    net = LPIPS()
    torch.save(
        {f"features.{k}": v for k, v in net.features.state_dict().items()}
        | {"classifier.1.weight": torch.zeros(1)},
        folder / "alexnet.pth",
    )
    torch.save(
        {f"lin{i}.model.1.weight": conv.weight.detach().abs() for i, conv in enumerate(net.lins)},
        folder / "lpips_alex.pth",
    )
    return folder


class _TinyI3D(torch.nn.Module):
    """Same call signature as StyleGAN-V's i3d_torchscript.pt: (B, 3, T, H, W) -> (B, D) features."""

    def forward(
        self, x: torch.Tensor, rescale: bool = False, resize: bool = True, return_features: bool = True
    ) -> torch.Tensor:
        pooled = x.mean(dim=(3, 4))  # (B, 3, T)
        return torch.cat([pooled.mean(-1), pooled.std(-1), pooled[:, :, :2].flatten(1)], dim=1)


class _TinyInception(torch.nn.Module):
    """Same call signature as NVlabs' inception-2015-12-05.pt: uint8 (B, 3, H, W) -> (B, D)."""

    def forward(self, x: torch.Tensor, return_features: bool = True) -> torch.Tensor:
        x = x.float() / 255.0
        return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)


def build_script(module: torch.nn.Module, file: Path) -> Path:
    file.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.script(module).save(str(file))
    return file


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("weights")
    return {
        "clip": build_tiny_clip(root / "clip"),
        "dino": build_tiny_dino(root / "dino"),
        "lpips": build_tiny_lpips(root / "lpips"),
        "i3d": build_script(_TinyI3D(), root / "i3d" / "i3d_torchscript.pt").parent,
        "inception": build_script(_TinyInception(), root / "inception" / "inception-2015-12-05.pt").parent,
    }


def pinned_config(paths: dict[str, Path]) -> dict[str, dict]:
    config = {}
    for name, path in paths.items():
        spec = registry.WEIGHTS[name]
        config[name] = {"path": str(path), "sha256_files": {f: sha256_file(path / f) for f in spec.files}}
    return config


def clip_frames(seed: int = 0, frames: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (1, 48, 64, 3))
    return np.clip(base + rng.integers(-10, 10, (frames, 48, 64, 3)), 0, 255).astype(np.uint8)


def test_absent_weights_are_skipped_with_reason_never_a_number():
    scorer = ReferenceScorer(config={})
    source, output = clip_frames(0), clip_frames(1)
    results = scorer.score_case(output, source, "a red cup", None)
    assert set(results) == {"clip_text", "clip_frame", "dino_structure", "lpips_bg"}
    for name, value in results.items():
        assert isinstance(value, dict) and value["status"] == "skipped", name
        assert "not found" in value["reason"] and "FLOWSTUDIO_WEIGHTS_" in value["reason"], value
    assert scorer.video_features(source) is None and scorer.image_features(source) is None
    fvd = scorer.frechet("fvd", [], [])
    assert fvd["status"] == "skipped"
    report = scorer.weights_report()
    assert set(report) == set(registry.WEIGHTS) and all(v["status"] == "skipped" for v in report.values())


def test_unpinned_and_mismatched_hashes_are_skipped(tiny_weights):
    unpinned = registry.resolve("clip", {"clip": {"path": str(tiny_weights["clip"])}})
    assert unpinned.status == "skipped" and "no expected SHA-256" in unpinned.reason
    assert unpinned.sha256["model.safetensors"] == sha256_file(tiny_weights["clip"] / "model.safetensors")
    wrong = registry.resolve("clip", {"clip": {"path": str(tiny_weights["clip"]), "sha256": "0" * 64}})
    assert wrong.status == "skipped" and "expected 0000" in wrong.reason
    scorer = ReferenceScorer(config={"clip": {"path": str(tiny_weights["clip"]), "sha256": "0" * 64}})
    assert scorer.score_case(clip_frames(), clip_frames(), "x", None)["clip_text"]["status"] == "skipped"
    missing_file = registry.resolve("lpips", {"lpips": {"path": str(tiny_weights["clip"])}})
    assert missing_file.status == "skipped" and "lack alexnet.pth" in missing_file.reason


def test_env_var_path_and_pin_command(tiny_weights, tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWSTUDIO_WEIGHTS_I3D", str(tiny_weights["i3d"]))
    config_file = tmp_path / "weights.json"
    config = registry.pin(config_file, ["i3d"])
    assert config["i3d"]["sha256_files"]["i3d_torchscript.pt"] == sha256_file(
        tiny_weights["i3d"] / "i3d_torchscript.pt"
    )
    assert registry.resolve("i3d", registry.load_config(config_file)).status == "ok"
    monkeypatch.setenv(registry.CONFIG_ENV, str(config_file))
    assert registry.resolve("i3d").status == "ok"


def test_verified_tiny_checkpoints_give_numbers(tiny_weights):
    scorer = ReferenceScorer(config=pinned_config(tiny_weights))
    source, output = clip_frames(0), clip_frames(1)
    results = scorer.score_case(output, source, "a red cup", None)
    for name in ("clip_text", "clip_frame", "dino_structure", "lpips_bg"):
        assert isinstance(results[name], float) and np.isfinite(results[name]), (name, results[name])
    assert -1.0 <= results["clip_text"] <= 1.0 and -1.0 <= results["clip_frame"] <= 1.0
    same = scorer.score_case(source, source, "a red cup", None)
    assert same["dino_structure"] == pytest.approx(0.0, abs=1e-10)
    assert same["lpips_bg"] == pytest.approx(0.0, abs=1e-7)
    assert results["dino_structure"] > 0 and results["lpips_bg"] > 0
    # kept region only: where nothing is kept, LPIPS sees the source on both sides
    assert scorer.score_case(output, source, "x", np.zeros(source.shape[:3], bool))[
        "lpips_bg"
    ] == pytest.approx(0.0, abs=1e-7)
    videos = [clip_frames(s, 9) for s in range(4)]
    outputs = [scorer.video_features(v) for v in videos]
    assert all(f is not None and f.ndim == 1 for f in outputs)
    assert scorer.frechet("fvd", outputs, outputs) == pytest.approx(0.0, abs=1e-6)
    images = [scorer.image_features(v) for v in videos]
    fid = scorer.frechet("fid", images, [scorer.image_features(clip_frames(9, 9))] * 2)
    assert isinstance(fid, float) and fid > 0
    assert scorer.weights_report()["clip"]["status"] == "ok"
    assert {m.name for m in for_suite("edit", tier="reference", level="set")} == {"fvd", "fid"}


def test_lpips_network_properties(tiny_weights):
    net = LPIPS.from_files(tiny_weights["lpips"] / "alexnet.pth", tiny_weights["lpips"] / "lpips_alex.pth")
    torch.manual_seed(0)
    x, y = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
    d = net(x, y)
    assert d.shape == (2,) and (d > 0).all()
    assert torch.allclose(d, net(y, x)), "LPIPS is symmetric"
    assert torch.allclose(net(x, x), torch.zeros(2), atol=1e-7)


def test_frechet_distance_matches_scipy_sqrtm():
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 6)), rng.normal(loc=0.5, scale=1.5, size=(150, 6)) @ rng.normal(size=(6, 6))
    mu1, s1, mu2, s2 = a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    expected = float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-6)
    # known value: two 1-D Gaussians, (m1 - m2)^2 + (s1 - s2)^2
    assert frechet_distance(
        np.array([1.0]), np.array([[4.0]]), np.array([3.0]), np.array([[9.0]])
    ) == pytest.approx(4.0 + 1.0)


def test_run_with_reference_tier_records_numbers_and_weight_hashes(tiny_weights, tmp_path):
    from flowstudio.bench import get_method, make_shapeworld, run_benchmark

    testset = make_shapeworld(tmp_path / "sw", seed=2, num_cases=5, num_frames=5, height=64, width=64)
    scorer = ReferenceScorer(config=pinned_config(tiny_weights))
    results = run_benchmark(
        "ground-truth",
        get_method("ground-truth"),
        testset,
        tmp_path / "run",
        reference=scorer,
        progress=False,
    )
    assert results["errors"] == 0
    for name in ("clip_text", "clip_frame", "dino_structure", "lpips_bg"):
        assert results["summary"][name]["n"] == 5, name
    assert results["summary"]["dino_structure"]["mean"] > 0  # the oracle changes the source
    for case in results["cases"]:  # ... but keeps the kept region bit-identical
        if case["edit_type"] in ("color", "material", "product"):
            assert case["metrics"]["lpips_bg"] == pytest.approx(0.0, abs=1e-7), case["id"]
    assert results["summary"]["fvd"]["value"] == pytest.approx(0.0, abs=1e-6)
    assert results["summary"]["fid"]["n"] == 5
    clip_hash = sha256_file(tiny_weights["clip"] / "model.safetensors")
    assert results["weights"]["clip"] == {
        "status": "ok",
        "path": str(tiny_weights["clip"]),
        "sha256": {"model.safetensors": clip_hash},
    }
