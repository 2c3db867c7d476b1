"""The subject composite (``BlendConfig(composite_mask="subject")``): a background edit keeps the product."""

from __future__ import annotations

import numpy as np
import pytest
from edit_fixtures import invoke_edit_command, load_pipe, one_thread, run_edit

from flowstudio.edit import BlendConfig
from flowstudio.edit.blending import composite, grow_mask, subject_mask
from flowstudio.errors import InputError

_threads = pytest.fixture(scope="module", autouse=True)(one_thread)
pipe = pytest.fixture(scope="module")(load_pipe)
HEIGHT, WIDTH = 64, 96


def _product_shot(
    background_seed: int, colour: tuple[int, int, int], frames: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """A box on a textured backdrop (stripes and noise), moving a little: frames and the box's mask."""
    rng = np.random.default_rng(background_seed)
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    stripes = 40 * np.sin(xx / (3 + background_seed)) + 40 * np.cos(yy / 7)
    base = np.array([90, 120, 80]) + background_seed * np.array([50, -30, 40])
    clip = np.empty((frames, HEIGHT, WIDTH, 3), np.uint8)
    masks = np.zeros((frames, HEIGHT, WIDTH), bool)
    for t in range(frames):
        frame = base + stripes[..., None] + rng.normal(0, 8, (HEIGHT, WIDTH, 3))
        masks[t, 16 + t : 44 + t, 34:62] = True
        frame[masks[t]] = colour
        clip[t] = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
    return clip, masks


def test_grabcut_from_the_frame_border_finds_the_subject() -> None:
    clip, truth = _product_shot(0, (220, 40, 40))
    found = subject_mask(clip) > 0.5
    iou = (found & truth).sum() / (found | truth).sum()
    assert iou > 0.9, iou


def test_a_mark_on_the_backdrop_is_not_taken_for_the_subject() -> None:
    clip, truth = _product_shot(0, (220, 40, 40))
    clip[:, 12:18, 14:22] = (250, 180, 200)  # a pink blot on the backdrop, apart from the product
    found = subject_mask(clip) > 0.5
    assert not found[:, 12:18, 14:22].any()
    assert (found & truth).sum() / (found | truth).sum() > 0.9


def test_a_background_edit_keeps_the_sources_product_exactly() -> None:
    source, truth = _product_shot(0, (220, 40, 40))
    edited, _ = _product_shot(1, (180, 90, 60))  # a new backdrop, and the product redrawn off-colour
    region = 1.0 - grow_mask(subject_mask(source), 2)
    out = composite(edited, source, region)
    assert np.array_equal(out[truth], source[truth]), "every product pixel is the source's"
    far = ~grow_mask(truth.astype(np.float32), 8).astype(bool)
    assert np.array_equal(out[far], edited[far]), "the new background is the edit's"


def test_subject_settings_are_checked() -> None:
    with pytest.raises(InputError, match="subject_inset"):
        BlendConfig(composite_mask="subject", subject_inset=0)
    with pytest.raises(InputError, match="subject_grow"):
        BlendConfig(composite_mask="subject", subject_grow=-1)
    with pytest.raises(InputError, match="leaves no interior"):
        subject_mask(np.zeros((1, 16, 16, 3), np.uint8), inset=8)


def test_backdrop_the_cut_took_along_goes_to_the_edit_when_the_edit_confirms_the_subject() -> None:
    from flowstudio.edit.blending import subject_region

    source, truth = _product_shot(0, (220, 40, 40))
    tile = np.zeros_like(truth)
    tile[:, 20:36, 62:74] = True  # a backdrop tile touching the product, in colours the border lacks
    source[tile] = (40, 40, 230)
    edited, _ = _product_shot(1, (200, 60, 50))  # the new backdrop, the product redrawn in place
    plain = subject_region(source, BlendConfig(composite_mask="subject"))
    confirmed = subject_region(source, BlendConfig(composite_mask="subject", subject_confirm_grow=2), edited)
    assert plain[tile].mean() < 0.1, "the source's cut takes the tile along with the product"
    assert confirmed[tile].mean() > 0.8, "the edit's cut does not show it: it goes to the edit"
    assert confirmed[truth].mean() < 0.05, "the product stays the source's"
    with pytest.raises(InputError, match="needs the edited frames"):
        subject_region(source, BlendConfig(composite_mask="subject", subject_confirm_grow=2))


def test_frames_without_a_subject_keep_the_edit_and_say_why(caplog) -> None:
    from flowstudio.edit.blending import subject_region

    clip, _ = _product_shot(0, (220, 40, 40))
    clip[1] = clip[1, :1, :1]  # a flat frame: nothing stands apart from the border
    with caplog.at_level("WARNING", logger="flowstudio.edit.blending"):
        region = subject_region(clip, BlendConfig(composite_mask="subject"))
    assert region[1].min() == 1.0 and region[0].min() == 0.0
    assert (
        "no subject found in 1 of 3 source frames" in caplog.text and "composite_mask='mask'" in caplog.text
    )


def test_the_engine_pastes_the_subject_back_without_a_mask_or_a_model_call(pipe) -> None:
    clip, _ = _product_shot(0, (220, 40, 40), frames=5)
    config = BlendConfig(strength=0.0, pixel_composite=True, composite_mask="subject")
    plain = run_edit(pipe, clip, method="flowedit", steps=2)
    kept = run_edit(pipe, clip, method="flowedit", steps=2, blend=config)
    subject = 1.0 - kept.info["changed_fraction"]
    assert 0.05 < subject < 0.6, "the subject is found inside the frame"
    region = 1.0 - grow_mask(subject_mask(kept.source_frames), config.subject_grow)
    assert np.array_equal(kept.frames, composite(plain.frames, kept.source_frames, region))
    assert plain.model_calls == kept.model_calls, "no blending mask, so no extra model call"
    assert "auto_mask_fraction" not in kept.info


def test_the_edit_command_takes_keep_subject(tiny_checkpoint, tmp_path) -> None:
    clip, _ = _product_shot(0, (220, 40, 40), frames=5)
    prompts = ("a red box on wood", "a red box on marble")
    result, settings = invoke_edit_command(tmp_path, tiny_checkpoint, clip, prompts, "--keep-subject")
    assert result.exit_code == 0, result.output
    assert settings["blend"]["composite_mask"] == "subject" and settings["blend"]["strength"] == 0.0
    both, _ = invoke_edit_command(
        tmp_path, tiny_checkpoint, clip, prompts, "--keep-subject", "--keep-unchanged"
    )
    assert both.exit_code != 0 and "give one" in both.output
    confirmed, settings = invoke_edit_command(
        tmp_path, tiny_checkpoint, clip, prompts, "--keep-subject", "--subject-confirm", "4"
    )
    assert confirmed.exit_code == 0, confirmed.output
    assert settings["blend"]["subject_confirm_grow"] == 4
    alone, _ = invoke_edit_command(tmp_path, tiny_checkpoint, clip, prompts, "--subject-confirm", "4")
    assert alone.exit_code != 0 and "give --keep-subject too" in alone.output
    negative, _ = invoke_edit_command(
        tmp_path, tiny_checkpoint, clip, prompts, "--keep-subject", "--subject-confirm", "-1"
    )
    assert negative.exit_code != 0 and "subject_confirm_grow" in negative.output
