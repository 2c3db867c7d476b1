"""Procedural toy worlds with exact ground truth (see ``docs/worlds.md``).

ShapeWorld / commerce: product clips (shape, colour, material, background, motion, style) with
captions, exact masks, ground-truth edits, a dataset writer and analytic attribute readers.
"""

from __future__ import annotations

from flowstudio.worlds.captions import VOCABULARY, CaptionChoices, caption, tokenize
from flowstudio.worlds.dataset import clip_record, clip_spec, make_shapes_dataset, read_masks
from flowstudio.worlds.edits import EDIT_TYPES, edit_masks, edit_prompt_pair, edit_spec, edit_type_of
from flowstudio.worlds.shapes import (
    BACKGROUNDS,
    COLORS,
    MATERIALS,
    MOTIONS,
    SHAPES,
    STYLES,
    SceneRender,
    SceneSpec,
    random_spec,
    render_clip,
    render_mask,
    render_scene,
)

__all__ = [
    "BACKGROUNDS",
    "COLORS",
    "EDIT_TYPES",
    "MATERIALS",
    "MOTIONS",
    "SHAPES",
    "STYLES",
    "VOCABULARY",
    "CaptionChoices",
    "SceneRender",
    "SceneSpec",
    "caption",
    "clip_record",
    "clip_spec",
    "edit_masks",
    "edit_prompt_pair",
    "edit_spec",
    "edit_type_of",
    "make_shapes_dataset",
    "random_spec",
    "read_masks",
    "render_clip",
    "render_mask",
    "render_scene",
    "tokenize",
]
