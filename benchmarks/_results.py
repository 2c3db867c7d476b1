"""What every benchmark writes beside its figures: the machine it ran on, and its result files.

A benchmark's result is ``benchmarks/results/<tag>.json`` (settings, machine, rows) and ``<tag>.md``
(the table a person reads); this module keeps the two files and the machine record the same across
benchmarks, so that a figure always travels with the settings and the machine that gave it.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine_info() -> dict[str, Any]:
    """The machine and software a figure was measured on (CPU threads matter on this 2-core host)."""
    import torch

    from flowstudio import __version__

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "flowstudio": __version__,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def write_results(tag: str, result: dict[str, Any], lines: list[str], out: Path = RESULTS) -> Path:
    """Write ``out/<tag>.json`` (``result`` plus ``machine`` when it has none) and ``out/<tag>.md``
    (``lines``); return the markdown file."""
    out.mkdir(parents=True, exist_ok=True)
    result = {**result, "machine": result.get("machine") or machine_info()}
    (out / f"{tag}.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    markdown = out / f"{tag}.md"
    markdown.write_text("\n".join(lines).rstrip("\n") + "\n")
    return markdown
