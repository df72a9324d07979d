"""Run folders: one process at a time, resumes that fit the saved run, and safe fresh starts.

Every training run writes into a run folder (``runs/<name>/``). :func:`open_run` is called by
the engine's :class:`~ebmcore.learning.Trainer` once the config is valid and the data are
loaded, i.e. when the run is certain to start. It

1. takes the folder's lock, ``<run>/.lock``: an exclusive ``flock`` on a file holding the
   owner's PID. A second process is refused with :class:`~ebmcore.errors.RunFolderError`
   naming that PID. The kernel drops the ``flock`` when its process dies (even by SIGKILL), so
   a lock file left behind is recognised as stale and taken over;
2. on a fresh start (``--fresh`` or ``resume=False``) renames an existing run folder to
   ``<run>.previous-<UTC time>/`` and says so; nothing is deleted;
3. removes temporary files an atomic write left when a process was killed mid-write;
4. on a resume, refuses a config that differs from the saved ``config.yaml`` in a key that
   changes the model or the data (:data:`RUN_DEFINING`), naming the differing keys.

Command-line tools whose training code builds the Trainer further down call
:func:`request_fresh` for ``--fresh``: the folder is set aside by the first Trainer that
opens it (or a sub-folder of it), so a config or data error never touches the old run.
"""
from __future__ import annotations

import atexit
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

import yaml

from .errors import RunFolderError
from .io import orphaned_temps

LOCK_FILE = ".lock"
CONFIG_FILE = "config.yaml"
CHECKPOINT_FILE = "checkpoint.pt"
# top-level config sections whose keys define the model or the data of a run
RUN_DEFINING = ("kind", "task", "model", "net", "data")
# keys in those sections that change neither (how the data are prepared, not what they are)
NOT_DEFINING = ("workers", "progress", "threads", "device")

_held: dict[Path, int] = {}  # lock file -> open descriptor holding the flock
_fresh: set[Path] = set()  # run folders to set aside when training starts
_opened: set[Path] = set()  # run folders this process has trained into (e.g. multigrid levels)


def _note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the lock


def _read_owner(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 4096)
    try:
        owner = json.loads(raw.decode() or "{}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        owner = {}
    return owner if isinstance(owner, dict) else {}


def lock_run(run_dir: str | Path) -> Path:
    """Take ``run_dir``'s lock for this process (re-entrant); RunFolderError if another holds it.

    Returns the lock file. A lock file whose process has died is stale: it is taken over and
    a note names the dead PID.
    """
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    if path in _held:
        return path
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = _read_owner(fd)
        os.close(fd)
        since = owner.get("started", "an unknown time")
        raise RunFolderError(
            f"{run_dir} is in use by another training (PID {owner.get('pid', '?')} on "
            f"{owner.get('host', '?')}, since {since}); wait for it to finish or stop it, "
            "or train into another folder (name=...)") from None
    stale = _read_owner(fd)
    if stale.get("pid") not in (None, os.getpid()):
        _note(f"{run_dir}: took over a stale lock of PID {stale['pid']} (that process is gone)")
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}).encode())
    _held[path] = fd
    return path


def unlock_run(run_dir: str | Path) -> None:
    """Release this process's lock of ``run_dir`` (no-op if it holds none)."""
    path = Path(run_dir).resolve() / LOCK_FILE
    fd = _held.pop(path, None)
    if fd is not None:
        path.unlink(missing_ok=True)
        os.close(fd)


@atexit.register
def _unlock_all() -> None:
    for path in list(_held):
        unlock_run(path.parent)


# ---------------------------------------------------------------- fresh starts


def request_fresh(run_dir: str | Path) -> None:
    """Set ``run_dir`` aside when training into it (or a sub-folder) actually starts."""
    _fresh.add(Path(run_dir).resolve())


def _pending_fresh(run_dir: Path) -> Path | None:
    return next((root for root in _fresh if root == run_dir or root in run_dir.parents), None)


def fresh_requested(run_dir: str | Path) -> bool:
    """True while ``run_dir`` (or a folder above it) waits to be set aside by :func:`open_run`."""
    return _pending_fresh(Path(run_dir).resolve()) is not None


def set_aside(run_dir: str | Path) -> Path | None:
    """Rename an existing, non-empty ``run_dir`` to ``<run_dir>.previous-<UTC time>``.

    Sub-folders this process has just trained into (the coarser levels of a multigrid run)
    stay. Refuses (RunFolderError) while another process holds a lock inside it. Returns the
    new name, or None when there was nothing to set aside.
    """
    run_dir = Path(run_dir).resolve()
    stays = {run_dir / LOCK_FILE} | {p for p in _opened if p.parent == run_dir}
    if not run_dir.is_dir() or not any(p not in stays for p in run_dir.iterdir()):
        return None
    for lock in run_dir.rglob(LOCK_FILE):
        if lock not in _held:
            lock_run(lock.parent)  # raises if another process holds it
            unlock_run(lock.parent)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    aside = run_dir.with_name(f"{run_dir.name}.previous-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = run_dir.with_name(f"{run_dir.name}.previous-{stamp}-{n}")
    if len(stays) > 1:  # move the rest entry by entry
        aside.mkdir()
        for entry in run_dir.iterdir():
            if entry not in stays:
                os.rename(entry, aside / entry.name)
        _note(f"--fresh: set the previous run aside: {run_dir} -> {aside}")
        return aside
    held = [p for p in _held if p == run_dir / LOCK_FILE or run_dir in p.parents]
    for lock in held:
        unlock_run(lock.parent)
    os.rename(run_dir, aside)
    for lock in held:
        lock_run(run_dir / lock.parent.relative_to(run_dir))
    _note(f"--fresh: set the previous run aside: {run_dir} -> {aside}")
    return aside


# ---------------------------------------------------------------- resuming


def _flatten(tree, prefix: str = "") -> dict:
    if not isinstance(tree, dict):
        return {prefix.rstrip("."): tree}
    out = {}
    for key, value in tree.items():
        out.update(_flatten(value, f"{prefix}{key}."))
    return out


def defining_differences(saved: dict, new: dict) -> list[str]:
    """Keys (dotted) under :data:`RUN_DEFINING` whose values differ between two configs."""
    a, b = _flatten(saved), _flatten(new)
    keys = sorted(k for k in set(a) | set(b)
                  if k.split(".")[0] in RUN_DEFINING and k.split(".")[-1] not in NOT_DEFINING)
    return [k for k in keys if a.get(k) != b.get(k)]


def check_resume(run_dir: str | Path, config: dict) -> None:
    """Refuse to resume ``run_dir`` with ``config`` if it changes the run's model or data."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        return
    saved = yaml.safe_load(path.read_text()) or {}
    diff = defining_differences(saved, config)
    if diff:
        flat_saved, flat_new = _flatten(saved), _flatten(config)
        shown = ", ".join(f"{k} ({flat_saved.get(k)!r} -> {flat_new.get(k)!r})" for k in diff[:5])
        more = f" and {len(diff) - 5} more" if len(diff) > 5 else ""
        raise RunFolderError(f"{run_dir}: cannot resume: the config differs from the saved run in "
                             f"{shown}{more}; use --fresh to start a new run (the old one is set "
                             "aside) or another name=...")


def refuse_changed_resume(run_dir: str | Path, config: dict, *, resume: bool = True) -> None:
    """The config check :func:`open_run` makes, callable before costly work that precedes it:
    refuse ``config`` if it would resume a saved run (a checkpoint, no fresh start requested)
    whose model or data it changes."""
    run_dir = Path(run_dir).resolve()
    if resume and _pending_fresh(run_dir) is None and (run_dir / CHECKPOINT_FILE).exists():
        check_resume(run_dir, config)


# ---------------------------------------------------------------- opening a run


def remove_orphans(run_dir: str | Path) -> list[Path]:
    """Delete temporary files left by writes a kill interrupted; returns them."""
    removed = list(orphaned_temps(run_dir))
    for path in removed:
        path.unlink(missing_ok=True)
    if removed:
        _note(f"{run_dir}: removed {len(removed)} temporary file(s) left by an interrupted write")
    return removed


def open_run(run_dir: str | Path, *, resume: bool, config: dict | None) -> bool:
    """Prepare ``run_dir`` for a training that is certain to start; returns whether to resume.

    Order: set aside a folder asked to start fresh (``resume=False`` or :func:`request_fresh`),
    take the lock, remove orphaned temporary files, then check that a resume fits the saved
    config.
    """
    run_dir = Path(run_dir).resolve()
    root = _pending_fresh(run_dir) or (None if resume else run_dir)
    if root is not None:
        set_aside(root)
        _fresh.discard(root)
        resume = False
    lock_run(run_dir)
    _opened.add(run_dir)
    try:
        remove_orphans(run_dir)
        if config is not None:
            refuse_changed_resume(run_dir, config, resume=resume)
    except BaseException:
        unlock_run(run_dir)
        raise
    return resume
