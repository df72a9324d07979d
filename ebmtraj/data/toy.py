"""Synthetic highway scenes for tests and benchmarks: a straight multi-lane road and vehicles
driving along it, in the prepared-scene layout of :mod:`ebmtraj.data.scenes` (one scene).

Nothing here reads data: parity tests and latency benchmarks run anywhere.
"""
from __future__ import annotations

import numpy as np
import torch
from shapely.geometry import LineString

from .lanes import Lane, LaneMap

RECORDING = "toy"


def straight_road(lanes: int = 3, width: float = 3.7, start: float = -4000.0,
                  end: float = 3000.0) -> LaneMap:
    """``lanes`` parallel lanes along +x, lane i centred at y = i * width [m]."""
    out = []
    for i in range(lanes):
        y = i * width
        out.append(Lane(i, LineString([(start, y), (end, y)]), width,
                        LineString([(start, y + width / 2), (end, y + width / 2)]),
                        LineString([(start, y - width / 2), (end, y - width / 2)])))
    return LaneMap(out, source="toy straight road")


def traffic_scene(agents: int, *, seed: int = 0, lanes: int = 3, width: float = 3.7,
                  spacing: float = 16.0, history: int = 10, future: int = 40, dt: float = 0.1,
                  gaps: list | None = None, speeds: list | None = None) -> dict:
    """One scene of ``agents`` vehicles on :func:`straight_road`, in the prepared layout
    (``positions_raw`` (1, A, H+T, 2), ``mask``, ``size``, ``ref_offset``, ``states``, ...).

    Vehicle a drives in lane a % lanes, ``spacing`` m behind the one ahead in its lane (or at
    x = ``gaps[a]`` when given), at a random speed in [12, 25] m/s (or ``speeds[a]``) with a
    small constant acceleration and lateral drift; positions are the footprint centres
    (``ref_offset`` 0). The future continues the same motion."""
    rng = np.random.default_rng(seed)
    t = (np.arange(history + future) - (history - 1)) * dt                  # 0 at the last history frame
    lane = np.arange(agents) % lanes
    x0 = np.asarray(gaps, float) if gaps is not None else -(np.arange(agents) // lanes) * spacing
    v = np.asarray(speeds, float) if speeds is not None else rng.uniform(12.0, 25.0, agents)
    acc = rng.uniform(-0.5, 0.5, agents)
    drift = rng.uniform(-0.1, 0.1, agents)
    x = x0[:, None] + v[:, None] * t + 0.5 * acc[:, None] * t ** 2
    y = lane[:, None] * width + 0.3 * np.sin(0.3 * rng.uniform(0, 6, agents)[:, None] + drift[:, None] * t)
    pos = np.stack([x, y], -1)                                              # (A, H+T, 2)
    vel = np.gradient(pos, dt, axis=1)
    states = np.concatenate([pos, np.linalg.norm(vel, axis=-1)[..., None],
                             np.arctan2(vel[..., 1], vel[..., 0])[..., None],
                             np.broadcast_to(acc[:, None, None], (agents, len(t), 1)),
                             np.zeros((agents, len(t), 1))], -1)
    size = np.stack([rng.uniform(4.2, 5.0, agents), rng.uniform(1.7, 2.0, agents)], -1)
    as_t = lambda a: torch.as_tensor(np.asarray(a)[None], dtype=torch.float32)
    return {"positions_raw": as_t(pos), "states": as_t(states), "mask": torch.ones(1, agents, dtype=torch.bool),
            "size": as_t(size), "ref_offset": torch.zeros(1, agents), "history": history, "future": future,
            "dt": dt, "recordings": [RECORDING], "recording": torch.zeros(1, dtype=torch.int64)}
