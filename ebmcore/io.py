"""Safe file handling: atomic writes, weights-only loading, archive extraction that cannot escape."""
from __future__ import annotations

import os
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable

import torch


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path``.

    The rename is atomic on POSIX, so a reader (or a resumed run after a kill) sees
    either the old file or the complete new one, never a half-written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes owner-only files; give the usual permissions
    try:
        write(Path(tmp))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def save_tensors(obj: Any, path: str | os.PathLike) -> Path:
    """Atomically ``torch.save`` a structure of tensors, numbers, strings, lists and dicts."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def load_tensors(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """Load a file written by :func:`save_tensors`, refusing anything but plain weights.

    Uses ``torch.load(weights_only=True)``: a pickled arbitrary object raises
    ``pickle.UnpicklingError`` instead of running code.
    """
    return torch.load(path, map_location=map_location, weights_only=True)


def _check_member(target: Path, name: str) -> Path:
    dest = (target / name).resolve()
    if dest != target and target not in dest.parents:
        raise ValueError(f"archive member {name!r} would extract outside {target}")
    return dest


def safe_extract(archive: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Extract a .zip or .tar(.gz/.bz2/.xz) into ``target``.

    Raises ValueError before writing anything if a member's path (absolute, with
    ``..``, or a link) would land outside ``target``.
    """
    archive, target = Path(archive), Path(target).resolve()
    target.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                _check_member(target, name)
            zf.extractall(target)
        return target
    with tarfile.open(archive) as tf:
        for member in tf.getmembers():
            _check_member(target, member.name)
            if member.issym() or member.islnk():
                _check_member(target, os.path.join(os.path.dirname(member.name), member.linkname))
            if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
                raise ValueError(f"archive member {member.name!r} is not a regular file or folder")
        tf.extractall(target, filter="data")
    return target
