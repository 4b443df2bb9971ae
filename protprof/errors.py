"""One error root for protprof; subclasses also inherit the matching builtin.

The CLI turns any `ProtprofError` into one line on stderr and a non-zero exit: 1, or the
error's own `exit_status`.
"""

from __future__ import annotations


class ProtprofError(Exception):
    """Root of every error protprof raises on purpose (bad input, bad config, bad store)."""


class InputFormatError(ProtprofError, ValueError):
    """A file is not what it should be: not FASTA, truncated, empty, unreadable."""


class InvalidSequenceError(ProtprofError, ValueError):
    """A sequence record is unusable: bad characters, no residues, duplicate ID."""


class ConfigError(ProtprofError, ValueError):
    """A configuration key is unknown or its value is out of bounds."""


class BadValue(ConfigError):
    """A configuration value fails its check: "`key` must `requirement`". The parts are kept so
    a caller can name the command-line option the user typed instead of the key."""

    def __init__(self, key: str, requirement: str) -> None:
        super().__init__(key, requirement)  # both in args, so the error survives pickling
        self.key = key
        self.requirement = requirement

    def __str__(self) -> str:
        return f"{self.key} must {self.requirement}"


class StoreError(ProtprofError, ValueError):
    """A profile store is missing, malformed, or of an unsupported format version."""


class SearchError(ProtprofError, RuntimeError):
    """The homology search could not run or gave an inconsistent result."""


class CheckpointError(ProtprofError, ValueError):
    """A file given as a checkpoint is missing, not protprof's, truncated, or holds non-finite
    weights."""


class TrainingError(ProtprofError, RuntimeError):
    """Training stopped before `max_steps`: a non-finite loss, or a planned stop (`stop_after`).
    The last good checkpoint is kept, and a rerun continues from it."""


class Preempted(TrainingError):
    """Training stopped on a signal (SLURM's SIGTERM at the time limit, or a requested SIGUSR1)
    after saving its rolling checkpoint: `--resume` continues. Its own exit status tells a
    requeue wrapper this from a failure."""

    exit_status = 75  # EX_TEMPFAIL: a temporary failure, try again


class OutputError(ProtprofError, OSError):
    """An output cannot be written: it exists and is not protprof's, another run holds it, its
    folder is not writable, or the disk filled up."""
