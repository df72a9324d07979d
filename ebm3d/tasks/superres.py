"""Super-resolution: from a block-averaged low-resolution grid back to the model's resolution.

The low-resolution input is ``avgpool(truth, factor)`` (B, 1, R/f, R/f, R/f), the fraction of
occupied cells in each block. Langevin starts from its nearest-neighbour upsampling and, after
every step, projects onto the grids whose block averages equal the input
(``ebmcore.sampling.block_average_projection``; in the model's centred space the target averages
are ``low - avgpool(mean)``). The baseline is the nearest-neighbour upsampling itself. Errors are
the average absolute per-voxel difference to the ground truth (raw values clipped to [0, 1], and
binarised at 0.5) and the IoU.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ebmcore.chains import upsample
from ebmcore.sampling import block_average_projection, langevin

from ebmcore.io import save_tensors

from ebm3d.config import SuperResConfig, VoxelNetExperiment
from ebm3d.metrics import per_voxel_error, voxel_iou
from ebm3d.models.voxelnet import VoxelNet


def low_resolution(truth: torch.Tensor, factor: int) -> torch.Tensor:
    """Block averages (B, 1, R/f, R/f, R/f) of occupancy grids (B, 1, R, R, R)."""
    return F.avg_pool3d(truth, factor)


def super_resolve(model: VoxelNet, low: torch.Tensor, cfg: SuperResConfig,
                  generator: torch.Generator | None = None, clamp: bool = False) -> torch.Tensor:
    """Langevin super-resolution of ``low`` occupancy (B, 1, R/f, R/f, R/f) by ``cfg.factor``;
    returns occupancy (B, 1, R, R, R), unclipped, whose block averages equal ``low``. ``clamp``
    keeps the chain in the occupancy range (before the projection of each step)."""
    f = cfg.factor
    mean_low = F.avg_pool3d(model.mean, f)
    bounds = model.occupancy_bounds() if clamp else None
    outs = []
    for lo in range(0, len(low), cfg.batch_size):
        part = low[lo:lo + cfg.batch_size].to(model.mean.device)
        block = block_average_projection(part - mean_low, f)
        project = block if bounds is None else (lambda y, block=block: block(y.clamp(*bounds)))
        x = langevin(model.energy, model.centre(upsample(part, f)), cfg.steps, cfg.step_size, noise=cfg.noise,
                     project=project, generator=generator if part.device.type == "cpu" else None)
        outs.append(model.uncentre(x).detach().cpu())
    return torch.cat(outs)


def scores(pred: torch.Tensor, truth: torch.Tensor) -> dict:
    p = pred.clamp(0, 1)
    return {"error": float(per_voxel_error(p, truth).mean()),
            "error_binary": float(per_voxel_error(p, truth, threshold=0.5).mean()),
            "iou": float(voxel_iou(p, truth).mean())}


def evaluate_superres(model: VoxelNet, truth: torch.Tensor, cfg: SuperResConfig, seed: int,
                      clamp: bool = False) -> tuple[dict, dict]:
    """Score the model and nearest-neighbour upsampling on ``truth`` (B, 1, R, R, R).

    Returns ({method: scores}, arrays {'low', 'high', 'truth', 'nearest'}).
    """
    gen = torch.Generator().manual_seed(seed)
    low = low_resolution(truth, cfg.factor)
    high = super_resolve(model, low, cfg, gen, clamp)
    nearest = upsample(low, cfg.factor)
    block_gap = float((F.avg_pool3d(high, cfg.factor) - low).abs().max())
    results = {"voxelnet": scores(high, truth), "nearest_upsampling": scores(nearest, truth),
               "max_block_average_gap": block_gap}
    return results, {"low": low, "high": high.clamp(0, 1), "truth": truth, "nearest": nearest}


def run_superres(cfg: VoxelNetExperiment, model: VoxelNet, truth: torch.Tensor, seed: int, run_dir: Path,
                 open3d: bool = True) -> dict:
    """Super-resolve the block averages of ``truth`` (B, 1, R, R, R); writes ``superres.pt/png`` into
    ``run_dir``; returns the scores with the config."""
    from ebm3d.tasks.render import save_grid_png, save_open3d_png

    sc = cfg.superres
    results, arrays = evaluate_superres(model, truth, sc, seed, cfg.algorithm.clamp)
    R = truth.shape[-1]
    out = {"split": sc.split, "n_examples": len(truth), "from": R // sc.factor, "to": R,
           "config": {k: getattr(sc, k) for k in ("factor", "steps", "step_size", "noise")}, **results}
    save_tensors(arrays, run_dir / "superres.pt")
    k = min(6, len(truth))
    rows = torch.stack([arrays["nearest"][:k], arrays["high"][:k], arrays["truth"][:k]], 1).flatten(0, 1)
    save_grid_png(rows, run_dir / "superres.png", n_cols=3,
                  titles=[t for _ in range(k) for t in (f"{R // sc.factor}^3 (nearest)", "super-resolved", "truth")])
    if open3d:
        save_open3d_png({key: arrays[key][:k] for key in ("low", "high", "truth")}, run_dir / "superres_o3d.png")
    return out
