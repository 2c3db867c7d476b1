"""Masked latent blending: outside the edit region, the edit follows the source.

After every step of the edit run inside the step window, the latent is blended with the source at
the same noise level::

    m' = 1 - strength * (1 - m)            m: feathered latent mask (1, 1, T, H, W), 1 = edit region
    x  = m' * x + (1 - m') * source(sigma_next)

(Blended Latent Diffusion, Avrahami et al. 2023, arXiv:2206.02779, on a flow trajectory.) Where
``m' == 0`` this is ``0 * x + 1 * source``, the source bit-exactly; with the window reaching the
last step (``end = 1``) the result equals the source latent there exactly. ``source(sigma)`` is the
inversion trajectory for inversion editors and the clean source for FlowEdit (whose state lives in
clean space). Latent frame 0 is left alone when the target pins a TI2V first frame.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from flowstudio.edit.context import EditContext
from flowstudio.edit.controls import check_window
from flowstudio.errors import InputError
from flowstudio.sampling import Controller, LoopState

logger = logging.getLogger(__name__)

COMPOSITE_MASKS = ("blend", "change", "mask", "subject", "swap")
SWAP_CUTS = ("change", "subject", "change-or-subject")  # how the swap composite cuts the new product
#: how the change region's border is snapped to the image's own edges (:func:`refine_region`)
CHANGE_REFINES = ("none", "source", "both")


@dataclass(frozen=True)
class BlendConfig:
    """Masked blending settings.

    Attributes:
        strength: 0 (off) .. 1 (outside the region, exactly the source).
        start, end: step window as fractions of the edit run; keep ``end = 1`` for an exact keep.
        feather: soft border width in latent cells (1 cell = 16 pixels).
        auto_threshold: threshold of the automatic cross-attention mask (fraction of its maximum).
        pixel_composite: after decoding, paste the source's pixels outside the region
            (``m * edit + (1 - m) * source`` with the latent mask upsampled to pixels): pixels
            outside the region are then the source's exactly, not the VAE's reconstruction of it.
        composite_mask: the region of the pixel composite: ``"blend"`` (the blending mask above),
            ``"change"`` (:func:`change_mask`: where the decoded edit differs from the source by more
            than ``change_threshold`` after a ``change_blur`` box blur, grown by ``change_grow``
            pixels), or ``"mask"`` (the mask or box you give, at pixel precision, grown by
            ``change_grow`` pixels: the source's pixels exactly wherever you said nothing changes;
            for edits that keep the object's silhouette, such as colour or background).
            ``"change"`` needs no mask and follows whatever the edit changed (an object, or the whole
            background); use it with ``strength=0`` to composite without latent blending.
            ``"subject"`` keeps the source's subject (:func:`subject_mask`: what GrabCut separates from
            the frame's border in each source frame, grown by ``subject_grow`` pixels) and the edit
            everywhere else: a background edit that keeps the product's pixels, with no mask given.
            ``"swap"`` (:func:`swap_composite`) puts the edit's new product over the source's own
            background with its old product painted out: a product swap that keeps the scene's pixels,
            with no mask given.
        change_threshold: per-pixel colour difference (max over RGB, 0..1) that counts as changed.
        change_blur: box-blur size (pixels) before differencing, so that regenerated texture
            noise does not count as a change, only region-level colour change.
        change_grow: pixels the changed region is grown by (covers soft edges of the edit).
        change_largest: keep only the largest connected changed region of each frame (after growing),
            so that scattered blotches the model redrew away from the edited object or background go
            back to the source's pixels. Off by default.
        change_refine: snap the change region's border to the image's edges with GrabCut
            (:func:`refine_region`): ``"none"``; ``"source"``, on the source frame only (the region
            becomes the source's object or background that changed: for edits that keep the
            silhouette, colour and background); ``"both"``, the union of the source's and the edit's
            segmentations (for edits that change the silhouette, a product swap).
        change_refine_band: pixels around the change region's border that the refinement may move
            (beyond them the region stays as thresholded).
        change_refine_sure_core: True, the region's interior stays in the region; False, the cut may
            drop any part of it (``refine_region(sure_core=False)``).
        change_refine_border: pixels along the frame's edges the cut takes as background even inside
            the region (``refine_region(border=...)``; 0: none): for object edits whose model redrew
            the whole background. Not for background edits.
        subject_inset: ``"subject"``: the width (pixels) of the frame's border that GrabCut takes as
            background; the subject must lie inside it (a product shot).
        subject_grow: ``"subject"``: pixels the kept subject is grown by (0: the cut as it is; 2 keeps
            more of the product's soft edge but draws a ring of the source's backdrop around it).
        subject_confirm_grow: ``"subject"``: 0 (off), or keep the source's subject only within this many
            pixels of the subject the same cut finds in the *edited* frame, which shows the new backdrop:
            pieces of the old backdrop that the source's cut took along (tiles touching the product) go to
            the edit. Costs keep where the model moved the product.
        swap_plate_grow: ``"swap"``: pixels the source's subject is grown by before it is painted out of
            the background plate (covers its soft edge; 0: the cut as it is, which keeps more of the scene
            and reads no worse on the toy model).
        swap_erode: ``"swap"``: pixels the edit's new-product cut is eroded by before it is pasted (drops
            the rim of redrawn backdrop the cut takes along).
        swap_cut: ``"swap"``: how the new product is cut out of the edit: ``"change"``, GrabCut seeded
            where the edit changed or the old product was (for editors that leave the scene mostly alone:
            FlowEdit); ``"subject"``, the edit's own subject cut from the frame's border like
            :func:`subject_mask` (for editors that redraw the whole frame, where every pixel changed:
            inversion + regeneration, FireFlow); ``"change-or-subject"``, the seeded cut, and the subject
            cut in the frames where the seeded one finds nothing (an edit that redrew the whole backdrop).
        swap_backdrop_tolerance: ``"swap"``: pixels of the new-product cut whose colour (3x3-blurred, max
            over RGB, 0..1) lies within this of the edit's own backdrop just around the cut (its median
            over a 3-pixel ring) are dropped before the cut is pasted, then the largest region is kept:
            a ring's hole and the rim of redrawn backdrop, which GrabCut's smoothness keeps with the
            product, go. Skipped in a frame where it would drop 40% of the cut or more (a product the
            colour of its backdrop). 0: off. 0.12 was chosen on 80 cached product edits of the toy model
            (docs/findings_edit.md, "Holes in the swap's cut").
        swap_plate_check: ``"swap"``: 0 (off), or check the old product's GrabCut cut (what is painted
            out) against the product found from the frame's border colours (:func:`colour_cut`): in a
            frame where the GrabCut cut is more than this many times its area, the colour cut is painted
            out instead. On tiles GrabCut takes the tiles touching the product, and painting them out
            smears the wall; 1.6 was chosen on 120 cached product edits of the toy model
            (docs/findings_edit.md, "The old product's cut checked by its colours").
    """

    strength: float = 1.0
    start: float = 0.0
    end: float = 1.0
    feather: int = 1
    auto_threshold: float = 0.5
    pixel_composite: bool = False
    composite_mask: str = "blend"
    change_threshold: float = 0.2
    change_blur: int = 5
    change_grow: int = 3
    change_largest: bool = False
    change_refine: str = "none"
    change_refine_band: int = 6
    change_refine_sure_core: bool = True
    change_refine_border: int = 0
    subject_inset: int = 8
    subject_grow: int = 0
    subject_confirm_grow: int = 0
    # the product preset's values: tuned on 40 fresh product pairs of the toy model, then 0.608 of 120
    # fresh ones at 37.6-45.3 dB keep (docs/findings_edit.md, "The swap's settings")
    swap_plate_grow: int = 0
    swap_erode: int = 3
    swap_cut: str = "change"
    swap_backdrop_tolerance: float = 0.12
    swap_plate_check: float = 1.6

    def __post_init__(self) -> None:
        if self.composite_mask not in COMPOSITE_MASKS:
            raise InputError(
                f"blend composite_mask must be one of {', '.join(COMPOSITE_MASKS)}, "
                f"got {self.composite_mask!r}"
            )
        if self.subject_inset < 1 or self.subject_grow < 0 or self.subject_confirm_grow < 0:
            raise InputError(
                f"blend subject_inset must be >= 1, subject_grow and subject_confirm_grow >= 0 pixels, got "
                f"{self.subject_inset}, {self.subject_grow}, {self.subject_confirm_grow}"
            )
        if self.swap_plate_grow < 0 or self.swap_erode < 0:
            raise InputError(
                f"blend swap_plate_grow and swap_erode must be >= 0 pixels, got {self.swap_plate_grow}, "
                f"{self.swap_erode}"
            )
        if not 0.0 <= self.swap_backdrop_tolerance < 1.0:
            raise InputError(
                "blend swap_backdrop_tolerance must be in [0, 1) (0: off), got "
                f"{self.swap_backdrop_tolerance}"
            )
        if self.swap_plate_check != 0.0 and not self.swap_plate_check >= 1.0:
            raise InputError(
                f"blend swap_plate_check must be 0 (off) or an area ratio >= 1, got {self.swap_plate_check}"
            )
        if self.swap_cut not in SWAP_CUTS:
            raise InputError(f"blend swap_cut must be one of {', '.join(SWAP_CUTS)}, got {self.swap_cut!r}")
        if not 0.0 < self.change_threshold < 1.0:
            raise InputError(f"blend change_threshold must be in (0, 1), got {self.change_threshold}")
        if self.change_blur < 1 or self.change_grow < 0:
            raise InputError(
                f"blend change_blur must be >= 1 and change_grow >= 0 pixels, got {self.change_blur}, "
                f"{self.change_grow}"
            )
        if self.change_refine not in CHANGE_REFINES:
            raise InputError(
                f"blend change_refine must be one of {', '.join(CHANGE_REFINES)}, got {self.change_refine!r}"
            )
        if self.change_refine_band < 1:
            raise InputError(f"blend change_refine_band must be >= 1 pixel, got {self.change_refine_band}")
        if self.change_refine_border < 0:
            raise InputError(
                f"blend change_refine_border must be >= 0 pixels, got {self.change_refine_border}"
            )
        if not 0.0 <= self.strength <= 1.0:
            raise InputError(f"blend strength must be in [0, 1], got {self.strength}")
        check_window(self.start, self.end, "blend")
        if self.feather < 0:
            raise InputError(f"blend feather must be >= 0 latent cells, got {self.feather}")


def blend(x: torch.Tensor, source: torch.Tensor, mask: torch.Tensor, strength: float) -> torch.Tensor:
    """``m' x + (1 - m') source`` with ``m' = 1 - strength (1 - mask)``; ``x`` ``(B, C, T, H, W)``."""
    m = 1.0 - strength * (1.0 - mask.to(x))
    return m * x + (1.0 - m) * source.to(x)


def pixel_mask_from_latent(
    mask: torch.Tensor, frames: int, spatial_scale: int, temporal_scale: int = 4
) -> np.ndarray:
    """Latent mask ``(1, 1, T', H', W')`` -> pixel mask float ``(T, H, W)``, nearest.

    The inverse grouping of :func:`flowstudio.edit.masks.latent_mask`: pixel frame 0 <- latent
    frame 0, pixel frame ``t`` <- latent frame ``(t - 1) // 4 + 1``.
    """
    index = torch.tensor([0] + [(t - 1) // temporal_scale + 1 for t in range(1, frames)])
    cells = mask[0, 0].float().cpu()[index]
    return cells.repeat_interleave(spatial_scale, 1).repeat_interleave(spatial_scale, 2).numpy()


def composite(edited: np.ndarray, source: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """uint8 ``m * edited + (1 - m) * source``; ``mask`` float ``(T, H, W)``, exact where it is 0 or 1."""
    m = mask[..., None]
    mixed = np.rint(m * edited.astype(np.float32) + (1.0 - m) * source.astype(np.float32))
    out = np.clip(mixed, 0, 255).astype(np.uint8)
    out[mask <= 0.0] = source[mask <= 0.0]
    out[mask >= 1.0] = edited[mask >= 1.0]
    return out


def change_mask(
    edited: np.ndarray,
    source: np.ndarray,
    threshold: float = 0.2,
    blur: int = 5,
    grow: int = 3,
    largest: bool = False,
) -> np.ndarray:
    """Float ``(T, H, W)`` mask, 1 where the edit changed the source: max-over-RGB difference of the
    box-blurred frames (0..1) above ``threshold``, grown by ``grow`` pixels; with ``largest``, only
    the largest connected region of each frame (8-connected) is kept.

    Why blurred: a model regenerates fine texture a little differently everywhere; an edit changes a
    region's colour. On the toy model's red -> blue demo edit, the blurred difference is 0.22+ on 90%
    of the object's pixels and under 0.13 on 90% of the background's.
    """
    import cv2

    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)) if grow else None
    out = np.empty(edited.shape[:3], np.float32)
    for t, (a, b) in enumerate(zip(edited, source, strict=True)):
        low_a = cv2.blur(a.astype(np.float32) / 255.0, (blur, blur))
        low_b = cv2.blur(b.astype(np.float32) / 255.0, (blur, blur))
        diff = np.abs(low_a - low_b).max(axis=-1)
        changed = (diff > threshold).astype(np.uint8)
        if kernel is not None:
            changed = cv2.dilate(changed, kernel)
        out[t] = _largest_region(changed) if largest else changed
    return out


def refine_region(
    region: np.ndarray,
    source: np.ndarray,
    edited: np.ndarray | None = None,
    band: int = 6,
    iterations: int = 3,
    sure_core: bool = True,
    border: int = 0,
) -> np.ndarray:
    """Snap a change region's border to the frames' own edges: GrabCut (Rother et al., SIGGRAPH 2004;
    OpenCV's ``cv2.grabCut``) per frame, initialised from the region.

    Why: a decoded edit's silhouette is softer than the source's (the VAE and the regeneration blur
    it), so the changed region runs a few pixels past the true outline, and those pixels, a blend of
    the new colour and the old background, are where a composite loses its keep PSNR. GrabCut fits
    colour models to the region and to its surroundings and cuts along the frame's edges, which the
    source frame has sharp.

    Per frame: the region eroded by ``band // 2`` is sure foreground (with ``sure_core``), the rest of
    the region probable foreground, a ``band``-pixel ring around it probable background and everything
    beyond sure background, so the region never grows by more than ``band`` pixels, and with
    ``sure_core`` it changes only within ``band`` pixels of its border. ``source`` is cut;
    with ``edited`` given its cut is added (union), so a new silhouette is kept too. Frames whose
    region or surroundings hold fewer than 32 pixels (nothing to fit a colour model on) keep
    ``region`` as it is. Deterministic (OpenCV's generator is seeded per frame).

    Args:
        region: float ``(T, H, W)`` 0/1 change region.
        source: uint8 ``(T, H, W, 3)`` source frames.
        edited: uint8 ``(T, H, W, 3)`` decoded edit, or ``None``.
        band: pixels around the border the cut may move.
        iterations: GrabCut iterations.
        sure_core: mark the eroded region as sure foreground (the cut only moves the border); False
            marks the whole region probable foreground, so the cut may also drop whole parts of it
            whose frame looks like the surroundings (on the source frame: blotches the model redrew
            on the background, which the source shows as background).
        border: pixels along the frame's edges marked probable background even inside the region
            (0: none). Why: when the model redraws the whole background of an object edit, the change
            region covers the frame and leaves the cut nothing to learn the background from; the
            frame's edges are the source's background in a product shot. Only for edits of an object
            that does not touch the edges (colour, material): it would cut a background edit away.

    Returns:
        float ``(T, H, W)`` 0/1 region.
    """
    import cv2

    binary = (np.asarray(region) > 0.5).astype(np.uint8)
    ring = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    core_radius = max(band // 2, 1)
    core = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * core_radius + 1, 2 * core_radius + 1))
    out = binary.astype(np.float32)
    edge = np.zeros(binary.shape[1:], bool)  # the frame's outer ``border`` pixels (none when 0)
    if border > 0:
        edge[:border], edge[-border:], edge[:, :border], edge[:, -border:] = True, True, True, True
    for t, frame in enumerate(binary):
        inside = int(frame.sum())
        # with a border the frame's edges are surroundings too, so a region covering the frame is cut
        outside = frame.size - int(frame[~edge].sum())
        if inside < 32 or outside < 32:
            continue
        init = np.full(frame.shape, cv2.GC_BGD, np.uint8)
        init[cv2.dilate(frame, ring) > 0] = cv2.GC_PR_BGD
        init[frame > 0] = cv2.GC_PR_FGD
        if sure_core:
            init[cv2.erode(frame, core) > 0] = cv2.GC_FGD
        init[edge & (init != cv2.GC_FGD)] = cv2.GC_PR_BGD
        cut = np.zeros(frame.shape, bool)
        for image in (source[t],) if edited is None else (source[t], edited[t]):
            cut |= _grabcut(image, init.copy(), t, iterations)
        out[t] = cut
    return out


def change_region(edited: np.ndarray, source: np.ndarray, config: BlendConfig) -> np.ndarray:
    """The change-mask composite's region under ``config``: :func:`change_mask` with its threshold,
    blur, grow and largest-region settings, then :func:`refine_region` when ``change_refine`` asks."""
    region = change_mask(
        edited,
        source,
        config.change_threshold,
        config.change_blur,
        config.change_grow,
        config.change_largest,
    )
    if config.change_refine == "none":
        return region
    return refine_region(
        region,
        source,
        edited if config.change_refine == "both" else None,
        config.change_refine_band,
        sure_core=config.change_refine_sure_core,
        border=config.change_refine_border,
    )


def subject_mask(source: np.ndarray, inset: int = 8, iterations: int = 3) -> np.ndarray:
    """Float ``(T, H, W)`` 0/1 mask of each source frame's subject: GrabCut (Rother et al., SIGGRAPH 2004)
    from its rectangle initialisation, the frame less an ``inset``-pixel border, then the largest
    connected region of the cut (a mark on the backdrop that GrabCut also takes is left out).

    Why: a background edit must leave the product as it was, but the model redraws it with the
    background, and the change region then covers it too. The product of a product shot stands apart
    from the frame's border, which is background; GrabCut fits colour models to that border and to the
    interior and cuts the subject out along the frame's own edges. On 40 fresh background pairs of the
    toy model the cut overlaps the true product by 0.87-0.89 IoU (docs/findings_edit.md). Deterministic
    (OpenCV's generator is seeded per frame).
    """

    frames = np.asarray(source)
    count, height, width = frames.shape[:3]
    if 2 * inset >= min(height, width):
        raise InputError(
            f"blend subject_inset {inset} leaves no interior in {width}x{height} frames; use fewer pixels"
        )
    out = np.zeros((count, height, width), np.float32)
    rect = (inset, inset, width - 2 * inset, height - 2 * inset)
    for t, frame in enumerate(frames):
        out[t] = _grabcut(frame, np.zeros((height, width), np.uint8), t, iterations, rect)
    return _largest_regions(out)


def subject_region(source: np.ndarray, config: BlendConfig, edited: np.ndarray | None = None) -> np.ndarray:
    """The subject composite's edit region under ``config``: everywhere but the source's subject
    (:func:`subject_mask` from a ``subject_inset`` border; with ``subject_confirm_grow``, only where the
    ``edited`` frames' own subject, grown by it, is too, then its largest region; grown by
    ``subject_grow``). Frames where no subject is found keep the whole edit, with a warning that says why."""
    subject = subject_mask(source, config.subject_inset)
    if config.subject_confirm_grow:
        if edited is None:
            raise InputError("blend subject_confirm_grow needs the edited frames")
        confirmed = subject * grow_mask(
            subject_mask(edited, config.subject_inset), config.subject_confirm_grow
        )
        subject = _largest_regions(confirmed)
    empty = int(_empty_frames(subject).sum())
    if empty:
        logger.warning(
            "subject composite: no subject found in %d of %d source frames, where the whole edit is kept "
            "(the subject must stand apart from the frame's %d-pixel border: one touching the edges is not "
            "found; give a mask with composite_mask='mask' instead)",
            empty,
            len(subject),
            config.subject_inset,
        )
    return 1.0 - grow_mask(subject, config.subject_grow)


def swap_composite(
    edited: np.ndarray, source: np.ndarray, config: BlendConfig
) -> tuple[np.ndarray, np.ndarray]:
    """A product swap's pixel composite: the edit's new product over the source's background plate.

    Why: a model that swaps the product also redraws the backdrop around it, so the edit loses the
    scene (keep PSNR ~21 dB on the toy model), and pasting the source back outside a region (the change
    composite, or even the true masks) leaves the old product's outline filled with redrawn backdrop,
    which a reader (and a person) takes for part of the object. Here:

    1. the source's subject (:func:`subject_mask`, ``subject_inset`` border; with ``swap_plate_check``,
       the colour cut in frames where that one is too large: :func:`checked_by_colours`) grown by
       ``swap_plate_grow`` is painted out of each source frame (OpenCV's Telea inpainting): the plate;
    2. the new product is cut out of the edit by GrabCut initialised with a mask: probable foreground
       where the edit changed (:func:`change_region`, the ``change_*`` settings) or the old subject
       was, sure background elsewhere (the scene the edit left alone); its largest region (with
       ``swap_cut="subject"``: the edit's own subject, :func:`subject_mask` of the edited frames; with
       ``"change-or-subject"``: that, in the frames the seeded cut left empty), eroded by ``swap_erode``
       pixels;
    3. the cut is pasted onto the plate.

    Outside the old subject and the cut the result is the source exactly. Frames where no new product is
    cut keep the whole edit, with a warning. Returns the frames and the pasted region ``(T, H, W)``.

    Limits: backdrop the edit redrew in colours the unchanged scene lacks (a strong halo) is taken with the
    product; inpainting fills the old product's place smoothly, so a textured backdrop shows a smudge there.
    """
    import cv2

    old = subject_mask(source, config.subject_inset)
    if config.swap_plate_check:
        old = checked_by_colours(old, source, config.swap_plate_check, config.subject_inset)
    frames = np.asarray(edited)
    cut = np.zeros(frames.shape[:3], np.float32)
    if config.swap_cut != "subject":  # the seeded cut
        probable = (change_region(edited, source, config) > 0.5) | (old > 0.5)
        for t, frame in enumerate(frames):
            if not probable[t].any() or probable[t].all():
                continue  # GrabCut needs both kinds of pixel
            cut[t] = _grabcut(frame, np.where(probable[t], cv2.GC_PR_FGD, cv2.GC_BGD).astype(np.uint8), t, 3)
        cut = _largest_regions(cut)
    if config.swap_cut != "change":  # the subject cut: every frame, or those the seeded cut left empty
        missed = _empty_frames(cut)
        if missed.any():
            cut[missed] = subject_mask(frames[missed], config.subject_inset)
    if config.swap_backdrop_tolerance > 0:
        cut = drop_backdrop(cut, frames, config.swap_backdrop_tolerance)
    cut = shrink_mask(cut, config.swap_erode)
    painted = grow_mask(old, config.swap_plate_grow).astype(np.uint8)
    plate = np.stack(
        [
            cv2.inpaint(np.ascontiguousarray(frame), region, 5, cv2.INPAINT_TELEA)
            for frame, region in zip(np.asarray(source), painted, strict=True)
        ]
    )
    empty = _empty_frames(cut)
    if empty.any():
        logger.warning(
            "swap composite: no new product cut in %d of %d frames, where the whole edit is kept (the edit "
            "changed nothing there, or changed the whole frame; give a mask with composite_mask='mask')",
            int(empty.sum()),
            len(cut),
        )
        cut[empty] = 1.0
    return composite(edited, plate, cut), cut


def colour_cut(frames: np.ndarray, inset: int = 8, inner: int = 2, outer: int = 5) -> np.ndarray:
    """Float ``(T, H, W)`` 0/1: each frame's product found from its border colours, then cut along its edges.

    :func:`flowstudio.object_mask.estimate_mask` marks what the colours of the frame's border do not
    explain (the product of a product shot); GrabCut then cuts each frame with that mask grown by
    ``inner`` pixels as probable foreground, a further band out to ``outer`` pixels as probable
    background, and everything else (and the ``inset``-pixel border) as background, so the cut follows
    the frame's edges but cannot run more than ``outer`` pixels past the colour mask. Why: GrabCut from
    the frame's rectangle (:func:`subject_mask`) takes backdrop that touches the product and shares
    colours the border lacks (tiles); the colour mask does not. Largest region per frame; deterministic.
    """
    import cv2

    from flowstudio.object_mask import estimate_mask

    frames = np.asarray(frames)
    found = estimate_mask(frames, fallback=False).astype(np.uint8)  # nothing found: no colour cut
    count, height, width = frames.shape[:3]
    near = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * inner + 1, 2 * inner + 1))
    band = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * outer + 1, 2 * outer + 1))
    out = np.zeros((count, height, width), np.float32)
    for t, frame in enumerate(frames):
        if not found[t].any():
            continue
        labels = np.full((height, width), cv2.GC_BGD, np.uint8)
        labels[cv2.dilate(found[t], band) > 0] = cv2.GC_PR_BGD
        labels[cv2.dilate(found[t], near) > 0] = cv2.GC_PR_FGD
        labels[:inset] = labels[-inset:] = cv2.GC_BGD
        labels[:, :inset] = labels[:, -inset:] = cv2.GC_BGD
        if (labels == cv2.GC_PR_FGD).any():
            out[t] = _grabcut(frame, labels, t, 3)
    return _largest_regions(out)


def checked_by_colours(subject: np.ndarray, frames: np.ndarray, ratio: float, inset: int = 8) -> np.ndarray:
    """``subject`` (a 0/1 ``(T, H, W)`` cut of ``frames``' product) with each frame whose area is more than
    ``ratio`` times that of :func:`colour_cut` replaced by the colour cut; frames the colour cut finds
    empty keep ``subject``. On the toy model's sources (60 fresh pairs) the GrabCut cut averaged 1.4-2.4x the
    product's true area on tiles, the colour cut 0.94-0.98x and the checked cut 1.03-1.07x; elsewhere the
    check changes little, once for the worse (wood: a colour cut that missed part of the product)."""
    colours = colour_cut(frames, inset)
    subject_area = subject.reshape(len(subject), -1).sum(axis=1)
    colour_area = colours.reshape(len(colours), -1).sum(axis=1)
    swap = (colour_area > 0) & (subject_area > ratio * colour_area)
    out = np.array(subject, np.float32, copy=True)
    out[swap] = colours[swap]
    return out


def drop_backdrop(
    cut: np.ndarray, frames: np.ndarray, tolerance: float, ring: int = 3, most: float = 0.4
) -> np.ndarray:
    """The cut less the pixels that look like the frame's backdrop around it, then its largest region.

    Per frame: the backdrop colour is the median of the ``ring`` pixels just outside the cut; a pixel of
    the cut whose 3x3-blurred colour is within ``tolerance`` of it (max over RGB, 0..1) is dropped.
    Why: GrabCut's smoothness term keeps small enclosed regions with the object, so a ring's hole (and the
    rim of redrawn backdrop around a new product) is pasted as if it were product, and the ring reads as
    a solid ball. A frame where the drop would take ``most`` of the cut or more (a product the colour of
    its backdrop), or whose cut has under 32 pixels, keeps its cut.

    Args:
        cut: float ``(T, H, W)`` 0/1 cut.
        frames: uint8 ``(T, H, W, 3)`` frames the cut is of.
        tolerance: colour distance (0..1) under which a pixel counts as backdrop.

    Returns:
        float ``(T, H, W)`` 0/1 cut.
    """
    import cv2

    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * ring + 1, 2 * ring + 1))
    out = np.asarray(cut, np.float32).copy()
    for t, frame in enumerate(np.asarray(frames)):
        inside = (out[t] > 0.5).astype(np.uint8)
        if inside.sum() < 32:
            continue
        around = (cv2.dilate(inside, kernel) > 0) & (inside == 0)
        if not around.any():
            continue  # the cut covers the frame: no backdrop to compare with
        backdrop = np.median(frame[around].astype(np.float32), axis=0) / 255.0
        smooth = cv2.blur(frame.astype(np.float32) / 255.0, (3, 3))
        near = (np.abs(smooth - backdrop).max(axis=-1) < tolerance) & (inside > 0)
        if near.sum() < most * inside.sum():
            out[t] = _largest_region((inside & ~near).astype(np.uint8))
    return out


def pixel_composite(
    edited: np.ndarray, source: np.ndarray, config: BlendConfig, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The decoded edit composited over the source by ``config.composite_mask`` (``"change"``,
    ``"subject"``, ``"swap"``, or ``"mask"``: ``mask``, float ``(T, H, W)``, grown by ``change_grow``):
    the frames and the region that took the edit. ``"blend"`` needs the latent mask and the VAE's scales
    (:func:`pixel_mask_from_latent`): the engine does that one."""
    kind = config.composite_mask
    if kind == "swap":
        return swap_composite(edited, source, config)
    if kind == "change":
        region = change_region(edited, source, config)
    elif kind == "subject":
        region = subject_region(source, config, edited)
    elif kind == "mask":
        if mask is None:
            raise InputError("blend composite_mask 'mask' needs the mask it pastes the source outside of")
        region = grow_mask(mask, config.change_grow)
    else:
        raise ValueError(f"pixel_composite does not make the {kind!r} region; the engine does")
    return composite(edited, source, region), region


def grow_mask(mask: np.ndarray, grow: int) -> np.ndarray:
    """Float ``(T, H, W)`` 0/1 mask of ``mask > 0.5`` grown by ``grow`` pixels (elliptic dilation)."""
    return _morph(mask, grow, "dilate")


def shrink_mask(mask: np.ndarray, shrink: int) -> np.ndarray:
    """Float ``(T, H, W)`` 0/1 mask of ``mask > 0.5`` eroded by ``shrink`` pixels (elliptic)."""
    return _morph(mask, shrink, "erode")


def _morph(mask: np.ndarray, pixels: int, operation: str) -> np.ndarray:
    """``cv2.dilate`` or ``cv2.erode`` (``operation``) of each frame of ``mask > 0.5`` by an elliptic
    kernel of radius ``pixels``, as float 0/1."""
    import cv2

    binary = (np.asarray(mask) > 0.5).astype(np.uint8)
    if pixels:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
        binary = np.stack([getattr(cv2, operation)(frame, kernel) for frame in binary])
    return binary.astype(np.float32)


def _grabcut(
    image: np.ndarray, labels: np.ndarray, seed: int, iterations: int, rect: tuple[int, ...] | None = None
) -> np.ndarray:
    """Bool ``(H, W)`` foreground (sure or probable) of one GrabCut run on ``image``: from ``rect`` (the
    rectangle initialisation) or, without it, from the initial ``labels`` (changed in place). OpenCV's
    generator is seeded with ``seed``, so the cut is deterministic."""
    import cv2

    cv2.setRNGSeed(seed)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    mode = cv2.GC_INIT_WITH_MASK if rect is None else cv2.GC_INIT_WITH_RECT
    cv2.grabCut(np.ascontiguousarray(image), labels, rect, bgd, fgd, iterations, mode)
    return (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)


def _empty_frames(masks: np.ndarray) -> np.ndarray:
    """Bool ``(T,)``: the frames of a 0/1 mask with no pixel set."""
    return masks.reshape(len(masks), -1).max(axis=1) == 0


def _largest_regions(masks: np.ndarray) -> np.ndarray:
    """Float ``(T, H, W)``: the largest 8-connected region of each frame of a 0/1 mask."""
    return np.stack([_largest_region((frame > 0.5).astype(np.uint8)) for frame in masks]).astype(np.float32)


def _largest_region(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected region of a uint8 0/1 mask (all zeros stays all zeros)."""
    import cv2

    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count <= 2:  # background only, or one region
        return mask
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return (labels == biggest).astype(mask.dtype)


class LatentBlend(Controller):
    """Controller that blends the state with ``reference(sigma_next)`` after each step in the window.

    Args:
        config: blending settings.
        mask: latent edit mask ``(1, 1, T, H, W)``, 1 = edit region.
        reference: source latent at a noise level, ``reference(sigma) -> (1, C, T, H, W)``.
        context: the edit's context; the step window is read on the whole edit run.
        protect_first_frame: leave latent frame 0 untouched (TI2V pinned first frame).
    """

    def __init__(
        self,
        config: BlendConfig,
        mask: torch.Tensor,
        reference: Callable[[float], torch.Tensor],
        context: EditContext,
        *,
        protect_first_frame: bool = False,
    ) -> None:
        self.config = config
        self.context = context
        self.mask = mask
        self.reference = reference
        self.protect_first_frame = protect_first_frame

    def after_step(self, state: LoopState) -> None:
        c = self.config
        if c.strength == 0.0 or not self.context.in_window(c.start, c.end):
            return
        mixed = blend(state.x, self.reference(state.sigma_next), self.mask.to(state.x.device), c.strength)
        if self.protect_first_frame:
            mixed[:, :, :1] = state.x[:, :, :1]
        state.x = mixed
