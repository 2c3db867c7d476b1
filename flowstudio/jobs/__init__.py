"""Jobs: typed requests, one ``run``, one result.

    from flowstudio.jobs import EditRequest, run

    request = EditRequest(source="bag.mp4", source_prompt="a red bag", target_prompt="a blue bag",
                          method="flowedit", steps=20, out="outputs/blue.mp4")
    result = run(request)            # writes outputs/blue.mp4, _side_by_side.mp4 and blue.json
    result.frames, result.record()   # uint8 (T, H, W, 3); the JSON record

``GenerateRequest``, ``EditRequest`` and ``AvatarRequest`` (:mod:`~flowstudio.jobs.requests`) are what
the commands accept; :func:`run` dispatches by type; :class:`JobResult` (:mod:`~flowstudio.jobs.result`)
holds the videos and provenance and writes them; presets merge only in :mod:`~flowstudio.jobs.merge`;
:mod:`~flowstudio.jobs.errors` is the one error handler of the commands. See docs/guide_jobs.md.
"""

from __future__ import annotations

import importlib
from typing import Any

# Imported on first use (PEP 562), so that `flowstudio --help` does not pay for torch and pydantic.
_EXPORTS = {
    "AvatarRequest": "requests",
    "EditRequest": "requests",
    "GenerateRequest": "requests",
    "JobRequest": "requests",
    "parse_request": "requests",
    "FlowEditOptions": "requests",
    "InjectionOptions": "requests",
    "AttentionShareOptions": "requests",
    "BlendOptions": "requests",
    "RescheduleOptions": "requests",
    "JobResult": "result",
    "run": "dispatch",
    "merge_edit_settings": "merge",
    "ProgressFn": "progress",
    "error_message": "errors",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'flowstudio.jobs' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"flowstudio.jobs.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


__all__ = sorted(_EXPORTS)
