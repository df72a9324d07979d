"""Recorded results: the figures an issue asks for, written by the commands that measure them.

Each results file (``docs/results/<name>.json``) is a JSON object of sections. A command that
measures a section calls :func:`record`, which merges the section into the file atomically and
stamps it with the command line, the git commit (``+dirty`` when the tree had uncommitted
changes) and the wall time. Nothing in these files is written by hand.

A section measured in another checkout (a git worktree, the GPU machine's copy of the tree) is
brought over unchanged, stamps included, with :func:`adopt`::

    python -m ebmcore.results adopt OTHER/docs/results/ebm3d.json SECTION [SECTION ...]
"""
from __future__ import annotations

import json
import math
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .io import atomic_write
from .paths import REPO_ROOT

RESULTS_DIR = REPO_ROOT / "docs" / "results"


def git_commit(repo: Path = REPO_ROOT) -> str:
    """``HEAD``'s hash, with ``+dirty`` if tracked files differ from it; ``unknown`` outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def command_line(argv: list[str] | None = None) -> str:
    """The command as a user would type it (``python -m`` for module entry points)."""
    argv = list(sys.argv if argv is None else argv)
    if argv and argv[0].endswith(".py"):
        try:
            argv[0] = str(Path(argv[0]).resolve().relative_to(REPO_ROOT))
        except ValueError:
            pass
        argv = ["python"] + argv
    elif argv:
        argv[0] = Path(argv[0]).name
    return shlex.join(argv)


def _clean(value: Any) -> Any:
    """JSON-safe copy: tensors and numpy scalars to numbers, non-finite floats to None."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def record(name: str, section: str, payload: dict, *, started: float | None = None,
           command: str | None = None, results_dir: Path | None = None, **stamps) -> Path:
    """Merge ``payload`` into section ``section`` of ``<results_dir>/<name>.json``.

    ``started`` is a ``time.time()`` value: the section gets ``wall_seconds`` since then.
    ``stamps`` are extra top-level keys of the section (for example ``train_seconds``).
    Returns the file's path.
    """
    path = Path(results_dir or RESULTS_DIR) / f"{name}.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    entry = dict(_clean(payload))
    entry.update(_clean(stamps))
    entry["command"] = command if command is not None else command_line()
    entry["commit"] = git_commit()
    if started is not None:
        entry["wall_seconds"] = round(time.time() - started, 1)
    entry["date"] = time.strftime("%Y-%m-%d")
    data[section] = entry
    return _write(path, data)


def _write(path: Path, data: dict) -> Path:
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def adopt(source: str | Path, sections: list[str], results_dir: Path | None = None) -> Path:
    """Copy ``sections`` of the results file ``source`` (recorded by a command in another
    checkout) unchanged into the file of the same name here; returns the file's path."""
    source = Path(source)
    recorded = json.loads(source.read_text())
    missing = [s for s in sections if s not in recorded]
    if missing:
        raise KeyError(f"{source}: no section {', '.join(missing)} (it has {', '.join(sorted(recorded))})")
    path = Path(results_dir or RESULTS_DIR) / source.name
    data = json.loads(path.read_text()) if path.is_file() else {}
    data.update({s: recorded[s] for s in sections})
    return _write(path, data)


def drop(name: str, sections: list[str], results_dir: Path | None = None) -> Path:
    """Remove ``sections`` from ``<results_dir>/<name>.json``: figures whose command the project
    no longer has (a renamed or merged config). The git history keeps them; returns the path."""
    path = Path(results_dir or RESULTS_DIR) / f"{name}.json"
    data = json.loads(path.read_text())
    missing = [s for s in sections if s not in data]
    if missing:
        raise KeyError(f"{path}: no section {', '.join(missing)} (it has {', '.join(sorted(data))})")
    return _write(path, {k: v for k, v in data.items() if k not in sections})


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m ebmcore.results", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("adopt", help="copy recorded sections from another checkout's results file")
    cmd.add_argument("source", type=Path)
    cmd.add_argument("sections", nargs="+")
    cmd = sub.add_parser("drop", help="remove sections whose command the project no longer has")
    cmd.add_argument("name", help="results file name without .json (ebm3d, ebmtraj, ...)")
    cmd.add_argument("sections", nargs="+")
    args = parser.parse_args(argv)
    try:
        if args.command == "adopt":
            print(adopt(args.source, args.sections))
        else:
            print(drop(args.name, args.sections))
    except (OSError, KeyError, json.JSONDecodeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def load(name: str, results_dir: Path | None = None) -> dict:
    """The recorded sections of ``<results_dir>/<name>.json`` ({} when absent)."""
    path = Path(results_dir or RESULTS_DIR) / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else {}


if __name__ == "__main__":
    sys.exit(main())
