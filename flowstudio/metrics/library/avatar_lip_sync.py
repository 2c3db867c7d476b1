"""Lip-sync of a talking head against its driving audio (offline; definitions in
:func:`flowstudio.avatar.evaluation.metrics.lip_sync`): the best-lag correlation of mouth opening and
loudness, the
lag, the correlation at lag 0 and how much the best lag stands out; over a set, the lag that maximises
the mean correlation curve.

Below ``min_speech_frames`` speech frames the per-clip metrics are skipped: the best of 11 lagged
correlations of a few frames is high by chance (noise video from a random model reached 0.65 on 1 s
clips).
"""

from __future__ import annotations

from typing import Any

from flowstudio.avatar.evaluation.metrics import best_lag, lip_sync_from_clip
from flowstudio.metrics.inputs import Inputs
from flowstudio.metrics.registry import Measured, Metric, Skip, Value, metric, register

AVATAR = ("avatar",)
NEEDS = ("output", "audio", "fps")
MIN_SPEECH_FRAMES = 50  # 2 s of speech at 25 fps


def _sync(x: Inputs) -> Any:
    """The clip's LipSync, or the Skip that applies to all four per-clip metrics."""

    def compute() -> Any:
        audio = x["audio"]
        sync = lip_sync_from_clip(
            x["output"],
            audio.waveform,
            audio.sample_rate,
            x["fps"],
            max_offset=x.option("max_offset", 5),
            speech_threshold=x.option("speech_threshold", 0.1),
        )
        minimum = x.option("min_speech_frames", MIN_SPEECH_FRAMES)
        if sync is None:
            return Skip("the audio is silent over the clip (no speech frame), so lip-sync is undefined")
        if sync.speech_frames < minimum:
            return Skip(
                f"only {sync.speech_frames} speech frames (< {minimum}): too short for a lip-sync "
                "correlation that chance does not dominate"
            )
        x.detail("lip_sync_curve", {str(k): round(v, 4) for k, v in sync.curve.items()})
        x.detail("speech_frames", sync.speech_frames)
        return sync

    return x.cached("lip_sync", compute)


def _field(x: Inputs, name: str) -> Value:
    sync = _sync(x)
    return sync if isinstance(sync, Skip) else getattr(sync, name)


@metric(
    "lip_sync_corr",
    suites=AVATAR,
    tier="offline",
    higher_is_better=True,
    unit="r",
    version="1",
    description="Pearson r of read mouth opening and dB loudness over speech frames, at the best lag",
    needs=NEEDS,
)
def lip_sync_corr(x: Inputs) -> Value:
    return _field(x, "corr")


@metric(
    "lip_sync_offset",
    suites=AVATAR,
    tier="offline",
    higher_is_better=None,
    unit="frames",
    version="1",
    description="best lag (positive: mouth follows audio; the toy world's truth is +1)",
    needs=NEEDS,
)
def lip_sync_offset(x: Inputs) -> Value:
    value = _field(x, "offset")
    return value if isinstance(value, Skip) else int(value)


@metric(
    "lip_sync_corr_at_0",
    suites=AVATAR,
    tier="offline",
    higher_is_better=True,
    unit="r",
    version="1",
    description="the same correlation at lag 0",
    needs=NEEDS,
)
def lip_sync_corr_at_0(x: Inputs) -> Value:
    return _field(x, "corr_at_0")


@metric(
    "lip_sync_conf",
    suites=AVATAR,
    tier="offline",
    higher_is_better=True,
    unit="r",
    version="1",
    description="best-lag correlation minus the median over lags (how much the best lag stands out)",
    needs=NEEDS,
)
def lip_sync_conf(x: Inputs) -> Value:
    return _field(x, "conf")


def _curve(x: Inputs) -> dict[int, float] | None:
    sync = _sync(x)
    return None if isinstance(sync, Skip) else sync.curve


def _offset_set(curves: list[dict[int, float] | None]) -> Value:
    found = [c for c in curves if c is not None]
    lag = best_lag(found)
    if not lag:
        return Skip("no clip with speech: no lip-sync curve")
    return Measured(int(lag[0]), {"mean_corr": lag[1], "n": len(found)})


register(
    Metric(
        "lip_sync_offset_set",
        AVATAR,
        "offline",
        None,
        "frames",
        "1",
        "lag maximising the mean correlation curve over the clips",
        needs=NEEDS,
        level="set",
        collect=_curve,
        compute=_offset_set,
    )
)
