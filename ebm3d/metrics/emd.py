"""Earth mover's distance between equal-size point sets.

What is computed: the mean Euclidean (not squared) distance between matched points under the optimal
one-to-one matching,

    EMD(a, b) = min over permutations pi of (1/N) sum_i |a_i - b_pi(i)|.

This is the quantity PointFlow's CPU fallback computes with ``linear_sum_assignment``. PointFlow's
published tables use instead an approximate CUDA matcher (the annealed "approxmatch" of Fan et al.,
2017) and divide its cost by N; that matcher is available here as ``method="approxmatch"`` and is
labelled approximate everywhere it appears.

Methods:
    ``"exact"``        the optimal matching of each pair on its (N, N) float64 distance matrix, by
                       ``solver="scipy"`` (``linear_sum_assignment``, the default) or ``solver="pot"``
                       (POT's network simplex ``ot.emd2``, also exact and 1.5-2.5x faster on
                       ModelNet chairs here); ``workers`` > 1 solves pairs in a thread pool.
    ``"approxmatch"``  APPROXIMATE: the annealed soft matching over 9 temperature levels, batched in
                       torch. Deterministic and about 3x (POT) to 8x (scipy) cheaper than exact on the
                       CPU, but biased high: on ModelNet chairs at 1024 points it exceeds the exact
                       value by 15-36 % (mean 23 %), so its numbers are comparable with PointFlow-style
                       published tables, not with exact EMD.
"""
from __future__ import annotations

import functools
import itertools
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from ebm3d.metrics._inputs import point_sets

METHODS = ("exact", "approxmatch")
SOLVERS = ("scipy", "pot")

#: Temperature levels of the approximate matcher: weights exp(-4^j * d^2) for j = 7, 6, ..., -1.
_APPROX_LEVELS = tuple(-(4.0**j) for j in range(7, -2, -1))


def emd(
    a: Any,
    b: Any,
    method: str = "exact",
    workers: int = 1,
    batch_pairs: int = 16,
    solver: str = "scipy",
) -> torch.Tensor:
    """EMD between paired equal-size sets.

    Args:
        a: (B, N, 3) points.
        b: (B, N, 3) points.
        method: ``"exact"`` or ``"approxmatch"`` (approximate), see the module docstring.
        workers: threads for the exact solver.
        batch_pairs: pairs per torch batch for ``approxmatch``.
        solver: exact solver, ``"scipy"`` or ``"pot"``.

    Returns:
        (B,) float64 tensor, mean matched Euclidean distance in input units.
    """
    a = point_sets(a, "a", torch.float64)
    b = point_sets(b, "b", torch.float64)
    if a.shape != b.shape:
        raise ValueError(f"emd: needs paired sets of equal size, got a {tuple(a.shape)} and b {tuple(b.shape)}")
    _check_method(method, solver)
    if method == "approxmatch":
        chunks = zip(a.float().split(batch_pairs), b.float().split(batch_pairs))
        return torch.cat([approxmatch_emd(x, y) for x, y in chunks]).double()
    a_np, b_np = a.numpy(), b.numpy()
    pairs = [(a_np[i], b_np[i]) for i in range(a.shape[0])]
    return torch.tensor(_map(functools.partial(_exact_pair, solver=solver), pairs, workers), dtype=torch.float64)


def pairwise_emd(
    A: Any,
    B: Any | None = None,
    method: str = "exact",
    workers: int = 1,
    batch_pairs: int = 16,
    progress: Callable[[int, int], None] | None = None,
    solver: str = "scipy",
) -> torch.Tensor:
    """EMD between every set of ``A`` and every set of ``B``.

    Args:
        A: (Na, N, 3) points.
        B: (Nb, N, 3) points with the same N; ``None`` means ``A`` itself (only pairs i < j are
            solved and mirrored, the diagonal is 0; ``approxmatch`` is not exactly symmetric, so
            its mirrored entries use A[min(i, j)] as the first set).
        method: ``"exact"`` or ``"approxmatch"`` (approximate).
        workers: threads for the exact solver (``approxmatch`` uses torch's own threads).
        batch_pairs: pairs per torch batch for ``approxmatch`` (memory is about
            ``batch_pairs * N * N * 16`` bytes).
        progress: optional ``callback(done_pairs, total_pairs)``.
        solver: exact solver, ``"scipy"`` or ``"pot"``.

    Returns:
        (Na, Nb) float64 tensor. For ``approxmatch`` row i uses A[i] as the matcher's first set.
    """
    _check_method(method, solver)
    A = point_sets(A, "A", torch.float64)
    symmetric = B is None
    B = A if symmetric else point_sets(B, "B", torch.float64)
    if A.shape[1] != B.shape[1]:
        raise ValueError(f"pairwise_emd: sets must have equal size, got N={A.shape[1]} and N={B.shape[1]}")
    na, nb = A.shape[0], B.shape[0]
    if symmetric:
        index = [(i, j) for i in range(na) for j in range(i + 1, na)]
    else:
        index = list(itertools.product(range(na), range(nb)))
    out = torch.zeros(na, nb, dtype=torch.float64)
    if method == "exact":
        values = _exact_many(A.numpy(), B.numpy(), index, workers, progress, solver)
    else:
        values = _approx_many(A.float(), B.float(), index, batch_pairs, progress)
    if index:
        rows, cols = zip(*index)
        out[list(rows), list(cols)] = values
        if symmetric:
            out[list(cols), list(rows)] = values
    return out


def approxmatch_emd(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """APPROXIMATE EMD of paired sets by annealed soft matching (the matcher behind PointFlow's tables).

    At each level the weight of a pair of points is exp(level * d^2) times their remaining mass;
    each point of ``a`` offers its remaining mass in proportion to those weights, each point of ``b``
    accepts at most what it has left, and the accepted mass is added to the matching. Coarse levels
    (large |level|) match near neighbours first; the last level (-0.25) spreads what is left.

    Args:
        a: (B, N, 3) float tensor.
        b: (B, N, 3) float tensor.

    Returns:
        (B,) tensor: sum over the soft matching of mass * Euclidean distance, divided by N.
    """
    n = a.shape[1]
    dist = torch.cdist(a, b, compute_mode="use_mm_for_euclid_dist")  # (B, N, N)
    d2 = dist.square()
    remain_a = torch.ones(a.shape[:2], dtype=a.dtype, device=a.device)  # (B, N)
    remain_b = torch.ones(b.shape[:2], dtype=a.dtype, device=a.device)
    cost = torch.zeros(a.shape[0], dtype=a.dtype, device=a.device)
    weight = torch.empty_like(d2)
    for level in _APPROX_LEVELS:
        # Clamping keeps exp() out of the denormal range, which is ~10x slower on CPUs; the
        # weights it changes are below 2e-35 either way.
        torch.mul(d2, level, out=weight).clamp_(min=-80.0).exp_()
        ratio_a = remain_a / (_rows_dot(weight, remain_b) + 1e-9)
        offered = remain_b * _cols_dot(weight, ratio_a)  # mass the a points offer to each b point
        ratio_b = remain_b * torch.clamp(remain_b / (offered + 1e-9), max=1.0)
        remain_b = torch.clamp(remain_b - offered, min=0.0)
        taken = ratio_a * _rows_dot(weight, ratio_b)  # mass each a point placed at this level
        remain_a = torch.clamp(remain_a - taken, min=0.0)
        cost += (ratio_a * _rows_dot(weight.mul_(dist), ratio_b)).sum(dim=1)
    return cost / n


def _rows_dot(w: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(B, N, M) @ (B, M) -> (B, N), written as a row-vector product (much faster on the CPU)."""
    return torch.bmm(v.unsqueeze(1), w.transpose(1, 2)).squeeze(1)


def _cols_dot(w: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(B, N) @ (B, N, M) -> (B, M)."""
    return torch.bmm(v.unsqueeze(1), w).squeeze(1)


def _exact_pair(pair: tuple[np.ndarray, np.ndarray], solver: str = "scipy") -> float:
    """Exact EMD of one pair of (N, 3) float64 arrays."""
    d = cdist(pair[0], pair[1])
    if solver == "pot":
        import ot  # imported on first use: POT's import is slow and only this solver needs it

        value, log = ot.emd2([], [], d, numItermax=100 * d.size, log=True)
        if log["result_code"] != 1:  # 1 = optimal; otherwise the simplex stopped early
            raise RuntimeError(f"POT's network simplex did not reach the optimum: {log['warning']}")
        return float(value)
    rows, cols = linear_sum_assignment(d)
    return float(d[rows, cols].mean())


def _exact_many(A, B, index, workers, progress, solver) -> torch.Tensor:
    pairs = ((A[i], B[j]) for i, j in index)
    fn = functools.partial(_exact_pair, solver=solver)
    values = _map(fn, pairs, workers, total=len(index), progress=progress)
    return torch.tensor(values, dtype=torch.float64)


def _approx_many(A, B, index, batch_pairs, progress) -> torch.Tensor:
    values = []
    for start in range(0, len(index), batch_pairs):
        chunk = index[start : start + batch_pairs]
        rows = torch.tensor([i for i, _ in chunk])
        cols = torch.tensor([j for _, j in chunk])
        values.append(approxmatch_emd(A[rows], B[cols]).double())
        if progress is not None:
            progress(start + len(chunk), len(index))
    return torch.cat(values) if values else torch.zeros(0, dtype=torch.float64)


def _map(fn, items: Iterable, workers: int, total: int | None = None, progress=None) -> list[float]:
    """``[fn(x) for x in items]``, in a thread pool when ``workers`` > 1, reporting progress."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    results: list[float] = []
    if workers == 1:
        for x in items:
            results.append(fn(x))
            if progress is not None:
                progress(len(results), total)
        return results
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for value in pool.map(fn, items, chunksize=1):
            results.append(value)
            if progress is not None:
                progress(len(results), total)
    return results


def _check_method(method: str, solver: str = "scipy") -> None:
    if method not in METHODS:
        raise ValueError(f"unknown EMD method {method!r}; choose one of {METHODS}")
    if solver not in SOLVERS:
        raise ValueError(f"unknown exact EMD solver {solver!r}; choose one of {SOLVERS}")
