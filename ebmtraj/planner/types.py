"""The planner's input and output types: agent states, scenes, trajectories, errors.

Conventions (every type here follows them):

* **Frame**: any planar, right-handed, metric world frame (a map frame, a simulator's frame).
  Positions x, y in metres; heading in radians, counter-clockwise from +x.
* **Reference point**: an agent's position is its *reference point*; ``ref`` is the distance
  [m] from that point back to the footprint centre along the heading (the data tables'
  ``ref_offset``): 0 when the position is the centre (CommonRoad, highway-env), ``length / 2``
  for NGSIM's front-bumper point, negative for a rear axle. Plans are returned for the same
  point.
* **Timing**: the model steps at 0.1 s (10 Hz). A history is the agent's past reference-point
  positions at 0.1 s spacing, oldest first, its last row at the current time t = 0 (so it ends at
  the agent's current position). A plan's ``t`` runs 0.1, 0.2, ..., horizon seconds after t = 0.
* **Units**: metres, seconds, radians, m/s, m/s^2; steering is the front-wheel angle [rad].
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from ebmcore.errors import DataError


class PlannerInputError(DataError):
    """Input the planner cannot plan from (non-finite states, wrong shapes, impossible values).

    The message names the argument and, where it applies, the index of the bad entry.
    """


class HorizonError(PlannerInputError):
    """A horizon longer than the model was trained for (or not positive)."""


@dataclass(frozen=True)
class AgentState:
    """The current state of one vehicle (see the module conventions).

    x, y [m], heading [rad], speed [m/s] >= 0, accel [m/s^2] (along the heading), steering
    [rad] (front wheel), length, width [m] of the footprint, ref [m] (from the reference point
    back to the footprint centre along the heading; 0: the position is the centre), agent_id
    (any hashable, for your bookkeeping).
    """

    x: float
    y: float
    heading: float
    speed: float
    accel: float = 0.0
    steering: float = 0.0
    length: float = 4.5
    width: float = 1.8
    ref: float = 0.0
    agent_id: object = None

    def vector(self) -> np.ndarray:
        """(6,) float64: x, y, speed, heading, accel, steering (the dynamics' state order)."""
        return np.array([self.x, self.y, self.speed, self.heading, self.accel, self.steering],
                        dtype=np.float64)

    @cached_property
    def velocity(self) -> np.ndarray:
        """(2,) velocity [m/s] along the heading."""
        return self.speed * np.array([np.cos(self.heading), np.sin(self.heading)])

    @cached_property
    def centre(self) -> np.ndarray:
        """(2,) footprint centre [m]."""
        return np.array([self.x - self.ref * np.cos(self.heading),
                         self.y - self.ref * np.sin(self.heading)])

    def validate(self, name: str = "agent") -> None:
        """Raise :class:`PlannerInputError` naming ``name`` and the field if a value is unusable."""
        for key in ("x", "y", "heading", "speed", "accel", "steering", "length", "width", "ref"):
            value = getattr(self, key)
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise PlannerInputError(f"{name}.{key} is not a number: {value!r}") from None
            if not np.isfinite(value):
                raise PlannerInputError(f"{name}.{key} is not finite ({value})")
        if self.speed < 0:
            raise PlannerInputError(f"{name}.speed is negative ({self.speed} m/s); the model "
                                    f"plans forward driving only")
        if self.speed > 60:
            raise PlannerInputError(f"{name}.speed of {self.speed} m/s is not a road speed")
        if not (0 < self.length < 30 and 0 < self.width < 5):
            raise PlannerInputError(f"{name} size {self.length} x {self.width} m is not a vehicle's")


@dataclass
class SceneAgent:
    """One agent of a :class:`Scene`: its current state, history positions (H, 2) [m] and,
    for checkpoints trained with virtual leaders, its recorded headway (H,) [m] to its leader."""

    state: AgentState
    history: np.ndarray | None = None
    headway: np.ndarray | None = None


@dataclass
class Scene:
    """Everything :meth:`Planner.predict` needs: the agents to predict jointly and the lanes.

    ``lanes``: as for :meth:`Planner.plan` (LineStrings, ``(LineString, width)`` pairs, objects
    with ``.centre`` and ``.width``, or an object with ``.lanes``).
    """

    agents: list[SceneAgent]
    lanes: object = None


@dataclass
class TrajectorySamples:
    """K sampled trajectories (the candidates the plan was chosen from), world frame."""

    positions: np.ndarray      # (K, T, 2) [m]
    headings: np.ndarray       # (K, T) [rad]
    speeds: np.ndarray         # (K, T) [m/s]
    cost: np.ndarray           # (K,) C_theta
    energy: np.ndarray         # (K,) cost + reference prior


@dataclass
class Trajectory:
    """A planned (or predicted) trajectory in the world frame, for the input's reference point.

    ``t`` (T,) seconds after the plan's start (0.1 .. horizon); ``positions`` (T, 2) [m];
    ``headings``, ``speeds``, ``accelerations``, ``steering`` (T,); ``controls`` (T, 2): change
    of acceleration [m/s^2] and of steering [rad] over each 0.1 s step (what the dynamics
    integrate); ``cost``: the learned cost C_theta of the trajectory (NaN for a fallback);
    ``energy``: cost plus the Gaussian reference prior, the quantity the search minimises.

    ``fallback`` is None when the learned planner produced the plan; otherwise it names why a
    simple policy replaced it (``'off_lane'``, ``'no_lanes'``, ``'model_nonfinite'``) and
    ``policy`` says which (``'constant_velocity'`` or ``'lane_keeping'``). ``flags`` lists
    everything else the caller should know (``'history_padded'``, ``'deadline'``,
    ``'warm_start'``, ``'neighbours_truncated'``, ``'extended_beyond_trained_horizon'``,
    ``'road_guard_braked'``: the road guard's lane keeping brakes for a vehicle ahead).
    """

    t: np.ndarray
    positions: np.ndarray
    headings: np.ndarray
    speeds: np.ndarray
    accelerations: np.ndarray
    steering: np.ndarray
    controls: np.ndarray
    cost: float
    energy: float
    start: AgentState
    policy: str = "ebm"
    fallback: str | None = None
    flags: tuple[str, ...] = ()
    mode: str = "min_cost"
    iterations: int = 0
    elapsed_s: float = 0.0
    seed: int | None = None
    samples: TrajectorySamples | None = None
    timestamp: float | None = None
    latent: object = field(default=None, repr=False, compare=False)

    @property
    def horizon(self) -> float:
        return float(self.t[-1]) if len(self.t) else 0.0

    @property
    def states(self) -> np.ndarray:
        """(T, 6): x, y, speed, heading, accel, steering (the dynamics' state order)."""
        return np.stack([self.positions[:, 0], self.positions[:, 1], self.speeds, self.headings,
                         self.accelerations, self.steering], axis=1)

    @property
    def is_fallback(self) -> bool:
        return self.fallback is not None

    def at(self, time_s: float) -> np.ndarray:
        """State (6,) linearly interpolated at ``time_s`` seconds after the start (0 = start)."""
        tt = np.concatenate([[0.0], self.t])
        st = np.concatenate([self.start.vector()[None], self.states])
        st = st.copy()
        st[:, 3] = np.unwrap(st[:, 3])
        return np.array([np.interp(time_s, tt, st[:, j]) for j in range(6)])

    def truncated(self, steps: int) -> "Trajectory":
        """The first ``steps`` steps (samples truncated alike)."""
        s = slice(0, steps)
        samples = self.samples
        if samples is not None:
            samples = replace(samples, positions=samples.positions[:, s],
                              headings=samples.headings[:, s], speeds=samples.speeds[:, s])
        return replace(self, t=self.t[s], positions=self.positions[s], headings=self.headings[s],
                       speeds=self.speeds[s], accelerations=self.accelerations[s],
                       steering=self.steering[s], controls=self.controls[s], samples=samples)
