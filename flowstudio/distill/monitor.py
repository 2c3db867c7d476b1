"""What TensorBoard shows of a distillation run besides its losses: the student's samples and, on the
toy, how often the world's readers find the prompted attributes in them.

Both use the exported weights (the EMA) with the student's own sampler (``dmd``, its steps, guidance 1),
i.e. what ``flowstudio generate --model OUT/student`` will produce. The evaluation prompts come from
their own ShapeWorld seed stream (neither the training bank's nor ``toy_quality.py``'s held-out one).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from flowstudio.distill.prompts import BANK_STREAM, captioned_spec

EVAL_STREAM = BANK_STREAM + 1
ATTRIBUTES = ("color", "shape", "background")


def eval_specs(count: int):
    """``count`` (spec, caption) pairs of the evaluation stream."""
    return [captioned_spec(EVAL_STREAM, i) for i in range(count)]


def reader_accuracy(specs, generate: Callable[[int, str], np.ndarray]) -> dict[str, float]:
    """The readers' accuracy per attribute over ``specs``; ``generate(i, caption)`` makes clip ``i``."""
    from flowstudio.worlds.readers import PROMPT_READERS, read_or_no_object

    hits = dict.fromkeys(ATTRIBUTES, 0)
    for i, (spec, text) in enumerate(specs):
        frames = generate(i, text)
        for name in ATTRIBUTES:
            hits[name] += read_or_no_object(PROMPT_READERS[name], frames) == getattr(spec, name)
    return {name: hits[name] / max(len(specs), 1) for name in ATTRIBUTES}


class StudentMonitor:
    """``sample(step)``: an image grid (one row per prompt: first, middle and last frame);
    ``evaluate()``: the readers' accuracy per attribute over ``prompts`` ShapeWorld prompts."""

    def __init__(
        self, pipeline, student, *, steps: int, shift: float, size: tuple[int, int, int], prompts: int
    ):
        self.pipeline, self.student = pipeline, student
        self.steps, self.shift, self.size = steps, shift, size
        self.specs = eval_specs(prompts)

    def _pipe(self):
        """A pipeline over the current exported weights (built once per sample/evaluate call: a LoRA
        student's export merges its adapters into a copy)."""
        from flowstudio.pipeline import WanVideoPipeline

        components = dataclasses.replace(self.pipeline.components, transformer=self.student.exported())
        return WanVideoPipeline(components, device=self.pipeline.device)

    def _generate(self, pipe, prompt: str, seed: int) -> np.ndarray:
        from flowstudio.pipeline import GenerationSettings

        frames, height, width = self.size
        settings = GenerationSettings(
            prompt=prompt,
            num_frames=frames,
            height=height,
            width=width,
            steps=self.steps,
            guidance_scale=1.0,
            shift=self.shift,
            solver="dmd",
            seed=seed,
        )
        return pipe.generate(settings, progress=False).frames

    def sample(self, step: int) -> np.ndarray:
        from flowstudio.train import image_grid

        rows, pipe = [], self._pipe()
        for i, (_, text) in enumerate(self.specs[:2]):
            frames = self._generate(pipe, text, seed=i)
            rows.append([frames[0], frames[len(frames) // 2], frames[-1]])
        return image_grid(rows)

    def evaluate(self) -> dict[str, float]:
        pipe = self._pipe()
        return reader_accuracy(self.specs, lambda i, text: self._generate(pipe, text, seed=i))
