"""Example inputs of the studio page, rendered by the project's worlds (nothing is downloaded).

Edit examples are ShapeWorld clips (:mod:`flowstudio.worlds.shapes`) with a one-attribute target and
the prompt pair the world writes for it; the avatar example is a FaceWorld head (its first frame) and
its synthetic speech (:mod:`flowstudio.worlds.faces`).
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class EditExample:
    """One ShapeWorld edit: the source scene and the attribute changed."""

    label: str
    shape: str
    color: str
    material: str
    background: str
    attribute: str
    value: str


#: The page's ShapeWorld examples (one per edit type the toy model was trained on).
EDIT_EXAMPLES: tuple[EditExample, ...] = (
    EditExample("red bottle -> blue (colour)", "bottle", "red", "glossy", "wood", "color", "blue"),
    EditExample("green vase -> cone (product)", "vase", "green", "matte", "plain", "shape", "cone"),
    EditExample("yellow cup -> marble background", "cup", "yellow", "matte", "plain", "background", "marble"),
    EditExample("blue ball -> striped (material)", "ball", "blue", "matte", "wood", "material", "striped"),
)


def edit_example(label: str, folder: Path, seed: int = 0) -> tuple[Path, str, str]:
    """Render the example ``label`` into ``folder/source.mp4``; returns ``(path, source, target prompt)``."""
    from flowstudio.errors import InputError
    from flowstudio.video import write_video
    from flowstudio.worlds import SceneSpec, edit_prompt_pair, render_clip

    example = next((e for e in EDIT_EXAMPLES if e.label == label), None)
    if example is None:
        raise InputError(f"no ShapeWorld example {label!r}; pick one of the list")
    source = SceneSpec(
        shape=example.shape,
        color=example.color,
        material=example.material,
        background=example.background,
        seed=seed,
    )
    target = SceneSpec(**{**source.to_dict(), example.attribute: example.value})
    source_prompt, target_prompt = edit_prompt_pair(source, target, seed)
    path = write_video(folder / "source.mp4", render_clip(source), fps=16)
    return Path(path), source_prompt, target_prompt


def avatar_example(folder: Path, seed: int = 0, seconds: float = 2.0) -> tuple[Path, Path]:
    """A FaceWorld head (``reference.png``, its first frame) and its speech (``speech.wav``)."""
    from PIL import Image

    from flowstudio.worlds.faces import FaceIdentity, render_talking_clip
    from flowstudio.worlds.faces_audio import SpeechSpec

    clip = render_talking_clip(FaceIdentity(seed=seed), SpeechSpec(seed=seed), seconds=seconds)
    image = folder / "reference.png"
    Image.fromarray(clip.frames[0]).save(image)
    audio = folder / "speech.wav"
    write_wav(audio, clip.audio, clip.sample_rate)
    return image, audio


def write_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    """Mono float ``[-1, 1]`` samples as a 16-bit PCM wav (what every browser and decoder reads)."""
    pcm = (np.clip(np.asarray(samples, np.float32), -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(int(rate))
        out.writeframes(pcm.tobytes())
    return path
