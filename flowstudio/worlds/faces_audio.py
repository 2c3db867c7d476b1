"""Speech for the TalkingShapes world: a procedural voice (default) and optional espeak-ng.

The procedural voice needs nothing outside numpy. A clip's speech is a sequence of syllables
(an optional consonant onset and a vowel) grouped into phrases separated by pauses. Voiced sound is a
sum of harmonics of a pitch contour (declination over the clip, a rise on accented syllables, slight
vibrato) shaped by three formant resonances per vowel, smoothly interpolated between syllables;
consonants add filtered noise (fricatives) or a closure and a burst (stops). Everything is drawn from
:attr:`SpeechSpec.seed`, so the same spec gives the same samples.

Besides the waveform, :func:`synthesize_speech` returns what drives the mouth, at the audio rate:
the amplitude envelope of the voice, the viseme class of every sample (:data:`VISEMES`) and the
mouth opening target (viseme openness times the envelope). The renderer samples these at the video
frame times minus a fixed latency.

espeak-ng is used when asked for (``engine="espeak"``) and present on ``PATH``; its envelope and
visemes are estimated from the waveform (RMS and zero-crossing rate), since it gives no timing.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flowstudio.errors import InputError

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
ENGINES = ("procedural", "espeak")

#: Viseme classes, in code order (``SpeechTrack.viseme`` holds the index).
VISEMES = ("silence", "closed", "fricative", "stop", "open", "mid", "spread", "round")
#: Mouth ``(openness, width)`` of each viseme: openness in [0, 1], width relative to neutral.
VISEME_SHAPES: dict[str, tuple[float, float]] = {
    "silence": (0.0, 1.0),
    "closed": (0.0, 0.95),
    "fricative": (0.2, 1.05),
    "stop": (0.3, 1.0),
    "open": (1.0, 1.0),
    "mid": (0.65, 1.08),
    "spread": (0.4, 1.18),
    "round": (0.55, 0.75),
}
#: Vowels: formant frequencies (Hz) and viseme.
VOWELS: dict[str, tuple[tuple[float, float, float], str]] = {
    "a": ((730.0, 1090.0, 2440.0), "open"),
    "e": ((530.0, 1840.0, 2480.0), "mid"),
    "i": ((300.0, 2290.0, 3010.0), "spread"),
    "o": ((570.0, 840.0, 2410.0), "round"),
    "u": ((320.0, 870.0, 2240.0), "round"),
}
#: Consonant onsets: name -> (kind, viseme). ``""`` is a bare vowel.
ONSETS: dict[str, tuple[str, str]] = {
    "": ("none", "open"),
    "m": ("nasal", "closed"),
    "b": ("stop", "closed"),
    "p": ("stop", "closed"),
    "t": ("stop", "stop"),
    "k": ("stop", "stop"),
    "s": ("fricative", "fricative"),
    "f": ("fricative", "fricative"),
    "l": ("liquid", "stop"),
}
_ONSET_P = np.array([0.2, 0.12, 0.1, 0.08, 0.12, 0.1, 0.1, 0.06, 0.12])
_FORMANT_BW = np.array([90.0, 120.0, 180.0])
_FORMANT_GAIN = np.array([1.0, 0.55, 0.25])
_WORDS = (
    "hello", "there", "we", "are", "talking", "about", "shapes", "and", "colors", "today", "the",
    "weather", "is", "fine", "please", "look", "at", "the", "bright", "red", "ball", "on", "the", "table",
    "it", "moves", "slowly", "to", "the", "left",
)  # fmt: skip


@dataclass(frozen=True)
class SpeechSpec:
    """Everything that defines a clip's speech.

    Attributes:
        seed: draws the syllables, pauses, accents and noise.
        pitch: mean fundamental frequency, Hz (85-260).
        rate: syllables per second while speaking (2.5-6).
        pause: mean extra pause between phrases, seconds (0.05-1).
        brightness: formant scale (0.85-1.25; higher sounds smaller/younger).
        breathiness: aspiration noise mixed into voiced sound (0-0.5).
        engine: ``"procedural"`` or ``"espeak"`` (needs the ``espeak-ng`` binary).
        text: what espeak-ng says; ``None`` draws a sentence from ``seed``. Ignored by the
            procedural voice.
        voice: espeak-ng voice name.
    """

    seed: int = 0
    pitch: float = 140.0
    rate: float = 4.0
    pause: float = 0.35
    brightness: float = 1.0
    breathiness: float = 0.1
    engine: str = "procedural"
    text: str | None = None
    voice: str = "en"

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise InputError(f"SpeechSpec.seed must be an integer in [0, 2**63), got {self.seed!r}")
        for name, low, high in (
            ("pitch", 85.0, 260.0),
            ("rate", 2.5, 6.0),
            ("pause", 0.05, 1.0),
            ("brightness", 0.85, 1.25),
            ("breathiness", 0.0, 0.5),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
                raise InputError(f"SpeechSpec.{name} must be a number in [{low}, {high}], got {value!r}")
        if self.engine not in ENGINES:
            raise InputError(f"SpeechSpec.engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict; :meth:`from_dict` inverts it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpeechSpec:
        """Build from :meth:`to_dict` output; unknown keys raise :class:`InputError`."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"unknown SpeechSpec fields {unknown}; known: {sorted(known)}")
        return cls(**data)


def random_speech(rng: np.random.Generator, engine: str = "procedural") -> SpeechSpec:
    """A speech spec with every parameter drawn in its range (voices from low to high)."""
    return SpeechSpec(
        seed=int(rng.integers(2**31)),
        pitch=round(float(rng.uniform(90.0, 240.0)), 2),
        rate=round(float(rng.uniform(3.0, 5.5)), 3),
        pause=round(float(rng.uniform(0.15, 0.6)), 3),
        brightness=round(float(rng.uniform(0.9, 1.2)), 3),
        breathiness=round(float(rng.uniform(0.02, 0.25)), 3),
        engine=engine,
    )


@dataclass(frozen=True)
class SpeechTrack:
    """Synthesised speech and what drives the mouth, all at ``sample_rate``.

    Attributes:
        waveform: float32 ``(N,)`` in ``[-1, 1]``.
        sample_rate: Hz.
        envelope: float32 ``(N,)`` in ``[0, 1]``: amplitude envelope of the voice (0 in pauses).
        mouth: float32 ``(N,)`` in ``[0, 1]``: mouth opening target (viseme openness x envelope),
            smoothed over 30 ms.
        width: float32 ``(N,)``: mouth width factor of the viseme (1 neutral), smoothed.
        viseme: int8 ``(N,)``: index into :data:`VISEMES`.
        syllables: ``(start_s, end_s, onset, vowel, accent)`` per syllable (empty for espeak-ng).
        text: the text spoken (espeak-ng) or the syllables joined (procedural).
    """

    waveform: np.ndarray
    sample_rate: int
    envelope: np.ndarray
    mouth: np.ndarray
    width: np.ndarray
    viseme: np.ndarray
    syllables: tuple[tuple[float, float, str, str, float], ...] = ()
    text: str = ""

    @property
    def seconds(self) -> float:
        return len(self.waveform) / self.sample_rate

    def at(self, times: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Linear interpolation of a per-sample array at ``times`` (seconds; 0 outside the track)."""
        grid = np.arange(len(values)) / self.sample_rate
        return np.interp(times, grid, values, left=0.0, right=0.0).astype(np.float32)

    def loudness(self, times: np.ndarray, window: float = 0.04) -> np.ndarray:
        """RMS of the waveform in a ``window``-second window centred at each time, float32."""
        half = max(1, int(round(window * self.sample_rate / 2)))
        squared = np.concatenate([[0.0], np.cumsum(self.waveform.astype(np.float64) ** 2)])
        centre = np.round(np.asarray(times) * self.sample_rate).astype(np.int64)
        lo = np.clip(centre - half, 0, len(self.waveform))
        hi = np.clip(centre + half, 0, len(self.waveform))
        energy = (squared[hi] - squared[lo]) / np.maximum(hi - lo, 1)
        return np.sqrt(np.maximum(energy, 0.0)).astype(np.float32)


def _smooth(values: np.ndarray, samples: int) -> np.ndarray:
    """Centred moving average (no delay) over ``samples`` samples."""
    if samples <= 1:
        return values
    kernel = np.ones(samples) / samples
    return np.convolve(values, kernel, mode="same")


def synthesize_speech(speech: SpeechSpec, seconds: float, sample_rate: int = SAMPLE_RATE) -> SpeechTrack:
    """Speech of ``seconds`` seconds for ``speech`` (procedural, or espeak-ng when its engine says so).

    Raises:
        InputError: ``seconds`` or ``sample_rate`` is invalid, or espeak-ng was asked for and is absent.
    """
    if not isinstance(speech, SpeechSpec):
        raise InputError(f"speech must be a SpeechSpec, got {type(speech).__name__}")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0.2 <= seconds <= 3600:
        raise InputError(f"seconds must be a number from 0.2 to 3600, got {seconds!r}")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or not 8000 <= sample_rate <= 48000:
        raise InputError(f"sample_rate must be an integer from 8000 to 48000 Hz, got {sample_rate!r}")
    if speech.engine == "espeak":
        return synthesize_espeak(speech, seconds, sample_rate)
    return _procedural(speech, float(seconds), sample_rate)


def _schedule(
    speech: SpeechSpec, seconds: float, rng: np.random.Generator
) -> list[tuple[float, float, str, str, float]]:
    """Syllables ``(start, end, onset, vowel, accent)`` grouped in phrases with pauses."""
    onsets, vowels = list(ONSETS), list(VOWELS)
    syllables: list[tuple[float, float, str, str, float]] = []
    pos = float(rng.uniform(0.1, 0.4))
    while pos < seconds - 0.2:
        for _ in range(int(rng.integers(2, 9))):
            duration = float(rng.uniform(0.7, 1.3)) / speech.rate
            if pos + duration > seconds - 0.05:
                break
            onset = onsets[int(rng.choice(len(onsets), p=_ONSET_P))]
            vowel = vowels[int(rng.integers(len(vowels)))]
            accent = 1.0 if rng.random() < 0.3 else float(rng.uniform(0.55, 0.85))
            syllables.append((pos, pos + duration, onset, vowel, accent))
            pos += duration
        pos += 0.1 + float(rng.exponential(speech.pause))
    return syllables


def _procedural(speech: SpeechSpec, seconds: float, sample_rate: int) -> SpeechTrack:
    rng = np.random.default_rng([speech.seed, 11])
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    syllables = _schedule(speech, seconds, rng)

    voiced_env = np.zeros(n)  # amplitude of voiced sound
    noise_env = np.zeros(n)  # amplitude of noise (fricatives, bursts)
    nucleus = np.zeros(n)  # vowel window without accent, drives the mouth
    accent_curve = np.zeros(n)
    openness = np.zeros(n)
    width = np.ones(n)
    viseme = np.zeros(n, dtype=np.int8)
    formants = np.zeros((3, n))
    last = np.array(VOWELS["e"][0])
    formants[:] = last[:, None]
    for start, end, onset, vowel, accent in syllables:
        kind, onset_viseme = ONSETS[onset]
        a, b = int(start * sample_rate), min(n, int(end * sample_rate))
        split = a if kind == "none" else a + int(0.28 * (b - a))
        tau = (np.arange(split, b) - split) / max(1, b - split)
        window = np.sin(np.pi * np.clip(tau, 0, 1)) ** 0.6
        nucleus[split:b] = window
        voiced_env[split:b] = window * accent
        accent_curve[a:b] = accent
        vowel_formants, vowel_viseme = VOWELS[vowel]
        formants[:, a:] = np.asarray(vowel_formants)[:, None]
        open_v, width_v = VISEME_SHAPES[vowel_viseme]
        openness[split:b], width[split:b] = open_v, width_v
        viseme[split:b] = VISEMES.index(vowel_viseme)
        if split > a:
            open_c, width_c = VISEME_SHAPES[onset_viseme]
            openness[a:split], width[a:split] = open_c, width_c
            viseme[a:split] = VISEMES.index(onset_viseme)
            ramp = np.sin(np.pi * np.linspace(0, 1, split - a))
            if kind == "fricative":
                noise_env[a:split] = 0.35 * accent * ramp
            elif kind == "stop":
                burst = min(split - a, int(0.015 * sample_rate))
                noise_env[split - burst : split] = 0.6 * accent
            elif kind in ("nasal", "liquid"):
                voiced_env[a:split] = (0.25 if kind == "nasal" else 0.4) * accent * ramp
    formants = np.stack([_smooth(f, int(0.03 * sample_rate)) for f in formants]) * speech.brightness
    # Pitch: declination, accents, slow vibrato.
    accent_s = _smooth(accent_curve, int(0.08 * sample_rate))
    vibrato = 0.015 * np.sin(2 * np.pi * 5.0 * t + float(rng.uniform(0, 2 * np.pi)))
    f0 = speech.pitch * (1.06 - 0.12 * t / seconds) * (1 + 0.18 * (accent_s - 0.7) + vibrato)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    voiced = np.zeros(n)
    for k in range(1, int(min(40, 0.45 * sample_rate / (0.8 * speech.pitch))) + 1):
        freq = k * f0
        gain = np.zeros(n)
        for j in range(3):
            gain += _FORMANT_GAIN[j] / (1 + ((freq - formants[j]) / _FORMANT_BW[j]) ** 2)
        voiced += (gain / k**0.7) * np.sin(k * phase) * (freq < 0.45 * sample_rate)
    voiced /= max(
        1e-6, float(np.sqrt(np.mean(voiced[voiced_env > 0.3] ** 2))) if np.any(voiced_env > 0.3) else 1.0
    )
    white = rng.standard_normal(n)
    hiss = np.diff(white, prepend=0.0) * 0.5  # high-passed: fricative-like
    voice = voiced * voiced_env * (1 + speech.breathiness * white * 0.5) + hiss * noise_env
    peak = float(np.max(np.abs(voice))) if n else 0.0
    waveform = (voice * (0.85 / peak if peak > 0 else 1.0)).astype(np.float32)

    smooth = int(0.03 * sample_rate)
    mouth = np.clip(_smooth(openness * np.sqrt(nucleus) * (0.7 + 0.3 * accent_curve), smooth), 0, 1)
    text = " ".join(f"{onset}{vowel}" for _, _, onset, vowel, _ in syllables)
    return SpeechTrack(
        waveform=waveform,
        sample_rate=sample_rate,
        envelope=np.clip(voiced_env + noise_env, 0, 1).astype(np.float32),
        mouth=mouth.astype(np.float32),
        width=_smooth(width, smooth).astype(np.float32),
        viseme=viseme,
        syllables=tuple(syllables),
        text=text,
    )


# ------------------------------------------------------------------------------------------------
# espeak-ng


def espeak_binary() -> str | None:
    """Path of the ``espeak-ng`` binary, or ``None`` when it is not on ``PATH``."""
    return shutil.which("espeak-ng")


def espeak_available() -> bool:
    """Whether espeak-ng text-to-speech can be used (the binary is on ``PATH``)."""
    return espeak_binary() is not None


def _sentence(seed: int) -> str:
    rng = np.random.default_rng([seed, 13])
    return " ".join(_WORDS[int(i)] for i in rng.integers(len(_WORDS), size=int(rng.integers(6, 14))))


def synthesize_espeak(speech: SpeechSpec, seconds: float, sample_rate: int = SAMPLE_RATE) -> SpeechTrack:
    """Speak ``speech.text`` (or a sentence drawn from its seed) with espeak-ng, fit to ``seconds``.

    The speaking rate and pitch come from ``speech.rate`` and ``speech.pitch``. Envelope, mouth and
    visemes are estimated from the waveform: 20 ms RMS, and the zero-crossing rate to tell
    fricatives from vowels.

    Raises:
        InputError: espeak-ng is not installed, or it failed.
    """
    binary = espeak_binary()
    if binary is None:
        raise InputError(
            "espeak-ng is not installed (no 'espeak-ng' on PATH); install it (e.g. apt-get install "
            "espeak-ng) or use the procedural voice (engine='procedural')"
        )
    text = speech.text or _sentence(speech.seed)
    words_per_minute = int(round(speech.rate * 60 / 1.5))
    pitch = int(np.clip((speech.pitch - 85) / (260 - 85) * 99, 0, 99))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "speech.wav"
        command = [
            binary,
            "-v",
            speech.voice,
            "-s",
            str(words_per_minute),
            "-p",
            str(pitch),
            "-w",
            str(path),
            text,
        ]
        try:
            subprocess.run(command, check=True, capture_output=True, timeout=60)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as err:
            raise InputError(f"espeak-ng failed on voice {speech.voice!r}: {err}") from err
        with wave.open(str(path), "rb") as wav:
            rate, width, channels = wav.getframerate(), wav.getsampwidth(), wav.getnchannels()
            raw = wav.readframes(wav.getnframes())
    if width != 2:
        raise InputError(f"espeak-ng wrote {8 * width}-bit audio; expected 16-bit PCM")
    audio = np.frombuffer(raw, dtype="<i2").astype(np.float64).reshape(-1, channels).mean(axis=1) / 32768.0
    n = int(round(seconds * sample_rate))
    grid = np.arange(int(len(audio) * sample_rate / rate)) / sample_rate
    audio = np.interp(grid, np.arange(len(audio)) / rate, audio)
    lead = int(0.2 * sample_rate)
    waveform = np.zeros(n)
    take = max(0, min(n - lead, len(audio)))
    waveform[lead : lead + take] = audio[:take]
    if take < len(audio):
        logger.info("espeak-ng speech (%.2f s) cut to the clip (%.2f s)", len(audio) / sample_rate, seconds)
    peak = float(np.max(np.abs(waveform)))
    if peak > 0:
        waveform *= 0.85 / peak
    hop = int(0.02 * sample_rate)
    frames = len(waveform) // hop + 1
    padded = np.pad(waveform, (0, frames * hop - len(waveform)))
    blocks = padded.reshape(frames, hop)
    rms = np.sqrt(np.mean(blocks**2, axis=1))
    zcr = np.mean(np.abs(np.diff(np.sign(blocks), axis=1)) > 0, axis=1)
    centres = (np.arange(frames) + 0.5) * hop
    samples = np.arange(n)
    envelope = np.clip(np.interp(samples, centres, rms / max(float(rms.max()), 1e-9)), 0, 1)
    fricative = np.interp(samples, centres, (zcr > 0.3).astype(float)) > 0.5
    voiced = envelope > 0.08
    viseme = np.where(voiced, VISEMES.index("mid"), VISEMES.index("silence")).astype(np.int8)
    viseme[voiced & fricative] = VISEMES.index("fricative")
    openness = np.array([VISEME_SHAPES[name][0] for name in VISEMES])[viseme]
    smooth = int(0.03 * sample_rate)
    mouth = np.clip(_smooth(np.sqrt(envelope) * openness / 0.65, smooth), 0, 1)
    return SpeechTrack(
        waveform=waveform.astype(np.float32),
        sample_rate=sample_rate,
        envelope=envelope.astype(np.float32),
        mouth=mouth.astype(np.float32),
        width=np.ones(n, dtype=np.float32),
        viseme=viseme,
        text=text,
    )


def frame_times(num_frames: int, fps: float) -> np.ndarray:
    """Time in seconds of each video frame (frame ``i`` at ``i / fps``)."""
    return np.arange(num_frames) / float(fps)


def num_frames_for(seconds: float, fps: float) -> int:
    """Frames covering ``seconds`` at ``fps`` (rounded)."""
    return max(1, int(math.floor(seconds * fps + 0.5)))
