"""Ground-truth edits of ShapeWorld scenes.

An edit changes exactly one attribute of a :class:`~flowstudio.worlds.shapes.SceneSpec`; motion,
position, size, turntable angle and texture seed stay identical, so ``render_clip(edit_spec(...))`` is
the exact target video of the edit. Because the renderer composites the object over a background that
does not depend on the object, a ``product``, ``color`` or ``material`` edit leaves every pixel outside
the union of the source and target masks bit-identical, and a ``background`` edit leaves every object
pixel identical.

    edited = edit_spec(spec, "color", "blue")            # or a Generator: a random different colour
    source_prompt, target_prompt = edit_prompt_pair(spec, edited)
    source_mask, target_mask = edit_masks(spec, edited)  # union: the region an editor may change
"""

from __future__ import annotations

import dataclasses

import numpy as np

from flowstudio.errors import InputError
from flowstudio.worlds.captions import CaptionChoices, _as_rng, caption
from flowstudio.worlds.shapes import BACKGROUNDS, COLORS, MATERIALS, SHAPES, STYLES, SceneSpec, render_mask

EDIT_TYPES: tuple[str, ...] = ("product", "color", "material", "background", "style")
EDIT_FIELDS: dict[str, str] = {
    "product": "shape",
    "color": "color",
    "material": "material",
    "background": "background",
    "style": "style",
}
_OPTIONS: dict[str, tuple[str, ...]] = {
    "product": SHAPES,
    "color": tuple(COLORS),
    "material": MATERIALS,
    "background": BACKGROUNDS,
    "style": STYLES,
}


def edit_spec(
    spec: SceneSpec, edit_type: str, choice: str | np.random.Generator | int | None = None
) -> SceneSpec:
    """``spec`` with the attribute of ``edit_type`` changed and everything else identical.

    Args:
        spec: the source scene.
        edit_type: one of :data:`EDIT_TYPES` (``product`` replaces the shape).
        choice: the new value (a name from the attribute's list), or a generator / integer seed to
            draw a different value uniformly; ``None`` draws with ``spec.seed``.

    Raises:
        InputError: unknown edit type, unknown value, or a value equal to the current one.
    """
    if not isinstance(spec, SceneSpec):
        raise InputError(f"spec must be a SceneSpec, got {type(spec).__name__}")
    if edit_type not in EDIT_TYPES:
        raise InputError(f"edit_type must be one of {', '.join(EDIT_TYPES)}; got {edit_type!r}")
    field = EDIT_FIELDS[edit_type]
    current = getattr(spec, field)
    options = _OPTIONS[edit_type]
    if isinstance(choice, str):
        if choice not in options:
            raise InputError(f"a {edit_type} edit takes one of {', '.join(options)}; got {choice!r}")
        if choice == current:
            raise InputError(f"a {edit_type} edit must change {field}, which is already {choice!r}")
        value = choice
    else:
        rng = _as_rng(choice, spec.seed)
        others = [o for o in options if o != current]
        value = others[int(rng.integers(len(others)))]
    return dataclasses.replace(spec, **{field: value})


def edit_type_of(source: SceneSpec, target: SceneSpec) -> str:
    """The edit type that turns ``source`` into ``target``.

    Raises:
        InputError: the specs differ in no attribute, in several, or in a non-editable field.
    """
    changed = [
        f.name for f in dataclasses.fields(SceneSpec) if getattr(source, f.name) != getattr(target, f.name)
    ]
    kinds = [kind for kind, field in EDIT_FIELDS.items() if field in changed]
    if len(changed) != 1 or len(kinds) != 1:
        raise InputError(
            f"an edit pair must differ in exactly one of {', '.join(EDIT_FIELDS.values())}; "
            f"these differ in {changed or 'nothing'}"
        )
    return kinds[0]


def edit_prompt_pair(
    source: SceneSpec,
    target: SceneSpec,
    rng: np.random.Generator | int | None = None,
    *,
    choices: CaptionChoices | None = None,
) -> tuple[str, str]:
    """Source and target prompts in the same template with the same phrase choices.

    The prompts differ only in the words of the edited attribute.

    Args:
        source, target: the specs of an edit (see :func:`edit_spec`).
        rng: generator or seed of the shared choices; ``None`` uses ``source.seed``.
        choices: explicit shared choices instead of ``rng``.

    Raises:
        InputError: the specs are not a one-attribute edit pair.
    """
    edit_type_of(source, target)
    if choices is None:
        choices = CaptionChoices.draw(_as_rng(rng, source.seed))
    return caption(source, choices=choices), caption(target, choices=choices)


def edit_masks(
    source: SceneSpec, target: SceneSpec, num_frames: int = 17, height: int = 128, width: int = 128
) -> tuple[np.ndarray, np.ndarray]:
    """Object masks of source and target, bool ``(T, H, W)`` each; ``|`` them for the editable region."""
    return render_mask(source, num_frames, height, width), render_mask(target, num_frames, height, width)
