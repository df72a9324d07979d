"""Where a data source's files are: a configured folder, or its default under ``data_root()``."""
from __future__ import annotations

from pathlib import Path

from ebmcore.errors import DataError
from ebmcore.paths import data_root


def source_folder(path: str | None, default: str) -> Path:
    """``path``, or ``data_root()/default`` when it is None; DataError when the folder is missing."""
    folder = Path(path) if path else data_root() / default
    if not folder.is_dir():
        raise DataError(f"{folder}: data folder not found (set data.path or EBM_DATA)")
    return folder
