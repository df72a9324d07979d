"""Point-cloud transforms: random point subsets, the training augmentation of the generative
PointNet (:class:`PointAugment`), and the robustness corruptions (missing points, added outliers,
jitter).

Each transform is a function of a (N, 3) or (B, N, 3) tensor plus an optional ``torch.Generator``,
and a small callable class holding its parameters and a seeded generator, so a sweep is
reproducible. Batched input gets an independent draw per cloud.

The grids below are the ones of the generative PointNet robustness study: the missing ratios are
1 - k/100 for the kept percentages k in {100, 90, ..., 50, 45, ..., 10, 8, 6, 4, 3, 2, 1}; the outlier
ratios are 0 and the same percentages of added points; the jitter sigmas are listed as published.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from ebmcore.errors import DataError

_KEPT_PERCENT = (100, 90, 80, 70, 60, 50, 45, 40, 35, 30, 25, 20, 15, 10, 8, 6, 4, 3, 2, 1)

#: Fractions of points removed, 0 to 0.99.
MISSING_RATIOS: tuple[float, ...] = tuple(round(1 - k / 100, 2) for k in _KEPT_PERCENT)
#: Outliers added, as a fraction of the cloud's point count, 0 to 1.
OUTLIER_RATIOS: tuple[float, ...] = (0.0,) + tuple(k / 100 for k in reversed(_KEPT_PERCENT))
#: Standard deviations of the Gaussian jitter (in the data's units; the study used [-1, 1] data).
JITTER_SIGMAS: tuple[float, ...] = (0.0, 0.001, 0.003, 0.005, 0.007, 0.01, 0.02, 0.05, 0.1)
#: Standard deviation of the outlier distribution N(0, 0.3^2 I).
OUTLIER_STD = 0.3


def point_subset(x: torch.Tensor, n: int | None, generator: torch.Generator) -> torch.Tensor:
    """A random subset of ``n`` points of each cloud (B, N, 3) -> (B, n, 3), in random order; all
    points when n is None or >= N."""
    if n is None or n >= x.shape[1]:
        return x
    idx = torch.rand(x.shape[:2], generator=generator).argsort(dim=1)[:, :n].to(x.device)
    return torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, 3))


class PointAugment:
    """The generative PointNet's data augmentation, the engine Trainer's ``transform(batch, index)``:
    a fresh random subset of ``train_points`` points of each observed cloud (B, P, 3) ->
    (B, train_points, 3) (None: all P, as stored), then Gaussian jitter of std ``jitter``. Both are
    pure functions of (seed, minibatch index), so a resumed run sees the same batches."""

    def __init__(self, seed: int, train_points: int | None, jitter: float):
        self.seed, self.train_points, self.jitter = seed, train_points, jitter

    def __call__(self, batch: dict[str, torch.Tensor], index: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_033 + 7 * index)
        x = point_subset(batch["x"], self.train_points, g)
        if self.jitter:
            x = x + self.jitter * torch.randn(x.shape, generator=g).to(x.device)
        return {**batch, "x": x}


def drop_points(points: Any, fraction: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Remove ``floor(fraction * N)`` points chosen uniformly at random (kept points stay in order).

    Args:
        points: (N, 3) or (B, N, 3).
        fraction: share of points removed, in [0, 1) (so at least one point is always kept).
        generator: source of randomness (default: torch's global generator).

    Returns:
        (N - floor(fraction * N), 3) or (B, ..., 3); e.g. 30 % of 1024 leaves 717 points.
    """
    pts, batched = _as_points(points)
    if not (0.0 <= fraction < 1.0):
        raise ValueError(f"drop_points: fraction must be in [0, 1), got {fraction}")
    n = pts.shape[1]
    n_keep = n - _count(fraction, n)
    order = torch.rand(pts.shape[:2], generator=generator).argsort(dim=1)
    keep = order[:, :n_keep].sort(dim=1).values.to(pts.device)
    out = torch.gather(pts, 1, keep.unsqueeze(-1).expand(-1, -1, 3))
    return out if batched else out[0]


def add_outliers(
    points: Any,
    ratio: float,
    std: float = OUTLIER_STD,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Append ``floor(ratio * N)`` points drawn from N(0, std^2 I) after the cloud's own points.

    Args:
        points: (N, 3) or (B, N, 3).
        ratio: outliers per original point, >= 0 (the study's grid goes up to 1).
        std: standard deviation of each coordinate of an outlier (default 0.3).
        generator: source of randomness.

    Returns:
        (N + floor(ratio * N), 3) or batched; the first N points are the input unchanged.
    """
    pts, batched = _as_points(points)
    if not (ratio >= 0.0 and math.isfinite(ratio)):
        raise ValueError(f"add_outliers: ratio must be a finite number >= 0, got {ratio}")
    if not (std >= 0.0 and math.isfinite(std)):
        raise ValueError(f"add_outliers: std must be a finite number >= 0, got {std}")
    b, n = pts.shape[:2]
    noise = torch.randn(b, _count(ratio, n), 3, generator=generator, dtype=pts.dtype) * std
    out = torch.cat([pts, noise.to(pts.device)], dim=1)
    return out if batched else out[0]


def jitter(
    points: Any,
    sigma: float,
    clip: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Add independent N(0, sigma^2) noise to every coordinate.

    Args:
        points: (N, 3) or (B, N, 3).
        sigma: noise standard deviation, >= 0, in the data's units.
        clip: if given, the noise is clipped to [-clip, clip] (PointNet-style); by default it is not,
            so its standard deviation is exactly ``sigma``.
        generator: source of randomness.

    Returns:
        A tensor of the input's shape.
    """
    pts, batched = _as_points(points)
    if not (sigma >= 0.0 and math.isfinite(sigma)):
        raise ValueError(f"jitter: sigma must be a finite number >= 0, got {sigma}")
    noise = torch.randn(pts.shape, generator=generator, dtype=pts.dtype) * sigma
    if clip is not None:
        if not clip > 0:
            raise ValueError(f"jitter: clip must be > 0, got {clip}")
        noise = noise.clamp(-clip, clip)
    out = pts + noise.to(pts.device)
    return out if batched else out[0]


class _Seeded:
    """Base of the transform classes: owns a generator seeded once, so repeated calls differ but a
    new instance with the same seed repeats the same sequence."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)


class DropPoints(_Seeded):
    """Callable :func:`drop_points` with a fixed fraction and a seeded generator."""

    def __init__(self, fraction: float, seed: int = 0) -> None:
        super().__init__(seed)
        self.fraction = fraction

    def __call__(self, points: Any) -> torch.Tensor:
        return drop_points(points, self.fraction, self.generator)

    def __repr__(self) -> str:
        return f"DropPoints(fraction={self.fraction}, seed={self.seed})"


class AddOutliers(_Seeded):
    """Callable :func:`add_outliers` with a fixed ratio and std and a seeded generator."""

    def __init__(self, ratio: float, std: float = OUTLIER_STD, seed: int = 0) -> None:
        super().__init__(seed)
        self.ratio = ratio
        self.std = std

    def __call__(self, points: Any) -> torch.Tensor:
        return add_outliers(points, self.ratio, self.std, self.generator)

    def __repr__(self) -> str:
        return f"AddOutliers(ratio={self.ratio}, std={self.std}, seed={self.seed})"


class Jitter(_Seeded):
    """Callable :func:`jitter` with a fixed sigma (and optional clip) and a seeded generator."""

    def __init__(self, sigma: float, clip: float | None = None, seed: int = 0) -> None:
        super().__init__(seed)
        self.sigma = sigma
        self.clip = clip

    def __call__(self, points: Any) -> torch.Tensor:
        return jitter(points, self.sigma, self.clip, self.generator)

    def __repr__(self) -> str:
        return f"Jitter(sigma={self.sigma}, clip={self.clip}, seed={self.seed})"


def _count(fraction: float, n: int) -> int:
    """floor(fraction * n), robust to float error (0.29 * 100 counts as 29)."""
    return int(math.floor(fraction * n + 1e-9))


def _as_points(points: Any) -> tuple[torch.Tensor, bool]:
    """Validate (N, 3) or (B, N, 3) finite float points; return them as (B, N, 3) and whether batched."""
    t = points if isinstance(points, torch.Tensor) else torch.as_tensor(points)
    if not t.is_floating_point():
        t = t.float()
    if t.dim() not in (2, 3) or t.shape[-1] != 3 or t.shape[-2] == 0:
        raise DataError(f"points: expected (N, 3) or (B, N, 3) with N >= 1, got {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise DataError("points: contain NaN or infinite coordinates")
    return (t, True) if t.dim() == 3 else (t.unsqueeze(0), False)
