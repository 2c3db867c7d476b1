"""Freed memory kept in the scoring process for reuse (glibc malloc settings).

Scoring a case allocates and frees many arrays of a few to a few tens of MB (frames as float32, SSIM
moments, CIELAB, maps, flows). With glibc's defaults such blocks go back to the system when freed (blocks
above an adaptive threshold are mapped and unmapped one by one, and the heap top is trimmed), so the
next case faults every page in again. On the development machine (a virtual machine) a fresh page costs
~2 us: a cold 17-frame 480x832 case spent ~0.3 s of its ~1.4 s in the kernel (~80 K page faults), a warm
one ~0.08 s. Taking blocks of up to 32 MB (glibc's largest threshold) from the heap and never trimming
it, freed memory is reused instead: ~0.01 s. The numbers do not change (only where arrays live); the
process keeps its peak heap instead of returning it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

logger = logging.getLogger(__name__)

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # glibc's mallopt parameters
_SETTINGS = ((_M_MMAP_THRESHOLD, 32 * 2**20), (_M_TRIM_THRESHOLD, 2**31 - 1), (_M_TOP_PAD, 64 * 2**20))
_DONE: list[bool] = []


def keep_freed_memory() -> bool:
    """Apply the settings once per process; ``False`` where they cannot apply (not Linux with glibc) or
    are turned off (``FLOWSTUDIO_KEEP_FREED_MEMORY=0``)."""
    if not _DONE:
        _DONE.append(_apply())
    return _DONE[0]


def _apply() -> bool:
    if os.environ.get("FLOWSTUDIO_KEEP_FREED_MEMORY", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # another C library (musl): leave its defaults
        return False
    done = all(mallopt(parameter, value) == 1 for parameter, value in _SETTINGS)
    if not done:
        logger.debug("mallopt refused a setting; freed memory may go back to the system")
    return done
