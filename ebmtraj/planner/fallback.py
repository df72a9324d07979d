"""Simple policies the planner falls back to, visibly, when the learned cost cannot be trusted.

* constant velocity: acceleration and steering released to zero over the first step, then
  straight ahead at the reached speed (rolled out through the same kinematic bicycle);
* lane keeping: along the nearest lane's centre line at the current speed (or a given speed
  profile), the lateral offset decaying with time constant ``tau``; controls recovered in
  closed form from the states;
* lane keeping behind the vehicles ahead: lane keeping at a given speed profile, braking as
  little as keeps its footprint clear of the vehicles ahead (their constant-velocity paths).
"""
from __future__ import annotations

import numpy as np
import torch

from ..dynamics import BicycleParams, KinematicBicycle
from ..interaction import box_contact, footprint
from .inputs import LaneSet
from .types import AgentState


def constant_velocity(state: AgentState, steps: int, dt: float = 0.1, wheelbase: float = 2.7):
    """-> (states (T, 6), controls (T, 2)) in the world frame."""
    states, u = constant_velocity_many([state], steps, dt, wheelbase)
    return states[0], u[0]


def constant_velocity_many(states: list[AgentState], steps: int, dt: float = 0.1, wheelbase: float = 2.7):
    """:func:`constant_velocity` of B agents at once -> (states (B, T, 6), controls (B, T, 2))."""
    model = KinematicBicycle(BicycleParams(dt=dt, wheelbase=wheelbase))
    x0 = torch.as_tensor(np.stack([s.vector() for s in states]), dtype=torch.float64)
    a_lat, d_lat = model.latent(x0)[1:]
    u = torch.zeros(len(states), steps, 2, dtype=torch.float64)
    u[:, 0, 0], u[:, 0, 1] = -a_lat, -d_lat
    return model.rollout(x0, u).numpy(), u.numpy()


def lane_keeping(state: AgentState, lanes: LaneSet, steps: int, dt: float = 0.1,
                 wheelbase: float = 2.7, tau: float = 1.0, speeds: np.ndarray | None = None):
    """-> (states (T, 6), controls (T, 2)) following the nearest lane; None without lanes.
    ``speeds`` (T,) [m/s] at steps 1..T (None: the current speed held)."""
    if len(lanes) == 0:
        return None
    p = np.array([[state.x, state.y]])
    geo = lanes.geometry
    dist, arc = geo.project(p)
    j = int(np.argmin(dist[0]))
    s0 = float(arc[0, j])

    def point_on(s):                                 # straight on past either end of the line
        return geo.interpolate(j, s, extend=True)

    c0 = point_on(np.array([s0]))[0]
    t0 = point_on(np.array([s0 + 0.5]))[0] - point_on(np.array([s0 - 0.5]))[0]
    t0 /= np.hypot(*t0)
    r = p[0] - c0
    d0 = float(t0[0] * r[1] - t0[1] * r[0])          # signed offset, + left of travel
    t = np.arange(0, steps + 1) * dt
    v = np.full(steps, state.speed) if speeds is None else np.asarray(speeds, dtype=float)[:steps]
    s = s0 + (state.speed * t if speeds is None else np.concatenate([[0.0], np.cumsum(dt * v)]))
    centre = point_on(s)
    ahead = point_on(s + 0.5) - point_on(s - 0.5)
    ahead /= np.linalg.norm(ahead, axis=1, keepdims=True)
    normal = np.stack([-ahead[:, 1], ahead[:, 0]], 1)
    xy = centre + (d0 * np.exp(-t / tau))[:, None] * normal
    xy[0] = p[0]
    step = np.diff(xy, axis=0)
    heading = np.unwrap(np.concatenate([[state.heading], np.arctan2(step[:, 1], step[:, 0])]))
    heading[1:] = 0.5 * (heading[:-1] + heading[1:])
    heading = heading[1:]
    curv = np.gradient(heading, dt) / np.maximum(v, 0.5)
    steer = np.clip(np.arctan(wheelbase * curv), -0.4, 0.4)
    states = np.zeros((steps, 6))
    states[:, :2], states[:, 2], states[:, 3], states[:, 5] = xy[1:], v, heading, steer
    model = KinematicBicycle(BicycleParams(dt=dt, wheelbase=wheelbase))
    u = model.controls_from_states(torch.as_tensor(state.vector()), torch.as_tensor(states))
    return states, u.numpy()


#: decelerations [m/s^2] that :func:`lane_keeping_behind` tries, least first
BRAKING_STEPS = (0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0)


def lane_keeping_behind(state: AgentState, lanes: LaneSet, steps: int, speeds: np.ndarray,
                        neighbours: list[AgentState], dt: float = 0.1, wheelbase: float = 2.7):
    """:func:`lane_keeping` at ``speeds`` (T,) [m/s], capped by braking from the current speed at
    the least of :data:`BRAKING_STEPS` whose footprint stays clear of every neighbour ahead of
    ``state`` on its constant-velocity path (the strongest when none does)
    -> (states (T, 6), controls (T, 2), deceleration [m/s^2]); None without lanes."""
    t = np.arange(1, steps + 1) * dt
    forward = np.array([np.cos(state.heading), np.sin(state.heading)])
    ahead = [b for b in neighbours if float(np.dot(b.centre - state.centre, forward)) > 0]
    paths = _paths(ahead, t) if ahead else None
    for decel in BRAKING_STEPS:
        v = speeds if decel == 0 else np.minimum(speeds, np.maximum(state.speed - decel * t, 0.0))
        out = lane_keeping(state, lanes, steps, dt, wheelbase, speeds=v)
        if out is None:
            return None
        if paths is None or not _touches(out[0], state, paths):
            break
    return out[0], out[1], decel


def _paths(others: list[AgentState], t: np.ndarray) -> tuple:
    """The footprints of ``others`` at constant velocity at the times ``t`` (T,) [s], batched
    for :func:`ebmtraj.interaction.box_contact`: centres (1, M, T, 2), headings (1, M, T),
    sizes (1, M, 2), live (1, M)."""
    centre = np.stack([b.centre + t[:, None] * b.velocity for b in others])
    heading = np.repeat(np.array([b.heading for b in others])[:, None], len(t), 1)
    size = np.array([[b.length, b.width] for b in others])
    return (torch.as_tensor(centre)[None], torch.as_tensor(heading)[None], torch.as_tensor(size)[None],
            torch.ones(1, len(others), dtype=torch.bool))


def _touches(states: np.ndarray, ego: AgentState, paths: tuple) -> bool:
    """Whether the footprint of ``ego`` along ``states`` (T, 6) overlaps one of the footprints
    ``paths`` (:func:`_paths`) at some step (the collision metric's rectangle test)."""
    centre, heading = footprint(torch.as_tensor(states)[None], torch.tensor([ego.ref], dtype=torch.float64))
    size = torch.tensor([[ego.length, ego.width]], dtype=torch.float64)
    return bool(box_contact(centre, heading, size, *paths)[0])
