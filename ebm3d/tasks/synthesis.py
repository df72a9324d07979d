"""Synthesis: train a generative VoxelNet on one category (or several) and draw samples.

:func:`run_synthesis` trains (resuming a run folder when it has a checkpoint) and writes
``samples.pt`` (key ``samples``: occupancy (B, 1, R, R, R) clipped to [0, 1]),
``samples.png`` (a grid of 3D renderings), ``samples_o3d.png`` (Open3D, when it renders here)
and ``synthesis.json`` (how close each sample is to its nearest training shape, occupancy
statistics, timings).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ebmcore.io import atomic_write, save_tensors
from ebmcore.sampling import langevin

from ebm3d.config import ExperimentConfig
from ebm3d.metrics import mmd_cov, nearest_training_neighbours, one_nn_accuracy_sides, pairwise_iou_distance
from ebm3d.models.voxelnet import VoxelNet
from ebm3d.tasks.data import load_shapes
from ebm3d.tasks.render import save_grid_png, save_open3d_png
from ebm3d.tasks.training import coarse_samples, levels_of, train_models, training_grids


def draw_samples(cfg: ExperimentConfig, models: list[VoxelNet], n: int, seed: int,
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


def run_synthesis(cfg: ExperimentConfig, *, open3d: bool = True, progress: bool = False) -> dict:
    """Train the run's models (resuming) and write its samples; returns the report."""
    ds = load_shapes(cfg.data, progress=progress)
    train = training_grids(cfg, ds)
    models, trainers, seconds = train_models(cfg, train)
    run_dir = cfg.run_dir
    persistent = None
    if len(models) == 1 and cfg.train.chains.kind in ("persistent", "replay"):
        persistent = trainers[-1].chains.state_dict().get("buffer")
    started = time.time()
    samples = draw_samples(cfg, models, cfg.synthesis.n_samples, cfg.train.seed + 1, persistent)
    report = sample_report(samples, train)
    report.update(train_seconds=round(seconds, 1), sample_seconds=round(time.time() - started, 1),
                  steps=trainers[-1].step, n_train=len(train), levels=levels_of(cfg),
                  from_persistent_chains=persistent is not None and persistent.numel() > 0)
    report["files"] = write_samples(run_dir, samples, report, open3d=open3d)
    return report
