"""Editing controls on the tiny checkpoint: injection, K/V sharing, blending, masks, first-frame pin."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers.models.transformers.transformer_wan import WanAttnProcessor
from edit_fixtures import encode_clip, gradient_clip, load_pipe, one_thread, run_edit

from flowstudio.core import make_solver
from flowstudio.denoiser import Conditioning
from flowstudio.edit import AttentionShareConfig, BlendConfig, InjectionConfig, RescheduleConfig
from flowstudio.edit.attention_share import AttentionShare
from flowstudio.edit.context import EditContext
from flowstudio.edit.controls import choose_source_mode
from flowstudio.edit.injection import FeatureInjection
from flowstudio.edit.masks import auto_mask, check_mask, feather_mask, latent_mask, mask_from_box
from flowstudio.edit.paired import EditDenoiser, Request
from flowstudio.edit.settings import METHODS
from flowstudio.errors import InputError
from flowstudio.sampling import LoopState, run_loop

_threads = pytest.fixture(scope="module", autouse=True)(one_thread)
# Fixed-point Euler inversion converges at a rate set by the random model's Lipschitz constant: with
# the seed-0 tiny checkpoint, 6 iterations leave 0.24 of latent error at 4 steps, 20 leave 0.006.
EULER_RECONSTRUCTION = {
    "inversion_solver": "euler",
    "generation_solver": "euler",
    "fixed_point_iters": 20,
    "source_guidance": 1.0,
    "target_guidance": 1.0,
    "steps": 4,
}


pipe = pytest.fixture(scope="module")(load_pipe)
clip = pytest.fixture(scope="module")(gradient_clip)
x_src = pytest.fixture(scope="module")(encode_clip)
_edit = run_edit


def _assert_model_clean(model: torch.nn.Module) -> None:
    for block in model.blocks:
        assert (
            type(block.attn1.processor) is WanAttnProcessor
            and type(block.attn2.processor) is WanAttnProcessor
        )
        assert not block._forward_hooks, "a control left a forward hook on a block"


def _paired_call(pipe, x_src, controls, context):
    """One batched source+target model call with ``controls`` installed; returns block outputs per block."""
    denoiser = EditDenoiser(pipe.denoiser, context)
    source = Conditioning(prompt_embeds=pipe.encode_prompt("a red ball"))
    target = Conditioning(prompt_embeds=pipe.encode_prompt("a blue box"))
    x_t = 0.5 * x_src + 0.5 * torch.randn(x_src.shape, generator=torch.Generator().manual_seed(1))
    seen: dict[int, torch.Tensor] = {}
    state = LoopState(
        x=x_src, sigmas=torch.tensor([1.0, 0.0]), direction="denoise", model=pipe.denoiser.transformer
    )
    for c in controls:
        c.on_start(state)
    handles = [
        block.register_forward_hook(lambda m, a, out, i=i: seen.__setitem__(i, out.clone()))
        for i, block in enumerate(pipe.denoiser.transformer.blocks)
    ]  # registered after the controls' hooks: sees their output
    try:
        v = denoiser.velocities([Request("src", x_t, source), Request("tgt", x_t + 0.1, target)], 0.5)
    finally:
        for h in handles:
            h.remove()
        for c in controls:
            c.on_end(state)
    return v, seen


def test_injection_strength_zero_is_a_noop(pipe, x_src):
    context = EditContext(phase="edit", num_steps=1)
    plain, _ = _paired_call(pipe, x_src, [], context)
    injected, _ = _paired_call(
        pipe, x_src, [FeatureInjection(InjectionConfig(strength=0.0, end=1.0), context)], context
    )
    assert torch.equal(plain["tgt"], injected["tgt"]) and torch.equal(plain["src"], injected["src"])
    _assert_model_clean(pipe.denoiser.transformer)


def test_injection_strength_one_reproduces_source_features(pipe, x_src):
    """h_tgt <- h_tgt + 1 * (h_src - h_tgt) = h_src at every injected block; first-frame tokens kept."""
    context = EditContext(phase="edit", num_steps=1)
    control = FeatureInjection(InjectionConfig(strength=1.0, end=1.0), context)
    _, seen = _paired_call(pipe, x_src, [control], context)
    for i, hidden in seen.items():
        assert torch.equal(hidden[1], hidden[0]), f"block {i}: target features differ from the source's"
    # With the first-frame tokens protected, block 0's target output keeps them as computed without injection.
    _, plain = _paired_call(pipe, x_src, [], context)
    tokens = plain[0].shape[1]
    keep = torch.ones(tokens, dtype=torch.bool)
    keep[: tokens // 2] = False  # 2 latent frames here: the first half of the tokens is frame 0
    context.token_keep = keep
    _, seen = _paired_call(
        pipe, x_src, [FeatureInjection(InjectionConfig(strength=1.0, end=1.0), context)], context
    )
    assert torch.equal(seen[0][1, ~keep], plain[0][1, ~keep])
    assert torch.equal(seen[0][1, keep], seen[0][0, keep])


def test_injection_with_cached_source_features(pipe, clip, x_src):
    """Cache mode records source features during inversion (no extra rows) and injects them."""
    r = _edit(
        pipe,
        clip,
        target_prompt="a red ball",
        injection=InjectionConfig(strength=1.0, end=1.0),
        source_features="cache",
        **EULER_RECONSTRUCTION,
    )
    assert r.info["source_features"] == "cache" and r.info["feature_cache_bytes"] > 0
    plain = _edit(pipe, clip, target_prompt="a red ball", **EULER_RECONSTRUCTION)
    assert r.row_evaluations == plain.row_evaluations
    assert (r.latents - x_src).abs().max() < 0.05
    _assert_model_clean(pipe.denoiser.transformer)


def test_source_mode_follows_the_memory_budget(pipe, clip):
    assert (
        choose_source_mode("auto", 10, 100) == "cache"
        and choose_source_mode("auto", 1000, 100) == "recompute"
    )
    r = _edit(pipe, clip, injection=InjectionConfig(), memory_budget_gb=0.0, steps=2)
    assert r.info["source_features"] == "recompute"


def test_kv_replace_with_identical_prompts_reproduces_the_source_path(pipe, clip, x_src):
    """Target queries on source K/V: with target = source the edit path is the reconstruction path."""
    plain = _edit(pipe, clip, target_prompt="a red ball", **EULER_RECONSTRUCTION)
    shared = _edit(
        pipe,
        clip,
        target_prompt="a red ball",
        source_features="recompute",
        attention_share=AttentionShareConfig(mode="replace", start=0.0, end=1.0),
        **EULER_RECONSTRUCTION,
    )
    assert shared.row_evaluations > plain.row_evaluations  # live source rows were evaluated
    assert (shared.latents - plain.latents).abs().max() < 1e-4
    assert (shared.latents - x_src).abs().max() < 0.05
    _assert_model_clean(pipe.denoiser.transformer)


@pytest.mark.parametrize("mode", ["replace", "concat"])
def test_kv_sharing_changes_an_edit(pipe, clip, mode):
    plain = _edit(pipe, clip, source_features="recompute")
    shared = _edit(
        pipe,
        clip,
        source_features="recompute",
        attention_share=AttentionShareConfig(mode=mode, start=0.0, end=1.0),
    )
    assert not torch.equal(plain.latents, shared.latents)


def test_controls_restore_the_model_after_an_error(pipe, x_src):
    context = EditContext(phase="edit", num_steps=1)
    controls = [
        FeatureInjection(InjectionConfig(end=1.0), context),
        AttentionShare(AttentionShareConfig(), context),
    ]

    def failing(x, sigma):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run_loop(
            failing,
            x_src,
            torch.tensor([1.0, 0.0]),
            make_solver("euler"),
            controllers=controls,
            model=pipe.denoiser.transformer,
        )
    _assert_model_clean(pipe.denoiser.transformer)


@pytest.mark.parametrize("method", ["inversion", "flowedit"])
def test_blending_with_an_empty_edit_region_returns_the_source(pipe, clip, x_src, method):
    """Edit mask all 0 (keep mask all 1): m' = 0 => x = 0 * x + 1 * source, bit-exact at the end."""
    r = _edit(
        pipe, clip, method=method, mask=np.zeros(clip.shape[:3], np.uint8), blend=BlendConfig(feather=1)
    )
    assert torch.equal(r.latents, x_src)


def test_blending_keeps_the_source_exactly_outside_the_region(pipe, clip, x_src):
    r = _edit(pipe, clip, box=(0, 0, 32, 32), blend=BlendConfig(feather=0))  # latent cells x = 0, 1
    assert torch.equal(r.latents[..., 2:], x_src[..., 2:])
    assert not torch.equal(r.latents[:, :, 1:, :, :2], x_src[:, :, 1:, :, :2])


@pytest.mark.parametrize("method", METHODS)
def test_first_frame_latent_is_bit_exact_under_every_control(pipe, clip, x_src, method):
    controls = {
        "injection": InjectionConfig(strength=0.7, end=1.0),
        "attention_share": AttentionShareConfig(mode="concat", end=1.0),
        "blend": BlendConfig(feather=1),
        "reschedule": RescheduleConfig(strength=0.9),
        "mask": "auto",
        "source_guidance": 2.0,
        "target_guidance": 3.0,
        "first_frame": "source",  # pinned on request (the default generates frame 0)
    }
    r = _edit(pipe, clip, method=method, **controls)
    assert torch.equal(r.latents[:, :, 0], x_src[:, :, 0])
    image = np.full((32, 64, 3), 200, np.uint8)
    r = _edit(pipe, clip, method=method, target_image=image, **controls)
    assert torch.equal(r.latents[:, :, :1], pipe.encode_video(image[None]))


def test_latent_mask_follows_the_vae_grouping():
    """Latent frame 0 <- pixel frame 0; latent frame j >= 1 <- pixel frames 4j-3..4j; max-pooled cells."""
    mask = np.zeros((9, 64, 64), np.float32)
    mask[3, 0:2, 40:42] = 1  # one pixel group in pixel frame 3 -> latent frame 1, cell (0, 2)
    m = latent_mask(mask, (1, 48, 3, 4, 4), feather=0)
    assert m.shape == (1, 1, 3, 4, 4) and m.sum() == 1 and m[0, 0, 1, 0, 2] == 1


def test_feather_keeps_the_region_and_has_compact_support():
    m = torch.zeros(1, 1, 1, 9, 9)
    m[..., 4, 4] = 1
    soft = feather_mask(m, 1)
    assert soft[..., 4, 4] == 1 and 0 < soft[..., 4, 6] < 1
    assert soft[..., 4, 7] == 0 and soft[..., 0, 0] == 0  # beyond 2 * radius: exactly 0


def test_mask_errors_are_clear():
    with pytest.raises(InputError, match=r"mask is 10x8 \(WxH\) but the video is 64x32"):
        check_mask(np.zeros((1, 8, 10), np.float32), 5, 32, 64)
    with pytest.raises(InputError, match="mask has 3 frames but the video has 5"):
        check_mask(np.zeros((3, 32, 64), np.float32), 5, 32, 64)
    with pytest.raises(InputError, match="box"):
        mask_from_box((10, 0, 5, 8), 5, 32, 64)


def test_auto_mask_marks_where_the_prompts_differ(pipe, x_src):
    denoiser = EditDenoiser(pipe.denoiser, EditContext())
    red = Conditioning(prompt_embeds=pipe.encode_prompt("a red ball"))
    blue = Conditioning(prompt_embeds=pipe.encode_prompt("a blue box on marble"))
    same = auto_mask(denoiser, x_src, red, red, generator=torch.Generator().manual_seed(0))
    diff = auto_mask(denoiser, x_src, red, blue, generator=torch.Generator().manual_seed(0))
    assert same.shape == diff.shape == (1, 1, *x_src.shape[2:])
    assert same.sum() == 0 and diff.max() == 1 and set(diff.unique().tolist()) <= {0.0, 1.0}
    _assert_model_clean(pipe.denoiser.transformer)


@pytest.mark.parametrize("control", ["injection", "attention_share"])
def test_recompute_controls_survive_split_model_calls(pipe, clip, control):
    """max_batch_rows=1 runs source and target rows as separate forwards: same edit (to float noise)."""
    options = {
        "source_features": "recompute",
        "source_guidance": 2.0,
        control: InjectionConfig(end=1.0) if control == "injection" else AttentionShareConfig(end=1.0),
    }
    whole = _edit(pipe, clip, **options)
    split = _edit(pipe, clip, max_batch_rows=1, **options)
    plain = _edit(pipe, clip, source_guidance=2.0)
    assert split.model_calls > whole.model_calls and split.row_evaluations == whole.row_evaluations
    assert (split.latents - whole.latents).abs().max() < 1e-4
    assert (whole.latents - plain.latents).abs().max() > 1e-3  # the control did act


def test_pixel_composite_keeps_source_pixels_outside_the_region(pipe, clip):
    r = _edit(pipe, clip, box=(0, 0, 32, 32), blend=BlendConfig(feather=0, pixel_composite=True))
    assert np.array_equal(r.frames[:, :, 32:], clip[:, :, 32:])
    assert not np.array_equal(r.frames[1:, :, :32], clip[1:, :, :32])


def test_kv_sharing_leaves_first_frame_tokens_alone(pipe, x_src):
    """First-frame queries keep their own attention; the rest of a block is per token, so the block's
    output on those tokens equals the output without sharing."""
    context = EditContext(phase="edit", num_steps=1)
    _, plain = _paired_call(pipe, x_src, [], context)
    tokens = plain[0].shape[1]
    keep = torch.ones(tokens, dtype=torch.bool)
    keep[: tokens // 2] = False
    context.token_keep = keep
    for mode in ("replace", "concat"):
        control = AttentionShare(AttentionShareConfig(mode=mode, end=1.0), context)
        _, seen = _paired_call(pipe, x_src, [control], context)
        assert torch.equal(seen[0][1, ~keep], plain[0][1, ~keep]), mode
        assert not torch.equal(seen[0][1, keep], plain[0][1, keep]), mode


def test_the_paired_denoiser_passes_each_sides_attention_kwargs(pipe, x_src):
    """Conditioning.attention_kwargs reach the transformer on the editing path too (they were dropped);
    sides with different kwargs never share a call, sides with none still batch together."""
    seen: list[tuple[int, object]] = []

    def record(module, args, kwargs):
        seen.append((kwargs["hidden_states"].shape[0], kwargs.get("attention_kwargs")))

    hook = pipe.denoiser.transformer.register_forward_pre_hook(record, with_kwargs=True)
    try:
        denoiser = EditDenoiser(pipe.denoiser, EditContext())
        plain_src = Conditioning(prompt_embeds=pipe.encode_prompt("a red ball"))
        plain_tgt = Conditioning(prompt_embeds=pipe.encode_prompt("a blue box"))
        denoiser.velocities([Request("src", x_src, plain_src), Request("tgt", x_src + 0.1, plain_tgt)], 0.5)
        assert seen == [(2, None)], "no kwargs: one call for both sides"
        seen.clear()
        scaled = Conditioning(prompt_embeds=pipe.encode_prompt("a blue box"), attention_kwargs={"scale": 0.5})
        denoiser.velocities([Request("src", x_src, plain_src), Request("tgt", x_src + 0.1, scaled)], 0.5)
        assert seen == [(1, None), (1, {"scale": 0.5})]
    finally:
        hook.remove()


def test_a_run_with_controls_leaves_the_model_as_it_found_it(pipe, clip):
    """Edit B alone, then edit A with K/V sharing + feature injection, then B again: B is bit-identical
    (the controls' processors and hooks live for one run only), and the model holds no control state."""
    plain = {"target_prompt": "a blue box", "steps": 3, "method": "flowedit"}
    before = _edit(pipe, clip, **plain)
    _edit(
        pipe,
        clip,
        target_prompt="a green cup",
        steps=3,
        source_features="recompute",
        injection=InjectionConfig(strength=1.0, end=1.0),
        attention_share=AttentionShareConfig(mode="concat", start=0.0, end=1.0),
    )
    _assert_model_clean(pipe.denoiser.transformer)
    after = _edit(pipe, clip, **plain)
    assert torch.equal(before.latents, after.latents) and np.array_equal(before.frames, after.frames)


def test_change_mask_finds_a_recoloured_region_and_ignores_texture_noise():
    from flowstudio.edit.blending import change_mask

    rng = np.random.default_rng(0)
    source = np.full((3, 64, 64, 3), 120, np.uint8)
    edited = np.clip(source.astype(int) + rng.integers(-12, 13, source.shape), 0, 255).astype(np.uint8)
    edited[:, 20:40, 24:44] = (30, 40, 220)  # the recoloured object
    mask = change_mask(edited, source, threshold=0.2, blur=5, grow=3)
    assert mask.shape == (3, 64, 64) and set(np.unique(mask)) <= {0.0, 1.0}
    assert mask[:, 20:40, 24:44].all()  # the whole object
    assert not mask[:, :10].any() and not mask[:, 50:].any()  # noise alone is not a change
    assert mask[:, 18, 30].all() and not mask[:, 10, 30].any()  # grown by a few pixels, no more


def test_the_largest_changed_region_drops_scattered_blotches_only():
    from flowstudio.edit.blending import change_mask

    source = np.full((2, 64, 64, 3), 120, np.uint8)
    edited = source.copy()
    edited[:, 20:40, 10:30] = (30, 40, 220)  # the recoloured object
    edited[:, 50:56, 50:56] = (200, 60, 60)  # a blotch the model drew elsewhere
    edited[1, :, :] = source[1]  # a frame where nothing changed stays empty
    every = change_mask(edited, source, threshold=0.2, blur=3, grow=1)
    largest = change_mask(edited, source, threshold=0.2, blur=3, grow=1, largest=True)
    assert every[0, 52, 52] == 1.0 and largest[0, 52, 52] == 0.0  # the blotch goes back to the source
    assert np.array_equal(largest[0, :45, :35], every[0, :45, :35])  # the object's region is untouched
    assert not largest[1].any() and not every[1].any()


def test_a_change_composite_keeps_the_source_exactly_where_nothing_changed(pipe, clip):
    config = BlendConfig(strength=0.0, pixel_composite=True, composite_mask="change", change_threshold=0.5)
    r = _edit(pipe, clip, blend=config)
    unchanged = r.frames == r.source_frames
    assert 0.0 <= r.info["changed_fraction"] <= 1.0
    assert unchanged.all(axis=-1).mean() >= 1.0 - r.info["changed_fraction"] - 1e-3  # rounded
    with pytest.raises(InputError, match="composite_mask must be one of blend, change, mask, subject"):
        BlendConfig(composite_mask="diff")
    with pytest.raises(InputError, match="change_threshold"):
        BlendConfig(change_threshold=0.0)


def test_a_mask_composite_keeps_the_source_exactly_outside_the_grown_mask(pipe, clip):
    from flowstudio.edit.blending import grow_mask

    t, h, w = clip.shape[:3]
    mask = np.zeros((t, h, w), bool)
    mask[:, h // 4 : h // 2, w // 4 : w // 2] = True
    config = BlendConfig(strength=0.0, pixel_composite=True, composite_mask="mask", change_grow=2)
    r = _edit(pipe, clip, blend=config, mask=mask)
    region = grow_mask(mask, 2) > 0
    assert region.sum() > mask.sum()  # grown by two pixels
    assert np.array_equal(r.frames[~region], r.source_frames[~region])  # the source, exactly
    assert not np.array_equal(r.frames[region], r.source_frames[region])  # the edit, inside
    assert r.info["changed_fraction"] == round(float(region.mean()), 4)
    with pytest.raises(InputError, match="composite_mask 'mask' pastes the source"):
        _edit(pipe, clip, blend=config)
