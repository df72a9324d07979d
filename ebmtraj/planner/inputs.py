"""Planner inputs -> the agent-frame tensors the learned cost reads.

The tensors are those of :func:`ebmtraj.cost_inputs.build_inputs` (same keys, shapes and
construction: nearest lanes sampled along travel, neighbours extrapolated at constant velocity,
the scene context of :func:`ebmtraj.cost_inputs.context`), built here from live states instead
of recorded scenes. One difference: where the caller gives the agent's current state, it is
used as is; training estimated it from the history (:func:`ebmtraj.cost_inputs.causal_fit`),
which :func:`fit_state` reproduces for callers that have positions only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
import torch
from shapely.geometry import LineString

from ..cost_inputs import InputConfig, context, estimate_state
from .types import AgentState, PlannerInputError

DEFAULT_LANE_WIDTH = 3.7  # m, where a lane comes without one


# ----------------------------------------------------------------------------- lanes

@dataclass
class LaneSet:
    """Lane centre lines (oriented along travel) and widths [m], ready for repeated queries."""

    lines: np.ndarray     # (n,) shapely LineStrings
    widths: np.ndarray    # (n,)

    def __len__(self) -> int:
        return len(self.lines)

    @classmethod
    def from_any(cls, lanes, default_width: float = DEFAULT_LANE_WIDTH) -> "LaneSet":
        """Accepts None, a LaneSet, an object with ``.lanes`` (e.g. ``ebmtraj.data.lanes.LaneMap``)
        or a sequence whose items are shapely LineStrings, (N, 2) point arrays, ``(line, width)``
        pairs or objects with ``.centre`` and ``.width``. Raises PlannerInputError naming the bad
        lane."""
        if isinstance(lanes, LaneSet):
            return lanes
        if lanes is None:
            return cls(np.array([], dtype=object), np.zeros(0))
        items = getattr(lanes, "lanes", lanes)
        lines, widths = [], []
        for i, item in enumerate(items):
            width = default_width
            if hasattr(item, "centre"):
                line, width = item.centre, getattr(item, "width", default_width)
            elif isinstance(item, tuple) and len(item) == 2 and np.isscalar(item[1]):
                line, width = item
            else:
                line = item
            if not isinstance(line, LineString):
                arr = np.asarray(line, dtype=float)
                if arr.ndim != 2 or arr.shape[1] != 2 or len(arr) < 2:
                    raise PlannerInputError(f"lanes[{i}]: expected a LineString or (N>=2, 2) points, "
                                            f"got shape {arr.shape}")
                line = LineString(arr)
            coords = shapely.get_coordinates(line)
            if len(coords) < 2 or not np.isfinite(coords).all() or line.length <= 0:
                raise PlannerInputError(f"lanes[{i}]: centre line needs >= 2 finite, distinct points")
            if not (np.isfinite(width) and 1.0 <= float(width) <= 10.0):
                raise PlannerInputError(f"lanes[{i}]: width {width} m is not a lane width")
            lines.append(line)
            widths.append(float(width))
        arr = np.empty(len(lines), dtype=object)
        arr[:] = lines
        return cls(arr, np.asarray(widths, dtype=float))

    def distances(self, xy: np.ndarray) -> np.ndarray:
        """(n_points, n_lanes) distances [m] from points (n_points, 2) to each centre line."""
        if len(self) == 0:
            return np.zeros((len(xy), 0))
        pts = shapely.points(xy[:, 0], xy[:, 1])
        return shapely.distance(self.lines[None, :], pts[:, None])

    def edge_excess(self, xy: np.ndarray) -> np.ndarray:
        """(n_points,) how far [m] each point lies beyond the nearest lane's edge (<= 0: on a lane;
        +inf without lanes)."""
        if len(self) == 0:
            return np.full(len(xy), np.inf)
        return (self.distances(xy) - self.widths[None] / 2).min(1)

    def sample(self, p0: np.ndarray, cfg: InputConfig):
        """Centre-line samples (n, L, P, 2), filled (n, L) and half widths (n, L) of the
        ``cfg.lanes`` nearest lanes within ``cfg.lane_radius`` of each point p0 (n, 2), from
        ``lane_behind`` m behind to ``lane_ahead`` m ahead of its projection (as in training)."""
        n, L, P = len(p0), cfg.lanes, cfg.lane_points
        pts = np.zeros((n, L, P, 2))
        hw = np.full((n, L), 1.8)
        filled = np.zeros((n, L), bool)
        if len(self) == 0 or n == 0:
            return pts, filled, hw
        geo = shapely.points(p0[:, 0], p0[:, 1])
        dist = self.distances(p0)
        order = np.argsort(dist, axis=1, kind="stable")[:, :L]
        offsets = np.linspace(-cfg.lane_behind, cfg.lane_ahead, P)
        for row in range(n):
            for slot, j in enumerate(order[row]):
                if dist[row, j] > cfg.lane_radius:
                    continue
                line = self.lines[j]
                s0 = shapely.line_locate_point(line, geo[row])
                st = np.clip(s0 + offsets, 0.0, line.length)
                pts[row, slot] = shapely.get_coordinates(shapely.line_interpolate_point(line, st))
                hw[row, slot] = self.widths[j] / 2.0
                filled[row, slot] = True
        return pts, filled, hw


# ----------------------------------------------------------------------------- agents

def check_history(history, state: AgentState, frames: int, name: str, dt: float = 0.1,
                  max_gap: float = 2.0) -> tuple[np.ndarray, bool]:
    """The last ``frames`` history positions (frames, 2) of an agent, and whether they were padded.

    ``history``: (H, 2) positions at ``dt`` spacing ending at the current time, or None. Missing
    older frames are filled by moving back along the current heading at the current speed.
    Raises PlannerInputError for a wrong shape, non-finite rows, or a last row more than
    ``max_gap`` m from the state's position.
    """
    pos = np.array([state.x, state.y], dtype=float)
    if history is None:
        hist = pos[None]
    else:
        hist = np.asarray(history, dtype=float)
        if hist.ndim != 2 or hist.shape[1] != 2 or len(hist) == 0:
            raise PlannerInputError(f"{name} history: expected (H, 2) positions, got shape {hist.shape}")
        bad = ~np.isfinite(hist).all(1)
        if bad.any():
            raise PlannerInputError(f"{name} history row {int(np.flatnonzero(bad)[0])} is not finite")
        gap = float(np.hypot(*(hist[-1] - pos)))
        if gap > max_gap:
            raise PlannerInputError(f"{name} history ends {gap:.2f} m from the current position; it "
                                    f"must end at the current time (last row = current position)")
    hist = hist[-frames:]
    padded = len(hist) < frames
    if padded:
        missing = frames - len(hist)
        back = np.arange(missing, 0, -1)[:, None] * dt * state.speed
        unit = np.array([np.cos(state.heading), np.sin(state.heading)])
        hist = np.concatenate([hist[0] - back * unit, hist], axis=0)
    return hist, padded


def fit_state(history, dt: float = 0.1, cfg: InputConfig | None = None,
              length: float = 4.5, width: float = 1.8, ref: float = 0.0) -> AgentState:
    """The current state estimated from history positions (H, 2) alone, exactly as training
    estimates it (:func:`ebmtraj.cost_inputs.estimate_state`: causal polynomial fits)."""
    cfg = cfg or InputConfig()
    hist = np.asarray(history, dtype=float)
    if hist.ndim != 2 or hist.shape[1] != 2 or not np.isfinite(hist).all():
        raise PlannerInputError(f"history: expected finite (H, 2) positions, got shape {hist.shape}")
    need = max(cfg.fit_frames, cfg.fit_degree + 1)
    if len(hist) < need:
        raise PlannerInputError(f"history has {len(hist)} frames; the state fit needs {need}")
    est = estimate_state(hist, dt, cfg)
    return AgentState(float(est["pos"][0]), float(est["pos"][1]), float(est["heading"]),
                      float(est["speed"]), float(est["accel"]), float(est["steer"]), length, width, ref)


def _rotate(xy: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """World -> agent frame for each row: xy (N, ..., 2), origin (N, 3) = x, y, heading."""
    shape = (-1,) + (1,) * (xy.ndim - 2)
    c, s = np.cos(origin[:, 2]).reshape(shape), np.sin(origin[:, 2]).reshape(shape)
    d = xy - origin[:, :2].reshape((-1,) + (1,) * (xy.ndim - 2) + (2,))
    return np.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]], axis=-1)


def to_world(xy: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """Agent frame -> world: xy (N, ..., 2), origin (N, 3)."""
    shape = (-1,) + (1,) * (xy.ndim - 2)
    c, s = np.cos(origin[:, 2]).reshape(shape), np.sin(origin[:, 2]).reshape(shape)
    x = c * xy[..., 0] - s * xy[..., 1] + origin[:, 0].reshape(shape)
    y = s * xy[..., 0] + c * xy[..., 1] + origin[:, 1].reshape(shape)
    return np.stack([x, y], axis=-1)


@dataclass
class RowInputs:
    """Agent-frame tensors (``cond``) for N rows plus what is needed to map results back."""

    cond: dict
    origin: np.ndarray          # (N, 3) world pose of each row's agent frame
    neighbours: np.ndarray      # (N, M) int: index into the row's neighbour list, -1 empty
    padded: np.ndarray          # (N,) bool: history padded
    edge_excess: np.ndarray     # (N,) m beyond the nearest lane edge (inf: no lanes)


def build_rows(states: list[AgentState], histories: list, neighbour_lists: list[list[AgentState]],
               lanes: LaneSet, cfg: InputConfig, *, history: int, steps: int, dt: float = 0.1,
               max_neighbours: int = 5, radius: float = 30.0, min_slots: int = 1) -> RowInputs:
    """The cost inputs of N agents (rows) with their own neighbours.

    ``states``: N agent states; ``histories``: N (H, 2) arrays or None; ``neighbour_lists``:
    for each row, the other vehicles (current states, extrapolated at constant velocity). Of
    those, the ``max_neighbours`` nearest within ``radius`` m of the row's agent fill the
    neighbour slots (as in the training scenes); at least ``min_slots`` slots exist (empty ones
    are masked by ``nbr_valid``)."""
    n, T = len(states), steps
    origin = np.array([[s.x, s.y, s.heading] for s in states], dtype=float).reshape(n, 3)
    hist = np.zeros((n, history, 2))
    padded = np.zeros(n, bool)
    for i, (s, h) in enumerate(zip(states, histories)):
        hist[i], padded[i] = check_history(h, s, history, f"agent {i}" if n > 1 else "ego", dt)
    tgrid = np.arange(1, T + 1) * dt
    chosen = []
    for i, (s, nbrs) in enumerate(zip(states, neighbour_lists)):
        if not nbrs:
            chosen.append([])
            continue
        cen = np.array([b.centre for b in nbrs])
        d = np.hypot(cen[:, 0] - s.x, cen[:, 1] - s.y)
        keep = np.flatnonzero(d <= radius)
        chosen.append(list(keep[np.argsort(d[keep], kind="stable")][:max_neighbours]))
    M = max([min_slots] + [len(c) for c in chosen])
    npos = np.zeros((n, M, T, 2))
    nvel = np.zeros((n, M, 2))
    nsize = np.zeros((n, M, 2))
    nvalid = np.zeros((n, M))
    nhead = np.zeros((n, M))
    nidx = np.full((n, M), -1, dtype=np.int64)
    for i, c in enumerate(chosen):
        for m, j in enumerate(c):
            b = neighbour_lists[i][j]
            v = b.speed * np.array([np.cos(b.heading), np.sin(b.heading)])
            npos[i, m] = b.centre[None] + v[None] * tgrid[:, None]
            nvel[i, m], nsize[i, m], nvalid[i, m], nidx[i, m] = v, (b.length, b.width), 1.0, j
            nhead[i, m] = b.heading - origin[i, 2]
    c, s_ = np.cos(origin[:, 2]), np.sin(origin[:, 2])
    npos_a = np.where(nvalid[..., None, None] > 0, _rotate(npos.reshape(n, -1, 2), origin).reshape(n, M, T, 2), 0.0)
    nvel_a = np.stack([c[:, None] * nvel[..., 0] + s_[:, None] * nvel[..., 1],
                       -s_[:, None] * nvel[..., 0] + c[:, None] * nvel[..., 1]], -1)
    lane_pts, lane_ok, lane_hw = lanes.sample(origin[:, :2], cfg)
    L, P = cfg.lanes, cfg.lane_points
    lane_pts = _rotate(lane_pts.reshape(n, -1, 2), origin).reshape(n, L, P, 2)
    seg_len = np.linalg.norm(np.diff(lane_pts, axis=2), axis=-1)
    lane_seg = lane_ok[..., None] & (seg_len > 0.5)
    lane_pts = np.where(lane_ok[..., None, None], lane_pts, 0.0)
    hist_a = _rotate(hist, origin)
    v_hist = (np.linalg.norm(np.diff(hist, axis=1), axis=-1) / dt).mean(1)
    x0 = np.zeros((n, 6))
    x0[:, 2] = [s.speed for s in states]
    x0[:, 4] = [s.accel for s in states]
    x0[:, 5] = [s.steering for s in states]
    out = {"x0": x0, "hist": hist_a, "v_hist": v_hist, "lane_pts": lane_pts, "lane_seg": lane_seg,
           "lane_hw": lane_hw, "nbr_pos": npos_a, "nbr_vel": np.repeat(nvel_a[:, :, None], T, 2),
           "nbr_size": nsize, "nbr_valid": nvalid, "nbr_heading": nhead,
           "size": np.array([[s.length, s.width] for s in states], dtype=float).reshape(n, 2),
           "ref": np.array([s.ref for s in states], dtype=float)}
    cond = {k: torch.as_tensor(v, dtype=torch.bool if v.dtype == bool else torch.float32)
            for k, v in out.items()}
    cond["ctx"] = context(cond, cfg)
    centres = np.array([s.centre for s in states]).reshape(n, 2)
    return RowInputs(cond, origin, nidx, padded, lanes.edge_excess(centres))
