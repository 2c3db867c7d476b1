"""flowstudio ``generate`` against stock diffusers Wan pipelines loaded from the same folder.

Stock ``WanPipeline`` / ``WanImageToVideoPipeline`` feed the transformer ``int64(1000 sigma)``
(their UniPC scheduler casts its timesteps) and, for TI2V checkpoints, per-token timesteps. With
``timesteps="integer"`` (the default with UniPC) flowstudio does the same and the latents agree
to float32 rounding; with exact float timesteps they differ by ~1e-2.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowstudio.core.flow import flow_sigmas, model_timestep
from flowstudio.errors import InputError
from flowstudio.models import TOY_MODEL
from flowstudio.pipeline import GenerationSettings, WanVideoPipeline

PROMPT = "a red box on a wooden table"
SMALL = {"num_frames": 9, "height": 64, "width": 64, "steps": 4, "guidance_scale": 5.0, "shift": 5.0}


def _stock_latents(stock, seed: int, settings: dict, **extra) -> torch.Tensor:
    return stock(
        prompt=PROMPT,
        negative_prompt="",
        num_frames=settings["num_frames"],
        height=settings["height"],
        width=settings["width"],
        num_inference_steps=settings["steps"],
        guidance_scale=settings["guidance_scale"],
        generator=torch.Generator().manual_seed(seed),
        output_type="latent",
        **extra,
    ).frames


def _ours(pipe: WanVideoPipeline, timesteps: str, settings: dict, **extra) -> torch.Tensor:
    result = pipe.generate(
        GenerationSettings(prompt=PROMPT, seed=3, timesteps=timesteps, **settings, **extra.pop("gen", {})),
        progress=False,
        **extra,
    )
    return result.latents


@pytest.fixture(scope="module")
def pipe(tiny_checkpoint) -> WanVideoPipeline:
    return WanVideoPipeline.from_pretrained(tiny_checkpoint, device="cpu")


def test_sigmas_and_integer_timesteps_equal_the_unipc_scheduler_bit_for_bit():
    from diffusers import UniPCMultistepScheduler

    for shift in (1.0, 3.0, 5.0, 8.0):
        scheduler = UniPCMultistepScheduler(
            use_flow_sigmas=True, flow_shift=shift, prediction_type="flow_prediction"
        )
        for steps in range(1, 61):
            scheduler.set_timesteps(steps)
            sigmas = flow_sigmas(steps, shift)
            ours = [model_timestep(float(s), integer=True) for s in sigmas[:-1]]
            assert ours == scheduler.timesteps.tolist(), (shift, steps)
            assert torch.equal(sigmas.float(), scheduler.sigmas), (shift, steps)
    assert model_timestep(0.9615, integer=False) == pytest.approx(961.5)


def test_timesteps_setting_resolves_per_solver_and_refuses_unknown_modes():
    assert GenerationSettings(prompt="x").integer_timesteps  # unipc default: as diffusers
    assert not GenerationSettings(prompt="x", solver="euler").integer_timesteps
    assert GenerationSettings(prompt="x", solver="euler", timesteps="integer").integer_timesteps
    assert not GenerationSettings(prompt="x", timesteps="float").integer_timesteps
    with pytest.raises(InputError, match="timesteps 'int'.*auto, integer, float"):
        GenerationSettings(prompt="x", timesteps="int")


def test_the_model_is_fed_the_stock_pipelines_timesteps(pipe, tiny_checkpoint):
    from diffusers import WanPipeline

    seen: dict[str, list[torch.Tensor]] = {"stock": [], "ours": []}

    def recorder(key: str):
        def hook(module, args, kwargs, output):
            seen[key].append(kwargs["timestep"].clone())

        return hook

    stock = WanPipeline.from_pretrained(tiny_checkpoint)
    handle = stock.transformer.register_forward_hook(recorder("stock"), with_kwargs=True)
    _stock_latents(stock, 3, SMALL)
    handle.remove()
    handle = pipe.components.transformer.register_forward_hook(recorder("ours"), with_kwargs=True)
    try:
        _ours(pipe, "auto", SMALL)
    finally:
        handle.remove()
    # both: one call per CFG branch (the default since batched calls round differently), per-token
    # timesteps (B, seq_len) of integers
    assert len(seen["stock"]) == len(seen["ours"]) == 2 * SMALL["steps"]
    for theirs, ours in zip(seen["stock"], seen["ours"], strict=True):
        assert ours.shape == theirs.shape
        assert torch.equal(ours.float(), theirs.float())
        assert torch.equal(ours, ours.floor())


def test_text_to_video_matches_stock_wan_pipeline(pipe, tiny_checkpoint):
    from diffusers import WanPipeline

    stock = WanPipeline.from_pretrained(tiny_checkpoint)
    theirs = _stock_latents(stock, 3, SMALL)
    integer = _ours(pipe, "auto", SMALL)
    exact = _ours(pipe, "float", SMALL)
    assert (integer - theirs).abs().max().item() < 1e-5
    assert (exact - theirs).abs().max().item() > 1e-3, "float timesteps are a different (valid) sampler"


def test_image_to_video_matches_stock_wan_image_to_video_pipeline(pipe, tiny_checkpoint):
    from diffusers import WanImageToVideoPipeline
    from PIL import Image

    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    stock = WanImageToVideoPipeline.from_pretrained(tiny_checkpoint)
    theirs = _stock_latents(stock, 3, SMALL, image=Image.fromarray(image))
    ours = _ours(pipe, "auto", SMALL, image=image, gen={"image_conditioned": True})
    assert (ours - theirs).abs().max().item() < 1e-5


def test_toy_model_matches_stock_wan_pipeline():
    """The trained toy model amplifies rounding, so parity needs diffusers' arithmetic throughout.

    Two sources each moved the final latents (|max| ~4) by ~2e-5: UniPC coefficients in float64
    instead of diffusers' float32 (``UniPCSolver(arithmetic="float32")``, now the default), and the
    two CFG branches in one batched model call instead of stock's two calls (the batched GEMMs round
    differently: ~3e-6 per call on CPU). With both as diffusers does them the latents are identical;
    batched CFG (an option) stays within 2e-5. Float timesteps are a different sampler (~3e-2).
    """
    from diffusers import WanPipeline

    path = TOY_MODEL
    settings = {**SMALL, "num_frames": 17, "height": 128, "width": 128, "steps": 6}
    stock = WanPipeline.from_pretrained(path)
    theirs = _stock_latents(stock, 3, settings)
    serial = WanVideoPipeline.from_pretrained(path)  # the default: one call per CFG branch
    batched = WanVideoPipeline(serial.components, batch_cfg=True)
    as_stock = (_ours(serial, "auto", settings) - theirs).abs().max().item()
    batched_cfg = (_ours(batched, "auto", settings) - theirs).abs().max().item()
    exact = (_ours(serial, "float", settings) - theirs).abs().max().item()
    assert as_stock <= 1e-5
    assert batched_cfg < 5e-5 < 1e-2 < exact


def test_stock_pipelines_encode_a_prompt_in_this_environment(tiny_checkpoint, pipe):
    """ftfy is a dependency: without it stock Wan pipelines raise NameError on any prompt."""
    from diffusers import WanImageToVideoPipeline
    from diffusers.utils import is_ftfy_available

    assert is_ftfy_available()
    stock = WanImageToVideoPipeline.from_pretrained(tiny_checkpoint)
    with torch.no_grad():
        embeds, _ = stock.encode_prompt(
            "a caf\u00c3\u00a9 &amp; a box", do_classifier_free_guidance=False, max_sequence_length=512
        )
    assert torch.equal(embeds, pipe.encode_prompt("a caf\u00c3\u00a9 &amp; a box"))
