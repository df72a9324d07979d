"""The nuPlan-style adapter's contract, with stand-in input types (no devkit needed)."""
from __future__ import annotations

import inspect

import numpy as np
import pytest
from shapely.geometry import LineString

from ebmtraj.planner import Planner
from ebmtraj.planner import nuplan_adapter as na
from ebmtraj.planner import nuplan_types as nt

from .test_planner_api import cache  # noqa: F401  (shared fixture)

PARAMS = nt.VehicleParameters()


def ego_state(x, y, heading, speed, t_us, accel=0.0):
    """An EgoState whose *centre* is at (x, y)."""
    d = PARAMS.rear_axle_to_center
    pose = nt.StateSE2(x - d * np.cos(heading), y - d * np.sin(heading), heading)
    return nt.EgoState.build_from_rear_axle(pose, nt.StateVector2D(speed, 0.0), nt.StateVector2D(accel, 0.0),
                                            0.0, nt.TimePoint(t_us), PARAMS)


def vehicle(x, y, speed, token, kind=nt.TrackedObjectType.VEHICLE):
    return nt.Agent(kind, nt.OrientedBox(nt.StateSE2(x, y, 0.0), 4.6, 1.9),
                    nt.StateVector2D(speed, 0.0), token)


def lane(i, y):
    return nt.Lane(str(i), nt.PolylineMapObject(LineString([(-300, y), (600, y)])),
                   nt.PolylineMapObject(LineString([(-300, y + 1.8), (600, y + 1.8)])),
                   nt.PolylineMapObject(LineString([(-300, y - 1.8), (600, y - 1.8)])))


def make_input(now_us=2_000_000, n=21, dt_us=50_000):
    """20 Hz history (as nuPlan logs are) ending at now_us, ego at 20 m/s along +x."""
    times = now_us - dt_us * np.arange(n - 1, -1, -1)
    egos = [ego_state(20.0 * (t - now_us) * 1e-6, 0.0, 0.0, 20.0, int(t)) for t in times]
    obs = [nt.DetectionsTracks(nt.TrackedObjects([
        vehicle(30.0 + 18.0 * (t - now_us) * 1e-6, 0.0, 18.0, "lead"),
        vehicle(-15.0 + 22.0 * (t - now_us) * 1e-6, 3.6, 22.0, "left"),
        vehicle(5.0, -3.0, 1.0, "walker", nt.TrackedObjectType.PEDESTRIAN)])) for t in times]
    history = nt.SimulationHistoryBuffer(egos, obs, sample_interval=dt_us * 1e-6)
    return nt.PlannerInput(nt.SimulationIteration(nt.TimePoint(int(now_us)), 40), history)


@pytest.fixture
def adapter(cache):  # noqa: F811
    planner = Planner.from_checkpoint(cache["path"], opt_steps=3)
    return na.EBMPlanner(planner, horizon=4.0)


def init():
    # includes an opposite-direction lane, which must not be used
    opposite = nt.Lane("back", nt.PolylineMapObject(LineString([(600, -3.6), (-300, -3.6)])))
    return nt.PlannerInitialization(["rb1"], nt.StateSE2(500.0, 0.0, 0.0),
                                    nt.MapApi([lane(0, 0.0), lane(1, 3.6), opposite]))


def test_interface_names_match_nuplan(adapter):
    abstract = {"name", "initialize", "observation_type", "compute_planner_trajectory"}
    assert abstract <= set(dir(adapter))
    assert set(inspect.signature(adapter.compute_planner_trajectory).parameters) == {"current_input"}
    assert set(inspect.signature(adapter.initialize).parameters) == {"initialization"}
    assert adapter.name() == "EBMPlanner"
    if na.HAVE_NUPLAN:
        from nuplan.planning.simulation.planner.abstract_planner import AbstractPlanner

        assert isinstance(adapter, AbstractPlanner)
    else:
        assert adapter.observation_type() is nt.DetectionsTracks
        assert set(na._Base.__abstractmethods__) == abstract


def test_compute_requires_initialize(adapter):
    with pytest.raises(RuntimeError, match="initialize"):
        adapter.compute_planner_trajectory(make_input())


def test_compute_planner_trajectory_contract(adapter):
    adapter.initialize(init())
    current = make_input()
    traj = adapter.compute_trajectory(current)          # the base class's timed wrapper
    states = traj.get_sampled_trajectory()
    assert len(states) == 41
    assert traj.start_time.time_us == 2_000_000 and traj.end_time.time_us == 6_000_000
    steps = np.diff([s.time_point.time_us for s in states])
    assert (steps == 100_000).all()
    plan = adapter.last_plan
    assert plan.fallback is None and "history_padded" not in plan.flags
    d = PARAMS.rear_axle_to_center
    for k, s in enumerate(states[1:]):
        # rear axle poses sit rear_axle_to_center behind the planned centre, same heading
        centre = np.array([s.rear_axle.x + d * np.cos(s.rear_axle.heading),
                           s.rear_axle.y + d * np.sin(s.rear_axle.heading)])
        assert np.allclose(centre, plan.positions[k], atol=1e-6)
        assert s.dynamic_car_state.rear_axle_velocity_2d.x == pytest.approx(plan.speeds[k])
    # the plan drives forward along +x from the ego, near its lane
    xs = [s.rear_axle.x for s in states]
    assert xs[-1] > xs[0] + 30 and all(abs(s.rear_axle.y) < 4.0 for s in states)
    mid = traj.get_state_at_time(nt.TimePoint(2_050_000))
    assert states[0].rear_axle.x < mid.rear_axle.x < states[1].rear_axle.x
    report = adapter.generate_planner_report()
    runtimes = report["compute_trajectory_runtimes"] if isinstance(report, dict) else report.compute_trajectory_runtimes
    assert len(runtimes) == 1 and runtimes[0] > 0


def test_inputs_are_converted_with_nuplan_semantics(adapter):
    adapter.initialize(init())
    current = make_input()
    ego_s, obs = current.history.current_state
    ego = adapter._ego(ego_s, PARAMS)
    assert (ego.x, ego.y, ego.speed) == pytest.approx((0.0, 0.0, 20.0))
    assert ego.length == pytest.approx(PARAMS.length) and ego.width == pytest.approx(PARAMS.width)
    hist = adapter._history(current.history.ego_states, 0.1, 10)
    assert hist.shape == (10, 2)                          # 20 Hz resampled to 10 Hz
    assert np.allclose(np.diff(hist[:, 0]), 2.0) and hist[-1, 0] == pytest.approx(0.0)
    nbrs = adapter._neighbours(obs)
    assert [n.agent_id for n in nbrs] == ["lead", "left"]  # the pedestrian is not a vehicle
    lanes = adapter._lanes(ego)
    assert len(lanes) == 2 and all(w == pytest.approx(3.6) for _, w in lanes)
    # warm start across calls, reset by initialize
    adapter.compute_planner_trajectory(current)
    nxt = make_input(now_us=2_100_000)
    adapter.compute_planner_trajectory(nxt)
    assert "warm_start" in adapter.last_plan.flags
    adapter.initialize(init())
    adapter.compute_planner_trajectory(nxt)
    assert "warm_start" not in adapter.last_plan.flags
