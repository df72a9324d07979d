"""Exceptions the suite raises for bad input, each naming what was wrong and where."""


class DataError(ValueError):
    """A data file (or a row in it) cannot be read; the message names the file and row."""


class ConfigError(ValueError):
    """A config key is unknown or its value is absurd; the message names the key."""


class DivergenceError(RuntimeError):
    """Training diverged and the divergence guard gave up after its retries."""
