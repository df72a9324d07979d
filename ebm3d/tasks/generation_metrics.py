"""Generation metrics of point-cloud samples (Chamfer and EMD), PointFlow protocol, with two references.

Three rows are measured against the same reference clouds (a split of the category) in the same
way:

- ``model``: the run's samples;
- ``oracle``: as many clouds drawn at random from the training split: real shapes that are not
  the references, the floor a perfect generator could reach;
- ``gaussian``: as many Gaussian blobs N(0, I) of the same point count, the ceiling.

Each row has MMD, COV and 1-NNA under Chamfer distance (squared, on all points) and under EMD
(exact by default, on a seeded subset of ``emd_points`` points per cloud because exact EMD on
1024 points costs about 0.4 s a pair here), and the JSD of the point occupancy on a 28^3 grid.
With ``normalise: sphere`` every cloud of every row is first centred and scaled to the unit
sphere (the energy is blind to a cloud's position and size, see :mod:`ebm3d.models.pointnet`), and
the JSD grid spans [-1, 1]^3. The reference-reference matrices are computed once and shared.
"""
from __future__ import annotations

import time

import torch

from ebm3d.metrics import jsd_between_sets, mmd_cov, pairwise_chamfer, pairwise_emd
from ebm3d.metrics.pointcloud import one_nn_accuracy_sides
from ebm3d.config import PointEvalConfig
from ebm3d.tasks.selection import CheckpointSelector
from ebm3d.transforms import point_subset


def unit_sphere(x: torch.Tensor) -> torch.Tensor:
    """Each cloud (B, N, 3) centred on its centroid with its farthest point at radius 1."""
    centred = x - x.mean(dim=1, keepdim=True)
    radius = centred.norm(dim=2).amax(dim=1).clamp_min(1e-12)
    return centred / radius[:, None, None]


def gaussian_blobs(n: int, n_points: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` clouds of ``n_points`` points from N(0, I)."""
    return torch.randn(n, n_points, 3, generator=generator)


class _Metric:
    """Distances under one metric, with the reference-reference matrix computed once."""

    def __init__(self, name: str, fn, refs: torch.Tensor):
        self.name, self.fn, self.refs = name, fn, refs
        self.rr = fn(refs)

    def row(self, samples: torch.Tensor) -> dict[str, float]:
        ss, sr = self.fn(samples), self.fn(samples, self.refs)
        mc, nna = mmd_cov(sr), one_nn_accuracy_sides(ss, sr, self.rr)
        return {f"MMD-{self.name}": mc.mmd, f"COV-{self.name}": mc.cov, f"1-NNA-{self.name}": nna["overall"],
                f"1-NNA-{self.name}-gen-side": nna["gen_side"], f"1-NNA-{self.name}-ref-side": nna["ref_side"]}


def generation_report(samples: torch.Tensor, refs: torch.Tensor, train: torch.Tensor | None,
                      cfg: PointEvalConfig, seed: int = 0, log=print) -> dict:
    """Metrics of ``samples`` (S, N, 3) against ``refs`` (R, N, 3); with ``cfg.oracle`` also of
    ``len(samples)`` random clouds of ``train`` and of Gaussian blobs. Returns
    ``{"rows": {row: {metric: value}}, "settings": {...}, "seconds": {...}}``."""
    g = torch.Generator().manual_seed(seed)
    rows = {"model": samples.float()}
    if cfg.oracle:
        if train is not None:
            pick = torch.randperm(len(train), generator=g)[: len(samples)]
            rows["oracle"] = train[pick].float()
        rows["gaussian"] = gaussian_blobs(len(samples), samples.shape[1], g)
    prep = unit_sphere if cfg.normalise == "sphere" else (lambda x: x)
    refs = prep(refs.float())
    rows = {k: prep(v) for k, v in rows.items()}
    extent = 1.0 if cfg.normalise == "sphere" else float(max(v.abs().max() for v in [refs, *rows.values()]))
    metrics = [_Metric("CD", pairwise_chamfer, refs)]
    if cfg.emd != "none":
        def emd_fn(a, b=None):
            return pairwise_emd(a, b, method=cfg.emd, solver="pot", workers=cfg.workers)
        subset = {k: point_subset(v, cfg.emd_points, g) for k, v in rows.items()}
        started = time.time()
        metrics.append(_Metric("EMD", emd_fn, point_subset(refs, cfg.emd_points, g)))
        log(f"EMD reference matrix in {time.time() - started:.0f} s")
    out, seconds = {}, {}
    for name, x in rows.items():
        started = time.time()
        row = {}
        for m in metrics:
            row.update(m.row(subset[name] if m.name == "EMD" else x))
        row["JSD"] = jsd_between_sets(x, refs, extent=extent)
        out[name], seconds[name] = row, round(time.time() - started, 1)
        log(f"{name}: " + ", ".join(f"{k} {v:.4g}" for k, v in row.items()) + f" ({seconds[name]} s)")
    settings = {"n_samples": len(samples), "n_ref": len(refs), "points": int(samples.shape[1]),
                "emd": cfg.emd, "emd_points": cfg.emd_points if cfg.emd != "none" else None,
                "normalise": cfg.normalise, "jsd_extent": extent, "seed": seed}
    return {"rows": out, "settings": settings, "seconds": seconds}


class GenerationSelector(CheckpointSelector):
    """Checkpoint selection for generation (``evaluate.select_every``): the 1-NNA-CD of as many
    fresh samples (the run's chain, seeded alike at every checkpoint) as validation clouds
    ``val`` (V, N, 3) against them, normalised as ``evaluate.normalise`` says; lower is better."""

    key = "val_one_nna_cd"
    lower_is_better = True

    def __init__(self, cfg, val: torch.Tensor, run_dir, *, log=None):
        super().__init__(run_dir, cfg.evaluate.select_every, keep_state=True, log=log)
        self.cfg = cfg
        self.prep = unit_sphere if cfg.evaluate.normalise == "sphere" else (lambda x: x)
        self.metric = _Metric("CD", pairwise_chamfer, self.prep(val.float()))

    def score(self, model, step: int) -> dict:
        from ebm3d.tasks.synthesis import draw_clouds   # synthesis imports the training stack

        refs = self.metric.refs
        samples = draw_clouds(model, self.cfg, len(refs), n_points=refs.shape[1], seed=self.cfg.train.seed,
                              batch_size=self.cfg.synthesis.batch_size)
        row = self.metric.row(self.prep(samples.float()))
        return {"val_one_nna_cd": row["1-NNA-CD"], "val_cov_cd": row["COV-CD"], "val_mmd_cd": row["MMD-CD"]}
