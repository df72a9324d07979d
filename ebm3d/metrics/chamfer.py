"""Chamfer distance between point sets, with squared Euclidean distances (PointFlow convention).

    CD(a, b) = mean_i min_j |a_i - b_j|^2 + mean_j min_i |a_i - b_j|^2

Both functions run in torch on the CPU (or on whatever device the inputs live on) and keep memory
bounded by working through chunks of shape pairs.
"""
from __future__ import annotations

from typing import Any

import torch

from ebm3d.metrics._inputs import point_sets

#: Default budget for one temporary distance block, in tensor elements (8 MiB at float32). Blocks
#: that fit the CPU's caches run about 8x faster here than one large block (measured on a 2-core
#: EPYC: 0.7-0.9 ms per 1024 x 1024 pair at 2^20-2^21 elements, 8 ms at 2^25).
DEFAULT_MAX_ELEMENTS = 2**21


def chamfer_distance(a: Any, b: Any) -> torch.Tensor:
    """Chamfer distance between paired sets.

    Args:
        a: (B, N, 3) points.
        b: (B, M, 3) points (M may differ from N).

    Returns:
        (B,) tensor, in squared input units (metres^2 for metric data).
    """
    a = point_sets(a, "a")
    b = point_sets(b, "b", a.dtype)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"chamfer_distance: batch sizes differ, a {tuple(a.shape)} vs b {tuple(b.shape)}")
    d2 = _squared_distances(a, b)  # (B, N, M)
    return d2.amin(dim=2).mean(dim=1) + d2.amin(dim=1).mean(dim=1)


def pairwise_chamfer(
    A: Any,
    B: Any | None = None,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Chamfer distance between every set of ``A`` and every set of ``B``.

    Args:
        A: (Na, N, 3) points.
        B: (Nb, M, 3) points; ``None`` means ``A`` itself (only the upper triangle is computed).
        max_elements: upper bound on the elements of one temporary distance block; the cost is
            one (ca*N, cb*M) matrix per block with ca*cb*N*M <= max_elements.
        dtype: computation precision (default: that of ``A``; float32 is ample for metrics).

    Returns:
        (Na, Nb) tensor of Chamfer distances (squared units). For ``B=None`` the diagonal is 0.
    """
    A = point_sets(A, "A", dtype)
    symmetric = B is None
    B = A if symmetric else point_sets(B, "B", A.dtype)
    na, n = A.shape[:2]
    nb, m = B.shape[:2]
    ca, cb = _chunk_sizes(na, nb, n, m, max_elements)
    out = torch.zeros(na, nb, dtype=A.dtype, device=A.device)
    a_norm = (A * A).sum(-1)  # (Na, N)
    b_norm = (B * B).sum(-1)  # (Nb, M)
    for i0 in range(0, na, ca):
        i1 = min(na, i0 + ca)
        j_start = i0 if symmetric else 0
        for j0 in range(j_start - j_start % cb, nb, cb):
            j1 = min(nb, j0 + cb)
            out[i0:i1, j0:j1] = _block(A[i0:i1], B[j0:j1], a_norm[i0:i1], b_norm[j0:j1])
    if symmetric:
        upper = torch.triu(out, diagonal=1)
        out = upper + upper.T
    return out


def _block(a: torch.Tensor, b: torch.Tensor, a_norm: torch.Tensor, b_norm: torch.Tensor) -> torch.Tensor:
    """Chamfer distances between every set of ``a`` (ca, N, 3) and every set of ``b`` (cb, M, 3)."""
    ca, n = a.shape[:2]
    cb, m = b.shape[:2]
    # |x - y|^2 = |x|^2 + |y|^2 - 2 x.y as a single (ca*N, cb*M) product of 5-wide factors.
    left = torch.cat([a, a_norm.unsqueeze(-1), torch.ones_like(a_norm).unsqueeze(-1)], dim=-1)
    right = torch.cat([-2.0 * b, torch.ones_like(b_norm).unsqueeze(-1), b_norm.unsqueeze(-1)], dim=-1)
    d2 = (left.reshape(ca * n, 5) @ right.reshape(cb * m, 5).T).view(ca, n, cb, m)
    # Rounding can make a squared distance slightly negative; clamping the minima is enough.
    a_to_b = d2.amin(dim=3).clamp_(min=0.0).mean(dim=1)  # (ca, cb): mean over a's points of nearest b
    b_to_a = d2.amin(dim=1).clamp_(min=0.0).mean(dim=2)  # (ca, cb)
    return a_to_b + b_to_a


def _squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B, N, M) squared distances between paired sets (B, N, 3) and (B, M, 3)."""
    d2 = torch.baddbmm((b * b).sum(-1).unsqueeze(1), a, b.transpose(1, 2), alpha=-2.0)
    d2 += (a * a).sum(-1).unsqueeze(2)
    return d2.clamp_(min=0.0)


def _chunk_sizes(na: int, nb: int, n: int, m: int, max_elements: int) -> tuple[int, int]:
    """Numbers of A-sets and B-sets per block so that ca*cb*n*m stays within ``max_elements``."""
    if max_elements < n * m:
        raise ValueError(f"max_elements={max_elements} is below one pair's block ({n}x{m} = {n * m})")
    sets = max_elements // (n * m)
    cb = min(nb, sets)
    ca = max(1, min(na, sets // cb))
    return ca, cb
