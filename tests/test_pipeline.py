"""The pipeline on a tiny real checkpoint: generation, TI2V pinning, inversion, controllers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowstudio.errors import InputError
from flowstudio.pipeline import GenerationSettings, WanVideoPipeline
from flowstudio.sampling import Controller

SMALL = {"num_frames": 5, "height": 32, "width": 64, "steps": 4}


@pytest.fixture(scope="module")
def pipe(tiny_checkpoint) -> WanVideoPipeline:
    return WanVideoPipeline.from_pretrained(tiny_checkpoint, device="cpu")


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_text_to_video_shapes_and_seed_determinism(pipe):
    settings = GenerationSettings(prompt="a red bottle on a wooden table", **SMALL)
    first = pipe.generate(settings, progress=False)
    again = pipe.generate(settings, progress=False)
    other = pipe.generate(
        GenerationSettings(prompt="a red bottle on a wooden table", seed=1, **SMALL), progress=False
    )
    assert first.frames.shape == (5, 32, 64, 3) and first.frames.dtype == np.uint8
    assert first.latents.shape == (1, 48, 2, 2, 4)
    assert np.array_equal(first.frames, again.frames), "one seed must give one video"
    assert not torch.equal(first.latents, other.latents), "another seed must give another video"
    assert first.model_calls == SMALL["steps"]  # one guided velocity per step (its CFG branches: 2 forwards)


def test_a_bf16_vae_decodes_like_the_float32_one(pipe, tiny_checkpoint):
    half = WanVideoPipeline.from_pretrained(tiny_checkpoint, device="cpu", vae_dtype=torch.bfloat16)
    assert half.components.vae.dtype == torch.bfloat16
    assert half.components.transformer.dtype == torch.float32  # only the VAE changes
    frames = np.stack([_image(32, 64, seed) for seed in range(5)])
    latents = pipe.encode_video(frames)
    latents_half = half.encode_video(frames)
    assert latents_half.dtype == torch.float32 and latents_half.shape == latents.shape
    assert torch.allclose(latents_half, latents, atol=0.1, rtol=0.05)
    decoded, decoded_half = pipe.decode_latents(latents), half.decode_latents(latents)
    assert decoded_half.dtype == np.uint8 and decoded_half.shape == decoded.shape
    assert np.abs(decoded_half.astype(int) - decoded.astype(int)).mean() < 2.0


def test_cfg_changes_the_result_and_unbatched_cfg_agrees(pipe, tiny_checkpoint):
    base = dict(prompt="a blue box", negative_prompt="blurry", **SMALL)
    guided = pipe.generate(GenerationSettings(guidance_scale=5.0, **base), progress=False)
    unguided = pipe.generate(GenerationSettings(guidance_scale=1.0, **base), progress=False)
    assert not torch.allclose(guided.latents, unguided.latents)
    batched = WanVideoPipeline(pipe.components, batch_cfg=True)
    again = batched.generate(GenerationSettings(guidance_scale=5.0, **base), progress=False)
    assert torch.allclose(again.latents, guided.latents, atol=1e-4), "batched and serial CFG must agree"


class FrameZeroRecorder(Controller):
    def __init__(self):
        self.seen: list[torch.Tensor] = []

    def before_model_call(self, state, call):
        self.seen.append(call.x[:, :, 0].clone())

    def after_step(self, state):
        self.seen.append(state.x[:, :, 0].clone())


@pytest.mark.parametrize("solver", ["euler", "dpm++2m", "unipc"])
def test_first_frame_latent_is_bit_exact_through_sampling(pipe, solver):
    image = _image(32, 64)
    recorder = FrameZeroRecorder()
    settings = GenerationSettings(prompt="a cup", solver=solver, guidance_scale=3.0, **SMALL)
    result = pipe.generate(settings, image=image, controllers=[recorder], progress=False)
    condition = pipe.encode_video(image[None])[:, :, 0]
    assert recorder.seen, "controller hooks were not called"
    for i, frame0 in enumerate(recorder.seen):
        assert torch.equal(frame0, condition), f"frame-0 latent changed at record {i}"
    assert torch.equal(result.latents[:, :, 0], condition)


def test_first_frame_tokens_get_timestep_zero(pipe):
    """Per-token timesteps: 0 on latent frame 0, 1000*sigma elsewhere (Wan2.2 TI2V)."""
    seen = {}
    transformer = pipe.components.transformer

    def hook(module, args, kwargs):
        seen["timestep"] = kwargs["timestep"].clone()

    handle = transformer.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        pipe.generate(
            GenerationSettings(prompt="a cup", guidance_scale=1.0, **SMALL),
            image=_image(32, 64),
            progress=False,
        )
    finally:
        handle.remove()
    timestep = seen["timestep"]  # last call: (B, seq_len), seq = 2 latent frames x (1 x 2) tokens
    tokens_per_frame = (32 // 32) * (64 // 32)
    assert timestep.shape == (1, 2 * tokens_per_frame)
    assert torch.all(timestep[:, :tokens_per_frame] == 0)
    assert torch.all(timestep[:, tokens_per_frame:] > 0)


def test_inversion_then_regeneration_reconstructs(pipe):
    frames = np.random.default_rng(0).integers(0, 256, (5, 32, 64, 3), dtype=np.uint8)
    latents = pipe.encode_video(frames)
    cond = pipe.conditioning("a red ball", guidance_scale=1.0)

    def roundtrip_error(steps: int) -> float:
        noise = pipe.invert(latents, cond, steps=steps, solver="euler")
        rec = pipe.solve(noise, cond, steps=steps, solver="euler").x
        return float((rec - latents).pow(2).mean())

    coarse, fine = roundtrip_error(4), roundtrip_error(32)
    assert fine < coarse / 4, (coarse, fine)
    assert fine < 5e-2 * float(latents.pow(2).mean())


class Recorder(Controller):
    def __init__(self, fail_at: int | None = None):
        self.events: list[str] = []
        self.fail_at = fail_at

    def on_start(self, state):
        self.events.append("start")

    def before_step(self, state):
        self.events.append(f"step{state.step}")
        if state.step == self.fail_at:
            raise RuntimeError("boom")

    def before_model_call(self, state, call):
        self.events.append("call")

    def after_model_call(self, state, call, velocity):
        self.events.append("called")
        return velocity

    def after_step(self, state):
        self.events.append("stepped")

    def on_end(self, state):
        self.events.append("end")


def test_controller_hook_order_and_on_end_on_error(pipe):
    recorder = Recorder()
    pipe.generate(
        GenerationSettings(prompt="a cone", **{**SMALL, "steps": 2}), controllers=[recorder], progress=False
    )
    assert recorder.events == [
        "start",
        "step0",
        "call",
        "called",
        "stepped",
        "step1",
        "call",
        "called",
        "stepped",
        "end",
    ]
    failing = Recorder(fail_at=1)
    with pytest.raises(RuntimeError, match="boom"):
        pipe.generate(GenerationSettings(prompt="a cone", **SMALL), controllers=[failing], progress=False)
    assert failing.events[-1] == "end", "on_end must run when the loop fails"


def test_controller_can_change_the_velocity(pipe):
    class Freeze(Controller):
        def after_model_call(self, state, call, velocity):
            return torch.zeros_like(velocity)

    settings = GenerationSettings(prompt="a cone", solver="euler", **SMALL)
    frozen = pipe.generate(settings, controllers=[Freeze()], progress=False)
    noise = torch.randn(frozen.latents.shape, generator=torch.Generator().manual_seed(settings.seed))
    assert torch.equal(frozen.latents, noise), "a zero velocity must leave the starting noise unchanged"


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ({"num_frames": 6}, "num_frames must be 4k\\+1.*got 6"),
        ({"height": 48}, "height must be a positive multiple of 32"),
        ({"width": 0}, "width"),
        ({"steps": 0}, "steps must be a whole number >= 1"),
    ],
)
def test_bad_sizes_get_clear_errors(pipe, override, match):
    with pytest.raises(InputError, match=match):
        pipe.generate(GenerationSettings(prompt="x", **{**SMALL, **override}), progress=False)


def test_image_of_wrong_size_is_rejected(pipe):
    with pytest.raises(InputError, match="image is 16x16 but the video is 32x64"):
        pipe.generate(GenerationSettings(prompt="x", **SMALL), image=_image(16, 16), progress=False)


def test_prompt_embeddings_are_cached(pipe):
    pipe.encode_prompt("a purple vase")
    cached = pipe._prompt_cache["a purple vase"]
    assert pipe.encode_prompt("a purple vase") is cached


def test_unknown_prompt_words_are_warned_about(pipe, caplog):
    with caplog.at_level("WARNING", logger="flowstudio.pipeline"):
        pipe.encode_prompt("a red bottle with zorblax")
    assert "zorblax" in caplog.text and "vocabulary" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="flowstudio.pipeline"):
        pipe.encode_prompt("a red bottle on a table")
    assert "vocabulary" not in caplog.text


def test_the_prompt_cache_is_bounded_and_keeps_recent_prompts(tiny_checkpoint):
    """A long-lived pipeline keeps at most ``prompt_cache_size`` prompts; a reused prompt stays."""
    from flowstudio.pipeline import WanVideoPipeline

    pipe = WanVideoPipeline.from_pretrained(tiny_checkpoint, device="cpu", prompt_cache_size=2)
    first = pipe.encode_prompt("a red ball")
    pipe.encode_prompt("a blue box")
    assert pipe.encode_prompt("a red ball") is first  # a hit, now the most recent
    pipe.encode_prompt("a green cup")  # evicts "a blue box", the least recently used
    assert list(pipe._prompt_cache) == ["a red ball", "a green cup"]
    again = pipe.encode_prompt("a blue box")
    assert len(pipe._prompt_cache) == 2 and torch.equal(again, pipe.encode_prompt("a blue box"))


def test_the_vae_cache_serves_exact_copies_and_counts_the_time_saved(pipe):
    """Same input bytes -> the result computed before, bit for bit, as a copy; off by default."""
    from flowstudio.pipeline import WanVideoPipeline

    clip = np.stack([_image(32, 64, seed) for seed in range(5)])
    assert pipe.vae_cache.max_bytes == 0  # off unless asked for
    plain = pipe.encode_video(clip)
    cached = WanVideoPipeline(pipe.components, device="cpu", vae_cache_bytes=2**20)
    first = cached.encode_video(clip)
    again = cached.encode_video(clip.copy())  # another array with the same content
    assert torch.equal(first, plain) and torch.equal(again, plain)
    assert cached.vae_cache.hits == 1 and cached.vae_cache.saved_seconds > 0.0
    again.add_(1.0)  # a caller changing its result in place does not change the cache
    assert torch.equal(cached.encode_video(clip), plain)
    other = clip.copy()
    other[0, 0, 0, 0] ^= 1  # one bit differs: a miss, computed afresh
    assert torch.equal(cached.encode_video(other), pipe.encode_video(other)) and cached.vae_cache.hits == 2
    frames = cached.decode_latents(plain)
    assert np.array_equal(frames, pipe.decode_latents(plain))
    assert np.array_equal(cached.decode_latents(plain.clone()), frames) and cached.vae_cache.hits == 3


def test_the_vae_cache_keeps_to_its_byte_budget_least_recent_out(pipe):
    from flowstudio.pipeline import VaeCache

    cache = VaeCache(max_bytes=3 * 400)  # three 400-byte entries
    arrays = [np.full((10, 10), i, dtype=np.float32) for i in range(4)]  # 400 bytes each
    keys = [VaeCache.key("decode", a) for a in arrays]
    for key, a in zip(keys[:3], arrays[:3], strict=True):
        cache.put(key, a, 0.5)
    assert cache.get(keys[0]) is not None  # now the most recent
    cache.put(keys[3], arrays[3], 0.5)  # evicts keys[1], the least recently used
    assert cache.get(keys[1]) is None and cache.get(keys[2]) is not None and cache.get(keys[3]) is not None
    assert cache.hits == 3 and cache.saved_seconds == 1.5
    cache.put(VaeCache.key("decode", np.zeros(1000, np.float32)), np.zeros(1000, np.float32), 1.0)
    assert len(cache._items) == 3  # larger than the whole budget: not kept, nothing evicted for it
    assert VaeCache.key("encode", arrays[0]) != keys[0]  # the kind is part of the key
    bf16 = torch.ones(2, 3, dtype=torch.bfloat16)  # any tensor dtype hashes (numpy has no bfloat16)
    assert VaeCache.key("decode", bf16) != VaeCache.key("decode", bf16.float())
