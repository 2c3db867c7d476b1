"""Project errors: raised at the boundary with a message a user can act on."""

from __future__ import annotations


class FlowstudioError(Exception):
    """Base class of every error flowstudio raises on purpose.

    Messages say what is wrong, echo the offending value and say what to do.
    """


class InputError(FlowstudioError, ValueError):
    """An argument or option has a value flowstudio cannot use."""


class NoObjectError(InputError):
    """A reader found no object in a clip (its object mask is empty in every frame)."""


class VideoError(FlowstudioError):
    """A video file or frame folder is missing, empty, corrupt or unsupported."""


class CheckpointError(FlowstudioError):
    """A local checkpoint folder is missing, incomplete or inconsistent."""
