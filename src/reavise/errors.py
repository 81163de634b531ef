"""One exception type for problems the user can fix; the CLI prints it as one line."""

from __future__ import annotations


class ReaviseError(Exception):
    """A user-facing error: bad input file, wrong checkpoint, bad config.

    The message is one line and names the file and the problem.
    """


class InputError(ReaviseError):
    """An input file (audio, video, lips) is unusable."""


class CheckpointError(ReaviseError):
    """A checkpoint is unreadable or of the wrong kind."""
