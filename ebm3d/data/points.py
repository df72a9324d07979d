"""Point sets: area-weighted sampling from meshes, resampling to a fixed count, normalisation.

Normalisation modes (the ``normalisation`` setting of the dataset builders):

- ``"sphere"``: per shape, subtract the centroid and divide by the largest distance to it, so
  every shape lies in the unit ball and touches its surface.
- ``"category_minmax"``: first ``"sphere"`` per shape (source files come in their own units),
  then per category and per axis an affine map taking the category's training-split minimum
  and maximum to -1 and +1. Every axis is stretched to the same range, so aspect ratios change.
- ``"category_scalar"``: first ``"sphere"`` per shape, then ONE affine map per category, the same
  on every axis, taking the smallest and largest coordinate of the category's training array to
  -1 and +1 (the official generative PointNet code). Aspect ratios are kept.

In both category modes validation and test shapes use the training statistics, so they may reach
slightly outside [-1, 1].
"""
from __future__ import annotations

import numpy as np
import trimesh

from ebmcore.errors import ConfigError

NORMALISATIONS = ("sphere", "category_minmax", "category_scalar")


def sample_points(mesh: trimesh.Trimesh, n: int, seed: int) -> np.ndarray:
    """``n`` points (n, 3) float32 drawn uniformly by area on the mesh surface (seeded)."""
    pts, _ = trimesh.sample.sample_surface(mesh, n, seed=seed)
    return np.asarray(pts, dtype=np.float32)


def resample(points: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Exactly ``n`` rows of ``points`` (N, 3): a seeded subset if N >= n, else all rows plus
    rows drawn again at random (with replacement)."""
    rng = np.random.default_rng(seed)
    if len(points) >= n:
        idx = rng.choice(len(points), n, replace=False)
    else:
        idx = np.concatenate([np.arange(len(points)), rng.choice(len(points), n - len(points))])
    return points[np.sort(idx)]


def to_unit_sphere(points: np.ndarray) -> np.ndarray:
    """Centre each shape on its centroid and scale its farthest point to radius 1.

    Accepts (N, 3) or (B, N, 3); float32 out.
    """
    pts = np.asarray(points, dtype=np.float64)
    centred = pts - pts.mean(axis=-2, keepdims=True)
    radius = np.linalg.norm(centred, axis=-1).max(axis=-1)
    radius = np.where(radius > 0, radius, 1.0)
    return (centred / radius[..., None, None] if pts.ndim == 3 else centred / radius).astype(np.float32)


def fit_category_minmax(points: np.ndarray, labels: np.ndarray, fit_mask: np.ndarray,
                        n_classes: int, scalar: bool = False) -> np.ndarray:
    """Per-class (min, max) over the shapes selected by ``fit_mask``: per axis, or with
    ``scalar`` one value over all three axes (repeated on each axis).

    points (B, N, 3), labels (B,), fit_mask (B,) bool; returns (n_classes, 2, 3) float64. A
    class with no fitting shape gets (-1, 1), i.e. the identity map.
    """
    stats = np.tile(np.array([[-1.0] * 3, [1.0] * 3]), (n_classes, 1, 1))
    for c in range(n_classes):
        sel = points[(labels == c) & fit_mask].reshape(-1, 3)
        if len(sel):
            lo, hi = (sel.min(), sel.max()) if scalar else (sel.min(axis=0), sel.max(axis=0))
            stats[c, 0], stats[c, 1] = lo, hi
    return stats


def apply_category_minmax(points: np.ndarray, labels: np.ndarray, stats: np.ndarray) -> np.ndarray:
    """Map each shape's axes affinely so its category's (min, max) go to (-1, 1); (B, N, 3)."""
    lo, hi = stats[labels, 0][:, None, :], stats[labels, 1][:, None, :]
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    return (2 * (points - lo) / span - 1).astype(np.float32)


def normalise(points: np.ndarray, labels: np.ndarray, fit_mask: np.ndarray, n_classes: int,
              mode: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Normalise (B, N, 3) points by ``mode`` (see module docstring).

    Returns the points and the category statistics (n_classes, 2, 3) for the category modes
    (None for ``"sphere"``).
    """
    if mode not in NORMALISATIONS:
        raise ConfigError(f"normalisation {mode!r} is not one of {NORMALISATIONS}")
    pts = to_unit_sphere(points)
    if mode == "sphere":
        return pts, None
    stats = fit_category_minmax(pts, labels, fit_mask, n_classes, scalar=mode == "category_scalar")
    return apply_category_minmax(pts, labels, stats), stats
