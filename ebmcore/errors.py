"""Exceptions the suite raises for bad input, each naming what was wrong and where.

The command-line tools print any of these as one line (``prog: error: ...``) and exit 2
(:mod:`ebmcore.cli_errors`).
"""


class DataError(ValueError):
    """A data file (or a row in it) cannot be read; the message names the file and row."""


class CheckpointError(DataError):
    """A checkpoint is truncated, holds pickled objects, or belongs to another model."""


class ConfigError(ValueError):
    """A config key is unknown or its value is absurd; the message names the key."""


class RunFolderError(RuntimeError):
    """A run folder is in use by another process, or a resume does not fit the saved run."""


class DivergenceError(RuntimeError):
    """Training diverged and the divergence guard gave up after its retries."""
