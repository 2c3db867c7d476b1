"""Captions of dataset clips: from the ShapeWorld sidecar, from a ``<video>.txt`` sidecar, or from a
local image-to-text model.

* ``metadata``: the clip's :class:`~flowstudio.worlds.shapes.SceneSpec` (from the footage sidecar)
  captioned by the world's own templates (:func:`flowstudio.worlds.captions.caption`), the same
  text the toy model was trained on.
* ``sidecar``: the text of ``<video stem>.txt`` next to the video, for every clip of that video (the
  user's own captions).
* ``model``: a local image-to-text model folder loaded with transformers (``local_files_only``; a
  BLIP-style image-text-to-text model + ``AutoProcessor``), run on the middle frame of the clip.
  Nothing is downloaded: a folder without weights fails with the file it lacks.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from flowstudio.errors import InputError


def sidecar_caption(video: Path) -> str | None:
    """The stripped text of ``<video stem>.txt``, or ``None`` when there is none (or it is empty)."""
    path = video.with_suffix(".txt")
    if not path.is_file():
        return None
    text = " ".join(path.read_text(encoding="utf-8", errors="replace").split())
    return text or None


class ModelCaptioner:
    """A local image-to-text model (transformers) that captions one frame."""

    def __init__(self, folder: str | Path, device: str = "cpu", max_new_tokens: int = 30) -> None:
        path = Path(folder)
        if not (path / "config.json").is_file():
            raise InputError(
                f"caption model folder {path} has no config.json: give a local transformers image-to-text "
                "model folder (e.g. a BLIP captioning checkpoint saved with save_pretrained)"
            )
        try:
            from transformers import AutoProcessor

            try:  # transformers >= 4.52 (and 5, where the older name is gone)
                from transformers import AutoModelForImageTextToText as AutoCaptioner
            except ImportError:
                from transformers import AutoModelForVision2Seq as AutoCaptioner

            self.processor = AutoProcessor.from_pretrained(path, local_files_only=True)
            self.model = AutoCaptioner.from_pretrained(path, local_files_only=True).to(device).eval()
        except (OSError, ValueError) as err:
            raise InputError(f"cannot load the caption model from {path}: {err}") from err
        self.device, self.max_new_tokens = device, max_new_tokens

    def __call__(self, frames: np.ndarray) -> str:
        import torch
        from PIL import Image

        image = Image.fromarray(np.ascontiguousarray(frames[len(frames) // 2]))
        inputs = self.processor(images=image, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            tokens = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        return " ".join(self.processor.batch_decode(tokens, skip_special_tokens=True)[0].split())


@functools.lru_cache(maxsize=2)
def model_captioner(folder: str, device: str = "cpu") -> ModelCaptioner:
    """One :class:`ModelCaptioner` per folder and device in this process (a Ray worker loads it once)."""
    return ModelCaptioner(folder, device)
