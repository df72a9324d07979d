"""Checks shared by the metric functions: convert arrays to tensors and reject bad shapes or values."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ebmcore.errors import DataError


def as_tensor(x: Any, name: str, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``x`` (tensor or array-like) as a CPU tensor; float inputs keep their precision unless ``dtype``."""
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        try:
            t = torch.as_tensor(np.ascontiguousarray(x))
        except (TypeError, ValueError) as exc:
            raise DataError(f"{name}: cannot convert {type(x).__name__} to a tensor ({exc})") from exc
    if dtype is not None:
        t = t.to(dtype)
    elif not t.is_floating_point():
        t = t.to(torch.float32)
    return t


def point_sets(x: Any, name: str, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Validate a batch of point sets: shape (B, N, 3), B >= 1, N >= 1, all values finite."""
    t = as_tensor(x, name, dtype)
    if t.dim() != 3 or t.shape[-1] != 3:
        raise DataError(f"{name}: expected point sets of shape (B, N, 3), got {tuple(t.shape)}")
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise DataError(f"{name}: empty point sets, shape {tuple(t.shape)}")
    finite(t, name)
    return t


def finite(t: torch.Tensor, name: str) -> None:
    """Raise DataError naming the first non-finite entry of ``t``."""
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        idx = tuple(int(i) for i in bad.nonzero()[0])
        raise DataError(f"{name}: non-finite value {t[idx].item()} at index {idx}")


def distance_matrix(x: Any, name: str, square: bool = False) -> torch.Tensor:
    """Validate a distance matrix: 2-D, non-empty, finite (``inf`` on a diagonal is not allowed here)."""
    t = as_tensor(x, name, torch.float64)
    if t.dim() != 2 or t.shape[0] == 0 or t.shape[1] == 0:
        raise DataError(f"{name}: expected a non-empty 2-D distance matrix, got {tuple(t.shape)}")
    if square and t.shape[0] != t.shape[1]:
        raise DataError(f"{name}: expected a square matrix, got {tuple(t.shape)}")
    finite(t, name)
    return t
