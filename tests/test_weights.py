"""flowstudio.weights: checkpoint checks, loading, prompt encoding; the tiny checkpoint (models.factory)."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from flowstudio.errors import CheckpointError, InputError
from flowstudio.models.factory import STALE_REFERENCE_KEYS
from flowstudio.weights import (
    LATENT_CHANNELS,
    REQUIRED_LAYOUT,
    WAN22_TI2V_5B_CONFIGS,
    WAN22_TI2V_5B_REPO,
    CheckReport,
    Problem,
    check_checkpoint,
    default_dtype,
    encode_prompts,
    load_components,
)

# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def ckpt(tiny_checkpoint: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny checkpoint that a test may break."""
    return Path(shutil.copytree(tiny_checkpoint, tmp_path / "ckpt"))


@pytest.fixture(scope="module")
def components(tiny_checkpoint: Path):
    return load_components(tiny_checkpoint, device="cpu")


def edit_json(file: Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads(file.read_text())
    change(data)
    file.write_text(json.dumps(data))


def first_shard(root: Path, index_rel: str) -> str:
    weight_map = json.loads((root / index_rel).read_text())["weight_map"]
    return f"{Path(index_rel).parent}/{sorted(set(weight_map.values()))[0]}"


def find(report: CheckReport, kind: str, *words: str) -> list[Problem]:
    """Problems of ``kind`` whose detail contains every word."""
    return [p for p in report.problems if p.kind == kind and all(w in p.detail for w in words)]


# ---------------------------------------------------------------------------------------------
# the tiny checkpoint
# ---------------------------------------------------------------------------------------------


def test_tiny_checkpoint_passes_check(tiny_checkpoint: Path) -> None:
    report = check_checkpoint(tiny_checkpoint)
    assert report.ok, report.format()
    assert report.problems == [], report.format()
    assert report.format().startswith("OK:")


@pytest.mark.parametrize("component", ["model_index", "transformer", "vae", "scheduler"])
def test_tiny_checkpoint_has_the_real_config_keys(tiny_checkpoint: Path, component: str) -> None:
    """The diffusers configs hold exactly the keys of the real Wan2.2-TI2V-5B-Diffusers files, less
    the ones the installed diffusers no longer takes (the VAE's ``clip_output``)."""
    config = json.loads((tiny_checkpoint / REQUIRED_LAYOUT[component].config_file).read_text())
    assert set(config) == set(WAN22_TI2V_5B_CONFIGS[component]) - STALE_REFERENCE_KEYS


@pytest.mark.parametrize("folder", ["tiny", "toy"])
def test_loading_prints_no_clip_output_warning(tiny_checkpoint: Path, folder: str, capfd) -> None:
    """diffusers warned on every load that ``clip_output`` "will be ignored"; the key is gone and the
    checker does not require it."""
    from flowstudio.models import TOY_MODEL, toy_model_available
    from flowstudio.weights import load_components

    path = tiny_checkpoint if folder == "tiny" else TOY_MODEL
    if folder == "toy" and not toy_model_available():
        pytest.skip("no packaged toy model in this checkout")
    assert "clip_output" not in json.loads((path / "vae" / "config.json").read_text())
    load_components(path, device="cpu")
    captured = capfd.readouterr()
    assert "clip_output" not in captured.out + captured.err
    assert check_checkpoint(path).ok


def test_tiny_checkpoint_is_in_ti2v_form(tiny_checkpoint: Path) -> None:
    def read(rel: str) -> dict[str, Any]:
        return json.loads((tiny_checkpoint / rel).read_text())

    index, tr, vae = read("model_index.json"), read("transformer/config.json"), read("vae/config.json")
    te, sched = read("text_encoder/config.json"), read("scheduler/scheduler_config.json")
    assert index["_class_name"] == "WanPipeline" and index["expand_timesteps"] is True
    assert index["transformer_2"] == [None, None] and index["boundary_ratio"] is None
    assert index["transformer"] == ["diffusers", "WanTransformer3DModel"]
    assert tr["in_channels"] == tr["out_channels"] == vae["z_dim"] == LATENT_CHANNELS
    assert tr["patch_size"] == [1, 2, 2] and tr["num_attention_heads"] * tr["attention_head_dim"] == 32
    assert vae["is_residual"] is True and vae["patch_size"] == 2 and vae["in_channels"] == 12
    assert (vae["scale_factor_spatial"], vae["scale_factor_temporal"]) == (16, 4)
    assert (
        vae["latents_mean"] == WAN22_TI2V_5B_CONFIGS["vae"]["latents_mean"] and len(vae["latents_std"]) == 48
    )
    assert te["model_type"] == "umt5" and te["d_model"] == tr["text_dim"] == 32
    assert sched["_class_name"] == "UniPCMultistepScheduler" and sched["use_flow_sigmas"] is True
    assert (sched["flow_shift"], sched["prediction_type"]) == (5.0, "flow_prediction")
    # sharded like the real checkpoint
    assert (tiny_checkpoint / "transformer/diffusion_pytorch_model.safetensors.index.json").is_file()
    assert (tiny_checkpoint / "text_encoder/model.safetensors.index.json").is_file()
    size = sum(f.stat().st_size for f in tiny_checkpoint.rglob("*") if f.is_file())
    assert size < 10_000_000, f"tiny checkpoint is {size} bytes"


def test_tiny_checkpoint_is_deterministic(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from flowstudio.testing import build_tiny_checkpoint

    def weights(root: Path) -> dict[str, bytes]:
        return {str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*.safetensors"))}

    same = build_tiny_checkpoint(tmp_path / "same", seed=0)
    other = build_tiny_checkpoint(tmp_path / "other", seed=1)
    assert weights(same) == weights(tiny_checkpoint)
    assert (
        weights(other)["vae/diffusion_pytorch_model.safetensors"]
        != weights(same)["vae/diffusion_pytorch_model.safetensors"]
    )
    with pytest.raises(InputError, match="not empty"):
        build_tiny_checkpoint(same)


def test_vae_compresses_16x_space_4x_time(components) -> None:
    """(1, 3, 1 + 4k, 16h, 16w) video <-> (1, 48, 1 + k, h, w) latents."""
    video = torch.rand(1, 3, 9, 32, 48) * 2 - 1
    with torch.no_grad():
        latents = components.vae.encode(video).latent_dist.mode()
        decoded = components.vae.decode(latents).sample
    assert latents.shape == (1, 48, 3, 2, 3)
    assert decoded.shape == video.shape


# ---------------------------------------------------------------------------------------------
# check_checkpoint: every kind of problem
# ---------------------------------------------------------------------------------------------

REQUIRED_FILES = [
    "model_index.json",
    "transformer/config.json",
    "transformer/diffusion_pytorch_model.safetensors.index.json",
    "transformer/<shard>",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
    "text_encoder/config.json",
    "text_encoder/model.safetensors.index.json",
    "text_encoder/<shard>",
    "tokenizer/tokenizer_config.json",
    "tokenizer/tokenizer.json",
    "scheduler/scheduler_config.json",
]


@pytest.mark.parametrize("rel", REQUIRED_FILES)
def test_deleting_a_required_file_is_reported_by_name(ckpt: Path, rel: str) -> None:
    if rel.endswith("<shard>"):
        index = {"transformer": "transformer/diffusion_pytorch_model.safetensors.index.json"}.get(
            rel.split("/")[0], "text_encoder/model.safetensors.index.json"
        )
        rel = first_shard(ckpt, index)
    (ckpt / rel).unlink()
    report = check_checkpoint(ckpt)
    assert not report.ok
    hits = find(report, "missing_file", rel)
    assert hits, report.format()
    assert all(p.severity == "error" and WAN22_TI2V_5B_REPO in p.hint for p in hits)
    assert rel in report.format()


def test_missing_folder_is_reported(tmp_path: Path) -> None:
    report = check_checkpoint(tmp_path / "nowhere")
    assert not report.ok and find(report, "missing_file", "does not exist")


@pytest.mark.parametrize(
    ("rel", "key"),
    [
        ("model_index.json", "expand_timesteps"),
        ("transformer/config.json", "in_channels"),
        ("transformer/config.json", "rope_max_seq_len"),
        ("vae/config.json", "latents_std"),
        ("vae/config.json", "scale_factor_spatial"),
        ("text_encoder/config.json", "d_model"),
        ("scheduler/scheduler_config.json", "flow_shift"),
    ],
)
def test_removing_a_config_key_is_reported_by_name(ckpt: Path, rel: str, key: str) -> None:
    edit_json(ckpt / rel, lambda d: d.pop(key))
    report = check_checkpoint(ckpt)
    assert not report.ok
    assert find(report, "missing_key", rel, f"'{key}'"), report.format()


def test_unexpected_key_is_a_warning(ckpt: Path) -> None:
    edit_json(ckpt / "vae/config.json", lambda d: d.update(shiny_new_option=3))
    report = check_checkpoint(ckpt)
    hits = find(report, "unexpected_key", "vae/config.json", "shiny_new_option")
    assert hits and hits[0].severity == "warning"
    assert report.ok, "an unknown key alone does not stop loading"
    assert "WARNING" in report.format() and "shiny_new_option" in report.format()


def test_broken_json_is_reported(ckpt: Path) -> None:
    file = ckpt / "transformer/config.json"
    file.write_text(file.read_text()[:40])
    report = check_checkpoint(ckpt)
    assert not report.ok
    assert find(report, "bad_json", "transformer/config.json")


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (lambda b: b[: len(b) * 2 // 3], ("truncated",)),
        (lambda b: b[:20], ("not a complete safetensors",)),
        (lambda b: b"this is not a safetensors file at all" * 4, ()),
        (lambda b: b + b"\0" * 16, ("unexpected bytes",)),
    ],
    ids=["cut-in-data", "cut-in-header", "garbage", "trailing-bytes"],
)
def test_damaged_safetensors_is_reported(ckpt: Path, damage: Callable[[bytes], bytes], words: tuple) -> None:
    rel = "vae/diffusion_pytorch_model.safetensors"
    file = ckpt / rel
    file.write_bytes(damage(file.read_bytes()))
    report = check_checkpoint(ckpt)
    assert not report.ok
    assert find(report, "bad_file", rel, *words), report.format()


def test_shard_index_naming_a_missing_shard_is_reported(ckpt: Path) -> None:
    rel = "transformer/diffusion_pytorch_model.safetensors.index.json"
    ghost = "diffusion_pytorch_model-00009-of-00009.safetensors"
    edit_json(ckpt / rel, lambda d: d["weight_map"].update({"proj_out.weight": ghost}))
    report = check_checkpoint(ckpt)
    assert not report.ok
    assert find(report, "missing_file", f"transformer/{ghost}", "proj_out.weight"), report.format()


def test_shard_index_naming_an_absent_tensor_is_reported(ckpt: Path) -> None:
    rel = "text_encoder/model.safetensors.index.json"
    shard = first_shard(ckpt, rel).split("/")[-1]
    edit_json(ckpt / rel, lambda d: d["weight_map"].update({"encoder.block.7.extra.weight": shard}))
    report = check_checkpoint(ckpt)
    assert not report.ok
    assert find(report, "missing_key", "encoder.block.7.extra.weight"), report.format()


@pytest.mark.parametrize(
    ("rel", "change", "words"),
    [
        (
            "transformer/config.json",
            {"in_channels": 16, "out_channels": 16},
            ("z_dim (48)", "in_channels (16)"),
        ),
        ("vae/config.json", {"z_dim": 16}, ("z_dim (16)", "in_channels (48)")),
    ],
    ids=["transformer-16ch", "vae-16ch"],
)
def test_latent_width_mismatch_is_reported(ckpt: Path, rel: str, change: dict, words: tuple) -> None:
    edit_json(ckpt / rel, lambda d: d.update(change))
    report = check_checkpoint(ckpt)
    assert not report.ok
    hits = [p for p in report.problems if p.component == "checkpoint" and all(w in p.detail for w in words)]
    assert hits and "TI2V" in hits[0].hint, report.format()


@pytest.mark.parametrize(
    ("rel", "change", "key"),
    [
        (
            "vae/config.json",
            {"dim_mult": [1, 2, 4], "temperal_downsample": [False, True]},
            "scale_factor_spatial",
        ),
        ("vae/config.json", {"temperal_downsample": [False, False, True]}, "scale_factor_temporal"),
        ("vae/config.json", {"is_residual": False}, "is_residual"),
        ("model_index.json", {"expand_timesteps": False}, "expand_timesteps"),
        ("model_index.json", {"transformer_2": ["diffusers", "WanTransformer3DModel"]}, "transformer_2"),
        ("transformer/config.json", {"image_dim": 1280}, "image_dim"),
        ("scheduler/scheduler_config.json", {"prediction_type": "epsilon"}, "prediction_type"),
    ],
)
def test_non_ti2v_values_are_reported(ckpt: Path, rel: str, change: dict, key: str) -> None:
    edit_json(ckpt / rel, lambda d: d.update(change))
    report = check_checkpoint(ckpt)
    assert not report.ok
    assert find(report, "bad_value", rel, f"'{key}'"), report.format()


def test_config_and_weights_disagreeing_is_reported(ckpt: Path) -> None:
    edit_json(ckpt / "transformer/config.json", lambda d: d.update(num_layers=3, ffn_dim=96))
    report = check_checkpoint(ckpt)
    assert not report.ok
    assert find(report, "bad_value", "2 'blocks.<i>' layers", "says 3"), report.format()
    assert find(report, "bad_value", "blocks.0.ffn.net.0.proj.weight", "[96, 32]"), report.format()


def test_report_lists_every_problem(ckpt: Path) -> None:
    (ckpt / "vae/config.json").unlink()
    (ckpt / "tokenizer/tokenizer.json").unlink()
    edit_json(ckpt / "scheduler/scheduler_config.json", lambda d: d.update(use_flow_sigmas=False))
    report = check_checkpoint(ckpt)
    text = report.format()
    assert text.startswith("NOT USABLE") and "3 errors" in text
    for piece in ("vae/config.json", "tokenizer/tokenizer.json", "use_flow_sigmas"):
        assert piece in text
    assert json.loads(json.dumps(report.to_dict()))["ok"] is False


# ---------------------------------------------------------------------------------------------
# load_components
# ---------------------------------------------------------------------------------------------


def test_load_components(components, tiny_checkpoint: Path) -> None:
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import PreTrainedTokenizerBase, UMT5EncoderModel

    c = components
    assert isinstance(c.transformer, WanTransformer3DModel)
    assert isinstance(c.vae, AutoencoderKLWan)
    assert isinstance(c.text_encoder, UMT5EncoderModel)
    assert isinstance(c.tokenizer, PreTrainedTokenizerBase)
    assert c.path == tiny_checkpoint and c.device == torch.device("cpu") and c.offload == "none"
    assert c.dtype == torch.float32
    for model in (c.transformer, c.vae, c.text_encoder):
        params = list(model.parameters())
        assert {p.dtype for p in params} == {torch.float32}
        assert {p.device.type for p in params} == {"cpu"}
        assert not model.training
    assert c.scheduler_config["_class_name"] == "UniPCMultistepScheduler"
    assert c.model_index["expand_timesteps"] is True


def test_load_components_dtypes(tiny_checkpoint: Path) -> None:
    c = load_components(tiny_checkpoint, device="cpu", dtype=torch.bfloat16)
    assert c.transformer.blocks[0].attn1.to_q.weight.dtype == torch.bfloat16
    assert c.text_encoder.encoder.block[0].layer[0].SelfAttention.q.weight.dtype == torch.bfloat16
    assert c.vae.dtype == torch.float32, "the VAE stays in float32 unless vae_dtype says otherwise"


def test_load_components_on_a_broken_folder_names_the_missing_piece(ckpt: Path) -> None:
    (ckpt / "vae/config.json").unlink()
    edit_json(ckpt / "transformer/config.json", lambda d: d.pop("text_dim"))
    with pytest.raises(CheckpointError) as info:
        load_components(ckpt, device="cpu")
    message = str(info.value)
    assert "vae/config.json" in message and "'text_dim'" in message and WAN22_TI2V_5B_REPO in message


def test_load_components_rejects_bad_arguments(tiny_checkpoint: Path) -> None:
    with pytest.raises(InputError, match="offload"):
        load_components(tiny_checkpoint, device="cpu", offload="disk")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="device"):
        load_components(tiny_checkpoint, device="toaster")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA"):
            load_components(tiny_checkpoint, device="cuda")


def test_offload_on_cpu_is_a_logged_no_op(tiny_checkpoint: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="flowstudio.weights"):
        c = load_components(tiny_checkpoint, device="cpu", offload="group")
    assert c.offload == "none" and c.offload_hooks == []
    assert "no effect on a CPU device" in caplog.text


@pytest.mark.parametrize("mode", ["model", "group"])
def test_offload_hooks_keep_results_unchanged(tiny_checkpoint: Path, components, mode: str) -> None:
    """The offload code path (normally CUDA) with CPU as the onload device gives the same numbers."""
    from flowstudio.weights.load import _apply_placement

    c = load_components(tiny_checkpoint, device="cpu")
    _apply_placement(c, mode)  # type: ignore[arg-type]
    assert c.offload == mode and len(c.offload_hooks) == (3 if mode == "model" else 0)
    embeds, _ = encode_prompts(c, ["a red box"], 8)
    expected, _ = encode_prompts(components, ["a red box"], 8)
    torch.testing.assert_close(embeds, expected, rtol=0, atol=0)
    x = torch.randn(1, 48, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    t = torch.full((1, 8), 500.0)
    with torch.no_grad():
        got = c.transformer(x, timestep=t, encoder_hidden_states=embeds, return_dict=False)[0]
        want = components.transformer(x, timestep=t, encoder_hidden_states=embeds, return_dict=False)[0]
    torch.testing.assert_close(got, want)
    c.offload_all()


def test_default_dtype() -> None:
    assert default_dtype("cpu") == torch.float32
    assert default_dtype(torch.device("cuda", 0)) == torch.bfloat16


# ---------------------------------------------------------------------------------------------
# encode_prompts and diffusers parity
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wan_pipeline(tiny_checkpoint: Path):
    from diffusers import WanPipeline

    return WanPipeline.from_pretrained(tiny_checkpoint, local_files_only=True)


def test_wan_pipeline_loads_the_tiny_folder(wan_pipeline) -> None:
    """diffusers' own loader accepts the layout: it is a real diffusers Wan2.2-TI2V folder."""
    from diffusers import UniPCMultistepScheduler

    pipe = wan_pipeline
    assert pipe.config.expand_timesteps is True and pipe.config.boundary_ratio is None
    assert pipe.transformer_2 is None
    assert (pipe.vae_scale_factor_spatial, pipe.vae_scale_factor_temporal) == (16, 4)
    assert isinstance(pipe.scheduler, UniPCMultistepScheduler) and pipe.scheduler.config.use_flow_sigmas
    frames = pipe(
        "a red bottle on a wooden table",
        height=32,
        width=32,
        num_frames=5,
        num_inference_steps=2,
        output_type="np",
        generator=torch.Generator().manual_seed(0),
    ).frames
    assert frames.shape == (1, 5, 32, 32, 3)


@pytest.mark.parametrize("max_sequence_length", [24, 512])
def test_encode_prompts_matches_diffusers(components, wan_pipeline, max_sequence_length: int) -> None:
    prompts = [
        "A  shiny red bottle &amp; a blue box on a wooden table. ",
        "hello world",
        "",
        " ".join(["turntable"] * 40),  # longer than 24 tokens: truncated
    ]
    embeds, mask = encode_prompts(components, prompts, max_sequence_length)
    # WanPipeline.__call__ runs under no_grad; with grad enabled torch's CPU SDPA takes another
    # kernel and the result differs in the last bits (~1e-6), so compare under no_grad.
    with torch.no_grad():
        reference = wan_pipeline._get_t5_prompt_embeds(
            prompt=prompts, max_sequence_length=max_sequence_length, device=torch.device("cpu")
        )
    assert embeds.shape == (4, max_sequence_length, 32) and mask.shape == (4, max_sequence_length)
    assert torch.equal(embeds, reference)
    assert embeds.dtype == reference.dtype == torch.float32
    # zero exactly past each prompt's tokens; the end token counts as a token
    assert torch.all(embeds[~mask] == 0) and torch.all(embeds[mask].abs().sum(-1) > 0)
    assert mask[2].sum() == 1, "an empty prompt is just the end token"
    assert mask[3].sum() == min(41, max_sequence_length)


def test_encode_prompts_rejects_bad_prompts(components) -> None:
    with pytest.raises(InputError, match="prompts"):
        encode_prompts(components, [])
    with pytest.raises(InputError, match="prompts"):
        encode_prompts(components, ["ok", 3])  # type: ignore[list-item]


# ---------------------------------------------------------------------------------------------
# the transformer in TI2V use
# ---------------------------------------------------------------------------------------------


def test_transformer_forward_with_per_token_timesteps(components) -> None:
    """(1, 48, 2, 4, 4) latents make 2 x 2 x 2 = 8 tokens; a (1, 8) timestep of one value equals a scalar."""
    gen = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 48, 2, 4, 4, generator=gen)
    text = torch.randn(1, 7, 32, generator=gen)
    seq_len = 2 * (4 // 2) * (4 // 2)
    per_token = torch.linspace(0, 999, seq_len)[None]
    with torch.no_grad():
        out = components.transformer(
            latents, timestep=per_token, encoder_hidden_states=text, return_dict=False
        )[0]
        flat = components.transformer(
            latents, timestep=torch.full((1, seq_len), 700.0), encoder_hidden_states=text, return_dict=False
        )[0]
        scalar = components.transformer(
            latents, timestep=torch.tensor([700.0]), encoder_hidden_states=text, return_dict=False
        )[0]
    assert out.shape == latents.shape and torch.isfinite(out).all()
    torch.testing.assert_close(flat, scalar)
    assert not torch.allclose(out, flat), "per-token timesteps must change the output"
