"""Small stand-ins for the nuPlan devkit types the adapter reads and writes.

They carry the devkit's class, attribute and method names (``StateSE2``, ``EgoState.rear_axle``,
``DetectionsTracks.tracked_objects.tracked_objects``, ``InterpolatedTrajectory``, ...) and only
what :mod:`ebmtraj.planner.nuplan` uses, so the adapter runs and is tested without the devkit.
Where the devkit is installed the adapter uses the real types instead.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np
from shapely.geometry import LineString


@dataclass(frozen=True)
class Point2D:
    x: float
    y: float


@dataclass(frozen=True)
class StateSE2:
    x: float
    y: float
    heading: float


@dataclass(frozen=True)
class StateVector2D:
    x: float
    y: float


@dataclass(frozen=True)
class TimePoint:
    time_us: int

    @property
    def time_s(self) -> float:
        return self.time_us * 1e-6


@dataclass(frozen=True)
class VehicleParameters:
    width: float = 2.297                        # m
    front_length: float = 4.049                 # m, rear axle to front bumper
    rear_length: float = 1.127                  # m, rear axle to rear bumper
    wheel_base: float = 3.089                   # m
    cog_position_from_rear_axle: float = 1.67   # m
    height: float = 1.777                       # m
    vehicle_name: str = "pacifica"
    vehicle_type: str = "gen1"

    @property
    def length(self) -> float:
        return self.front_length + self.rear_length

    @property
    def rear_axle_to_center(self) -> float:
        return (self.front_length + self.rear_length) / 2 - self.rear_length


@dataclass(frozen=True)
class CarFootprint:
    vehicle_parameters: VehicleParameters

    @property
    def rear_axle_to_center_dist(self) -> float:
        return self.vehicle_parameters.rear_axle_to_center


@dataclass(frozen=True)
class DynamicCarState:
    rear_axle_velocity_2d: StateVector2D           # ego frame, x forward
    rear_axle_acceleration_2d: StateVector2D

    @property
    def speed(self) -> float:
        return float(np.hypot(self.rear_axle_velocity_2d.x, self.rear_axle_velocity_2d.y))


@dataclass(frozen=True)
class EgoState:
    rear_axle: StateSE2
    dynamic_car_state: DynamicCarState
    tire_steering_angle: float
    time_point: TimePoint
    car_footprint: CarFootprint

    @property
    def center(self) -> StateSE2:
        d = self.car_footprint.rear_axle_to_center_dist
        h = self.rear_axle.heading
        return StateSE2(self.rear_axle.x + d * np.cos(h), self.rear_axle.y + d * np.sin(h), h)

    @property
    def time_us(self) -> int:
        return self.time_point.time_us

    @classmethod
    def build_from_rear_axle(cls, rear_axle_pose, rear_axle_velocity_2d, rear_axle_acceleration_2d,
                             tire_steering_angle, time_point, vehicle_parameters, **_):
        return cls(rear_axle_pose, DynamicCarState(rear_axle_velocity_2d, rear_axle_acceleration_2d),
                   tire_steering_angle, time_point, CarFootprint(vehicle_parameters))


class TrackedObjectType(enum.Enum):
    VEHICLE = 0
    PEDESTRIAN = 1
    BICYCLE = 2
    EGO = 7


@dataclass(frozen=True)
class OrientedBox:
    center: StateSE2
    length: float
    width: float
    height: float = 1.5


@dataclass(frozen=True)
class Agent:
    tracked_object_type: TrackedObjectType
    box: OrientedBox
    velocity: StateVector2D                        # world frame
    track_token: str = ""

    @property
    def center(self) -> StateSE2:
        return self.box.center


@dataclass
class TrackedObjects:
    tracked_objects: list = field(default_factory=list)

    def get_tracked_objects_of_type(self, kind):
        return [o for o in self.tracked_objects if o.tracked_object_type == kind]


@dataclass
class DetectionsTracks:
    tracked_objects: TrackedObjects


class SemanticMapLayer(enum.IntEnum):
    LANE = 0
    INTERSECTION = 1
    LANE_CONNECTOR = 5


@dataclass(frozen=True)
class PolylineMapObject:
    linestring: LineString


@dataclass(frozen=True)
class Lane:
    id: str
    baseline_path: PolylineMapObject
    left_boundary: PolylineMapObject | None = None
    right_boundary: PolylineMapObject | None = None


class MapApi:
    """A map of lanes answering ``get_proximal_map_objects`` like the devkit's AbstractMap."""

    def __init__(self, lanes: list[Lane], map_name: str = "stand-in"):
        self.lanes = list(lanes)
        self.map_name = map_name

    def get_proximal_map_objects(self, point: Point2D, radius: float, layers):
        from shapely.geometry import Point

        p = Point(point.x, point.y)
        near = [ln for ln in self.lanes if ln.baseline_path.linestring.distance(p) <= radius]
        return {layer: (near if layer == SemanticMapLayer.LANE else []) for layer in layers}


@dataclass(frozen=True)
class PlannerInitialization:
    route_roadblock_ids: list
    mission_goal: StateSE2
    map_api: object


@dataclass(frozen=True)
class SimulationIteration:
    time_point: TimePoint
    index: int


class SimulationHistoryBuffer:
    """Rolling buffer of (ego state, observation) pairs, oldest first."""

    def __init__(self, ego_states: list, observations: list, sample_interval: float = 0.1):
        self.ego_states = list(ego_states)
        self.observations = list(observations)
        self.sample_interval = sample_interval

    @property
    def current_state(self):
        return self.ego_states[-1], self.observations[-1]

    def __len__(self) -> int:
        return len(self.ego_states)


@dataclass(frozen=True)
class PlannerInput:
    iteration: SimulationIteration
    history: SimulationHistoryBuffer
    traffic_light_data: list | None = None


class InterpolatedTrajectory:
    """EgoStates over time, linearly interpolated (the devkit's class of the same name)."""

    def __init__(self, trajectory: list):
        if len(trajectory) < 2:
            raise ValueError("a trajectory needs at least two states")
        self._states = list(trajectory)
        self._t = np.array([s.time_point.time_us for s in trajectory], dtype=float)

    @property
    def start_time(self) -> TimePoint:
        return self._states[0].time_point

    @property
    def end_time(self) -> TimePoint:
        return self._states[-1].time_point

    def get_sampled_trajectory(self) -> list:
        return list(self._states)

    def get_state_at_time(self, time_point: TimePoint):
        t = time_point.time_us
        if not self._t[0] <= t <= self._t[-1]:
            raise AssertionError(f"time {t} us outside the trajectory [{self._t[0]}, {self._t[-1]}]")
        i = int(np.clip(np.searchsorted(self._t, t) - 1, 0, len(self._t) - 2))
        a, b = self._states[i], self._states[i + 1]
        w = (t - self._t[i]) / max(self._t[i + 1] - self._t[i], 1.0)
        mix = lambda p, q: p + w * (q - p)
        dh = np.arctan2(np.sin(b.rear_axle.heading - a.rear_axle.heading),
                        np.cos(b.rear_axle.heading - a.rear_axle.heading))
        pose = StateSE2(mix(a.rear_axle.x, b.rear_axle.x), mix(a.rear_axle.y, b.rear_axle.y),
                        a.rear_axle.heading + w * dh)
        va, vb = a.dynamic_car_state.rear_axle_velocity_2d, b.dynamic_car_state.rear_axle_velocity_2d
        aa, ab = a.dynamic_car_state.rear_axle_acceleration_2d, b.dynamic_car_state.rear_axle_acceleration_2d
        return EgoState.build_from_rear_axle(
            pose, StateVector2D(mix(va.x, vb.x), mix(va.y, vb.y)),
            StateVector2D(mix(aa.x, ab.x), mix(aa.y, ab.y)),
            mix(a.tire_steering_angle, b.tire_steering_angle), TimePoint(int(t)),
            a.car_footprint.vehicle_parameters)
