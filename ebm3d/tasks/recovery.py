"""Recovery of corrupted shapes by masked Langevin, with the mean-fill and nearest-neighbour baselines.

A corruption is a boolean mask (B, 1, R, R, R), True = observed. Two kinds:

- ``random``: each voxel is unobserved with probability ``ratio`` (the paper: 70 %);
- ``region``: a cube of edge ``box * R`` at a random position is unobserved (a missing part).

Recovery runs Langevin on the model's energy from the corrupted grid (unobserved voxels set to 0
occupancy, or to the training mean) and resets the observed voxels after every step
(``ebmcore.sampling.langevin(mask=...)``). Errors are the average absolute per-voxel difference
to the ground truth, over the unobserved voxels (``error_missing``) and over the whole grid
(``error_all``), on the raw values clipped to [0, 1] and after binarising at 0.5, plus the IoU.

Baselines on the same masks: ``mean_fill`` puts the training set's per-voxel mean occupancy in
every unobserved voxel; ``nearest_neighbour`` copies the unobserved voxels from the training
shape that agrees best with the observed voxels (fewest mismatches there; squared difference
for fractional grids).
"""
from __future__ import annotations

import torch

from ebmcore.sampling import langevin

from ebm3d.config import RecoveryConfig
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


def recover(model: VoxelNet, truth: torch.Tensor, mask: torch.Tensor, cfg: RecoveryConfig,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """Masked Langevin recovery; ``truth`` occupancy (B, 1, R, R, R), ``mask`` True = observed.

    Returns the recovered occupancy (unclipped), with the observed voxels equal to ``truth``.
    """
    device = model.mean.device
    fill = model.mean.cpu().expand_as(truth) if cfg.init == "mean" else torch.zeros_like(truth)
    start = torch.where(mask, truth, fill)
    outs = []
    for lo in range(0, len(truth), cfg.batch_size):
        sl = slice(lo, lo + cfg.batch_size)
        x = langevin(model.energy, model.centre(start[sl].to(device)), cfg.steps, cfg.step_size,
                     noise=cfg.noise, mask=mask[sl].to(device),
                     generator=generator if device.type == "cpu" else None)
        outs.append(model.uncentre(x).detach().cpu())
    return torch.cat(outs)


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
                      kind: str, seed: int) -> tuple[dict, dict]:
    """Corrupt ``truth``, recover it, score the model and both baselines.

    Returns ({method: scores}, arrays {'original', 'corrupted', 'recovered', 'mask', ...}).
    """
    gen = torch.Generator().manual_seed(seed)
    mask = make_mask(kind, truth.shape, cfg, gen)
    recovered = recover(model, truth, mask, cfg, gen)
    mean_pred = mean_fill(truth, mask, model.mean.cpu())
    nn_pred, nn_index = nearest_neighbour_fill(truth, mask, train)
    corrupted = torch.where(mask, truth, torch.zeros_like(truth))
    results = {"voxelnet": scores(recovered, truth, mask), "mean_fill": scores(mean_pred, truth, mask),
               "nearest_neighbour": scores(nn_pred, truth, mask)}
    results["observed_fraction"] = float(mask.float().mean())
    arrays = {"original": truth, "corrupted": corrupted, "recovered": recovered.clamp(0, 1), "mask": mask,
              "mean_fill": mean_pred, "nearest_neighbour": nn_pred, "nearest_index": nn_index}
    return results, arrays
