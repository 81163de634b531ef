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


class SettingError(ReaviseError, ValueError):
    """One setting of a typed config has a wrong type or value.

    ``key`` names the setting (``max_iter``, ``model_config.z_dim``) so that the CLI can say
    where the value came from (``--set max_iter=abc``, a YAML file); ``scope`` names the
    config (``algorithm 'vem'``). The message reads ``[scope: ]key problem``.
    """

    def __init__(self, key: str, problem: str, scope: str = ""):
        self.key, self.problem, self.scope = key, problem, scope
        text = f"{key} {problem}"
        super().__init__(f"{scope}: {text}" if scope else text)

    def within(self, scope: str = "", prefix: str = "") -> SettingError:
        """The same error for an enclosing config: a new scope and/or a key prefix."""
        return SettingError(prefix + self.key, self.problem, scope or self.scope)
