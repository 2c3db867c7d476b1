"""Talking-head generation from files: reference image + audio file -> mp4 with the audio muxed.

1. check inputs (image size, audio length) and load the model: a DualForce checkpoint folder, else
   the packaged toy model trained on TalkingShapes, else a *randomly initialised* toy config (the
   output is then noise-like; the report says so);
2. extract 50 Hz audio features;
3. stream frames chunk by chunk (:func:`flowstudio.avatar.streaming.stream_frames`);
4. write the mp4 with :func:`flowstudio.video.write_video`, audio trimmed to the generated span.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from flowstudio.avatar.audio import make_extractor, read_audio
from flowstudio.avatar.config import preset
from flowstudio.avatar.model import DualForceModel
from flowstudio.avatar.streaming import check_image, stream_frames
from flowstudio.video import read_image, write_video

logger = logging.getLogger(__name__)
TOY_CHECKPOINT = Path(__file__).resolve().parents[1] / "assets" / "dualforce-toy"


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


def generate(
    image: str | Path,
    audio: str | Path,
    out: str | Path,
    *,
    checkpoint: str | Path | None = None,
    steps: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> GenerateReport:
    """Generate a talking-head mp4 from a reference image and an audio file."""
    model, random_weights = load_model(checkpoint, seed=seed, device=device)  # 1. model and inputs
    cfg = model.config
    picture = read_image(image)
    check_image(picture, cfg.image_size)
    rate = 16000  # both feature extractors work at 16 kHz; the mp4 gets the same waveform
    waveform = read_audio(audio, rate)
    features = make_extractor(cfg.audio, device=device)(waveform, rate)  # 2. 50 Hz features
    start = time.perf_counter()
    timings: list[float] = []
    frames = list(
        stream_frames(
            model,
            picture,
            features,
            steps=steps,
            seed=seed,  # 3. stream
            callback=lambda info: timings.append(time.perf_counter() - start),
        )
    )
    wall = time.perf_counter() - start
    video = np.stack(frames)
    fps = float(cfg.rates.video_fps)
    seconds = len(video) / fps
    path = write_video(out, video, fps, audio=waveform[: int(round(seconds * rate))], audio_rate=rate)  # 4.
    return GenerateReport(
        out=str(path),
        model=str(checkpoint) if checkpoint else f"random {cfg.name}",
        random_weights=random_weights,
        frames=len(video),
        seconds=seconds,
        wall_seconds=wall,
        realtime_factor=seconds / wall if wall > 0 else float("inf"),
        first_chunk_seconds=timings[0] if timings else wall,
        steps=steps or cfg.forcing.inference_steps,
    )
