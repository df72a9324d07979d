"""Where the suite finds real data and writes runs.

Real datasets are found through one setting, the environment variable ``EBM_DATA``
(default: ``../shared/data`` beside the repository root). Code that needs a dataset
calls :func:`data_root` and, where the folder is absent, falls back to its built-in
generated default or (in tests) skips with the path in the reason.
"""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def data_root() -> Path:
    """The real-data folder: ``$EBM_DATA`` or ``<repo>/../shared/data``."""
    env = os.environ.get("EBM_DATA")
    return Path(env).expanduser().resolve() if env else (REPO_ROOT.parent / "shared" / "data").resolve()


def dataset_dir(name: str) -> Path | None:
    """``data_root()/name`` if that folder exists, else None."""
    path = data_root() / name
    return path if path.is_dir() else None


def cache_root() -> Path:
    """Where prepared datasets are cached: ``$EBM_CACHE`` or ``<repo>/cache``."""
    env = os.environ.get("EBM_CACHE")
    return Path(env).expanduser().resolve() if env else REPO_ROOT / "cache"
