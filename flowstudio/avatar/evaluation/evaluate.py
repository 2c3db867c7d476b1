"""Talking-head evaluation on the TalkingShapes toy world (``flowstudio avatar eval``).

Three layers, each usable on its own:

1. :func:`evaluate_clip`: every per-clip metric of one clip (frames + the waveform that drove it +
   the reference image, optionally the ground truth and the generated structure latent);
2. :func:`evaluate_set`: per-clip metrics of many clips, their mean / std, the set-level metrics
   (the set's lip-sync offset, the FVD-style distance of the toy feature extractor) and the
   reference tier (skipped, with the reason, without verified weights);
3. :func:`evaluate_generated` (score existing mp4s with their audio muxed, matched to a TalkingShapes
   dataset by clip name) and :func:`evaluate_model` (generate from each dataset clip's first frame
   and its audio with a DualForce checkpoint - or, without one, the packaged toy model, else a
   randomly initialised toy model, which the report says - then score).

The metrics are the ``avatar`` suite of the one registry :mod:`flowstudio.metrics` (declared in
:mod:`flowstudio.metrics.library`, their math in :mod:`flowstudio.avatar.evaluation.metrics`; the FVD-style
features in :mod:`flowstudio.avatar.evaluation.features`); this module says what a clip provides and writes
the one results format (:mod:`flowstudio.metrics.results`). A metric that cannot be computed is listed
with the reason, never given a default number.
When the model's frame size differs from the dataset's (toy model 64 x 64, datasets 128 x 128 by
default), ground-truth frames and the reference image are resized with OpenCV ``INTER_AREA`` and the
report's ``notes`` say so; different aspect ratios are an error.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flowstudio import metrics
from flowstudio.avatar.evaluation.metrics import check_frames, resize_frames
from flowstudio.errors import FlowstudioError, InputError
from flowstudio.metrics import Audio, Inputs, SetScorer
from flowstudio.metrics.library.avatar_identity import TIMES as IDENTITY_TIMES
from flowstudio.metrics.library.avatar_lip_sync import MIN_SPEECH_FRAMES
from flowstudio.metrics.results import build_results, write_results

logger = logging.getLogger(__name__)

NO_STRUCTURE = (
    "no generated structure latent (DualForce's structure-tower output; `avatar eval --checkpoint` "
    "records it, or put <clip>.npz with a 'structure' array beside a generated mp4)"
)


@dataclass
class ClipTruth:
    """Ground truth of a clip: its video (uint8 ``(T, H, W, 3)``) and structure latent ``(T, 7 + 3K)``."""

    frames: np.ndarray | None = None
    structure: np.ndarray | None = None


@dataclass
class EvalClip:
    """One clip to score: generated ``frames``, the ``waveform`` that drove them, the reference image."""

    name: str
    frames: np.ndarray
    waveform: np.ndarray
    sample_rate: int
    fps: float
    reference_image: np.ndarray
    truth: ClipTruth | None = None
    structure: np.ndarray | None = None


# ------------------------------------------------------------------------------------------------
# One clip


def _fit_size(frames: np.ndarray, height: int, width: int, what: str) -> np.ndarray:
    """``frames`` (``(T, H, W, 3)`` or one image) at ``height x width``: resized (INTER_AREA) when the
    aspect ratio matches, else an InputError."""
    h, w = frames.shape[-3:-1]
    if (h, w) == (height, width):
        return frames
    if abs(h * width - w * height) > max(h, height):  # more than a pixel of aspect difference
        raise InputError(
            f"{what} is {h}x{w} (height x width) but the generated frames are {height}x{width}: the aspect "
            "ratios differ, so they cannot be compared; render or generate both at one aspect ratio"
        )
    single = frames.ndim == 3
    out = resize_frames(frames[None] if single else frames, height, width)
    return out[0] if single else out


def evaluate_clip(
    frames: np.ndarray,
    waveform: np.ndarray,
    sample_rate: int,
    fps: float,
    reference_image: np.ndarray,
    truth: ClipTruth | None = None,
    structure: np.ndarray | None = None,
    *,
    max_offset: int = 5,
    speech_threshold: float = 0.1,
    min_speech_frames: int = MIN_SPEECH_FRAMES,
    identity_window: float = 0.2,
    reference: Any | None = None,
    features: Any | None = None,
) -> dict[str, Any]:
    """Every per-clip metric of the ``avatar`` suite on one clip.

    Args:
        frames: generated uint8 ``(T, H, W, 3)`` RGB.
        waveform: the audio that drove them, mono float ``(N,)`` (a ``(C, N)`` array is averaged).
        sample_rate: Hz of ``waveform``.
        fps: frame rate of ``frames``.
        reference_image: uint8 ``(H, W, 3)``, resized to the frames when needed.
        truth: ground truth of the same clip (frames resized to the generated size when needed).
        structure: generated structure latent ``(T, 7 + 3K)`` (DualForce's structure-tower output, raw
            scale, :func:`flowstudio.worlds.faces.structure_array` layout), or ``None``.
        max_offset, speech_threshold: lip-sync settings
            (:func:`flowstudio.avatar.evaluation.metrics.lip_sync`).
        min_speech_frames: below this many speech frames lip-sync is skipped.
        identity_window: seconds around 10 s / 30 s averaged for identity drift.
        reference: reference-tier model provider; ``None`` reports that tier "not requested".
        features: a loaded toy feature extractor (used by the set level only).

    Returns:
        ``{"metrics": {name: number}, "skipped": {name: reason}, "details": {...}}``.
    """
    inputs = clip_inputs(
        frames,
        waveform,
        sample_rate,
        fps,
        reference_image,
        truth,
        structure,
        options={
            "max_offset": max_offset,
            "speech_threshold": speech_threshold,
            "min_speech_frames": min_speech_frames,
            "identity_window": identity_window,
        },
        reference=reference,
        features=features,
    )
    return _score(inputs)


def _score(inputs: Inputs) -> dict[str, Any]:
    frames, fps = inputs["output"], inputs["fps"]
    inputs.detail("frames", int(len(frames)))
    inputs.detail("seconds", round(len(frames) / fps, 3))
    return metrics.score_case("avatar", inputs)


def clip_inputs(
    frames: np.ndarray,
    waveform: np.ndarray,
    sample_rate: int,
    fps: float,
    reference_image: np.ndarray,
    truth: ClipTruth | None = None,
    structure: np.ndarray | None = None,
    *,
    options: dict[str, Any] | None = None,
    reference: Any | None = None,
    features: Any | None = None,
    features_reason: str = "no toy feature extractor given",
) -> Inputs:
    """The metric inputs of one clip, checked (sizes matched: see :func:`evaluate_clip`)."""
    frames = check_frames(frames, "generated frames")
    height, width = frames.shape[1:3]
    if (
        not isinstance(reference_image, np.ndarray)
        or reference_image.ndim != 3
        or reference_image.dtype != np.uint8
    ):
        raise InputError(
            f"reference_image must be uint8 (H, W, 3), got {getattr(reference_image, 'dtype', '')} "
            f"{getattr(reference_image, 'shape', type(reference_image).__name__)}"
        )
    if isinstance(fps, bool) or not isinstance(fps, int | float) or fps <= 0:
        raise InputError(f"fps must be a positive number, got {fps!r}")
    wave = np.asarray(waveform, np.float32)
    if wave.ndim == 2:
        wave = wave.mean(axis=0)
    values: dict[str, Any] = {
        "output": frames,
        "audio": Audio(wave, sample_rate),
        "fps": fps,
        "reference_image": _fit_size(reference_image, height, width, "the reference image"),
    }
    missing: dict[str, str] = {}
    if truth is not None and truth.frames is not None:
        values["truth"] = _fit_size(
            check_frames(truth.frames, "ground-truth frames"), height, width, "the ground truth"
        )
        values["real"] = values["truth"]
    else:
        missing["truth"] = missing["real"] = "no ground-truth frames for this clip"
    if structure is not None:
        values["structure"] = structure
    else:
        missing["structure"] = NO_STRUCTURE
    if truth is not None and truth.structure is not None:
        values["truth_structure"] = truth.structure
    else:
        missing["truth_structure"] = "no ground-truth structure latent for this clip"
    if features is not None:
        values["toy_features"] = features
    else:
        missing["toy_features"] = features_reason
    return Inputs(values, missing, options=options, reference=reference)


# ------------------------------------------------------------------------------------------------
# A set


def _resolve_features(features: Any) -> tuple[Any, str | None]:
    """``(extractor or None, skip reason or None)`` from a path, an extractor or ``None``."""
    from flowstudio.avatar.evaluation.features import (
        ToyFeatureExtractor,
        load_feature_extractor,
        missing_reason,
    )

    if isinstance(features, ToyFeatureExtractor):
        return features, None
    reason = missing_reason(features)
    if reason:
        return None, reason
    return load_feature_extractor(features), None


def evaluate_set(
    clips: Sequence[EvalClip],
    *,
    features: str | os.PathLike[str] | Any | None = None,
    weights_config: dict[str, Any] | None = None,
    max_offset: int = 5,
    speech_threshold: float = 0.1,
    min_speech_frames: int = MIN_SPEECH_FRAMES,
    identity_window: float = 0.2,
    progress: bool = True,
    reference_device: str = "cpu",
) -> dict[str, Any]:
    """Score ``clips`` one by one, then summarise.

    Args:
        clips: the clips.
        features: a toy feature extractor folder
            (:func:`flowstudio.avatar.evaluation.features.train_feature_extractor`)
            or a loaded one; ``None`` or a missing folder skips ``fvd_toy`` with the reason.
        weights_config: reference-tier weights config (default: ``$FLOWSTUDIO_BENCH_WEIGHTS``).
        max_offset, speech_threshold, min_speech_frames, identity_window: see :func:`evaluate_clip`.
        progress: show a progress bar.
        reference_device: torch device of the reference-tier models (FID / FVD).

    Returns:
        ``{"format", "summary": {metric: {"mean", "std", "n"} | {"value", ...} | skipped},
        "clips": [{"name", "metrics", "details"}]}``.
    """
    from tqdm import tqdm

    from flowstudio.bench.metrics.reference import ReferenceScorer

    if not clips:
        raise InputError("no clips to evaluate")
    extractor, features_reason = _resolve_features(features)
    reference = ReferenceScorer(config=weights_config, device=reference_device)
    options = {
        "max_offset": max_offset,
        "speech_threshold": speech_threshold,
        "min_speech_frames": min_speech_frames,
        "identity_window": identity_window,
    }
    set_scorer = SetScorer("avatar", reference)
    records: list[dict[str, Any]] = []
    for clip in tqdm(clips, desc="score clips", disable=not progress, leave=False):
        inputs = clip_inputs(
            clip.frames,
            clip.waveform,
            clip.sample_rate,
            clip.fps,
            clip.reference_image,
            clip.truth,
            clip.structure,
            options=options,
            reference=reference,
            features=extractor,
            features_reason=features_reason or "",
        )
        records.append({"id": clip.name, "status": "ok", **_score(inputs)})
        set_scorer.add(inputs)  # after scoring: reuses the clip's cached lip-sync curve
    return build_results("avatar", {}, records, set_scorer.finish(), weights=reference.weights_report())


# ------------------------------------------------------------------------------------------------
# From files


def read_manifest(data_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The clip records of a TalkingShapes dataset folder (``manifest.jsonl``).

    Raises:
        InputError: the folder, its manifest or its clips are missing.
    """
    folder = Path(data_dir)
    make = (
        "make one with `flowstudio worlds make faces DIR --seed 1000 --clips 8` (a seed training never used)"
    )
    if not folder.is_dir():
        raise InputError(f"--data {str(folder)!r}: no such folder; {make}")
    manifest = folder / "manifest.jsonl"
    if not manifest.is_file():
        raise InputError(f"--data {folder}: no manifest.jsonl, so not a TalkingShapes dataset; {make}")
    records = []
    for number, line in enumerate(manifest.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(f"{manifest}:{number}: not JSON ({err}); write the dataset again") from err
        if not isinstance(record, dict) or not {"video", "arrays", "fps"} <= set(record):
            raise InputError(
                f"{manifest}:{number}: not a TalkingShapes clip record (needs video, arrays, fps)"
            )
        records.append(record)
    if not records:
        raise InputError(f"--data {folder}: manifest.jsonl lists no clips; {make}")
    return records


def _load_truth(folder: Path, record: dict[str, Any]) -> tuple[ClipTruth, np.ndarray, int]:
    """Ground truth, exact waveform and its rate of one dataset clip."""
    from flowstudio.video import read_video
    from flowstudio.worlds.faces_dataset import read_clip_arrays

    video, arrays = folder / record["video"], folder / record["arrays"]
    for path in (video, arrays):
        if not path.is_file():
            raise InputError(f"dataset clip file {path} is missing; write the dataset again (it resumes)")
    data = read_clip_arrays(arrays)
    if "audio" not in data:
        raise InputError(f"{arrays} has no 'audio' array; write the dataset again")
    frames = read_video(video).frames
    return (
        ClipTruth(frames=frames, structure=data.get("structure")),
        data["audio"],
        int(record.get("sample_rate", 16000)),
    )


def _stem(record: dict[str, Any]) -> str:
    return Path(record["video"]).stem


def _limit(records: list[dict[str, Any]], clips: int | None) -> list[dict[str, Any]]:
    if clips is not None:
        if isinstance(clips, bool) or not isinstance(clips, int) or clips < 1:
            raise InputError(f"--clips must be a positive integer, got {clips!r}")
        records = records[:clips]
    return records


def evaluate_generated(
    data_dir: str | os.PathLike[str],
    generated_dir: str | os.PathLike[str],
    *,
    clips: int | None = None,
    features: str | os.PathLike[str] | None = None,
    progress: bool = True,
    **options: Any,
) -> dict[str, Any]:
    """Score the mp4s of ``generated_dir`` named like the dataset's clips (``clip_00000.mp4`` ...), each
    with its driving audio muxed, against the dataset ``data_dir``. A ``clip_XXXXX.npz`` with a
    ``structure`` array beside an mp4 is read as its generated structure latent. The reference image is
    the ground truth's first frame. ``options`` go to :func:`evaluate_set`.

    Raises:
        InputError: a folder is missing, no mp4 matches a dataset clip, an mp4 has no audio stream, or the
            sizes cannot be matched.
    """
    from flowstudio.video import read_video

    folder, generated = Path(data_dir), Path(generated_dir)
    records = read_manifest(folder)
    if not generated.is_dir():
        raise InputError(f"--generated {str(generated)!r}: no such folder of generated mp4s")
    present = [r for r in records if (generated / f"{_stem(r)}.mp4").is_file()]
    if not present:
        raise InputError(
            f"--generated {generated}: no mp4 named like the dataset's clips ({_stem(records[0])}.mp4 ...); "
            "name each generated video after the dataset clip it was made from"
        )
    if len(present) < len(records) and clips is None:
        logger.warning(
            "%d of %d dataset clips have a generated mp4; scoring those", len(present), len(records)
        )
    present = _limit(present, clips)
    items: list[EvalClip] = []
    notes: set[str] = set()
    for record in present:
        path = generated / f"{_stem(record)}.mp4"
        clip = read_video(path, with_audio=True)
        if clip.audio is None or clip.audio_rate is None or clip.audio.size == 0:
            raise InputError(
                f"{path} has no audio stream: lip-sync needs the driving audio muxed into each generated mp4 "
                "(e.g. `ffmpeg -i gen.mp4 -i speech.wav -c:v copy -c:a aac out.mp4`)"
            )
        truth, _, _ = _load_truth(folder, record)
        if truth.frames is not None and truth.frames.shape[1:3] != clip.frames.shape[1:3]:
            notes.add(_resize_note(truth.frames.shape[1:3], clip.frames.shape[1:3]))
        structure = None
        side = generated / f"{_stem(record)}.npz"
        if side.is_file():
            with np.load(side) as data:
                if "structure" not in data.files:
                    raise InputError(f"{side} has no 'structure' array (keys: {data.files})")
                structure = data["structure"]
        items.append(
            EvalClip(
                name=_stem(record),
                frames=clip.frames,
                waveform=clip.audio.mean(axis=0),
                sample_rate=int(clip.audio_rate),
                fps=float(clip.fps),
                reference_image=truth.frames[0],
                truth=truth,
                structure=structure,
            )
        )
    report = evaluate_set(items, features=features, progress=progress, **options)
    report["settings"] = _settings(
        mode="generated",
        data=str(folder),
        generated=str(generated),
        clips=len(items),
        features=features,
        **options,
    )
    report["notes"] = sorted(notes)
    return report


def _resize_note(src: tuple[int, int], dst: tuple[int, int]) -> str:
    return (
        f"ground-truth frames and reference image resized from {src[0]}x{src[1]} to {dst[0]}x{dst[1]} "
        "(height x width) with OpenCV INTER_AREA to match the generated frames"
    )


def generate_clip(
    model: Any,
    image: np.ndarray,
    waveform: np.ndarray,
    sample_rate: int,
    *,
    steps: int | None = None,
    seed: int = 0,
    audio_guidance: float | None = None,
    context_sigma: float | None = None,
    structure: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Stream a clip from ``image`` and ``waveform``: frames uint8 ``(T, H, W, 3)`` and the structure
    latent ``(T, C_s)`` the structure tower generated alongside (raw scale: denormalised with the
    config's structure statistics when it has them). ``structure``: a raw structure latent
    ``(T, 7 + 3K)`` (any keypoint count of the world's layout) to drive the video with instead
    (:func:`~flowstudio.avatar.inference.streaming.stream_latents`' ``structure``)."""
    import torch

    from flowstudio.avatar.inference.streaming import check_image, stream_latents
    from flowstudio.avatar.model.audio import make_extractor, resample
    from flowstudio.avatar.model.codec import ToyCodec

    cfg = model.config
    check_image(image, cfg.image_size)
    rate = int(cfg.audio.sample_rate)
    wave = np.asarray(waveform, np.float32)
    if sample_rate != rate:
        wave = resample(wave, sample_rate, rate)
    param = next(model.parameters())
    features = make_extractor(cfg.audio, device=param.device)(wave, rate)
    codec = ToyCodec.for_config(cfg)
    reference = codec.encode_image(image).to(param.device, param.dtype)
    generator = torch.Generator(device=param.device).manual_seed(seed)
    given = None
    if structure is not None:
        from flowstudio.worlds.faces import StructureLatent, structure_array

        raw = structure_array(StructureLatent.from_array(np.asarray(structure)), cfg.structure)
        given = torch.from_numpy(np.asarray(raw, np.float32))
        normalize = getattr(cfg.structure, "normalize", None)
        given = normalize(given) if normalize else given
    frames, rows = [], []
    chunks = stream_latents(
        model,
        reference,
        features,
        steps=steps,
        generator=generator,
        audio_guidance=audio_guidance,
        context_sigma=context_sigma,
        structure=given,
    )
    for chunk in chunks:
        frames.append(codec.decode(chunk.video))
        struct = chunk.struct[0].float()
        denormalize = getattr(cfg.structure, "denormalize", None)
        rows.append((denormalize(struct) if denormalize else struct).cpu().numpy())
    return np.concatenate(frames), np.concatenate(rows).astype(np.float32)


def evaluate_model(
    data_dir: str | os.PathLike[str],
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    clips: int | None = 8,
    steps: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    features: str | os.PathLike[str] | None = None,
    save_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    on_clip: Callable[[str, float], None] | None = None,
    audio_guidance: float | None = None,
    context_sigma: float | None = None,
    truth_structure: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Generate each dataset clip from its first frame and its audio, then score (module docstring).

    Args:
        data_dir: a TalkingShapes dataset, ideally of a seed the model never trained on.
        checkpoint: DualForce folder; ``None`` uses the packaged toy model when it ships, else a randomly
            initialised toy model (the report says so) - as ``avatar generate`` does.
        clips: the first ``clips`` clips of the manifest (``None``: all).
        steps, seed, device: generation settings.
        audio_guidance: classifier-free guidance on the audio against silence when generating (1: off;
            :func:`~flowstudio.avatar.inference.streaming.stream_latents`).
        context_sigma: the level generated chunks are committed at. ``None`` (both): the model config's
            ``forcing.audio_guidance`` / ``forcing.context_sigma``; the report's settings say what was used.
        truth_structure: drive the video with each clip's true structure latent instead of the
            structure tower's (a diagnosis: does the video follow the structure?); the clips must have one.
        features: toy feature extractor folder for ``fvd_toy``.
        save_dir: also write each generated clip there (``clip_XXXXX.mp4`` with audio and
            ``clip_XXXXX.npz`` with its structure), so it can be scored again with ``--generated``.
        on_clip: called with ``(name, seconds)`` after each generation.
        options: go to :func:`evaluate_set`.

    Raises:
        InputError: bad dataset, frame sizes that cannot be matched, fps differing from the model's.
    """
    from flowstudio.avatar.inference.generate import load_model
    from flowstudio.avatar.inference.streaming import sampling
    from flowstudio.video import write_video

    folder = Path(data_dir)
    records = _limit(read_manifest(folder), clips)
    model, random_weights = load_model(checkpoint, seed=seed, device=device)
    cfg = model.config
    used = sampling(cfg.forcing, audio_guidance, context_sigma)  # checked before any generation
    height, width = cfg.image_size
    fps = float(cfg.rates.video_fps)
    items: list[EvalClip] = []
    notes: set[str] = set()
    if random_weights:
        notes.add(
            "no --checkpoint and no packaged toy model: a RANDOMLY INITIALISED toy DualForce model generated "
            "these clips; the numbers show the evaluation, not a talking-head model"
        )
    out = Path(save_dir) if save_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    wall = 0.0
    for record in records:
        if abs(float(record["fps"]) - fps) > 1e-6:
            raise InputError(
                f"dataset clip {_stem(record)} is {record['fps']} fps, the model generates {fps:g} fps; "
                f"make the dataset at {fps:g} fps"
            )
        truth, wave, rate = _load_truth(folder, record)
        assert truth.frames is not None
        if truth.frames.shape[1:3] != (height, width):
            notes.add(_resize_note(truth.frames.shape[1:3], (height, width)))
        reference = _fit_size(truth.frames[0], height, width, f"dataset clip {_stem(record)}")
        start = time.perf_counter()
        try:
            frames, structure = generate_clip(
                model,
                reference,
                wave,
                rate,
                steps=steps,
                seed=seed,
                audio_guidance=audio_guidance,
                context_sigma=context_sigma,
                structure=_truth_structure(truth, record) if truth_structure else None,
            )
        except FlowstudioError as err:
            raise type(err)(f"dataset clip {_stem(record)}: {err}") from err
        took = time.perf_counter() - start
        wall += took
        if on_clip is not None:
            on_clip(_stem(record), took)
        if out is not None:
            seconds = len(frames) / fps
            write_video(
                out / f"{_stem(record)}.mp4",
                frames,
                fps,
                audio=wave[: int(round(seconds * rate))],
                audio_rate=rate,
            )
            np.savez(out / f"{_stem(record)}.npz", structure=structure)
        items.append(
            EvalClip(
                name=_stem(record),
                frames=frames,
                waveform=wave,
                sample_rate=rate,
                fps=fps,
                reference_image=reference,
                truth=truth,
                structure=structure,
            )
        )
    report = evaluate_set(items, features=features, progress=progress, **options)
    report["settings"] = _settings(
        mode="checkpoint" if checkpoint else ("random-toy" if random_weights else "packaged-toy"),
        data=str(folder),
        model=str(checkpoint)
        if checkpoint
        else (f"random {cfg.name} (seed {seed})" if random_weights else f"packaged {cfg.name}"),
        random_weights=random_weights,
        image_size=[height, width],
        steps=steps or cfg.forcing.inference_steps,
        seed=seed,
        audio_guidance=used.audio_guidance,
        context_sigma=used.context_sigma,
        truth_structure=truth_structure,
        device=str(device),
        clips=len(items),
        generation_seconds=round(wall, 2),
        saved=str(out) if out else None,
        features=features,
        **options,
    )
    report["notes"] = sorted(notes)
    return report


def _truth_structure(truth: ClipTruth, record: dict[str, Any]) -> np.ndarray:
    if truth.structure is None:
        raise InputError(
            f"dataset clip {_stem(record)} has no 'structure' array in its .npz, so it cannot drive the "
            "video; make the dataset with `flowstudio worlds make faces` or drop truth_structure"
        )
    return truth.structure


def _settings(**values: Any) -> dict[str, Any]:
    from flowstudio import __version__

    settings = {k: (str(v) if isinstance(v, os.PathLike) else v) for k, v in values.items()}
    settings.setdefault("max_offset", 5)
    settings.setdefault("speech_threshold", 0.1)
    settings.setdefault("min_speech_frames", MIN_SPEECH_FRAMES)
    settings.setdefault("identity_window", 0.2)
    settings["identity_times"] = list(IDENTITY_TIMES)
    settings["metric_versions"] = metrics.versions("avatar")
    settings["flowstudio"] = __version__
    return settings


# ------------------------------------------------------------------------------------------------
# Output


def write_report(report: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``report`` as JSON (parents created; :func:`flowstudio.metrics.results.write_results`)."""
    return write_results(report, path)


def _is_skipped(entry: Any) -> bool:
    return isinstance(entry, dict) and entry.get("status") == "skipped"


def format_value(entry: Any, *, short: bool = False) -> str:
    """One summary entry as text: ``mean ± std``, a set value, or ``skipped: reason`` (with ``short``, a
    reference-tier reason stops at the weights it needs; the JSON report has the whole sentence)."""
    if _is_skipped(entry):
        reason = str(entry["reason"])
        if short and reason.startswith("needs ") and "): " in reason:
            reason = reason.split("): ", 1)[0] + ")"
        return f"skipped: {reason}"
    if isinstance(entry, dict) and "mean" in entry:
        text = f"{entry['mean']:.4g} ± {entry['std']:.2g} (n={entry['n']})"
        return text + (f", {entry['skipped']} skipped" if entry.get("skipped") else "")
    if isinstance(entry, dict) and "value" in entry:
        return f"{entry['value']:.4g}" if isinstance(entry["value"], float) else str(entry["value"])
    return str(entry)


def report_table(report: dict[str, Any]) -> Any:
    """A rich table of the summary: metric, tier, value, unit, direction."""
    from rich.table import Table

    settings = report.get("settings", {})
    count = settings.get("clips", len(report.get("cases", [])))
    table = Table(
        title=f"avatar eval: {count} clips, {settings.get('mode', '')}",
        caption="what to provide for skipped reference metrics: see the JSON report (--out)",
    )
    table.add_column("metric")
    table.add_column("tier")
    table.add_column("value", overflow="fold")
    table.add_column("unit")
    table.add_column("better")
    declared = metrics.all_metrics()
    for name, entry in report["summary"].items():
        info = declared.get(name)
        better = (
            ""
            if info is None or info.higher_is_better is None
            else ("higher" if info.higher_is_better else "lower")
        )
        table.add_row(
            name,
            info.tier if info else "",
            format_value(entry, short=True),
            info.unit if info else "",
            better,
        )
    return table
