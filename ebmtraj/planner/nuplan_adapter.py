"""A nuPlan-style planner: :class:`EBMPlanner` with nuPlan's ``AbstractPlanner`` interface.

* ``initialize(initialization)``: keeps ``initialization.map_api`` (lanes are read from it near
  the ego at every call) and the mission goal; resets the warm start.
* ``compute_planner_trajectory(current_input)``: reads ``current_input.history`` (ego states
  and ``DetectionsTracks`` observations, oldest first) and ``current_input.iteration``, plans,
  and returns an ``InterpolatedTrajectory`` of ``EgoState``s at 0.1 s from the current state
  (t = 0) to the horizon, in nuPlan's conventions: global frame, rear-axle poses, rear-axle
  velocity and acceleration in the ego frame, tire steering angle, absolute time points.
* ``name()``, ``observation_type()`` (``DetectionsTracks``); nuPlan's base class adds
  ``compute_trajectory`` (runtime bookkeeping) and ``generate_planner_report``.

With the devkit importable, the class derives from its ``AbstractPlanner`` and builds its
``EgoState`` / ``InterpolatedTrajectory``; without it, from a local base with the same methods
and the stand-in types of :mod:`ebmtraj.planner.nuplan_types`.

Conversion: the planner plans the footprint centre (``EgoState.center``); the rear axle lies
``rear_axle_to_center`` behind it. History positions are resampled to 0.1 s on the states'
time points. Vehicles among the tracked objects become neighbours (other types are ignored:
the learned cost was trained on vehicles only). Lanes are the map's ``LANE`` and
``LANE_CONNECTOR`` baselines within ``map_radius`` whose direction near the ego is within 90
degrees of its heading; a lane's width is the distance between its boundaries (3.7 m where
they are missing). The learned cost has no route or goal term, so the mission goal and route
are kept but do not steer the plan.
"""
from __future__ import annotations

import abc
import time

import numpy as np
import shapely

from .core import Planner
from .types import AgentState, Trajectory

try:  # the devkit, where installed
    from nuplan.common.actor_state.ego_state import EgoState as _EgoState
    from nuplan.common.actor_state.state_representation import (Point2D as _Point2D,
                                                                StateSE2 as _StateSE2,
                                                                StateVector2D as _StateVector2D,
                                                                TimePoint as _TimePoint)
    from nuplan.common.actor_state.tracked_objects_types import TrackedObjectType as _ObjType
    from nuplan.common.maps.maps_datatypes import SemanticMapLayer as _Layer
    from nuplan.planning.simulation.observation.observation_type import DetectionsTracks as _Detections
    from nuplan.planning.simulation.planner.abstract_planner import AbstractPlanner as _Base
    from nuplan.planning.simulation.trajectory.interpolated_trajectory import (
        InterpolatedTrajectory as _Interpolated)
    HAVE_NUPLAN = True
except ImportError:  # stand-ins with the same names
    from . import nuplan_types as _nt

    _EgoState, _Point2D, _StateSE2 = _nt.EgoState, _nt.Point2D, _nt.StateSE2
    _StateVector2D, _TimePoint, _ObjType = _nt.StateVector2D, _nt.TimePoint, _nt.TrackedObjectType
    _Layer, _Detections, _Interpolated = _nt.SemanticMapLayer, _nt.DetectionsTracks, _nt.InterpolatedTrajectory
    HAVE_NUPLAN = False

    class _Base(abc.ABC):
        """Local stand-in for nuPlan's AbstractPlanner (same abstract methods)."""

        requires_scenario: bool = False

        def __new__(cls, *args, **kwargs):
            instance = super().__new__(cls)
            instance._compute_trajectory_runtimes = []
            return instance

        @abc.abstractmethod
        def name(self) -> str: ...

        @abc.abstractmethod
        def initialize(self, initialization) -> None: ...

        @abc.abstractmethod
        def observation_type(self): ...

        @abc.abstractmethod
        def compute_planner_trajectory(self, current_input): ...

        def compute_trajectory(self, current_input):
            start = time.perf_counter()
            try:
                return self.compute_planner_trajectory(current_input)
            finally:
                self._compute_trajectory_runtimes.append(time.perf_counter() - start)

        def generate_planner_report(self, clear_stats: bool = True) -> dict:
            report = {"compute_trajectory_runtimes": list(self._compute_trajectory_runtimes)}
            if clear_stats:
                self._compute_trajectory_runtimes = []
            return report


class EBMPlanner(_Base):
    """nuPlan planner around an :class:`ebmtraj.planner.Planner` (see module docstring)."""

    def __init__(self, planner: Planner, horizon: float = 4.0, map_radius: float = 60.0,
                 default_lane_width: float = 3.7):
        self._planner = planner
        self._horizon = horizon
        self._map_radius = map_radius
        self._lane_width = default_lane_width
        self._map_api = None
        self._mission_goal = None
        self._route = None
        self.last_plan: Trajectory | None = None

    def name(self) -> str:
        return self.__class__.__name__

    def observation_type(self):
        return _Detections

    def initialize(self, initialization) -> None:
        self._map_api = initialization.map_api
        self._mission_goal = getattr(initialization, "mission_goal", None)
        self._route = list(getattr(initialization, "route_roadblock_ids", []) or [])
        self._planner.reset()

    def compute_planner_trajectory(self, current_input):
        if self._map_api is None:
            raise RuntimeError(f"{self.name()}: call initialize() before compute_planner_trajectory()")
        history = current_input.history
        ego_state, observation = history.current_state
        params = ego_state.car_footprint.vehicle_parameters
        ego = self._ego(ego_state, params)
        hist = self._history(history.ego_states, self._planner.dt, self._planner.history_frames)
        neighbours = self._neighbours(observation)
        lanes = self._lanes(ego)
        now_us = int(current_input.iteration.time_point.time_us)
        plan = self._planner.plan(ego, hist, neighbours, lanes, self._horizon,
                                  timestamp=now_us * 1e-6)
        self.last_plan = plan
        return self._to_trajectory(plan, ego_state, params, now_us)

    # ------------------------------------------------------------------ conversions
    @staticmethod
    def _ego(ego_state, params) -> AgentState:
        c = ego_state.center
        dyn = ego_state.dynamic_car_state
        speed = float(np.hypot(dyn.rear_axle_velocity_2d.x, dyn.rear_axle_velocity_2d.y))
        return AgentState(c.x, c.y, c.heading, speed, float(dyn.rear_axle_acceleration_2d.x),
                          float(ego_state.tire_steering_angle), float(params.length),
                          float(params.width))

    @staticmethod
    def _history(ego_states, dt: float, frames: int) -> np.ndarray:
        """Centre positions resampled to ``dt`` on the states' time points, last = now."""
        t = np.array([s.time_point.time_us for s in ego_states], dtype=float) * 1e-6
        xy = np.array([[s.center.x, s.center.y] for s in ego_states], dtype=float)
        if len(t) == 1:
            return xy
        grid = t[-1] - dt * np.arange(frames - 1, -1, -1)
        grid = grid[grid >= t[0] - 1e-9]
        return np.stack([np.interp(grid, t, xy[:, 0]), np.interp(grid, t, xy[:, 1])], 1)

    @staticmethod
    def _neighbours(observation) -> list[AgentState]:
        tracked = observation.tracked_objects
        objs = tracked.get_tracked_objects_of_type(_ObjType.VEHICLE)
        out = []
        for o in objs:
            c = o.center
            speed = float(np.hypot(o.velocity.x, o.velocity.y))
            out.append(AgentState(c.x, c.y, c.heading, speed, length=float(o.box.length),
                                  width=float(o.box.width), agent_id=getattr(o, "track_token", None)))
        return out

    def _lanes(self, ego: AgentState) -> list:
        layers = [_Layer.LANE, _Layer.LANE_CONNECTOR]
        found = self._map_api.get_proximal_map_objects(_Point2D(ego.x, ego.y), self._map_radius, layers)
        pt = shapely.points(ego.x, ego.y)
        lanes = []
        for layer in layers:
            for lane in found.get(layer, []):
                line = lane.baseline_path.linestring
                s = float(shapely.line_locate_point(line, pt))
                a = line.interpolate(max(s - 1.0, 0.0))
                b = line.interpolate(min(s + 1.0, line.length))
                if np.cos(np.arctan2(b.y - a.y, b.x - a.x) - ego.heading) <= 0:
                    continue                      # runs against the ego's heading
                lanes.append((line, self._width(lane, line, pt)))
        return lanes

    def _width(self, lane, line, pt) -> float:
        left, right = getattr(lane, "left_boundary", None), getattr(lane, "right_boundary", None)
        if left is None or right is None:
            return self._lane_width
        near = line.interpolate(line.project(pt))
        w = left.linestring.distance(near) + right.linestring.distance(near)
        return float(w) if 2.0 <= w <= 8.0 else self._lane_width

    @staticmethod
    def _to_trajectory(plan: Trajectory, ego_state, params, now_us: int):
        d = float(params.rear_axle_to_center)
        states = [ego_state]
        for k in range(len(plan.t)):
            h = float(plan.headings[k])
            pose = _StateSE2(float(plan.positions[k, 0]) - d * np.cos(h),
                             float(plan.positions[k, 1]) - d * np.sin(h), h)
            states.append(_EgoState.build_from_rear_axle(
                rear_axle_pose=pose,
                rear_axle_velocity_2d=_StateVector2D(float(plan.speeds[k]), 0.0),
                rear_axle_acceleration_2d=_StateVector2D(float(plan.accelerations[k]), 0.0),
                tire_steering_angle=float(plan.steering[k]),
                time_point=_TimePoint(int(now_us + round(plan.t[k] * 1e6))),
                vehicle_parameters=params))
        return _Interpolated(states)
