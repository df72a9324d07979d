"""Voxel metrics: IoU, average per-voxel error, inception score and nearest training neighbours.

Voxel grids are (B, 1, D, H, W) occupancy tensors in [0, 1] (any shape with a leading batch axis
is accepted); "binarised" means ``x > threshold`` with threshold 0.5 unless stated.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.special import xlogy

from ebm3d.metrics._inputs import as_tensor, finite
from ebmcore.errors import DataError


def voxel_iou(pred: Any, target: Any, threshold: float = 0.5) -> torch.Tensor:
    """Intersection over union of the binarised grids, per example.

    Args:
        pred: (B, 1, D, H, W) grid (probabilities or occupancies).
        target: same shape.
        threshold: a voxel is occupied where its value exceeds this.

    Returns:
        (B,) float64 tensor in [0, 1]; 1 where both grids are empty.
    """
    p, t = _pair(pred, target)
    p = p.flatten(1) > threshold
    t = t.flatten(1) > threshold
    inter = (p & t).sum(1).double()
    union = (p | t).sum(1).double()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def per_voxel_error(
    pred: Any,
    target: Any,
    mask: Any | None = None,
    squared: bool = False,
    threshold: float | None = None,
) -> torch.Tensor:
    """Average per-voxel error, per example.

    Args:
        pred: (B, 1, D, H, W) recovered or super-resolved grid.
        target: same shape, the ground truth.
        mask: optional boolean tensor of the same shape; the average is taken only where it is
            True (e.g. the corrupted, unobserved voxels of a recovery task).
        squared: mean squared instead of mean absolute difference.
        threshold: if given, ``pred`` is binarised at it first.

    Returns:
        (B,) float64 tensor.
    """
    p, t = _pair(pred, target)
    if threshold is not None:
        p = (p > threshold).double()
    diff = (p.double() - t.double()).flatten(1)
    err = diff.square() if squared else diff.abs()
    if mask is None:
        return err.mean(1)
    m = as_tensor(mask, "mask")
    if m.shape != p.shape:
        raise DataError(f"mask: shape {tuple(m.shape)} differs from pred {tuple(p.shape)}")
    m = m.flatten(1).bool()
    counts = m.sum(1)
    if bool((counts == 0).any()):
        empty = int((counts == 0).nonzero()[0])
        raise DataError(f"mask: example {empty} selects no voxels")
    return (err * m).sum(1) / counts.double()


@dataclass(frozen=True)
class InceptionScore:
    """Inception score over splits: mean and (population) standard deviation."""

    mean: float
    std: float


def inception_score(probs: Any, splits: int = 10) -> InceptionScore:
    """Inception score exp(E_x KL(p(y|x) || p(y))) from classifier probabilities.

    The samples are divided into ``splits`` consecutive parts (sizes differing by at most one);
    p(y) is the mean prediction within a part, and the score is averaged over parts.

    Args:
        probs: (N, C) class probabilities, rows summing to 1, N >= splits.
        splits: number of parts (the papers: 10).

    Returns:
        ``InceptionScore(mean, std)``; it lies in [1, C].
    """
    p = as_tensor(probs, "probs", torch.float64)
    if p.dim() != 2 or p.shape[1] < 1:
        raise DataError(f"probs: expected (N, C), got {tuple(p.shape)}")
    if splits < 1 or p.shape[0] < splits:
        raise ValueError(f"inception_score: need N >= splits >= 1, got N={p.shape[0]}, splits={splits}")
    finite(p, "probs")
    if bool((p < 0).any()) or not torch.allclose(p.sum(1), torch.ones(p.shape[0], dtype=p.dtype), atol=1e-4):
        raise DataError("probs: rows must be non-negative and sum to 1 (apply softmax to logits)")
    scores = []
    for part in np.array_split(p.numpy(), splits):
        marginal = part.mean(axis=0, keepdims=True)
        kl = (xlogy(part, part) - xlogy(part, marginal)).sum(axis=1)
        scores.append(np.exp(kl.mean()))
    return InceptionScore(mean=float(np.mean(scores)), std=float(np.std(scores)))


@torch.no_grad()
def classifier_probabilities(
    classifier: torch.nn.Module,
    voxels: Any,
    threshold: float | None = 0.5,
    batch_size: int = 64,
) -> torch.Tensor:
    """Softmax probabilities of a volumetric classifier on (binarised) grids.

    Args:
        classifier: module mapping (b, 1, D, H, W) float grids to (b, C) logits; run in eval mode.
        voxels: (N, 1, D, H, W) grids.
        threshold: binarise at this value first (the papers: 0.5); ``None`` keeps values.
        batch_size: grids per forward pass.

    Returns:
        (N, C) float64 probabilities, ready for :func:`inception_score`.
    """
    v = as_tensor(voxels, "voxels")
    if v.dim() != 5:
        raise DataError(f"voxels: expected (N, 1, D, H, W), got {tuple(v.shape)}")
    was_training = classifier.training
    classifier.eval()
    try:
        param = next(classifier.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        dtype = param.dtype if param is not None else torch.float32
        out = []
        for start in range(0, v.shape[0], batch_size):
            x = v[start : start + batch_size]
            x = (x > threshold) if threshold is not None else x
            logits = classifier(x.to(device=device, dtype=dtype))
            out.append(torch.softmax(logits.double(), dim=1).cpu())
    finally:
        classifier.train(was_training)
    return torch.cat(out)


@dataclass(frozen=True)
class Neighbours:
    """Nearest training example of each sample: its index and the similarity (IoU) or distance (L2)."""

    index: torch.Tensor
    value: torch.Tensor


def nearest_training_neighbours(
    samples: Any,
    train: Any,
    metric: str = "iou",
    threshold: float = 0.5,
    chunk_size: int = 256,
) -> Neighbours:
    """Nearest training grid of each sample, to show samples are not copies of the training set.

    Args:
        samples: (B, 1, D, H, W) generated grids.
        train: (T, 1, D, H, W) training grids (bool, uint8 or float; kept as given, converted in
            chunks of ``chunk_size`` so a large set does not need a float copy).
        metric: ``"iou"`` (both binarised; the highest IoU wins) or ``"l2"`` (Euclidean distance of
            the raw values; the smallest wins).
        threshold: binarisation threshold for ``"iou"``.
        chunk_size: training grids per step.

    Returns:
        ``Neighbours(index (B,), value (B,))``: max IoU or min L2 distance and where it occurs
        (ties go to the lowest index).
    """
    if metric not in ("iou", "l2"):
        raise ValueError(f"metric must be 'iou' or 'l2', got {metric!r}")
    s = as_tensor(samples, "samples")
    t = train if isinstance(train, torch.Tensor) else as_tensor(train, "train")
    if s.dim() < 2 or t.dim() != s.dim() or s.shape[1:] != t.shape[1:] or t.shape[0] == 0:
        raise DataError(f"samples {tuple(s.shape)} and train {tuple(t.shape)} must share the grid shape")
    finite(s, "samples")
    # float32 is exact for the IoU counts (below 2^24 voxels) and ample for L2.
    s = s.flatten(1).float()
    s = (s > threshold).float() if metric == "iou" else s
    s_sq = (s * s).sum(1, keepdim=True)  # (B, 1): occupied count for iou, squared norm for l2
    best_val = torch.full((s.shape[0],), -np.inf if metric == "iou" else np.inf, dtype=torch.float64)
    best_idx = torch.zeros(s.shape[0], dtype=torch.long)
    for start in range(0, t.shape[0], chunk_size):
        c = t[start : start + chunk_size].flatten(1).float()
        c = (c > threshold).float() if metric == "iou" else c
        dot = s @ c.T  # (B, c)
        c_sq = (c * c).sum(1).unsqueeze(0)
        if metric == "iou":
            union = s_sq + c_sq - dot
            score = torch.where(union > 0, dot / union.clamp(min=1), torch.ones_like(union))
            val, idx = score.double().max(dim=1)
            better = val > best_val
        else:
            score = (s_sq + c_sq - 2 * dot).clamp(min=0).sqrt()
            val, idx = score.double().min(dim=1)
            better = val < best_val
        best_val = torch.where(better, val, best_val)
        best_idx = torch.where(better, idx + start, best_idx)
    return Neighbours(index=best_idx, value=best_val)


def pairwise_iou_distance(a: Any, b: Any, threshold: float = 0.5) -> torch.Tensor:
    """1 - IoU of every pair of grids, both binarised at ``threshold``.

    Args:
        a: (A, 1, D, H, W) grids; b: (B, 1, D, H, W) grids of the same shape.

    Returns:
        (A, B) float64 distances in [0, 1] (0 for two empty grids).
    """
    x = (as_tensor(a, "a").flatten(1) > threshold).float()
    y = (as_tensor(b, "b").flatten(1) > threshold).float()
    if x.shape[1] != y.shape[1]:
        raise DataError(f"grids of {tuple(a.shape)} and {tuple(b.shape)} differ in shape")
    inter = x @ y.T
    union = x.sum(1, keepdim=True) + y.sum(1).unsqueeze(0) - inter
    iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
    return (1 - iou).double()


def _pair(pred: Any, target: Any) -> tuple[torch.Tensor, torch.Tensor]:
    p = as_tensor(pred, "pred")
    t = as_tensor(target, "target")
    if p.shape != t.shape or p.dim() < 2 or p.shape[0] == 0:
        raise DataError(f"pred {tuple(p.shape)} and target {tuple(t.shape)} must share a shape (B, ...)")
    finite(p, "pred")
    finite(t, "target")
    return p, t
