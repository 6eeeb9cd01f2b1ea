"""User-facing errors: one clear sentence naming what, which file, and how to fix it."""

from __future__ import annotations


class MRSynthError(Exception):
    """An error caused by the user's input or environment, shown as one line, never a traceback.

    The command line prints ``str(error)`` and exits with :attr:`exit_code`.
    """

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class InputImageError(MRSynthError):
    """An input image cannot be used (unreadable, wrong dimensionality, NaN, ...)."""


class ContrastError(MRSynthError):
    """A contrast name is unknown, duplicated, or not supported by the model."""


class BundleError(MRSynthError):
    """A model bundle is missing, malformed or fails its integrity check."""


class OutputError(MRSynthError):
    """An output cannot be written (exists without --overwrite, folder not writable, ...)."""


class NoUncertaintyError(MRSynthError):
    """The model cannot make an uncertainty map for this task (e.g. a regression bundle without an error model)."""
