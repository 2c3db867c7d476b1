"""flowstudio: video diffusion on the Wan2.2 flow-matching DiT family.

Importing the package is cheap: heavy modules (torch models, diffusers) load on first use.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from flowstudio.errors import CheckpointError, FlowstudioError, InputError, VideoError

try:
    __version__ = version("flowstudio")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["CheckpointError", "FlowstudioError", "InputError", "VideoError", "__version__"]
