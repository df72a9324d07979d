"""One error policy for every command-line tool of the suite.

Expected errors print one line, ``prog: error: <what and where>``, and exit with status 2:
config errors and YAML syntax errors, refused YAML tags, unreadable or hostile data and
checkpoints, a checkpoint of another model, a run folder in use, divergence, a full disk.
``--debug`` anywhere on the command line prints the traceback as well. Any other exception is
a bug and keeps its traceback.

Each tool's ``main`` is decorated with :func:`cli_main`; :func:`parse_with_overrides` lets
``key.sub=value`` overrides sit anywhere on the command line, after options too.
"""
from __future__ import annotations

import argparse
import errno
import functools
import os
import pickle
import sys
import traceback
from typing import Callable

import yaml

from .config import yaml_message
from .errors import ConfigError, DataError, DivergenceError, RunFolderError

DEBUG_ENV = "EBM_DEBUG"
DEBUG_FLAG = "--debug"
_EXPECTED = (ConfigError, DataError, DivergenceError, RunFolderError)
_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_PATH_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def explain(err: BaseException) -> str | None:
    """The one-line message of an expected error, or None when ``err`` is a bug."""
    text = str(err)
    if isinstance(err, _EXPECTED):
        return text
    if isinstance(err, yaml.YAMLError):
        return yaml_message(err)
    if isinstance(err, pickle.UnpicklingError):
        return "not a plain-weights checkpoint: it holds pickled Python objects, which are never loaded"
    if isinstance(err, OSError) and err.errno in _WRITE_ERRNOS:
        return (f"cannot write {err.filename or 'a file'}: {err.strerror} (disk full or over a size "
                "limit); files written before are intact; free space and run again to resume")
    if isinstance(err, _PATH_ERRORS):
        return f"{err.strerror}: {err.filename}" if err.filename else text
    if isinstance(err, RuntimeError) and text.startswith("Error(s) in loading state_dict"):
        detail = text.splitlines()[1].strip() if len(text.splitlines()) > 1 else text
        return f"the checkpoint does not fit this model (a checkpoint of another model or config): {detail}"
    return None


def one_line(message: str) -> str:
    """``message`` with its lines joined, so an error is always a single line."""
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


def run(main: Callable[[list[str]], int], prog: str, argv: list[str] | None = None) -> int:
    """Call ``main(argv)``; an expected error becomes ``prog: error: ...`` and exit status 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    previous = os.environ.get(DEBUG_ENV)
    if DEBUG_FLAG in argv:
        argv = [a for a in argv if a != DEBUG_FLAG]
        os.environ[DEBUG_ENV] = "1"
    try:
        return main(argv)
    except Exception as err:  # noqa: BLE001 -- expected errors are explained, the rest re-raised
        message = explain(err)
        if message is None:
            raise
        if os.environ.get(DEBUG_ENV):
            traceback.print_exc()
        sys.stdout.flush()
        print(f"{prog}: error: {one_line(message)}", file=sys.stderr)
        return 2
    finally:
        if previous is None:
            os.environ.pop(DEBUG_ENV, None)
        else:
            os.environ[DEBUG_ENV] = previous


def cli_main(prog: str) -> Callable:
    """Decorator for a tool's ``main(argv)``: the error policy of :func:`run` under ``prog``."""
    def wrap(main: Callable[[list[str]], int]) -> Callable[[list[str] | None], int]:
        @functools.wraps(main)
        def entry(argv: list[str] | None = None) -> int:
            return run(main, prog, argv)
        return entry
    return wrap


def is_override(arg: str) -> bool:
    """True for a ``key.sub=value`` config override (not an option such as ``--x=1``)."""
    return "=" in arg and not arg.startswith("-") and arg.split("=", 1)[0].replace(".", "").replace("_", "").isalnum()


def parse_with_overrides(parser: argparse.ArgumentParser, argv: list[str],
                         dest: str = "overrides") -> argparse.Namespace:
    """``parser.parse_args`` with ``key=value`` overrides accepted anywhere after the command."""
    overrides = [a for a in argv[1:] if is_override(a)]
    rest = argv[:1] + [a for a in argv[1:] if not is_override(a)]
    args = parser.parse_args(rest)
    if overrides and not hasattr(args, dest):
        parser.error(f"unrecognized arguments: {' '.join(overrides)}")
    if hasattr(args, dest):
        setattr(args, dest, list(getattr(args, dest) or []) + overrides)
    return args
