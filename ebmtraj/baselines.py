"""Simple predictors on scene tensors, and their evaluation with :mod:`ebmtraj.metrics`.

Both predictors extrapolate each agent from its state at the last history frame (history-only
estimate, see :mod:`ebmtraj.data.scenes`):

* :func:`constant_velocity` -- speed and heading kept;
* :func:`constant_acceleration` -- heading kept, speed changing at the last acceleration until
  it would reach zero (the vehicle then stays stopped; it never reverses).

Command line (prints a JSON table; reads a cache made by ``python -m data_prep.ngsim prepare``)::

    python -m ebmtraj.baselines --dataset us101-vehicles --split test
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Callable

import torch

from ebmcore.paths import cache_root

from .metrics import ade_fde, collision_rate, offroad_rate, rmse_at


def constant_velocity(history: torch.Tensor, future: int, dt: float = 0.1) -> torch.Tensor:
    """history (..., H, 6) -> predicted states (..., future, 6): straight at constant speed."""
    last = history[..., -1, :]
    t = dt * torch.arange(1, future + 1, dtype=history.dtype)
    dist = last[..., 2:3] * t
    return _along_heading(last, dist, last[..., 2:3].expand_as(dist), torch.zeros_like(dist))


def constant_acceleration(history: torch.Tensor, future: int, dt: float = 0.1) -> torch.Tensor:
    """history (..., H, 6) -> states (..., future, 6): straight, constant acceleration, no
    reversing (a decelerating vehicle stops where its speed reaches zero)."""
    last = history[..., -1, :]
    t = dt * torch.arange(1, future + 1, dtype=history.dtype)
    v0, a = last[..., 2:3], last[..., 4:5]
    stopping = (a < 0) & (v0 > 0)
    t_stop = torch.where(stopping, -v0 / torch.where(stopping, a, -torch.ones_like(a)),
                         torch.full_like(a, math.inf))
    tt = torch.minimum(t, t_stop)
    dist = v0 * tt + 0.5 * a * tt ** 2
    speed = (v0 + a * tt).clamp_min(0.0)
    accel = torch.where(t < t_stop, a.expand_as(dist), torch.zeros_like(dist))
    return _along_heading(last, dist, speed, accel)


def _along_heading(last, dist, speed, accel):
    c, s = torch.cos(last[..., 3:4]), torch.sin(last[..., 3:4])
    x = last[..., 0:1] + dist * c
    y = last[..., 1:2] + dist * s
    heading = last[..., 3:4].expand_as(dist)
    return torch.stack([x, y, speed, heading, accel, torch.zeros_like(dist)], dim=-1)


BASELINES: dict[str, Callable] = {"cv": constant_velocity, "ca": constant_acceleration}


def evaluate(pred: torch.Tensor, scenes: dict, lane_maps: dict | None = None, *,
             ground_truth: str = "raw", horizons=(1.0, 2.0, 3.0, 4.0)) -> dict:
    """Metrics of predicted future states (N, A, F, 6) against a split's scene tensors.

    RMSE per horizon and ADE / FDE are over the target agents (agent 0 of each scene: each
    vehicle-window once, the NGSIM convention); ``ground_truth``: 'raw' (observed positions) or
    'smoothed'. Collision rates are between all predicted agents of a scene, with the
    ground-truth collision rate beside them (the floor that sensor noise and default sizes
    give). Off-road rates (targets) use ``lane_maps`` (recording name -> LaneMap or None).
    """
    H = int(scenes["history"])
    F = pred.shape[-2]
    gt_key = {"raw": "positions_raw", "smoothed": "states"}[ground_truth]
    gt = scenes[gt_key][:, :, H:H + F, :2].to(pred.dtype)
    p = pred[..., :2]
    dt = float(scenes.get("dt", 0.1))
    out = {"n_scenes": int(pred.shape[0]), "ground_truth": ground_truth}
    out["rmse"] = rmse_at(p[:, 0], gt[:, 0], horizons=horizons, dt=dt)
    out["ade"], out["fde"] = ade_fde(p[:, 0], gt[:, 0])
    mask = scenes["mask"]
    kw = dict(sizes=scenes["size"].to(pred.dtype), mask=mask,
              ref_offset=scenes["ref_offset"].to(pred.dtype))
    out["collision"] = collision_rate(p, pred[..., 3], **kw)
    gt_states = scenes["states"][:, :, H:H + F].to(pred.dtype)
    out["collision_ground_truth"] = collision_rate(gt_states[..., :2], gt_states[..., 3], **kw)
    if lane_maps:
        recs = scenes["recordings"]
        maps = [lane_maps.get(recs[int(r)]) for r in scenes["recording"]]
        out["offroad"] = offroad_rate(p[:, 0], maps)
        out["offroad_ground_truth"] = offroad_rate(gt[:, 0], maps)
    return out


def run(dataset: str, split: str = "test", cache: str | Path | None = None,
        names=("cv", "ca"), ground_truth: str = "raw") -> dict:
    """Evaluate the named baselines on one split of a prepared cache; returns {name: metrics}."""
    from .data.scenes import SceneDataset

    root = Path(cache) if cache else cache_root() / "ebmtraj" / dataset
    ds = SceneDataset(root, split)
    sc = ds.tensors
    H, F = int(sc["history"]), int(sc["future"])
    hist = sc["states"][:, :, :H].double()
    dt = float(sc.get("dt", 0.1))
    return {name: evaluate(BASELINES[name](hist, F, dt), sc, ds.lanes, ground_truth=ground_truth)
            for name in names}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Evaluate constant-velocity / -acceleration "
                                             "baselines on prepared scenes.")
    ap.add_argument("--dataset", default="us101-vehicles")
    ap.add_argument("--split", default="test", choices=("train", "val", "test"))
    ap.add_argument("--cache", default=None, help="cache folder (default: cache_root()/ebmtraj/"
                                                  "<dataset>)")
    ap.add_argument("--ground-truth", default="raw", choices=("raw", "smoothed"))
    ap.add_argument("--seed", type=int, default=0, help="unused: the baselines are "
                                                       "deterministic")
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    res = run(args.dataset, args.split, args.cache, ground_truth=args.ground_truth)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
