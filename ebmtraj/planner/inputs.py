"""Planner inputs -> the agent-frame tensors the learned cost reads.

The tensors are assembled by :func:`ebmtraj.cost_inputs.assemble_rows`, the function that also
builds the training rows from recorded scenes (same lane sampler, neighbour extrapolation,
context and virtual leaders). As in training, each row starts from the state estimated from its
history positions (:func:`ebmtraj.cost_inputs.estimate_state`, acceleration and steering
clipped); a padded (too short) history uses the caller's state with the same clips.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import numpy as np
import shapely
import torch
from shapely.geometry import LineString

from ..cost_inputs import (InputConfig, Neighbours, assemble_rows, clip_controls,
                           estimate_state, sample_lanes, to_recording_frame)
from ..geometry import Polylines
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

    @functools.cached_property
    def geometry(self) -> Polylines:
        """The centre lines as :class:`ebmtraj.geometry.Polylines` (built on first use)."""
        return Polylines(self.lines)

    def distances(self, xy: np.ndarray) -> np.ndarray:
        """(n_points, n_lanes) distances [m] from points (n_points, 2) to each centre line."""
        return self.geometry.distances(np.asarray(xy, dtype=float).reshape(-1, 2))

    def edge_excess(self, xy: np.ndarray) -> np.ndarray:
        """(n_points,) how far [m] each point lies beyond the nearest lane's edge (<= 0: on a lane;
        +inf without lanes)."""
        if len(self) == 0:
            return np.full(len(xy), np.inf)
        return (self.distances(xy) - self.widths[None] / 2).min(1)

    def on_lanes(self, xy: np.ndarray) -> np.ndarray:
        """(n_points,) whether each point (n_points, 2) lies on some lane (within its half width
        of the centre line): ``edge_excess(xy) <= 0``, computed from the nearby segments only."""
        return self.geometry.within(np.asarray(xy, dtype=float).reshape(-1, 2), self.widths / 2)

    def sample(self, p0: np.ndarray, cfg: InputConfig):
        """:func:`ebmtraj.cost_inputs.sample_lanes` of these lanes at points p0 (n, 2)."""
        return sample_lanes(self.geometry, self.widths, p0, cfg)


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


def to_world(xy: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """Agent frame -> world: xy (N, ..., 2), origin (N, 3) (numpy, float64)."""
    return to_recording_frame(torch.tensor(np.asarray(xy, dtype=float)),
                              torch.tensor(np.asarray(origin, dtype=float))).numpy()


@dataclass
class RowInputs:
    """Agent-frame tensors (``cond``) for N rows plus what is needed to map results back."""

    cond: dict
    origin: np.ndarray          # (N, 3) world pose of each row's agent frame
    neighbours: np.ndarray      # (N, M) int: index into the row's neighbour list, -1 empty
    padded: np.ndarray          # (N,) bool: history padded
    edge_excess: np.ndarray     # (N,) m beyond the nearest lane edge (inf: no lanes)
    states: list                # N AgentStates the rows start from (estimated from the history)


def row_state(state: AgentState, hist: np.ndarray, padded: bool, cfg: InputConfig,
              dt: float) -> dict:
    """The state a row starts from, as training builds it: estimated from the history positions
    (:func:`ebmtraj.cost_inputs.estimate_state`, acceleration and steering clipped); from a
    padded history, the caller's state with the same clips. Keys of ``estimate_state``."""
    if not padded:
        return estimate_state(hist, dt, cfg)
    accel, steer = clip_controls(state.speed, state.accel, state.steering, cfg)
    return {"pos": np.array([state.x, state.y]), "vel": state.velocity, "speed": state.speed,
            "heading": state.heading, "accel": float(accel), "steer": float(steer)}


def nearest(state: AgentState, others: list[AgentState], max_neighbours: int, radius: float) -> list[int]:
    """Indices of the ``max_neighbours`` others whose centres are nearest the state's, within
    ``radius`` m, nearest first."""
    if not others:
        return []
    cen = np.array([b.centre for b in others])
    d = np.hypot(*(cen - state.centre).T)
    keep = np.flatnonzero(d <= radius)
    return list(keep[np.argsort(d[keep], kind="stable")][:max_neighbours])


def build_rows(states: list[AgentState], histories: list, neighbour_lists: list[list[AgentState]],
               lanes: LaneSet, cfg: InputConfig, *, history: int, steps: int, dt: float = 0.1,
               max_neighbours: int = 5, radius: float = 30.0, min_slots: int = 1,
               headways: list | None = None, edge_excess: np.ndarray | None = None) -> RowInputs:
    """The cost inputs of N agents (rows) with their own neighbours, assembled by
    :func:`ebmtraj.cost_inputs.assemble_rows` as for recorded scenes.

    ``states``: N agent states; ``histories``: N (H, 2) arrays or None; ``neighbour_lists``:
    for each row, the other vehicles (current states, extrapolated at constant velocity). Of
    those, the ``max_neighbours`` nearest within ``radius`` m fill the neighbour slots; at least
    ``min_slots`` slots exist (empty ones are masked by ``nbr_valid``). ``headways``: N (H,)
    recorded front-to-front distances [m] to each agent's leader (a virtual leader slot), or
    None. ``edge_excess`` (N,): the agents' :meth:`LaneSet.edge_excess` if already known."""
    n = len(states)
    hist = np.zeros((n, history, 2))
    padded = np.zeros(n, bool)
    for i, (s, h) in enumerate(zip(states, histories)):
        hist[i], padded[i] = check_history(h, s, history, f"agent {i}" if n > 1 else "ego", dt)
    est = estimate_state(hist, dt, cfg)                       # every row at once; padded ones:
    for i in np.flatnonzero(padded):                          # the caller's state, clipped
        for k, v in row_state(states[i], hist[i], True, cfg, dt).items():
            est[k][i] = v
    ests = [{k: v[i] for k, v in est.items()} for i in range(n)]
    chosen = [nearest(s, nbrs, max_neighbours, radius) for s, nbrs in zip(states, neighbour_lists)]
    M = max([min_slots] + [len(c) for c in chosen])
    nbrs = Neighbours(np.zeros((n, M, 2)), np.zeros((n, M, 2)), np.zeros((n, M)), np.zeros((n, M, 2)),
                      np.zeros((n, M), bool))
    nidx = np.full((n, M), -1, dtype=np.int64)
    for i, c in enumerate(chosen):
        for m, j in enumerate(c):
            b = neighbour_lists[i][j]
            nbrs.centre[i, m], nbrs.heading[i, m] = b.centre, b.heading
            nbrs.vel[i, m] = b.velocity
            nbrs.size[i, m], nbrs.valid[i, m], nidx[i, m] = (b.length, b.width), True, j
    size = np.array([[s.length, s.width] for s in states], dtype=float).reshape(n, 2)
    ref = np.array([s.ref for s in states], dtype=float)
    hw = None if headways is None else np.stack([_headway(h, history, i) for i, h in enumerate(headways)])
    cond = assemble_rows(hist, est, size, ref, nbrs, lanes.sample(est["pos"], cfg), cfg, dt, steps, hw)
    origin = cond.pop("origin").numpy()
    if hw is not None:
        nidx = np.concatenate([nidx, np.full((n, 1), -1)], 1)
    starts = [replace(s, x=float(e["pos"][0]), y=float(e["pos"][1]), heading=float(e["heading"]),
                      speed=float(e["speed"]), accel=float(e["accel"]), steering=float(e["steer"]))
              for s, e in zip(states, ests)]
    if edge_excess is None:
        edge_excess = lanes.edge_excess(np.array([s.centre for s in states]).reshape(n, 2))
    return RowInputs(cond, origin, nidx, padded, np.asarray(edge_excess, dtype=float), starts)


def _headway(h, frames: int, i: int) -> np.ndarray:
    """The last ``frames`` recorded headways [m] of row i (missing older ones: NaN)."""
    if h is None:
        return np.full(frames, np.nan)
    arr = np.asarray(h, dtype=float).ravel()
    if arr.size == 0 or np.isinf(arr).any() or (arr[np.isfinite(arr)] < 0).any():
        raise PlannerInputError(f"headway of agent {i}: expected (H,) finite distances >= 0 m "
                                f"(NaN or 0: no leader), got {arr!r}")
    arr = arr[-frames:]
    return np.concatenate([np.full(frames - arr.size, np.nan), arr])


def footprint_polygon(state: AgentState):
    """The state's footprint rectangle (shapely Polygon, world frame)."""
    c, (ca, sa) = state.centre, (np.cos(state.heading), np.sin(state.heading))
    along, across = np.array([ca, sa]) * state.length / 2, np.array([-sa, ca]) * state.width / 2
    return shapely.Polygon([c + along + across, c - along + across, c - along - across, c + along - across])


def overlapping(a: AgentState, b: AgentState) -> bool:
    """Whether the footprints of two vehicles overlap now."""
    if np.hypot(*(a.centre - b.centre)) > 0.5 * (a.length + b.length + a.width + b.width):
        return False
    return bool(footprint_polygon(a).intersects(footprint_polygon(b)))
