"""Talking-head generation from files: reference image + audio file -> mp4 with the audio muxed.

1. check inputs (steps, audio) and load the model: a DualForce checkpoint folder, else
   the packaged toy model trained on TalkingShapes, else a *randomly initialised* toy config (the
   output is then noise-like; the report says so);
   A reference image of another size is fitted by :data:`REFERENCE_POLICY` (center crop to the
   model's aspect ratio, then resize), and the report's ``reference_image`` says what was done;
2. extract 50 Hz audio features;
3. stream frames chunk by chunk (:func:`flowstudio.avatar.inference.streaming.stream_frames`);
4. write the mp4 (audio trimmed to the generated span) and its JSON record through
   :class:`flowstudio.jobs.JobResult` (:func:`synthesize` does 1-3 and writes nothing).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from flowstudio.avatar.inference.streaming import check_image, sampling, stream_frames
from flowstudio.avatar.model.audio import make_extractor, read_audio
from flowstudio.avatar.model.config import preset
from flowstudio.avatar.model.dualforce import DualForceModel
from flowstudio.checks import check_int
from flowstudio.video import read_image

logger = logging.getLogger(__name__)
TOY_CHECKPOINT = Path(__file__).resolve().parents[2] / "assets" / "dualforce-toy"
REFERENCE_POLICY = "center crop to the model's aspect ratio, then resize (area filter)"


@dataclass(frozen=True)
class GenerateReport:
    """What was generated and how fast (``realtime_factor`` = video seconds / wall seconds)."""

    out: str
    model: str
    random_weights: bool
    frames: int
    seconds: float
    wall_seconds: float
    realtime_factor: float
    first_chunk_seconds: float
    steps: int
    reference_image: str = ""
    audio_guidance: float = 1.0
    context_sigma: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def load_model(
    checkpoint: str | Path | None,
    *,
    preset_name: str = "toy",
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> tuple[DualForceModel, bool]:
    """``(model, random_weights)``: the checkpoint's model; without one the packaged toy DualForce
    (``flowstudio/assets/dualforce-toy``, trained on TalkingShapes); without that a seeded random model
    of ``preset_name`` (said loudly)."""
    if checkpoint is not None:
        return DualForceModel.from_pretrained(checkpoint, device=device), False
    if (TOY_CHECKPOINT / "model.safetensors").is_file():
        logger.info("no --checkpoint given: using the packaged toy DualForce model (%s)", TOY_CHECKPOINT)
        return DualForceModel.from_pretrained(TOY_CHECKPOINT, device=device), False
    logger.warning(
        "no --checkpoint given and no packaged toy model: using a RANDOMLY INITIALISED %s DualForce "
        "model; the video shows the pipeline, not a talking head",
        preset_name,
    )
    torch.manual_seed(seed)
    return DualForceModel(preset(preset_name)).to(device).eval(), True


@dataclass
class Synthesis:
    """A generated talking head before it is written: frames, the audio span and the report."""

    video: np.ndarray  # uint8 (T, H, W, 3)
    waveform: np.ndarray
    rate: int
    fps: float
    report: GenerateReport
    load_seconds: float
    model_calls: int


def synthesize(
    image: str | Path,
    audio: str | Path,
    *,
    checkpoint: str | Path | None = None,
    model: DualForceModel | None = None,
    steps: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: Callable[[int, int, str], None] | None = None,
    audio_guidance: float | None = None,
    context_sigma: float | None = None,
) -> Synthesis:
    """Stream a talking head from a reference image and an audio file (nothing written).

    ``model``: an already loaded model (``checkpoint`` then only names it in the report).
    ``audio_guidance``: classifier-free guidance on the audio against silence, 1 = off
    (:func:`~flowstudio.avatar.inference.streaming.stream_latents`); each forward then carries 2 rows.
    ``context_sigma``: the level generated chunks are committed at. ``None``: the model config's
    (``forcing.audio_guidance``, ``forcing.context_sigma``); the report records what was used.
    ``progress(chunk, chunks, "chunk")`` is called after each chunk.
    """
    if steps is not None:
        check_int("steps", steps, minimum=1, what="; denoising steps per chunk, or None for the config's")
    loading = time.perf_counter()
    if model is None:  # 1. model and inputs
        model, random_weights = load_model(checkpoint, seed=seed, device=device)
    else:
        random_weights = False
    load_seconds = time.perf_counter() - loading
    cfg = model.config
    used = sampling(cfg.forcing, audio_guidance, context_sigma)  # checked before any work
    picture, reference_note = fit_reference_image(read_image(image), cfg.image_size)
    check_image(picture, cfg.image_size)
    rate = 16000  # both feature extractors work at 16 kHz; the mp4 gets the same waveform
    waveform = read_audio(audio, rate)
    features = make_extractor(cfg.audio, device=device)(waveform, rate)  # 2. 50 Hz features
    chunks = model.rates.num_chunks(features.shape[0])
    start = time.perf_counter()
    timings: list[float] = []

    def on_chunk(info: dict[str, float]) -> None:
        timings.append(time.perf_counter() - start)
        if progress is not None:
            progress(int(info["chunk"]) + 1, chunks, "chunk")

    # 3. stream; model forwards counted by a hook removed afterwards (the model is left as found)
    calls = [0]
    hook = model.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    try:
        frames = list(
            stream_frames(
                model,
                picture,
                features,
                steps=steps,
                seed=seed,
                callback=on_chunk,
                audio_guidance=audio_guidance,
                context_sigma=context_sigma,
            )
        )
    finally:
        hook.remove()
    wall = time.perf_counter() - start
    video = np.stack(frames)
    fps = float(cfg.rates.video_fps)
    seconds = len(video) / fps
    report = GenerateReport(
        out="",
        model=_model_name(checkpoint, random_weights, cfg.name, seed),
        random_weights=random_weights,
        frames=len(video),
        seconds=seconds,
        wall_seconds=wall,
        realtime_factor=seconds / wall if wall > 0 else float("inf"),
        first_chunk_seconds=timings[0] if timings else wall,
        steps=steps or cfg.forcing.inference_steps,
        reference_image=reference_note,
        audio_guidance=used.audio_guidance,
        context_sigma=used.context_sigma,
    )
    span = waveform[: int(round(seconds * rate))]  # 4. the audio of the generated span
    return Synthesis(video, span, rate, fps, report, load_seconds, calls[0])


def generate(
    image: str | Path,
    audio: str | Path,
    out: str | Path,
    *,
    checkpoint: str | Path | None = None,
    steps: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    audio_guidance: float | None = None,
    context_sigma: float | None = None,
) -> GenerateReport:
    """Generate a talking-head mp4 (audio muxed) and its JSON record from a reference image and audio.

    ``audio_guidance``: classifier-free guidance on the audio against silence (1 = off).
    ``context_sigma``: the level generated chunks are committed at. ``None``: the model config's.
    ``steps`` (denoising steps per chunk, ``None``: the config's) must be a whole number >= 1; a
    reference image of another size than the model's is fitted by :data:`REFERENCE_POLICY`. Runs
    :func:`flowstudio.jobs.run` on an :class:`~flowstudio.jobs.AvatarRequest`.
    """
    from flowstudio.jobs import AvatarRequest, run

    request = AvatarRequest(
        image=image,
        audio=audio,
        out=out,
        checkpoint=checkpoint,
        steps=steps,
        seed=seed,
        device=str(device),
        audio_guidance=audio_guidance,
        context_sigma=context_sigma,
    )
    return run(request).engine


def _model_name(checkpoint: str | Path | None, random_weights: bool, name: str, seed: int) -> str:
    """The folder the weights came from, or what the random model is."""
    if checkpoint is not None:
        return str(checkpoint)
    return f"random {name} (seed {seed})" if random_weights else str(TOY_CHECKPOINT)


def fit_reference_image(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, str]:
    """Bring a uint8 ``(H, W, 3)`` image to ``size`` (height, width) by :data:`REFERENCE_POLICY`.

    Returns the image and a note of what was done (``"64x64 (model size, unchanged)"`` when nothing).
    """
    import cv2

    height, width = (int(v) for v in size)
    h0, w0 = image.shape[:2]
    if (h0, w0) == (height, width):
        return image, f"{h0}x{w0} (the model's size, unchanged)"
    # largest window of the target aspect ratio inside the image, centred
    crop_h, crop_w = min(h0, round(w0 * height / width)), min(w0, round(h0 * width / height))
    top, left = (h0 - crop_h) // 2, (w0 - crop_w) // 2
    cropped = image[top : top + crop_h, left : left + crop_w]
    resized = cv2.resize(np.ascontiguousarray(cropped), (width, height), interpolation=cv2.INTER_AREA)
    note = (
        f"{h0}x{w0} -> {height}x{width} (height x width): "
        + (f"center crop to {crop_h}x{crop_w}, then " if (crop_h, crop_w) != (h0, w0) else "")
        + "resize"
    )
    logger.info("reference image %s", note)
    return np.ascontiguousarray(resized), note
