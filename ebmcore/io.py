"""Safe file handling: atomic writes, weights-only loading, archive extraction that cannot escape."""
from __future__ import annotations

import io
import os
import pickle
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from .errors import CheckpointError, DataError

TMP_SUFFIX = ".tmp"


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path``.

    The rename is atomic on POSIX, so a reader (or a resumed run after a kill) sees
    either the old file or the complete new one, never a half-written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes owner-only files; give the usual permissions
    try:
        write(Path(tmp))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:  # a full disk: name the file being written (the old one is intact)
        if err.filename is None:
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def orphaned_temps(folder: str | os.PathLike) -> Iterator[Path]:
    """Temporary files :func:`atomic_write` leaves under ``folder`` when killed mid-write."""
    folder = Path(folder)
    if folder.is_dir():
        yield from (p for p in folder.rglob(f".*{TMP_SUFFIX}") if p.is_file())


def save_tensors(obj: Any, path: str | os.PathLike) -> Path:
    """Atomically ``torch.save`` a structure of tensors, numbers, strings, lists and dicts.

    The bytes are built in memory first, so a write error (a full disk) is an ``OSError``
    naming ``path``, and the previous file stays as it was.
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write(path, lambda tmp: tmp.write_bytes(buffer.getbuffer()))


def load_tensors(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """Load a file written by :func:`save_tensors`, refusing anything but plain weights.

    Uses ``torch.load(weights_only=True)``: a pickled arbitrary object is refused instead of
    running code. Raises :class:`~ebmcore.errors.CheckpointError` naming the file for such a
    file ("not a plain-weights checkpoint") and for a truncated or corrupt one.
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path}: not a plain-weights checkpoint (it holds pickled Python "
                              "objects, which are never loaded)") from None
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile) as err:
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({detail})") from None


def _check_member(target: Path, name: str, what: str = "archive member") -> Path:
    dest = (target / name).resolve()
    if dest != target and target not in dest.parents:
        raise DataError(f"{what} {name!r} would extract outside {target}")
    return dest


def _check_tar_member(target: Path, member: tarfile.TarInfo) -> None:
    """Refuse a member landing outside ``target``, a link pointing outside it, or a device."""
    _check_member(target, member.name)
    if member.issym() or member.islnk():
        kind = "symlink" if member.issym() else "hardlink"
        base = os.path.dirname(member.name) if member.issym() else ""
        dest = (target / base / member.linkname).resolve()
        if dest != target and target not in dest.parents:
            raise DataError(f"archive member {member.name!r} is a {kind} to {member.linkname!r}, "
                            f"outside {target}")
    elif not (member.isfile() or member.isdir()):
        raise DataError(f"archive member {member.name!r} is a device, FIFO or other special file, "
                        "not a regular file or folder")


def _extract_zip(archive: Path, target: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                _check_member(target, name)
            zf.extractall(target)
    except (zipfile.BadZipFile, EOFError) as err:
        raise DataError(f"{archive}: truncated or corrupt zip archive ({err})") from None


def _extract_tar(archive: Path, target: Path) -> None:
    try:
        with tarfile.open(archive) as tf:
            for member in tf.getmembers():
                _check_tar_member(target, member)
            tf.extractall(target, filter="data")
    except (tarfile.TarError, EOFError) as err:
        raise DataError(f"{archive}: truncated or corrupt tar archive ({err})") from None


def safe_extract(archive: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Extract a .zip or .tar(.gz/.bz2/.xz) into ``target``.

    Raises :class:`~ebmcore.errors.DataError` naming the problem before writing anything if a
    member's path (absolute, with ``..``) or a link would land outside ``target``, or a member
    is a device; and for a truncated or corrupt archive. A zip is recognised by its first
    bytes, so a zip cut short is reported as one.
    """
    archive, target = Path(archive), Path(target).resolve()
    target.mkdir(parents=True, exist_ok=True)
    with open(archive, "rb") as fh:
        is_zip = fh.read(4) in (b"PK\x03\x04", b"PK\x05\x06")
    (_extract_zip if is_zip else _extract_tar)(archive, target)
    return target


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                    require: tuple[str, ...] = ("model",)) -> dict:
    """A checkpoint dict through :func:`load_tensors`; CheckpointError if it lacks ``require``."""
    state = load_tensors(path, map_location)
    missing = [k for k in require if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(f"{path}: not a checkpoint of this suite (no {', '.join(missing)})")
    return state


def load_weights(model, weights: dict, path: str | os.PathLike):
    """``model.load_state_dict(weights)``; CheckpointError naming ``path`` if they do not fit.

    ``model`` is a module or anything with ``load_state_dict`` (the engine's Trainer).
    """
    try:
        model.load_state_dict(weights)
    except (RuntimeError, KeyError, TypeError, ValueError, IndexError) as err:
        lines = str(err).splitlines()
        detail = lines[1].strip() if len(lines) > 1 else (lines[0] if lines else type(err).__name__)
        raise CheckpointError(f"{path}: a checkpoint of another model or config ({detail})") from None
    return model
