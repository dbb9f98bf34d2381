"""Known problems, each a type of its own, versus bugs.

A KnownError is something a person can fix (a wrong path, a bad dataset row, no space left). Its
message is one sentence: what is wrong, where, and what to do. The CLI prints it without a traceback
and exits non-zero; the UI shows it in an error panel. Anything that is not a KnownError is a bug and
is shown with details to copy.
"""


class KnownError(Exception):
    """A problem the person can fix; str(error) is the whole sentence shown to them."""

    exit_code = 2


class BadArgument(KnownError):
    """A command-line value or setting that cannot be used."""


class ModelNotFound(KnownError):
    """The model name is not a folder, a .gguf file or a model in the local HF cache."""


class IncompleteModel(KnownError):
    """A model folder lacks the files needed to load it."""


class DatasetError(KnownError):
    """A dataset file is missing, unreadable, or has nothing usable in it."""


class RunNotFound(KnownError):
    """No run with that id in the history."""


class NotBuiltYet(KnownError):
    """A feature that is planned but not implemented; never silently replaced by something else."""


class OutOfMemory(KnownError):
    """The device ran out of memory."""

    exit_code = 5


class DiskFull(KnownError):
    """No space left where a file had to be written."""


def where(path, line=None) -> str:
    """'file:line' (or just 'file') for messages that point at a place in a file."""
    return f"{path}:{line}" if line is not None else str(path)
