"""Progress bars that suit both a terminal and a log file.

On a terminal the bar redraws as usual. When its output is not a terminal (a CI log, a pipe,
a file), every redraw would become a log line, so the bar redraws at most once every
:data:`LOG_INTERVAL` seconds and writes a final line when it closes.
"""
from __future__ import annotations

import sys

from tqdm.auto import tqdm

LOG_INTERVAL = 10.0


def interactive(stream=None) -> bool:
    """True when ``stream`` (default stderr) is a terminal."""
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def progress_bar(iterable=None, **kwargs) -> tqdm:
    """A ``tqdm`` bar; in non-interactive output at most one line every :data:`LOG_INTERVAL` s."""
    if not interactive(kwargs.get("file")):
        kwargs["mininterval"] = max(kwargs.get("mininterval", 0.0), LOG_INTERVAL)
        kwargs["maxinterval"] = max(kwargs.get("maxinterval", 0.0), LOG_INTERVAL)
        kwargs["dynamic_ncols"] = False
    return tqdm(iterable, **kwargs)
