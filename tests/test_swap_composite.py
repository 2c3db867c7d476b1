"""The swap composite (``BlendConfig(composite_mask="swap")``): a product swap keeps the source's scene."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from edit_fixtures import invoke_edit_command, load_pipe, one_thread, run_edit

from flowstudio.edit import BlendConfig
from flowstudio.edit.blending import (
    checked_by_colours,
    colour_cut,
    drop_backdrop,
    grow_mask,
    shrink_mask,
    subject_mask,
    swap_composite,
)
from flowstudio.errors import InputError

_threads = pytest.fixture(scope="module", autouse=True)(one_thread)
pipe = pytest.fixture(scope="module")(load_pipe)
HEIGHT, WIDTH = 64, 96
SWAP = BlendConfig(strength=0.0, pixel_composite=True, composite_mask="swap")


def _backdrop(seed: int, frames: int) -> np.ndarray:
    """A smooth, gently varying backdrop with a little noise (float, ``(T, H, W, 3)``)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    base = np.array([150, 170, 120]) + 12 * np.sin(xx / 15)[..., None] + 8 * np.cos(yy / 17)[..., None]
    return np.stack([base + rng.normal(0, 3, (HEIGHT, WIDTH, 3)) for _ in range(frames)])


def _shot(backdrop: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    frames = backdrop.copy()
    frames[mask] = colour
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


def _swap_pair(frames: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A wide box (source) swapped for a tall narrow bottle (edit) of the same colour; the edit also
    redrew the backdrop around its bottle (a lighter halo over where the box was). Returns source,
    edit, the box's mask and the bottle's."""
    backdrop = _backdrop(0, frames)
    box = np.zeros((frames, HEIGHT, WIDTH), bool)
    box[:, 22:46, 30:66] = True
    bottle = np.zeros_like(box)
    bottle[:, 14:50, 42:54] = True
    source = _shot(backdrop, box, (40, 60, 200))
    redrawn = backdrop.copy()
    redrawn[:, 18:50, 26:70] += (
        15  # the model's halo: backdrop redrawn a little lighter around the new product
    )
    edited = _shot(redrawn, bottle, (40, 60, 200))
    return source, edited, box, bottle


def test_the_new_product_lands_on_the_sources_scene_with_the_old_one_painted_out() -> None:
    source, edited, box, bottle = _swap_pair()
    out, region = swap_composite(edited, source, SWAP)
    cut = region > 0.5
    inner = grow_mask(bottle.astype(np.float32), 0).astype(bool) & ~grow_mask(~bottle, 3).astype(bool)
    assert cut[inner].all(), "the bottle's interior is cut out of the edit"
    assert np.array_equal(out[inner], edited[inner])
    far = ~grow_mask(box | bottle, 4).astype(bool)
    assert np.array_equal(out[far], source[far]), "away from both products the scene is the source's"
    # where the box was and the bottle is not, the painted-out plate shows backdrop, not box or halo
    gone = box & ~grow_mask(bottle, 4).astype(bool) & ~grow_mask(~box, 3).astype(bool)
    colours = out[gone].astype(float)
    assert np.abs(colours - (40, 60, 200)).max(axis=1).min() > 40, "no trace of the old blue box"
    backdrop = np.clip(np.rint(_backdrop(0, len(source))), 0, 255)
    to_backdrop = np.abs(colours - backdrop[gone]).mean()
    to_halo = np.abs(colours - edited[gone]).mean()
    assert to_backdrop < 0.5 * to_halo, (to_backdrop, to_halo)  # the plate, not the edit's lighter halo


def test_an_edit_that_redrew_the_whole_frame_is_cut_by_its_own_subject(caplog) -> None:
    """Inversion + regeneration redraws every pixel: the change-seeded cut finds nothing to separate,
    the subject cut (from the frame's border) still finds the new bottle."""
    source, _, box, bottle = _swap_pair()
    redrawn = 255 - _backdrop(1, len(source))  # another backdrop, every pixel changed
    edited = _shot(redrawn, bottle, (40, 60, 200))
    with caplog.at_level("WARNING", logger="flowstudio.edit.blending"):
        kept, region = swap_composite(edited, source, SWAP)
    assert region.min() == 1.0 and np.array_equal(kept, edited), "the change cut gives up: whole edit kept"
    assert "no new product cut in 3 of 3 frames" in caplog.text
    out, region = swap_composite(edited, source, dataclasses.replace(SWAP, swap_cut="subject"))
    cut = region > 0.5
    assert not (cut & ~bottle).any(), "nothing of the redrawn backdrop is cut"
    assert cut[shrink_mask(bottle, SWAP.swap_erode) > 0.5].all(), (
        "the cut is the bottle, eroded by swap_erode"
    )
    inner = bottle & ~grow_mask(~bottle, 3).astype(bool)
    assert np.array_equal(out[inner], edited[inner])
    far = ~grow_mask(box | bottle, 4).astype(bool)
    assert np.array_equal(out[far], source[far]), "the scene is the source's, not the redrawn one"
    # the seeded cut with the subject cut as the fallback: the same as the subject cut here (every frame
    # changed), and the seeded cut's own result where it finds the product
    either = dataclasses.replace(SWAP, swap_cut="change-or-subject")
    assert np.array_equal(swap_composite(edited, source, either)[0], out)
    _, seeded_edit, _, _ = _swap_pair()
    assert np.array_equal(
        swap_composite(seeded_edit, source, either)[0], swap_composite(seeded_edit, source, SWAP)[0]
    )


def test_the_old_subject_is_what_grabcut_finds_in_the_source() -> None:
    source, _, box, _ = _swap_pair()
    found = subject_mask(source) > 0.5
    assert (found & box).sum() / (found | box).sum() > 0.9


def test_frames_where_nothing_is_cut_keep_the_edit_and_say_why(caplog) -> None:
    source, edited, _, _ = _swap_pair()
    flat = np.full_like(source[:1], 128)
    source, edited = np.concatenate([source, flat]), np.concatenate([edited, flat])
    with caplog.at_level("WARNING", logger="flowstudio.edit.blending"):
        out, region = swap_composite(edited, source, SWAP)
    assert region[-1].min() == 1.0 and np.array_equal(out[-1], edited[-1])
    assert "no new product cut in 1 of 4 frames" in caplog.text


def test_swap_settings_are_checked() -> None:
    with pytest.raises(InputError, match="swap_plate_grow and swap_erode"):
        BlendConfig(composite_mask="swap", swap_erode=-1)
    with pytest.raises(InputError, match="composite_mask must be one of"):
        BlendConfig(composite_mask="swapped")
    with pytest.raises(InputError, match="swap_cut must be one of change, subject, change-or-subject"):
        BlendConfig(composite_mask="swap", swap_cut="border")


def test_the_engine_applies_the_swap_composite_without_a_mask_or_a_model_call(pipe) -> None:
    source, _, _, _ = _swap_pair(frames=5)
    plain = run_edit(pipe, source, method="flowedit", steps=2)
    swapped = run_edit(pipe, source, method="flowedit", steps=2, blend=SWAP)
    expected, region = swap_composite(plain.frames, swapped.source_frames, SWAP)
    assert np.array_equal(swapped.frames, expected)
    assert swapped.info["changed_fraction"] == round(float(region.mean()), 4)
    assert plain.model_calls == swapped.model_calls, "no blending mask, so no extra model call"


def test_the_edit_command_takes_swap_product(tiny_checkpoint, tmp_path) -> None:
    source, _, _, _ = _swap_pair(frames=5)
    prompts = ("a blue box", "a blue bottle")
    result, settings = invoke_edit_command(tmp_path, tiny_checkpoint, source, prompts, "--swap-product")
    assert result.exit_code == 0, result.output
    assert settings["blend"]["composite_mask"] == "swap" and settings["blend"]["strength"] == 0.0
    both, _ = invoke_edit_command(
        tmp_path, tiny_checkpoint, source, prompts, "--swap-product", "--keep-subject"
    )
    assert both.exit_code != 0 and "give one" in both.output and "--swap-product" in both.output
    subject, settings = invoke_edit_command(
        tmp_path, tiny_checkpoint, source, prompts, "--swap-product", "--swap-cut", "subject"
    )
    assert subject.exit_code == 0, subject.output
    assert settings["blend"]["swap_cut"] == "subject"
    alone, _ = invoke_edit_command(tmp_path, tiny_checkpoint, source, prompts, "--swap-cut", "subject")
    assert alone.exit_code != 0 and "give --swap-product too" in alone.output
    bad, _ = invoke_edit_command(
        tmp_path, tiny_checkpoint, source, prompts, "--swap-product", "--swap-cut", "edge"
    )
    assert bad.exit_code != 0 and "swap_cut" in bad.output and "subject" in bad.output
    off, settings = invoke_edit_command(
        tmp_path, tiny_checkpoint, source, prompts, "--swap-product", "--swap-backdrop-tolerance", "0"
    )
    assert off.exit_code == 0, off.output
    assert settings["blend"]["swap_backdrop_tolerance"] == 0.0
    alone, _ = invoke_edit_command(
        tmp_path, tiny_checkpoint, source, prompts, "--swap-backdrop-tolerance", "0.1"
    )
    assert alone.exit_code != 0 and "give --swap-product too" in alone.output
    assert settings["blend"]["swap_plate_check"] == 1.6, "the plate check is on by default"
    unchecked, settings = invoke_edit_command(
        tmp_path, tiny_checkpoint, source, prompts, "--swap-product", "--swap-plate-check", "0"
    )
    assert unchecked.exit_code == 0, unchecked.output
    assert settings["blend"]["swap_plate_check"] == 0.0
    bad, _ = invoke_edit_command(
        tmp_path, tiny_checkpoint, source, prompts, "--swap-product", "--swap-plate-check", "0.5"
    )
    assert bad.exit_code != 0 and "swap_plate_check must be 0" in bad.output


def _ring_pair(frames: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A box (source) swapped for a ring whose hole shows the edit's redrawn (lighter) backdrop.
    Returns source, edit, the ring's mask and its hole's."""
    backdrop = _backdrop(0, frames)
    box = np.zeros((frames, HEIGHT, WIDTH), bool)
    box[:, 22:46, 30:66] = True
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    radius = np.hypot(yy - 32, xx - 48)
    ring = np.broadcast_to((radius <= 14) & (radius > 6), box.shape)
    hole = np.broadcast_to(radius <= 6, box.shape)
    source = _shot(backdrop, box, (40, 60, 200))
    redrawn = backdrop.copy()
    redrawn[:, 12:54, 28:70] += 15  # the model's halo, seen through the ring's hole too
    edited = _shot(redrawn, ring, (200, 60, 40))
    return source, edited, ring, hole


def test_a_rings_hole_is_dropped_from_the_cut_as_backdrop() -> None:
    source, edited, ring, hole = _ring_pair()
    solid = (ring | hole).astype(np.float32)  # what GrabCut's smoothness tends to cut: the hole filled
    cut = drop_backdrop(solid, edited, 0.12) > 0.5
    # the hole less its rim (the 3x3 blur mixes the ring's colour into the hole's edge pixels)
    inner_hole = shrink_mask(hole.astype(np.float32), 2).astype(bool)
    inner_ring = ring & ~grow_mask(~ring, 1).astype(bool)
    assert not cut[inner_hole].any(), "the hole is the edit's backdrop, not product"
    assert cut[inner_ring].all(), "the ring itself stays"
    # a product the colour of its backdrop would lose most of its cut: the frame keeps the cut as it was
    plain = _shot(_backdrop(0, len(source)), np.zeros_like(ring), (0, 0, 0))
    assert np.array_equal(drop_backdrop(solid, plain, 0.12), solid)
    # off (0) leaves it alone; the engine's default is on
    off = dataclasses.replace(SWAP, swap_backdrop_tolerance=0.0)
    assert off.swap_backdrop_tolerance == 0.0 and SWAP.swap_backdrop_tolerance == 0.12


def test_the_swap_shows_the_sources_scene_through_a_new_rings_hole() -> None:
    source, edited, ring, hole = _ring_pair()
    out, region = swap_composite(edited, source, SWAP)
    inner_hole = shrink_mask(hole.astype(np.float32), 2).astype(bool)
    assert not (region > 0.5)[inner_hole].any()
    assert np.abs(out[inner_hole].astype(int) - edited[inner_hole].astype(int)).mean() > 8, (
        "the hole shows the plate (the source's backdrop), not the edit's lighter halo"
    )


def test_the_backdrop_tolerance_is_checked() -> None:
    with pytest.raises(InputError, match="swap_backdrop_tolerance must be in"):
        BlendConfig(composite_mask="swap", swap_backdrop_tolerance=1.5)


def test_the_colour_cut_finds_the_product_from_the_borders_colours() -> None:
    source, _, box, _ = _swap_pair()
    cut = colour_cut(source) > 0.5
    iou = (cut & box).sum() / (cut | box).sum()
    assert iou > 0.9, iou


def test_an_oversized_subject_cut_is_replaced_by_the_colour_cut_frame_by_frame() -> None:
    source, _, box, _ = _swap_pair(frames=3)
    oversized = box.astype(np.float32)
    oversized[0, 10:56, 10:90] = 1.0  # frame 0: the cut took half the backdrop along (tiles)
    oversized[1, 22:46, 26:66] = 1.0  # frame 1: a few pixels wider than the box, within the ratio
    checked = checked_by_colours(oversized, source, 1.6)
    assert np.array_equal(checked[1:], oversized[1:]), "cuts within the ratio are kept as they are"
    colours = colour_cut(source)
    assert np.array_equal(checked[0], colours[0]), "the oversized frame takes the colour cut"
    blank = np.full_like(source, 128)  # a frame with nothing to find keeps the subject cut
    assert not colour_cut(blank).any(), "no guess where the border's colours explain everything"
    assert np.array_equal(checked_by_colours(oversized[:1], blank[:1], 1.6), oversized[:1])


def test_the_swap_paints_out_only_the_checked_old_product(monkeypatch) -> None:
    """With the plate check a subject cut that took backdrop along no longer smears that backdrop."""
    from flowstudio.edit import blending

    source, edited, box, bottle = _swap_pair()
    oversized = np.zeros(box.shape, np.float32)
    oversized[:, 12:56, 12:90] = 1.0  # the box plus a wide band of backdrop
    monkeypatch.setattr(blending, "subject_mask", lambda frames, inset=8, iterations=3: oversized.copy())
    unchecked, _ = swap_composite(edited, source, dataclasses.replace(SWAP, swap_plate_check=0.0))
    checked, _ = swap_composite(edited, source, SWAP)
    band = (oversized > 0.5) & ~grow_mask(box | bottle, 4).astype(bool)  # backdrop the cut took along
    assert np.array_equal(checked[band], source[band]), "the checked plate leaves that backdrop alone"
    assert not np.array_equal(unchecked[band], source[band]), "the unchecked plate repainted it"


def test_the_plate_check_is_checked() -> None:
    assert (
        SWAP.swap_plate_check == 1.6
        and BlendConfig(composite_mask="swap", swap_plate_check=0).swap_plate_check == 0
    )
    with pytest.raises(InputError, match="swap_plate_check must be 0"):
        BlendConfig(composite_mask="swap", swap_plate_check=0.5)
