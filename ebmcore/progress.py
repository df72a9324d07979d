"""Progress bars that suit both a terminal and a log file.

On a terminal the bar redraws as usual. When its output is not a terminal (a CI log, a pipe,
a file), every redraw would become a log line, so the bar redraws at most once every
:data:`LOG_INTERVAL` seconds, whatever asks for the redraw (an update, ``set_postfix``), and
writes a final line when it closes.
"""
from __future__ import annotations

import math
import sys
import time

from tqdm import tqdm as plain_tqdm
from tqdm.auto import tqdm

LOG_INTERVAL = 10.0


def interactive(stream=None) -> bool:
    """True when ``stream`` (default stderr) is a terminal."""
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class LogBar(plain_tqdm):
    """A tqdm bar that redraws at most every :data:`LOG_INTERVAL` seconds (closing always draws)."""

    def refresh(self, nolock=False, lock_args=None):
        now = time.monotonic()
        if now - getattr(self, "_last_draw", -math.inf) < LOG_INTERVAL:
            return False
        self._last_draw = now
        return super().refresh(nolock=nolock, lock_args=lock_args)


def progress_bar(iterable=None, **kwargs) -> tqdm:
    """A ``tqdm`` bar; in non-interactive output a :class:`LogBar` (a line every 10 s at most)."""
    if interactive(kwargs.get("file")):
        return tqdm(iterable, **kwargs)
    kwargs["mininterval"] = max(kwargs.get("mininterval", 0.0), LOG_INTERVAL)
    kwargs["maxinterval"] = max(kwargs.get("maxinterval", 0.0), LOG_INTERVAL)
    kwargs["dynamic_ncols"] = False
    return LogBar(iterable, **kwargs)
