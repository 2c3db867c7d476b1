"""Tests of flowstudio.video: PyAV read/write, errors, 4k+1 / multiple-of-32 normalisation, tensors."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from flowstudio import video
from flowstudio.errors import InputError, VideoError
from flowstudio.video import (
    NormalizeReport,
    frames_to_tensor,
    is_valid_frame_count,
    nearest_valid_frame_count,
    normalize_clip,
    read_video,
    tensor_to_frames,
    undo_padding,
    write_video,
)


def smooth_clip(frames: int = 17, height: int = 64, width: int = 96) -> np.ndarray:
    """Moving colour gradients: smooth enough for H.264 to keep well above 30 dB."""
    t, y, x = np.meshgrid(np.arange(frames), np.arange(height), np.arange(width), indexing="ij")
    red = 128 + 100 * np.sin(2 * np.pi * (x / width + t / frames))
    green = 128 + 100 * np.cos(2 * np.pi * (y / height - t / (2 * frames)))
    blue = 60 + 120 * (x + y) / (width + height)
    return np.stack([red, green, blue], axis=-1).round().astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def encode_with_pyav(
    path: Path, codec: str, frames: np.ndarray, fps: int, pix_fmt: str, rotation: int = 0
) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = pix_fmt
        if rotation:
            stream.set_display_rotation(rotation)
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def require_codec(name: str) -> None:
    try:
        av.codec.Codec(name, "w")
    except Exception:  # noqa: BLE001 - any failure means the wheel lacks it
        pytest.skip(f"this PyAV wheel has no {name} encoder, so no test file can be made")


# ------------------------------------------------------------------------------------------ write/read


def test_mp4_round_trip_keeps_count_size_fps_and_quality(tmp_path: Path) -> None:
    frames = smooth_clip()
    out = write_video(tmp_path / "clip.mp4", frames, fps=12)
    clip = read_video(out)
    assert clip.frames.shape == frames.shape and clip.frames.dtype == np.uint8
    assert clip.fps == pytest.approx(12.0)
    assert clip.path == out and clip.audio is None
    assert psnr(clip.frames, frames) > 30.0, f"PSNR {psnr(clip.frames, frames):.1f} dB"
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.format.name == "yuv420p"


def test_fractional_fps_and_max_frames(tmp_path: Path) -> None:
    out = write_video(tmp_path / "ntsc.mp4", smooth_clip(9, 32, 32), fps=30000 / 1001)
    clip = read_video(out, max_frames=5)
    assert clip.num_frames == 5
    assert clip.fps == pytest.approx(30000 / 1001, rel=1e-4)


def test_mp4_with_audio_is_muxed_with_right_duration(tmp_path: Path) -> None:
    rate, seconds = 44100, 1.0
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(int(rate * seconds)) / rate).astype(np.float32)
    out = write_video(
        tmp_path / "av.mp4", smooth_clip(12, 32, 32), fps=12, audio=np.stack([tone, tone]), audio_rate=rate
    )
    with av.open(str(out)) as container:
        assert len(container.streams.audio) == 1
        stream = container.streams.audio[0]
        assert stream.codec_context.name == "aac" and stream.channels == 2 and stream.rate == rate
        assert float(stream.duration * stream.time_base) == pytest.approx(seconds, abs=0.05)
    clip = read_video(out, with_audio=True)
    assert clip.audio_rate == rate and clip.audio.shape[0] == 2
    assert clip.audio.shape[1] / rate == pytest.approx(seconds, abs=0.05)
    # the 440 Hz tone survives AAC: its RMS stays near 0.3 / sqrt(2)
    assert np.sqrt(np.mean(clip.audio[0, 4096:-4096] ** 2)) == pytest.approx(0.3 / np.sqrt(2), rel=0.1)


def test_mono_audio_at_rate_aac_lacks_is_resampled(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, 22000).astype(np.float32)  # 1 s at 22 kHz
    out = write_video(tmp_path / "mono.mp4", smooth_clip(8, 32, 32), fps=8, audio=noise, audio_rate=22000)
    with av.open(str(out)) as container:
        stream = container.streams.audio[0]
        assert stream.channels == 1 and stream.rate == 48000
        assert float(stream.duration * stream.time_base) == pytest.approx(1.0, abs=0.05)


def test_gif_is_read(tmp_path: Path) -> None:
    require_codec("gif")
    frames = np.zeros((6, 40, 48, 3), np.uint8)
    frames[:, :, :24] = 255  # left half white, one flat colour each side survives the palette
    frames[np.arange(6) % 2 == 1, :20] = (255, 0, 0)
    encode_with_pyav(tmp_path / "anim.gif", "gif", frames, fps=10, pix_fmt="rgb8")
    clip = read_video(tmp_path / "anim.gif")
    assert clip.frames.shape == (6, 40, 48, 3)
    assert clip.fps == pytest.approx(10, rel=0.05)
    assert np.abs(clip.frames.astype(int) - frames).mean() < 3


@pytest.mark.parametrize("codec", ["libvpx-vp9", "libvpx"])
def test_webm_is_read(tmp_path: Path, codec: str) -> None:
    require_codec(codec)
    frames = smooth_clip(5, 32, 48)
    encode_with_pyav(tmp_path / "clip.webm", codec, frames, fps=8, pix_fmt="yuv420p")
    clip = read_video(tmp_path / "clip.webm")
    assert clip.frames.shape == frames.shape and clip.fps == pytest.approx(8)
    assert psnr(clip.frames, frames) > 25.0


def test_display_rotation_is_applied(tmp_path: Path) -> None:
    frames = np.zeros((3, 32, 64, 3), np.uint8)
    frames[:, :16, :32] = 255  # white top-left quarter
    encode_with_pyav(tmp_path / "phone.mp4", "libx264", frames, fps=10, pix_fmt="yuv420p", rotation=90)
    upright = read_video(tmp_path / "phone.mp4")
    assert upright.frames.shape == (3, 64, 32, 3)  # 90 degrees counter-clockwise: white goes bottom-left
    assert upright.frames[0, 40:, :16].mean() > 200 and upright.frames[0, :24].mean() < 50
    assert read_video(tmp_path / "phone.mp4", autorotate=False).frames.shape == (3, 32, 64, 3)


def test_image_folder_in_natural_order(tmp_path: Path) -> None:
    for index in (10, 2, 1):
        Image.fromarray(np.full((16, 24, 3), index * 20, np.uint8)).save(tmp_path / f"frame_{index}.png")
    (tmp_path / "notes.txt").write_text("not a frame")
    clip = read_video(tmp_path)
    assert clip.frames[:, 0, 0, 0].tolist() == [20, 40, 200]  # frame_1, frame_2, frame_10
    assert clip.fps == 16.0 and clip.frames.shape == (3, 16, 24, 3)
    assert read_video(tmp_path, fps=24).fps == 24.0


def test_odd_size_is_padded_or_refused(tmp_path: Path) -> None:
    frames = smooth_clip(5, 33, 47)
    clip = read_video(write_video(tmp_path / "odd.mp4", frames, fps=8))
    assert clip.frames.shape == (5, 34, 48, 3)
    with pytest.raises(InputError, match="even height and width"):
        write_video(tmp_path / "odd2.mp4", frames, fps=8, odd_size="error")


# ------------------------------------------------------------------------------------------ errors


def test_corrupt_file_names_path_and_fix(tmp_path: Path) -> None:
    path = tmp_path / "noise.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(VideoError, match="re-encode") as err:
        read_video(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("empty.mp4", b"", "empty"),
        ("notes.mov", b"hello, this is a text file and not a movie\n" * 20, "not a video"),
        ("notes.txt", b"text", "unsupported file type"),
    ],
)
def test_bad_files_raise_video_error(tmp_path: Path, name: str, content: bytes, expected: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(VideoError, match=expected) as err:
        read_video(path)
    assert str(path) in str(err.value)


def test_missing_path_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="no such file") as err:
        read_video(tmp_path / "nowhere.mp4")
    assert "nowhere.mp4" in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoError, match="no images"):
        read_video(tmp_path / "empty")


def test_video_with_zero_frames(tmp_path: Path) -> None:
    # an mp4 whose header promises frames but whose data stops right after the mdat box header
    data = write_video(tmp_path / "full.mp4", smooth_clip(5, 32, 32), fps=8).read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: data.index(b"mdat") + 4])
    with pytest.raises(VideoError, match="zero decodable frames") as err:
        read_video(truncated)
    assert str(truncated) in str(err.value)
    # a container written with a video stream but no frame at all: the muxer drops the empty track
    empty = tmp_path / "empty_track.mp4"
    with av.open(str(empty), "w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        container.start_encoding()
    with pytest.raises(VideoError, match="no video stream"):
        read_video(empty)


@pytest.mark.parametrize(
    ("frames", "match"),
    [
        (np.zeros((4, 32, 32, 3), np.float32), "uint8"),
        (np.zeros((32, 32, 3), np.uint8), r"\(frames, height, width, 3\)"),
        (np.zeros((4, 32, 32, 4), np.uint8), r"\(frames, height, width, 3\)"),
        (torch.zeros(4, 32, 32, 3, dtype=torch.uint8), "tensor_to_frames"),
    ],
)
def test_write_rejects_bad_frames(tmp_path: Path, frames: object, match: str) -> None:
    with pytest.raises(InputError, match=match):
        write_video(tmp_path / "bad.mp4", frames, fps=8)
    assert list(tmp_path.iterdir()) == []


def test_write_rejects_bad_audio_and_options(tmp_path: Path) -> None:
    frames = smooth_clip(5, 32, 32)
    with pytest.raises(InputError, match="audio_rate"):
        write_video(tmp_path / "a.mp4", frames, 8, audio=np.zeros(100, np.float32))
    with pytest.raises(InputError, match=r"audio\.T"):
        write_video(tmp_path / "a.mp4", frames, 8, audio=np.zeros((800, 2), np.float32), audio_rate=8000)
    with pytest.raises(InputError, match="fps"):
        write_video(tmp_path / "a.mp4", frames, 0)
    with pytest.raises(InputError, match=r"\.mp4"):
        write_video(tmp_path / "a.avi", frames, 8)
    assert list(tmp_path.iterdir()) == []


def test_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out.mp4"
    target.write_bytes(b"previous good video")
    real_rgb_frame = video._rgb_frame

    def fail_on_third(image: np.ndarray, index: int) -> av.VideoFrame:
        if index == 3:
            raise RuntimeError("simulated encoder crash")
        return real_rgb_frame(image, index)

    monkeypatch.setattr(video, "_rgb_frame", fail_on_third)
    with pytest.raises(RuntimeError, match="simulated"):
        write_video(target, smooth_clip(9, 32, 32), fps=8)
    with pytest.raises(RuntimeError, match="simulated"):
        write_video(tmp_path / "new.mp4", smooth_clip(9, 32, 32), fps=8)
    assert target.read_bytes() == b"previous good video"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]  # no temp file, no partial new.mp4


# ------------------------------------------------------------------------------------------ normalise


@pytest.mark.parametrize(
    ("n", "down", "up", "nearest"),
    [(1, 1, 1, 1), (2, 1, 5, 1), (3, 1, 5, 5), (17, 17, 17, 17), (18, 17, 21, 17), (20, 17, 21, 21)],
)
def test_frame_count_rounding(n: int, down: int, up: int, nearest: int) -> None:
    assert is_valid_frame_count(n) == (n == down)
    assert nearest_valid_frame_count(n, "down") == down
    assert nearest_valid_frame_count(n, "up") == up
    assert nearest_valid_frame_count(n, "nearest") == nearest
    assert all(is_valid_frame_count(v) for v in (down, up, nearest))


@pytest.mark.parametrize(("frame_policy", "frames_out"), [("trim", 17), ("pad", 21), ("resample", 17)])
@pytest.mark.parametrize(
    ("size_policy", "size_out"), [("crop", (128, 224)), ("pad", (160, 256)), ("resize", (128, 256))]
)
def test_each_policy_gives_valid_shape_and_report(
    frame_policy: str, frames_out: int, size_policy: str, size_out: tuple[int, int]
) -> None:
    frames = np.random.default_rng(1).integers(0, 256, (18, 130, 250, 3), dtype=np.uint8)
    out, report = normalize_clip(frames, frame_policy=frame_policy, size_policy=size_policy)
    assert out.shape == (frames_out, *size_out, 3) and out.dtype == np.uint8
    assert is_valid_frame_count(out.shape[0]) and out.shape[1] % 32 == 0 and out.shape[2] % 32 == 0
    assert isinstance(report, NormalizeReport) and report.changed
    assert report.original_shape == (18, 130, 250) and report.shape == out.shape[:3]
    assert f"frames 18 -> {frames_out} ({frame_policy}" in report.describe()
    assert f"size 130x250 -> {size_out[0]}x{size_out[1]} (" in report.describe()
    # each output frame is the recorded source frame (checked where pixels are untouched)
    if size_policy == "crop":
        top, _, left, _ = report.crop
        expected = frames[list(report.frame_indices), top : top + size_out[0], left : left + size_out[1]]
        np.testing.assert_array_equal(out, expected)


def test_describe_matches_documented_example() -> None:
    frames = np.zeros((18, 130, 250, 3), np.uint8)
    _, report = normalize_clip(frames, frame_policy="trim", size_policy="resize")
    assert report.describe() == "frames 18 -> 17 (trim 1 trailing frame); size 130x250 -> 128x256 (resize)"


def test_resample_keeps_first_and_last_and_duration() -> None:
    frames = np.arange(6, dtype=np.uint8)[:, None, None, None].repeat(32, 1).repeat(32, 2).repeat(3, 3)
    out, report = normalize_clip(frames, frame_policy="resample", size_policy="crop")
    assert report.frame_indices == (0, 1, 3, 4, 5)  # round(i * (6 - 1) / (5 - 1)), halves up
    assert out[:, 0, 0, 0].tolist() == [0, 1, 3, 4, 5]
    assert report.adjusted_fps(24.0) == pytest.approx(20.0)  # 6 frames at 24 fps == 5 frames at 20 fps
    # 3 frames are as far from 1 as from 5: the tie goes up, so no frame is lost
    up, report = normalize_clip(frames[:3], frame_policy="resample", size_policy="crop")
    assert report.frame_indices == (0, 1, 1, 2, 2) and up.shape[0] == 5


@pytest.mark.parametrize("pad_mode", ["edge", "reflect", "constant"])
def test_pad_then_undo_padding_is_bit_exact(pad_mode: str) -> None:
    frames = np.random.default_rng(2).integers(0, 256, (6, 45, 70, 3), dtype=np.uint8)
    padded, report = normalize_clip(
        frames, frame_policy="pad", size_policy="pad", pad_mode=pad_mode, pad_value=7
    )
    assert padded.shape == (9, 64, 96, 3) and report.pad == (9, 10, 13, 13)
    assert "pad: repeat last frame 3 times" in report.describe()
    if pad_mode == "constant":
        assert (padded[:, :9] == 7).all()
    np.testing.assert_array_equal(undo_padding(padded, report), frames)
    assert undo_padding(padded, report, trim_frames=False).shape == (9, 45, 70, 3)
    with pytest.raises(InputError, match="report is for"):
        undo_padding(padded[:, :32], report)


def test_valid_clip_is_unchanged() -> None:
    frames = smooth_clip(17, 64, 96)
    for frame_policy in ("trim", "pad", "resample"):
        for size_policy in ("crop", "pad", "resize"):
            out, report = normalize_clip(frames, frame_policy=frame_policy, size_policy=size_policy)
            assert out is frames and not report.changed
            assert report.describe() == "frames 17 (unchanged); size 64x96 (unchanged)"


def test_targets_are_exact_and_checked() -> None:
    frames = smooth_clip(20, 100, 140)
    out, report = normalize_clip(
        frames, frame_policy="resample", size_policy="resize", target_frames=9, target_size=(64, 128)
    )
    assert out.shape == (9, 64, 128, 3) and report.shape == (9, 64, 128)
    out, _ = normalize_clip(
        frames, frame_policy="trim", size_policy="crop", target_frames=13, target_size=(96, 96)
    )
    np.testing.assert_array_equal(out, frames[:13, 2:98, 22:118])
    with pytest.raises(InputError, match="4k\\+1"):
        normalize_clip(frames, frame_policy="trim", size_policy="crop", target_frames=10)
    with pytest.raises(InputError, match="cannot grow"):
        normalize_clip(frames, frame_policy="trim", size_policy="crop", target_frames=21)
    with pytest.raises(InputError, match="cannot shrink"):
        normalize_clip(frames, frame_policy="pad", size_policy="pad", target_size=(64, 160))
    with pytest.raises(InputError, match="multiples of 32"):
        normalize_clip(frames, frame_policy="pad", size_policy="resize", target_size=(100, 128))
    with pytest.raises(InputError, match="smaller than 32"):
        normalize_clip(frames[:, :20], frame_policy="trim", size_policy="crop")
    with pytest.raises(InputError, match="frame_policy"):
        normalize_clip(frames, frame_policy="drop", size_policy="crop")  # type: ignore[arg-type]


def test_resize_uses_area_average() -> None:
    frames = np.zeros((1, 64, 64, 3), np.uint8)
    frames[:, ::2] = 200  # stripes average to 100 when halved by area
    out, _ = normalize_clip(frames, frame_policy="trim", size_policy="resize", target_size=(32, 32))
    assert np.abs(out.astype(int) - 100).max() <= 1


# ------------------------------------------------------------------------------------------ tensors


def test_frames_tensor_round_trip_is_exact() -> None:
    frames = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=3).repeat(2, axis=0)
    frames[1] = 255 - frames[1]
    tensor = frames_to_tensor(frames)
    assert tensor.shape == (1, 3, 2, 16, 16) and tensor.dtype == torch.float32
    assert tensor.min().item() == -1.0 and tensor.max().item() == 1.0
    assert tensor[0, :, 0, 0, 0].tolist() == [-1.0, -1.0, -1.0]
    np.testing.assert_array_equal(tensor_to_frames(tensor), frames)
    np.testing.assert_array_equal(tensor_to_frames(tensor[0]), frames)


def test_read_only_frames_convert_without_a_warning() -> None:
    """Decoded and memory-mapped clips are read-only; torch warns on wrapping such memory (make demo did)."""
    import warnings

    frames = np.full((2, 8, 8, 3), 255, np.uint8)
    frames.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tensor = frames_to_tensor(frames)
    assert tensor.max().item() == 1.0 and not frames.flags.writeable


def test_tensor_to_frames_clamps_and_checks() -> None:
    tensor = torch.tensor([-3.0, -1.0, 0.0, 1.0, 4.0]).reshape(1, 1, 5, 1, 1).expand(1, 3, 5, 1, 1)
    assert tensor_to_frames(tensor)[:, 0, 0, 0].tolist() == [0, 0, 128, 255, 255]
    with pytest.raises(InputError, match="batch of 2"):
        tensor_to_frames(torch.zeros(2, 3, 1, 4, 4))
    with pytest.raises(InputError, match="NaN"):
        tensor_to_frames(torch.full((3, 1, 4, 4), float("nan")))
    with pytest.raises(InputError, match="uint8"):
        frames_to_tensor(np.zeros((1, 4, 4, 3), np.float32))


def test_fraction_fps_is_accepted(tmp_path: Path) -> None:
    out = write_video(tmp_path / "f.mp4", smooth_clip(5, 32, 32), fps=Fraction(25, 2))
    assert read_video(out).fps == pytest.approx(12.5)


def test_written_mp4_bytes_do_not_depend_on_the_cpus_available(tmp_path):
    """x264 sizes its threads by the CPUs it may use unless told; the bytes then differ by machine
    (seen: 1 vs 2 cores gave other files and decoded pixels). write_video fixes the thread count."""
    import os
    import subprocess
    import sys

    code = (
        "import os, sys, numpy as np\n"
        "from flowstudio.video import write_video\n"
        "if sys.argv[2] == 'one': os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
        "rng = np.random.default_rng(0)\n"
        "write_video(sys.argv[1], (rng.random((17, 128, 128, 3)) * 255).astype(np.uint8), fps=16)\n"
    )
    paths = {}
    for cpus in ("one", "all"):
        paths[cpus] = tmp_path / f"{cpus}.mp4"
        subprocess.run(
            [sys.executable, "-c", code, str(paths[cpus]), cpus],
            check=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
    assert paths["one"].read_bytes() == paths["all"].read_bytes()
