"""The change region snapped to the frames' edges (``BlendConfig.change_refine``, GrabCut)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from flowstudio.edit.blending import BlendConfig, change_mask, composite, refine_region
from flowstudio.errors import InputError

FRAMES, SIZE = 3, 96


def _disc(centre: tuple[int, int], radius: int) -> np.ndarray:
    yy, xx = np.mgrid[:SIZE, :SIZE]
    return (yy - centre[1]) ** 2 + (xx - centre[0]) ** 2 <= radius**2


def _clip(colour: tuple[int, int, int], disc: np.ndarray, blur: int = 0, seed: int = 0) -> np.ndarray:
    """A grey, slightly noisy background with one flat disc; ``blur`` softens the whole frame as a
    decoder softens a regenerated object's outline."""
    rng = np.random.default_rng(seed)
    frames = np.empty((FRAMES, SIZE, SIZE, 3), np.uint8)
    for t in range(FRAMES):
        frame = np.clip(rng.normal(150, 6, (SIZE, SIZE, 3)), 0, 255).astype(np.float32)
        frame[disc] = colour
        if blur:
            frame = cv2.GaussianBlur(frame, (0, 0), blur)
        frames[t] = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
    return frames


def _psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    err = ((a.astype(np.float64) - b.astype(np.float64)) ** 2)[where].mean() / 255.0**2
    return float(10 * np.log10(1.0 / max(err, 1e-10)))


def test_refining_on_the_source_drops_the_soft_halo_of_a_colour_edit() -> None:
    disc = _disc((48, 48), 18)
    source = _clip((200, 30, 30), disc, seed=1)
    edited = _clip((30, 30, 200), disc, blur=2.5, seed=2)  # the edit: blue, with a soft outline
    raw = change_mask(edited, source, threshold=0.2, blur=5, grow=3)
    refined = refine_region(raw, source)
    outside = np.broadcast_to(~disc, raw.shape)
    # the thresholded region spills past the outline; the refined one hugs it
    assert raw[outside].sum() > 3 * refined[outside].sum()
    inside = np.broadcast_to(disc, raw.shape)
    assert refined[inside].mean() > 0.97
    # so the composite keeps more of the source outside the object, and the object is still edited
    keep_raw = _psnr(composite(edited, source, raw), source, outside)
    keep_refined = _psnr(composite(edited, source, refined), source, outside)
    assert keep_refined > keep_raw + 1.0
    assert composite(edited, source, refined)[:, 48, 48, 2].min() > 150


def test_both_keeps_a_new_silhouette_that_the_source_does_not_show() -> None:
    old, new = _disc((40, 48), 14), _disc((58, 48), 14)
    source = _clip((200, 30, 30), old, seed=1)
    edited = _clip((30, 30, 200), new, blur=1.5, seed=2)
    raw = change_mask(edited, source, threshold=0.2, blur=5, grow=3)
    only_source, both = refine_region(raw, source), refine_region(raw, source, edited)
    new_only = np.broadcast_to(new & ~old, raw.shape)
    assert both[new_only].mean() > 0.95
    assert both.sum() >= only_source.sum()


def test_refinement_is_deterministic_and_leaves_degenerate_frames_alone() -> None:
    disc = _disc((48, 48), 18)
    source = _clip((200, 30, 30), disc, seed=1)
    edited = _clip((30, 30, 200), disc, blur=2.5, seed=2)
    raw = change_mask(edited, source, threshold=0.2, blur=5, grow=3)
    np.testing.assert_array_equal(refine_region(raw, source), refine_region(raw, source))
    empty = np.zeros_like(raw)
    np.testing.assert_array_equal(refine_region(empty, source), empty)
    full = np.ones_like(raw)
    np.testing.assert_array_equal(refine_region(full, source), full)
    # the cut moves only within `band` pixels of the region's border
    band = 4
    refined = refine_region(raw, source, band=band)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    reach = np.stack([cv2.dilate(f.astype(np.uint8), kernel) for f in raw]) > 0
    assert not refined[~reach].any()


@pytest.mark.parametrize(
    ("field", "value"), [("change_refine", "edges"), ("change_refine_band", 0), ("change_refine_border", -1)]
)
def test_bad_refine_settings_are_refused(field: str, value: object) -> None:
    with pytest.raises(InputError, match=field):
        BlendConfig(**{field: value})


def test_without_a_sure_core_the_cut_drops_a_blotch_the_source_shows_as_background() -> None:
    disc = _disc((34, 48), 14)
    blotch = _disc((76, 30), 9)
    source = _clip((200, 30, 30), disc, seed=1)
    edited = _clip((30, 30, 200), disc | blotch, blur=1.5, seed=2)  # recoloured, plus a redrawn blotch
    raw = change_mask(edited, source, threshold=0.2, blur=5, grow=3)
    on_blotch = np.broadcast_to(blotch, raw.shape)
    assert raw[on_blotch].mean() > 0.9
    sure, soft = refine_region(raw, source), refine_region(raw, source, sure_core=False)
    assert sure[on_blotch].mean() > 0.5  # the blotch's interior is kept as sure foreground
    assert soft[on_blotch].mean() < 0.1  # the source shows background there: dropped
    assert soft[np.broadcast_to(disc, raw.shape)].mean() > 0.95  # the object stays


def test_with_a_border_the_cut_recovers_the_object_when_the_whole_background_was_redrawn() -> None:
    """The model redrew every pixel: the change region is the frame, and without the frame's edges as
    background the soft cut has nothing to learn the background from and keeps it all."""
    disc = _disc((48, 48), 16)
    source = _clip((200, 30, 30), disc, seed=1)
    edited = _clip((30, 30, 200), disc, seed=2)
    edited[~np.broadcast_to(disc, edited.shape[:3])] = (90, 160, 200)  # a new, light-blue background
    raw = change_mask(edited, source, threshold=0.2, blur=5, grow=3)
    assert raw.mean() > 0.95
    plain = refine_region(raw, source, sure_core=False)
    bordered = refine_region(raw, source, sure_core=False, border=8)
    on_disc = np.broadcast_to(disc, raw.shape)
    assert plain.mean() > 0.95  # left as it was: the new background stays
    assert bordered[on_disc].mean() > 0.95 and bordered[~on_disc].mean() < 0.05
    config = BlendConfig(
        strength=0.0,
        pixel_composite=True,
        composite_mask="change",
        change_refine="source",
        change_refine_sure_core=False,
        change_refine_border=8,
    )
    from flowstudio.edit.blending import change_region

    np.testing.assert_array_equal(change_region(edited, source, config), bordered)
    out = composite(edited, source, bordered)
    assert _psnr(out, source, ~on_disc) > 40  # the source's background is back
