"""Generation metrics for point clouds, PointFlow protocol: MMD, COV, 1-NNA (under CD and EMD) and JSD.

Given generated samples S and reference shapes R:

* MMD (minimum matching distance): for each reference, the distance to its nearest sample,
  averaged over references. Lower is better.
* COV (coverage): the fraction of references that are the nearest reference of at least one
  sample. Higher is better.
* 1-NNA (1-nearest-neighbour accuracy): leave-one-out 1-NN classification of S u R into "sample" and
  "reference"; 0.5 is ideal, 1.0 means the two sets are told apart perfectly.
* JSD: Jensen-Shannon divergence between the two sets' point-occupancy histograms on a 28^3 grid
  over the cube [-extent, extent]^3, keeping only the cells inside the inscribed sphere.

The set-level metrics take distance matrices, so any distance (CD, EMD or another) can be used.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from scipy.spatial import cKDTree
from scipy.stats import entropy

from ebm3d.metrics._inputs import distance_matrix, point_sets
from ebm3d.metrics.chamfer import DEFAULT_MAX_ELEMENTS, pairwise_chamfer
from ebm3d.metrics.emd import pairwise_emd


@dataclass(frozen=True)
class MmdCov:
    """MMD and COV from one sample-to-reference distance matrix."""

    mmd: float
    cov: float


def mmd_cov(d_sr: Any) -> MmdCov:
    """MMD and COV from sample-to-reference distances.

    Args:
        d_sr: (n_sample, n_ref) distances, entry [s, r] = D(sample s, reference r).

    Returns:
        ``MmdCov(mmd, cov)``: mmd in the distance's units, cov in [0, 1].
    """
    d = distance_matrix(d_sr, "d_sr")
    mmd = d.min(dim=0).values.mean().item()
    nearest_ref = d.argmin(dim=1)
    cov = nearest_ref.unique().numel() / d.shape[1]
    return MmdCov(mmd=mmd, cov=cov)


def one_nn_accuracy(d_ss: Any, d_sr: Any, d_rr: Any) -> float:
    """Leave-one-out 1-NN accuracy of telling samples from references.

    Args:
        d_ss: (n_sample, n_sample) distances among samples (the diagonal is ignored).
        d_sr: (n_sample, n_ref) sample-to-reference distances.
        d_rr: (n_ref, n_ref) distances among references (the diagonal is ignored).

    Returns:
        Accuracy in [0, 1] over all n_sample + n_ref points; 0.5 is ideal. Ties go to the
        neighbour listed first (references before samples).
    """
    return one_nn_correct(d_ss, d_sr, d_rr).double().mean().item()


def one_nn_accuracy_sides(d_ss: Any, d_sr: Any, d_rr: Any) -> dict[str, float]:
    """1-NNA (see :func:`one_nn_accuracy`) with its two sides: ``{"overall", "gen_side",
    "ref_side"}``, where gen_side is the share of samples whose nearest neighbour is a sample and
    ref_side the share of references whose nearest neighbour is a reference (each in [0, 1])."""
    correct = one_nn_correct(d_ss, d_sr, d_rr).double()
    nr = distance_matrix(d_rr, "d_rr", square=True).shape[0]
    return {"overall": correct.mean().item(), "gen_side": correct[nr:].mean().item(),
            "ref_side": correct[:nr].mean().item()}


def one_nn_correct(d_ss: Any, d_sr: Any, d_rr: Any) -> torch.Tensor:
    """Per point, references first then samples: is its leave-one-out nearest neighbour from its
    own set? Bool (n_ref + n_sample,)."""
    d_ss = distance_matrix(d_ss, "d_ss", square=True)
    d_sr = distance_matrix(d_sr, "d_sr")
    d_rr = distance_matrix(d_rr, "d_rr", square=True)
    ns, nr = d_sr.shape
    if d_ss.shape[0] != ns or d_rr.shape[0] != nr:
        raise ValueError(
            f"one_nn_accuracy: shapes disagree: d_ss {tuple(d_ss.shape)}, d_sr {tuple(d_sr.shape)}, "
            f"d_rr {tuple(d_rr.shape)}"
        )
    # References first, then samples; label 1 = reference.
    full = torch.cat([torch.cat([d_rr, d_sr.T], dim=1), torch.cat([d_sr, d_ss], dim=1)], dim=0)
    full.fill_diagonal_(math.inf)
    labels = torch.cat([torch.ones(nr), torch.zeros(ns)])
    predicted = labels[full.argmin(dim=1)]
    return predicted == labels


def jsd_between_sets(
    samples: Any,
    refs: Any,
    resolution: int = 28,
    extent: float = 0.5,
    in_sphere: bool = True,
    base: float = 2.0,
) -> float:
    """Jensen-Shannon divergence between the point-occupancy histograms of two sets of clouds.

    Every point is counted in the grid cell whose centre is nearest. The grid has ``resolution``
    centres per axis spread evenly over [-extent, extent] (PointFlow: extent 0.5, i.e. the unit
    cube), and with ``in_sphere`` only the cells whose centres lie within ``extent`` of the
    origin are used; points outside them count in the nearest cell that remains.

    Args:
        samples: (S, N, 3) points.
        refs: (R, M, 3) points.
        resolution: centres per axis (PointFlow: 28).
        extent: half-width of the cube; use 1.0 for clouds normalised to the unit sphere.
        in_sphere: keep only cells inside the inscribed sphere (PointFlow: True).
        base: logarithm base; 2 (PointFlow) bounds the result by 1, e bounds it by ln 2.

    Returns:
        The divergence, 0 for identical histograms.
    """
    if resolution < 2:
        raise ValueError(f"resolution must be >= 2, got {resolution}")
    if not extent > 0:
        raise ValueError(f"extent must be > 0, got {extent}")
    centres = grid_centres(resolution, extent, in_sphere)
    tree = cKDTree(centres)
    p = occupancy_histogram(point_sets(samples, "samples"), tree, extent, "samples")
    q = occupancy_histogram(point_sets(refs, "refs"), tree, extent, "refs")
    return jensen_shannon(p, q, base)


def grid_centres(resolution: int, extent: float, in_sphere: bool) -> np.ndarray:
    """(K, 3) centres of a resolution^3 grid over [-extent, extent]^3, optionally within the sphere."""
    axis = np.linspace(-extent, extent, resolution)
    centres = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)
    if in_sphere:
        centres = centres[np.linalg.norm(centres, axis=1) <= extent]
    return centres


def occupancy_histogram(points: torch.Tensor, tree: cKDTree, extent: float, name: str) -> np.ndarray:
    """Counts of points (over all clouds) per grid cell of ``tree``'s centres."""
    pts = points.reshape(-1, 3).double().numpy()
    if np.abs(pts).max() > extent * 1.001:
        warnings.warn(
            f"{name}: points reach {np.abs(pts).max():.3f}, outside the JSD grid's cube "
            f"[-{extent}, {extent}]^3; they are counted in the nearest border cell",
            stacklevel=3,
        )
    _, idx = tree.query(pts)
    return np.bincount(idx, minlength=tree.n).astype(np.float64)


def jensen_shannon(p: np.ndarray, q: np.ndarray, base: float = 2.0) -> float:
    """JSD between two non-negative histograms of the same length (normalised here)."""
    p = np.asarray(p, np.float64)
    q = np.asarray(q, np.float64)
    if p.shape != q.shape or p.ndim != 1:
        raise ValueError(f"histograms must be 1-D and equal length, got {p.shape} and {q.shape}")
    if (p < 0).any() or (q < 0).any() or p.sum() <= 0 or q.sum() <= 0:
        raise ValueError("histograms must be non-negative with positive mass")
    p = p / p.sum()
    q = q / q.sum()
    m = 0.5 * (p + q)
    value = entropy(m, base=base) - 0.5 * (entropy(p, base=base) + entropy(q, base=base))
    return float(max(value, 0.0))


@dataclass
class DistanceMatrices:
    """Distances under one metric: samples-samples, samples-references, references-references."""

    ss: torch.Tensor
    sr: torch.Tensor
    rr: torch.Tensor


def compute_all_metrics(
    samples: Any,
    refs: Any,
    emd_method: str | None = "exact",
    workers: int = 1,
    emd_solver: str = "scipy",
    jsd_extent: float = 0.5,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    progress: Callable[[str, int, int], None] | None = None,
) -> tuple[dict[str, float], dict[str, DistanceMatrices]]:
    """All PointFlow-protocol metrics of generated ``samples`` against ``refs``.

    Args:
        samples: (S, N, 3) generated clouds.
        refs: (R, N, 3) reference clouds (same N when EMD is computed).
        emd_method: ``"exact"``, ``"approxmatch"`` (approximate) or ``None`` to skip EMD.
        workers: threads for the exact EMD solver.
        emd_solver: ``"scipy"`` or ``"pot"`` for exact EMD (same values; POT is faster here).
        jsd_extent: half-width of the JSD grid's cube (see :func:`jsd_between_sets`).
        max_elements: memory budget of one Chamfer block (elements).
        progress: optional ``callback(stage, done, total)`` for the EMD stages.

    Returns:
        ``(metrics, matrices)``: metrics has keys ``MMD-CD, COV-CD, 1-NNA-CD``, the same with
        ``-EMD`` when computed, and ``JSD``; matrices maps ``"CD"``/``"EMD"`` to the distance
        matrices used, for reuse.
    """
    samples = point_sets(samples, "samples")
    refs = point_sets(refs, "refs", samples.dtype)
    matrices = {
        "CD": DistanceMatrices(
            ss=pairwise_chamfer(samples, max_elements=max_elements).double(),
            sr=pairwise_chamfer(samples, refs, max_elements=max_elements).double(),
            rr=pairwise_chamfer(refs, max_elements=max_elements).double(),
        )
    }
    if emd_method is not None:
        # Rows are references when comparing to samples, as PointFlow orders its matcher's inputs.
        def stage(name):
            return None if progress is None else (lambda done, total: progress(name, done, total))

        opts = {"method": emd_method, "workers": workers, "solver": emd_solver}
        matrices["EMD"] = DistanceMatrices(
            ss=pairwise_emd(samples, progress=stage("EMD-ss"), **opts),
            sr=pairwise_emd(refs, samples, progress=stage("EMD-rs"), **opts).T,
            rr=pairwise_emd(refs, progress=stage("EMD-rr"), **opts),
        )
    metrics: dict[str, float] = {}
    for name, m in matrices.items():
        mc = mmd_cov(m.sr)
        metrics[f"MMD-{name}"] = mc.mmd
        metrics[f"COV-{name}"] = mc.cov
        metrics[f"1-NNA-{name}"] = one_nn_accuracy(m.ss, m.sr, m.rr)
    metrics["JSD"] = jsd_between_sets(samples, refs, extent=jsd_extent)
    return metrics, matrices
