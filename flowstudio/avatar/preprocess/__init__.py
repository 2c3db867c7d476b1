"""``flowstudio avatar preprocess IN OUT``: talking-head videos -> DualForce training data.

| step | module | what |
|---|---|---|
| 1 probe and filter | ``media.probe`` | header checks; refusals counted by reason |
| 2 shot cuts | ``data.shots`` | PySceneDetect ContentDetector; shots shorter than min_seconds dropped |
| 3 faces | ``detect``, ``track`` | MediaPipe (or the toy's true box, named), tracking, square crops |
| 4 rates | ``media.decode`` | 25 fps video, 16 kHz mono audio (PyAV) |
| 5 sync | ``sync`` | mouth signal vs loudness correlation, offset trimmed, weak sync refused |
| 6 features | ``features``, ``liveportrait`` | HuBERT / log-mel audio, LivePortrait or toy structure |
| 7 latents, manifest | ``features``, ``manifest`` | toy-codec latents, manifest, identity splits, report |

``pipeline.preprocess`` runs it, resumably, in-process or on Ray. See docs/guide_avatar.md.
"""

from flowstudio.avatar.preprocess.config import PreprocessConfig
from flowstudio.avatar.preprocess.pipeline import preprocess, process_clip

__all__ = ["PreprocessConfig", "preprocess", "process_clip"]
