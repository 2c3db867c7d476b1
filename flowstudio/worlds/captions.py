"""Captions of ShapeWorld clips from their attributes, over a small closed vocabulary.

A caption is a template filled with one phrase per attribute, each picked among a few variants::

    a red glossy bottle on a wooden table, turning slowly
    product shot: blue striped box, marble background, camera pans left, pixel art

Every random choice (template, phrase variants) is drawn once into a :class:`CaptionChoices`, so an edit
pair can be captioned with the same choices for source and target: the prompts then differ only in
the words of the edited attribute. :data:`VOCABULARY` lists every word a caption can contain (lower
case, split on anything that is not a letter, see :func:`tokenize`); a toy text encoder's tokenizer
is built from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from flowstudio.errors import InputError
from flowstudio.worlds.shapes import BACKGROUNDS, COLORS, MATERIALS, MOTIONS, SHAPES, STYLES, SceneSpec

# Templates: {article} agrees with the word after it.
TEMPLATES: tuple[str, ...] = (
    "{article} {color} {material} {shape} {bg_on}, {motion}{style}",
    "product shot: {color} {material} {shape}, {bg_noun}, {motion}{style}",
    "{article} {shape} in {color} with {material_with} {bg_on}, {motion}{style}",
    "studio video of {article} {color} {material} {shape} {bg_on}, {motion}{style}",
    "close up of {article} {color} {material} {shape}, {bg_noun}, {motion}{style}",
    "{color} {material} {shape} {bg_on}, {motion}{style}",
)
MATERIAL_ADJECTIVES: dict[str, tuple[str, ...]] = {
    "matte": ("matte",),
    "glossy": ("glossy", "shiny"),
    "striped": ("striped",),
    "dotted": ("dotted", "polka dot"),
    "checkered": ("checkered",),
}
MATERIAL_WITH: dict[str, tuple[str, ...]] = {
    "matte": ("a matte finish",),
    "glossy": ("a glossy finish", "a shiny finish"),
    "striped": ("stripes",),
    "dotted": ("dots", "polka dots"),
    "checkered": ("a checkered pattern",),
}
BACKGROUND_ON: dict[str, tuple[str, ...]] = {
    "plain": ("on a plain background", "in front of a plain backdrop"),
    "gradient": ("on a gradient background", "in front of a soft gradient backdrop"),
    "wood": ("on a wooden table", "on a wood surface"),
    "marble": ("on a marble table", "on a marble surface"),
    "sky": ("against a blue sky", "in front of a cloudy sky"),
    "tiles": ("on a tiled floor", "in front of a tile wall"),
}
BACKGROUND_NOUN: dict[str, tuple[str, ...]] = {
    "plain": ("plain background", "plain backdrop"),
    "gradient": ("gradient background", "gradient backdrop"),
    "wood": ("wooden table", "wood background"),
    "marble": ("marble background", "marble surface"),
    "sky": ("sky background", "blue sky with clouds"),
    "tiles": ("tiled background", "tile wall"),
}
_TURN = ("turning slowly", "rotating on a turntable", "spinning slowly")
_CAMERA = {
    "pan_left": ("camera pans left", "the camera pans left", "slow pan to the left"),
    "pan_right": ("camera pans right", "the camera pans right", "slow pan to the right"),
    "zoom_in": ("camera zooms in", "the camera slowly zooms in", "slow zoom in"),
    "zoom_out": ("camera zooms out", "the camera slowly zooms out", "slow zoom out"),
}
MOTION_PHRASES: dict[str, tuple[str, ...]] = {"turntable": _TURN, **_CAMERA}
for _move, _phrases in _CAMERA.items():
    MOTION_PHRASES[f"turntable_{_move}"] = tuple(
        f"{turn} as {cam}" if cam.startswith("the ") else f"{turn}, {cam}"
        for turn, cam in zip(_TURN, _phrases, strict=True)
    )
STYLE_PHRASES: dict[str, tuple[str, ...]] = {
    "photo": ("", "", ", studio photo"),
    "watercolor": (", watercolor painting", ", in watercolor style"),
    "posterize": (", posterized", ", poster art style"),
    "pixel": (", pixel art", ", in pixel art style"),
}
_ARTICLE_PLACEHOLDER = "{article}"


@dataclass(frozen=True)
class CaptionChoices:
    """The random choices of one caption: a template and a variant index per phrase kind.

    Indices are taken modulo the number of variants of the phrase they pick, so one set of choices
    works for every spec.
    """

    template: int
    material: int
    background: int
    motion: int
    style: int

    @classmethod
    def draw(cls, rng: np.random.Generator) -> CaptionChoices:
        """Draw every choice from ``rng`` (a fixed number of draws, whatever the spec)."""
        values = rng.integers(0, 2**31, size=5)
        return cls(int(values[0]) % len(TEMPLATES), *(int(v) for v in values[1:]))


def caption(
    spec: SceneSpec, rng: np.random.Generator | int | None = None, *, choices: CaptionChoices | None = None
) -> str:
    """A caption of ``spec`` in a template and phrasing drawn from ``rng``.

    Args:
        spec: the scene.
        rng: a generator or a seed; ``None`` uses ``spec.seed``. Ignored when ``choices`` is given.
        choices: explicit choices (see :func:`edit_prompt_pair`, which shares them across a pair).
    """
    if not isinstance(spec, SceneSpec):
        raise InputError(f"spec must be a SceneSpec, got {type(spec).__name__}")
    if choices is None:
        choices = CaptionChoices.draw(_as_rng(rng, spec.seed))

    def pick(options: tuple[str, ...], index: int) -> str:
        return options[index % len(options)]

    text = TEMPLATES[choices.template % len(TEMPLATES)].format(
        article=_ARTICLE_PLACEHOLDER,
        color=spec.color,
        shape=spec.shape,
        material=pick(MATERIAL_ADJECTIVES[spec.material], choices.material),
        material_with=pick(MATERIAL_WITH[spec.material], choices.material),
        bg_on=pick(BACKGROUND_ON[spec.background], choices.background),
        bg_noun=pick(BACKGROUND_NOUN[spec.background], choices.background),
        motion=pick(MOTION_PHRASES[spec.motion], choices.motion),
        style=pick(STYLE_PHRASES[spec.style], choices.style),
    )
    return _fix_articles(text)


def _fix_articles(text: str) -> str:
    """Replace each article placeholder by "a" or "an" according to the next word."""

    def repl(match: re.Match[str]) -> str:
        return ("an " if match.group(1)[0] in "aeiou" else "a ") + match.group(1)

    return re.sub(re.escape(_ARTICLE_PLACEHOLDER) + r" (\w+)", repl, text)


def _as_rng(rng: np.random.Generator | int | None, default_seed: int) -> np.random.Generator:
    if rng is None:
        return np.random.default_rng(default_seed)
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, int | np.integer) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise InputError(f"rng must be a numpy Generator, an integer seed or None, got {type(rng).__name__}")


def tokenize(text: str) -> list[str]:
    """Words of a caption as the toy tokenizer sees them: lower case, letters only."""
    return re.findall(r"[a-z]+", text.lower())


def _vocabulary() -> list[str]:
    words: set[str] = {"a", "an"}
    phrases = [*TEMPLATES, *SHAPES, *COLORS]  # shape and colour names appear as they are
    tables = (
        MATERIAL_ADJECTIVES,
        MATERIAL_WITH,
        BACKGROUND_ON,
        BACKGROUND_NOUN,
        MOTION_PHRASES,
        STYLE_PHRASES,
    )
    for table, names in zip(
        tables, (MATERIALS, MATERIALS, BACKGROUNDS, BACKGROUNDS, MOTIONS, STYLES), strict=True
    ):
        if set(table) != set(names):
            raise AssertionError(f"caption phrases cover {sorted(table)}, attributes are {sorted(names)}")
        for options in table.values():
            phrases.extend(options)
    for phrase in phrases:
        words.update(tokenize(re.sub(r"\{\w+\}", " ", phrase)))
    return sorted(words)


VOCABULARY: list[str] = _vocabulary()
"""Every word a caption can contain, sorted."""
