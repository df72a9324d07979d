"""Recovery of corrupted shapes by masked Langevin, with the mean-fill and nearest-neighbour baselines.

A corruption is a boolean mask (B, 1, R, R, R), True = observed. Two kinds:

- ``random``: each voxel is unobserved with probability ``ratio`` (the paper: 70 %);
- ``region``: a cube of edge ``box * R`` at a random position is unobserved (a missing part).

Recovery runs Langevin on the model's energy from the corrupted grid, by one of two protocols
(``RecoveryConfig.protocol``):

- ``official`` (the official code's): the unobserved voxels start at the mean of the shape's
  observed voxels, the chain runs freely, and the observed voxels are pasted back at the end;
- ``masked``: the unobserved voxels start at 0 occupancy (or the training mean) and the observed
  voxels are reset after every step (``ebmcore.sampling.langevin(mask=...)``).

With ``clamp`` the chain is kept in the occupancy range after every step. Errors are the average
absolute per-voxel difference to the ground truth, over the unobserved voxels (``error_missing``)
and over the whole grid (``error_all``), on the raw values clipped to [0, 1] and after binarising
at 0.5, plus the IoU.

Baselines on the same masks: ``all_empty`` leaves every unobserved voxel at 0; ``mean_fill`` puts
the training set's per-voxel mean occupancy there; ``observed_mean_fill`` the mean of the shape's
own observed voxels (the official protocol's starting point); ``nearest_neighbour`` copies the
unobserved voxels from the training shape that agrees best with the observed voxels (fewest
mismatches there; squared difference for fractional grids).
"""
from __future__ import annotations

import torch

from pathlib import Path

from ebmcore.io import save_tensors
from ebmcore.sampling import langevin

from ebm3d.config import RecoveryConfig, VoxelNetExperiment
from ebm3d.metrics import per_voxel_error, voxel_iou
from ebm3d.models.voxelnet import VoxelNet


def random_mask(shape, ratio: float, generator: torch.Generator) -> torch.Tensor:
    """Observed-voxel mask with each voxel hidden with probability ``ratio``."""
    return torch.rand(shape, generator=generator) >= ratio


def region_mask(shape, box: float, generator: torch.Generator) -> torch.Tensor:
    """Observed-voxel mask with one random cube of edge ``round(box * R)`` hidden per example."""
    B, R = shape[0], shape[-1]
    edge = max(1, min(R, round(box * R)))
    mask = torch.ones(shape, dtype=torch.bool)
    corners = torch.randint(0, R - edge + 1, (B, 3), generator=generator)
    for b, (i, j, k) in enumerate(corners.tolist()):
        mask[b, ..., i:i + edge, j:j + edge, k:k + edge] = False
    return mask


def make_mask(kind: str, shape, cfg: RecoveryConfig, generator: torch.Generator) -> torch.Tensor:
    if kind == "random":
        return random_mask(shape, cfg.ratio, generator)
    if kind == "region":
        return region_mask(shape, cfg.box, generator)
    raise ValueError(f"corruption {kind!r} is not 'random' or 'region'")


def recovery_start(truth: torch.Tensor, mask: torch.Tensor, cfg: RecoveryConfig, mean: torch.Tensor) -> torch.Tensor:
    """Where the recovery chain starts, in occupancy (B, 1, R, R, R): observed voxels from
    ``truth``, the others per the protocol (observed mean; or 0 / the training ``mean``)."""
    if cfg.protocol == "official":
        return observed_mean_fill(truth, mask)
    fill = mean.expand_as(truth) if cfg.init == "mean" else torch.zeros_like(truth)
    return torch.where(mask, truth, fill)


def recover(model: VoxelNet, truth: torch.Tensor, mask: torch.Tensor, cfg: RecoveryConfig,
            generator: torch.Generator | None = None, clamp: bool = False) -> torch.Tensor:
    """Langevin recovery by ``cfg.protocol``; ``truth`` occupancy (B, 1, R, R, R), ``mask`` True =
    observed; ``clamp`` keeps the chain in the occupancy range after every step.

    Returns the recovered occupancy (unclipped), with the observed voxels equal to ``truth``.
    """
    device = model.mean.device
    start = recovery_start(truth, mask, cfg, model.mean.cpu())
    bounds = model.occupancy_bounds() if clamp else None
    outs = []
    for lo in range(0, len(truth), cfg.batch_size):
        sl = slice(lo, lo + cfg.batch_size)
        held = mask[sl].to(device) if cfg.protocol == "masked" else None
        x = langevin(model.energy, model.centre(start[sl].to(device)), cfg.steps, cfg.step_size,
                     noise=cfg.noise, mask=held, clamp=bounds,
                     generator=generator if device.type == "cpu" else None)
        outs.append(model.uncentre(x).detach().cpu())
    return torch.where(mask, truth, torch.cat(outs))


def observed_mean_fill(truth: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Unobserved voxels of each grid (B, 1, R, R, R) set to the mean of its observed voxels."""
    observed = mask.to(truth.dtype)
    mean = (truth * observed).flatten(1).sum(1) / observed.flatten(1).sum(1).clamp(min=1)
    return torch.where(mask, truth, mean.view(-1, *[1] * (truth.dim() - 1)).expand_as(truth))


def mean_fill(truth: torch.Tensor, mask: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """Baseline: unobserved voxels take the training mean occupancy (1, 1, R, R, R)."""
    return torch.where(mask, truth, mean.expand_as(truth))


def nearest_neighbour_fill(truth: torch.Tensor, mask: torch.Tensor, train: torch.Tensor,
                           chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Baseline: unobserved voxels copied from the training shape closest on the observed voxels.

    Returns the filled grids and the chosen training indices (B,).
    """
    obs = mask.flatten(1).float()
    x = truth.flatten(1).float() * obs
    best = torch.full((len(truth),), float("inf"))
    index = torch.zeros(len(truth), dtype=torch.long)
    for lo in range(0, len(train), chunk):
        t = train[lo:lo + chunk].flatten(1).float()  # (c, V); binary or fractional values
        # squared difference summed over the observed voxels (the mismatch count for binary grids)
        d = (x * x).sum(1, keepdim=True) + obs @ (t * t).T - 2 * x @ t.T
        val, idx = d.min(1)
        better = val < best
        best = torch.where(better, val, best)
        index = torch.where(better, idx + lo, index)
    filled = torch.where(mask, truth, train[index].to(truth.dtype))
    return filled, index


def scores(pred: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor) -> dict:
    """Mean per-voxel errors (missing voxels / all voxels; raw clipped and binarised) and IoU."""
    p = pred.clamp(0, 1)
    missing = ~mask
    return {
        "error_missing": float(per_voxel_error(p, truth, mask=missing).mean()),
        "error_all": float(per_voxel_error(p, truth).mean()),
        "error_missing_binary": float(per_voxel_error(p, truth, mask=missing, threshold=0.5).mean()),
        "error_all_binary": float(per_voxel_error(p, truth, threshold=0.5).mean()),
        "iou": float(voxel_iou(p, truth).mean()),
    }


def evaluate_recovery(model: VoxelNet, truth: torch.Tensor, train: torch.Tensor, cfg: RecoveryConfig,
                      kind: str, seed: int, clamp: bool = False) -> tuple[dict, dict]:
    """Corrupt ``truth``, recover it, score the model and the baselines on the same masks
    (``train``: the training occupancy grids, for the training mean and the nearest neighbour).

    Returns ({method: scores}, arrays {'original', 'corrupted', 'recovered', 'mask', ...}).
    """
    gen = torch.Generator().manual_seed(seed)
    mask = make_mask(kind, truth.shape, cfg, gen)
    recovered = recover(model, truth, mask, cfg, gen, clamp)
    mean_pred = mean_fill(truth, mask, train.float().mean(0, keepdim=True))
    nn_pred, nn_index = nearest_neighbour_fill(truth, mask, train)
    corrupted = torch.where(mask, truth, torch.zeros_like(truth))
    results = {"voxelnet": scores(recovered, truth, mask), "all_empty": scores(corrupted, truth, mask),
               "mean_fill": scores(mean_pred, truth, mask),
               "observed_mean_fill": scores(observed_mean_fill(truth, mask), truth, mask),
               "nearest_neighbour": scores(nn_pred, truth, mask)}
    results["observed_fraction"] = float(mask.float().mean())
    arrays = {"original": truth, "corrupted": corrupted, "recovered": recovered.clamp(0, 1), "mask": mask,
              "mean_fill": mean_pred, "nearest_neighbour": nn_pred, "nearest_index": nn_index}
    return results, arrays


def run_recovery(cfg: VoxelNetExperiment, model: VoxelNet, truth: torch.Tensor, train: torch.Tensor,
                 kinds: list[str], seed: int, run_dir: Path, open3d: bool = True) -> dict:
    """Recover ``truth`` (B, 1, R, R, R) under each corruption kind; writes ``recovery*.pt/png`` into
    ``run_dir``; returns {kind: {method: scores}} with the config and split sizes."""
    from ebm3d.tasks.render import save_grid_png, save_open3d_png

    rc = cfg.recovery
    out = {"split": rc.split, "n_examples": len(truth), "clamp": cfg.algorithm.clamp,
           "config": {k: getattr(rc, k) for k in ("ratio", "box", "steps", "step_size", "noise", "protocol", "init")}}
    for kind in kinds:
        results, arrays = evaluate_recovery(model, truth, train, rc, kind, seed, cfg.algorithm.clamp)
        out[kind] = results
        name = "recovery" if kind == "random" else f"recovery_{kind}"
        save_tensors(arrays, run_dir / f"{name}.pt")
        k = min(6, len(truth))
        rows = torch.stack([arrays["original"][:k], arrays["corrupted"][:k], arrays["recovered"][:k],
                            arrays["nearest_neighbour"][:k]], 1).flatten(0, 1)
        save_grid_png(rows, run_dir / f"{name}.png", n_cols=4,
                      titles=[t for _ in range(k) for t in ("original", "corrupted", "recovered", "nearest nb.")])
        if open3d:
            save_open3d_png({key: arrays[key][:k] for key in ("original", "corrupted", "recovered")},
                            run_dir / f"{name}_o3d.png")
    return out
