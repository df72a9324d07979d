"""Trajectory prediction metrics: RMSE per horizon, ADE / FDE, minADE_K / minFDE_K, collision
and off-road rates.

Shapes: predictions and ground truth are positions (..., T, 2) [m] over the T future frames
(frame i is ``(i + 1) * dt`` seconds after the last history frame); K samples sit just before
time, (..., K, T, 2). ``mask`` (...) marks which trajectories count (padding agents do not).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ebmcore.errors import DataError


def _valid(mask, shape) -> torch.Tensor:
    if mask is None:
        return torch.ones(shape, dtype=torch.bool)
    mask = torch.as_tensor(mask, dtype=torch.bool)
    if mask.shape != shape:
        raise DataError(f"mask shape {tuple(mask.shape)} does not match trajectories "
                        f"{tuple(shape)}")
    return mask


def _check(pred: torch.Tensor, gt: torch.Tensor) -> None:
    if pred.shape != gt.shape or pred.shape[-1] != 2:
        raise DataError(f"pred {tuple(pred.shape)} and gt {tuple(gt.shape)} must both be "
                        f"(..., T, 2)")


def rmse_at(pred: torch.Tensor, gt: torch.Tensor, mask=None, *,
            horizons: Sequence[float] = (1.0, 2.0, 3.0, 4.0), dt: float = 0.1
            ) -> dict[float, float]:
    """RMSE [m] at each horizon [s], NGSIM convention: the square root of the mean squared
    displacement over all counted trajectories at that horizon (frame ``round(h / dt) - 1``)."""
    _check(pred, gt)
    valid = _valid(mask, pred.shape[:-2])
    sq = ((pred - gt) ** 2).sum(-1)[valid]  # (M, T)
    out = {}
    for h in horizons:
        i = int(round(h / dt)) - 1
        if not 0 <= i < pred.shape[-2]:
            raise DataError(f"horizon {h} s is outside the {pred.shape[-2]} predicted frames")
        out[float(h)] = float(sq[:, i].mean().sqrt()) if sq.numel() else float("nan")
    return out


def ade_fde(pred: torch.Tensor, gt: torch.Tensor, mask=None) -> tuple[float, float]:
    """Average and final displacement error [m] over the counted trajectories."""
    _check(pred, gt)
    d = torch.linalg.vector_norm(pred - gt, dim=-1)[_valid(mask, pred.shape[:-2])]
    return float(d.mean()), float(d[:, -1].mean())


def min_ade_fde(samples: torch.Tensor, gt: torch.Tensor, mask=None) -> tuple[float, float]:
    """minADE_K and minFDE_K [m]: per trajectory the best of K samples, averaged.

    samples: (..., K, T, 2); gt: (..., T, 2). The two minima are taken independently (the
    sample closest on average, and the sample whose end point is closest).
    """
    if samples.dim() < 3 or samples.shape[:-3] + samples.shape[-2:] != gt.shape:
        raise DataError(f"samples {tuple(samples.shape)} must be gt {tuple(gt.shape)} with a "
                        f"K dim before time")
    d = torch.linalg.vector_norm(samples - gt.unsqueeze(-3), dim=-1)  # (..., K, T)
    valid = _valid(mask, gt.shape[:-2])
    ade = d.mean(-1).min(-1).values[valid]
    fde = d[..., -1].min(-1).values[valid]
    return float(ade.mean()), float(fde.mean())


def box_corners(positions: torch.Tensor, headings: torch.Tensor, sizes: torch.Tensor,
                ref_offset: torch.Tensor | None = None) -> torch.Tensor:
    """Corners (..., 4, 2) of oriented vehicle rectangles.

    positions (..., 2) [m] of the recorded point; headings (...) [rad]; sizes (..., 2) length,
    width [m]; ref_offset (...) [m]: how far the footprint centre lies behind the recorded point
    along the heading (NGSIM: length / 2; CommonRoad: 0).
    """
    c, s = torch.cos(headings), torch.sin(headings)
    fwd = torch.stack([c, s], -1)
    left = torch.stack([-s, c], -1)
    centre = positions if ref_offset is None else positions - ref_offset.unsqueeze(-1) * fwd
    hl, hw = sizes[..., 0:1] / 2, sizes[..., 1:2] / 2
    signs = torch.tensor([[1, 1], [1, -1], [-1, -1], [-1, 1]], dtype=positions.dtype)
    return (centre.unsqueeze(-2) + signs[:, 0:1] * (hl * fwd).unsqueeze(-2)
            + signs[:, 1:2] * (hw * left).unsqueeze(-2))


def boxes_overlap(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Whether rectangles with corners a, b (..., 4, 2) overlap (separating-axis test).

    Touching edges count as overlap. Broadcasts over the leading dims.
    """
    overlap = None
    for box in (a, b):
        edges = box[..., [1, 3], :] - box[..., [0, 0], :]  # two edge directions per box
        for k in range(2):
            axis = edges[..., k, :].unsqueeze(-2)
            pa = (a * axis).sum(-1)
            pb = (b * axis).sum(-1)
            sep = (pa.max(-1).values < pb.min(-1).values) | (pb.max(-1).values <
                                                              pa.min(-1).values)
            overlap = ~sep if overlap is None else overlap & ~sep
    return overlap


def collision_rate(positions: torch.Tensor, headings: torch.Tensor, sizes: torch.Tensor,
                   mask=None, ref_offset: torch.Tensor | None = None) -> dict[str, float]:
    """Collisions between the agents of each scene, with oriented rectangles.

    positions (N, A, T, 2), headings (N, A, T), sizes (N, A, 2), mask (N, A), ref_offset (N, A).
    Returns ``agent``: the share of counted agents whose box overlaps another counted agent's
    box at some frame; ``scene``: the share of scenes with two or more counted agents that have
    any such overlap. Only pairs whose bounding circles meet go through the separating-axis
    test.
    """
    N, A, T = headings.shape
    valid = _valid(mask, (N, A))
    fwd = torch.stack([torch.cos(headings), torch.sin(headings)], -1)
    centre = positions if ref_offset is None else \
        positions - ref_offset[..., None, None] * fwd
    radius = 0.5 * torch.linalg.vector_norm(sizes, dim=-1)  # (N, A)
    pair_ok = valid.unsqueeze(2) & valid.unsqueeze(1) & ~torch.eye(A, dtype=torch.bool)
    dist = torch.linalg.vector_norm(centre.unsqueeze(2) - centre.unsqueeze(1), dim=-1)
    near = (dist <= (radius.unsqueeze(2) + radius.unsqueeze(1)).unsqueeze(-1)) & \
        pair_ok.unsqueeze(-1)  # (N, A, A, T)
    n, i, j, t = near.nonzero(as_tuple=True)
    hit = torch.zeros(N, A, A, dtype=torch.bool)
    if n.numel():
        size_t = sizes.unsqueeze(2).expand(N, A, T, 2)
        ci = box_corners(centre[n, i, t], headings[n, i, t], size_t[n, i, t])
        cj = box_corners(centre[n, j, t], headings[n, j, t], size_t[n, j, t])
        ov = boxes_overlap(ci, cj)
        hit[n[ov], i[ov], j[ov]] = True
    agent_hit = hit.any(-1)[valid]
    multi = valid.sum(1) >= 2
    scene_hit = hit.flatten(1).any(-1)[multi]
    return {"agent": float(agent_hit.float().mean()) if agent_hit.numel() else float("nan"),
            "scene": float(scene_hit.float().mean()) if scene_hit.numel() else float("nan")}


def offroad_rate(positions: torch.Tensor, lane_maps, mask=None, *,
                 tolerance: float = 0.5) -> dict[str, float]:
    """How often predicted positions leave the lanes (the union of every lane's area).

    positions (N, ..., T, 2) [m]; lane_maps: one :class:`ebmtraj.data.lanes.LaneMap` for all
    scenes or a sequence of N (None: scene not counted); mask (N, ...). A point is off-road when
    it lies farther than ``tolerance`` metres outside every lane. Returns ``trajectory``: the
    share of counted trajectories with any off-road point, and ``point``: the share of points.
    """
    N = positions.shape[0]
    valid = _valid(mask, positions.shape[:-2])
    maps = lane_maps if isinstance(lane_maps, (list, tuple)) else [lane_maps] * N
    if len(maps) != N:
        raise DataError(f"{len(maps)} lane maps for {N} scenes")
    traj, pts = [], []
    xy = positions.detach().cpu().numpy()
    v = valid.cpu().numpy()
    for n in range(N):
        if maps[n] is None or not v[n].any():
            continue
        p = xy[n][v[n]]  # (M, T, 2)
        off = ~maps[n].on_road(p[..., 0], p[..., 1], tolerance=tolerance)
        traj.append(off.any(-1))
        pts.append(off.ravel())
    if not traj:
        return {"trajectory": float("nan"), "point": float("nan")}
    return {"trajectory": float(np.concatenate(traj).mean()),
            "point": float(np.concatenate(pts).mean())}
