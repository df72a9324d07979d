"""Synthesis: drawing samples from a trained shape model.

Point clouds: :func:`draw_clouds` runs the short-run chain a generative PointNet was trained with,
``x = M_theta(z)``: Langevin from ``z ~ N(0, std^2 I)`` (``train.chains``) for
``train.sampler.steps`` steps of size ``train.sampler.step_size``, clamped to
``train.sampler.clamp`` (:func:`chain_settings`; reconstruction and interpolation run the same
chain without noise).

Voxels: :func:`run_synthesis` trains a generative VoxelNet on one category (or several) and
draws samples (:func:`draw_samples`). It trains (resuming a run folder when it has a checkpoint) and writes
``samples.pt`` (key ``samples``: occupancy (B, 1, R, R, R) clipped to [0, 1]),
``samples.png`` (a grid of 3D renderings), ``samples_o3d.png`` (Open3D, when it renders here)
and ``synthesis.json`` (how close each sample is to its nearest training shape, occupancy
statistics, timings).
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch

from ebmcore.io import atomic_write, save_tensors
from ebmcore.sampling import langevin, scaled_schedule

from ebm3d.config import PointNetExperiment, VoxelNetExperiment
from ebm3d.metrics import mmd_cov, nearest_training_neighbours, one_nn_accuracy_sides, pairwise_iou_distance
from ebm3d.models.pointnet import GenerativePointNet
from ebm3d.models.voxelnet import VoxelNet
from ebm3d.tasks.data import voxel_source
from ebm3d.tasks.render import save_grid_png, save_open3d_png
from ebm3d.tasks.training import coarse_samples, levels_of, train_models, training_grids


def draw_samples(cfg: VoxelNetExperiment, models: list[VoxelNet], n: int, seed: int,
                 persistent: torch.Tensor | None = None) -> torch.Tensor:
    """``n`` samples as occupancy (n, 1, R, R, R), unclipped.

    With ``persistent`` chain states (centred, from training) the first of them are returned
    (the paper's synthesis); the rest come from fresh chains, coarse to fine across the
    multigrid levels, with the synthesis (or training) sampler settings. ``synthesis.denoise_steps``
    noise-free steps on the finest model end every chain.
    """
    out = []
    if persistent is not None and persistent.numel():
        out.append(models[-1].uncentre(persistent[:n].to(models[-1].mean.device)))
    missing = n - sum(len(o) for o in out)
    if missing > 0:
        s, t = cfg.synthesis, cfg.train.sampler
        steps = s.steps if s.steps is not None else t.steps
        step_size = s.step_size if s.step_size is not None else t.step_size
        noise = s.noise if s.noise is not None else t.noise
        levels = levels_of(cfg)
        factor = levels[1] // levels[0] if len(levels) > 1 else 1
        gen = torch.Generator().manual_seed(seed)
        out.append(coarse_samples(models, missing, steps, step_size, cfg.train.chains.std, factor, gen, noise,
                                  cfg.algorithm.clamp))
    samples = torch.cat(out).detach()
    if cfg.synthesis.denoise_steps:
        model = models[-1]
        x = langevin(model.energy, model.centre(samples), cfg.synthesis.denoise_steps, cfg.train.sampler.step_size,
                     noise="off", clamp=model.occupancy_bounds() if cfg.algorithm.clamp else None)
        samples = model.uncentre(x).detach()
    return samples.cpu()


def sample_report(samples: torch.Tensor, train: torch.Tensor) -> dict:
    """Nearest-training-neighbour IoU and occupancy statistics of binarised samples."""
    nn = nearest_training_neighbours(samples, train, metric="iou")
    occ = (samples > 0.5).float().flatten(1).mean(1)
    return {
        "n_samples": len(samples),
        "nearest_train_iou_mean": float(nn.value.mean()), "nearest_train_iou_max": float(nn.value.max()),
        "nearest_train_iou_min": float(nn.value.min()), "nearest_train_index": nn.index.tolist(),
        "sample_occupancy_mean": float(occ.mean()),
        "train_occupancy_mean": float((train > 0.5).float().mean()),
        "samples_all_empty": int((occ == 0).sum()),
    }


def sample_quality(samples: torch.Tensor, reference: torch.Tensor) -> dict:
    """Samples (S, 1, R, R, R) against reference shapes (N, 1, R, R, R), distance 1 - IoU of the
    grids binarised at 0.5: 1-NNA with both sides (0.5 is ideal), coverage (share of references
    that are some sample's nearest reference) and MMD (mean over references of the distance to the
    nearest sample)."""
    d_sr = pairwise_iou_distance(samples, reference)
    nna = one_nn_accuracy_sides(pairwise_iou_distance(samples, samples), d_sr,
                                pairwise_iou_distance(reference, reference))
    mc = mmd_cov(d_sr)
    return {"one_nna_iou": nna["overall"], "one_nna_gen_side": nna["gen_side"], "one_nna_ref_side": nna["ref_side"],
            "coverage": mc.cov, "mmd_iou": mc.mmd, "n_samples": len(samples), "n_reference": len(reference)}


def write_samples(run_dir: Path, samples: torch.Tensor, report: dict, name: str = "samples",
                  open3d: bool = True, max_png: int = 36) -> dict:
    """samples.pt / .png / _o3d.png and the report as json in ``run_dir``; returns the paths."""
    clipped = samples.clamp(0, 1)
    paths = {"pt": save_tensors({"samples": clipped}, run_dir / f"{name}.pt")}
    paths["png"] = save_grid_png(clipped[:max_png], run_dir / f"{name}.png")
    if open3d:
        out = save_open3d_png(clipped[:16], run_dir / f"{name}_o3d.png")
        if out is not None:
            paths["open3d_png"] = out
    text = json.dumps(report, indent=2)
    paths["json"] = atomic_write(run_dir / f"{name}.json", lambda tmp: tmp.write_text(text))
    return {k: str(v) for k, v in paths.items()}


def run_synthesis(cfg: VoxelNetExperiment, *, open3d: bool = True, progress: bool = False) -> dict:
    """Train the run's models (resuming) and write its samples; returns the report."""
    train = training_grids(cfg, voxel_source(cfg.data, progress=progress))
    models, trainers, seconds = train_models(cfg, train)
    run_dir = cfg.run_dir
    persistent = None
    if len(models) == 1 and cfg.train.chains.kind in ("persistent", "replay"):
        persistent = trainers[-1].chains.state_dict().get("buffer")
    started = time.time()
    samples = draw_samples(cfg, models, cfg.synthesis.n_samples, cfg.train.seed + 1, persistent)
    report = sample_report(samples, train)
    report.update(train_seconds=round(seconds["wall"], 1), sample_seconds=round(time.time() - started, 1),
                  steps=trainers[-1].step, n_train=len(train), levels=levels_of(cfg),
                  from_persistent_chains=persistent is not None and persistent.numel() > 0)
    report["files"] = write_samples(run_dir, samples, report, open3d=open3d)
    return report


# ------------------------------------------------------------------ point clouds


def chain_settings(cfg: PointNetExperiment, noise: str | None = None, steps: int | None = None,
                   step_size: float | None = None, n_points: int | None = None) -> dict:
    """Keyword arguments of :func:`ebmcore.sampling.langevin` for the run's chain.

    The noise is the training sampler's schedule times its ``noise_scale`` (switched off when the
    run trained with ``noise_off_after``), unless ``noise`` names another schedule.

    ``n_points``: the chain's point count, when it differs from the training one. The energy
    averages over the points, so each point's gradient shrinks as 1/N; the drift
    ``step_size^2 / 2 * grad`` per point stays the same when ``step_size`` grows by
    sqrt(N / N_train), and the noise per step stays the same when the noise scale shrinks by
    the same factor. Without this a model trained on 256 points barely moves 1024.
    """
    s = cfg.train.sampler
    if noise is None:
        noise = "none" if s.noise_off_after is not None else s.noise
    delta = s.step_size if step_size is None else step_size
    ratio = 1.0 if n_points is None else math.sqrt(n_points / cfg.train_points)
    return {"steps": s.steps if steps is None else steps,
            "step_size": delta * ratio,
            "noise": scaled_schedule(noise, s.noise_scale / ratio),
            "clamp": s.clamp}


def initial_noise(cfg: PointNetExperiment, n: int, n_points: int, generator: torch.Generator) -> torch.Tensor:
    """z (n, n_points, 3) ~ N(mean, std^2) with the run's chain settings."""
    c = cfg.train.chains
    return c.mean + c.std * torch.randn(n, n_points, 3, generator=generator)


def draw_clouds(model: GenerativePointNet, cfg: PointNetExperiment, n: int, *, n_points: int | None = None,
                seed: int = 0, noise: str | None = None, batch_size: int = 50) -> torch.Tensor:
    """``n`` fresh samples (n, n_points, 3) from short-run chains (seeded), with the Langevin steps
    and step size of ``cfg.synthesis`` (None there: the training chain's)."""
    g = torch.Generator().manual_seed(seed)
    n_points = n_points or cfg.train_points
    sc = cfg.synthesis
    kwargs = chain_settings(cfg, noise, steps=sc.steps, step_size=sc.step_size, n_points=n_points)
    out = []
    for start in range(0, n, batch_size):
        z = initial_noise(cfg, min(batch_size, n - start), n_points, g)
        out.append(langevin(model.energy, z, generator=g, **kwargs))
    return torch.cat(out)
