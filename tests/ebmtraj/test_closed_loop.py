"""highway-env closed loop: a short episode end to end, the tracker, the bookkeeping."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

pytest.importorskip("highway_env")

from ebmtraj.closed_loop import (HighwayAdapter, closed_loop_payload, count_lane_changes,  # noqa: E402
                                 evaluate_closed_loop, format_table, make_env, road_lanes, track)
from ebmtraj.planner import AgentState, Planner  # noqa: E402
from ebmtraj.planner.types import Trajectory  # noqa: E402

from .test_planner_api import cache  # noqa: E402,F401  (shared fixture)


def straight(speed_end: float, curve: float = 0.0) -> Trajectory:
    t = np.arange(1, 41) * 0.1
    v = np.linspace(20.0, speed_end, 41)[1:]
    x = np.cumsum(v * 0.1)
    y = curve * x ** 2
    z = np.zeros(40)
    return Trajectory(t, np.stack([x, y], 1), np.arctan(2 * curve * x), v, z, z, np.zeros((40, 2)),
                      0.0, 0.0, AgentState(0, 0, 0, 20.0))


def test_tracker_follows_speed_and_path():
    ego = AgentState(0.0, 0.0, 0.0, 20.0)
    a, s = track(straight(20.0), ego)
    assert a == pytest.approx(0.0, abs=1e-6) and s == pytest.approx(0.0, abs=1e-6)
    a, s = track(straight(28.0), ego)
    assert a > 0 and s == pytest.approx(0.0, abs=1e-6)
    a, s = track(straight(20.0, curve=0.002), ego)      # bends left (+y)
    assert s > 0
    a, s = track(straight(12.0, curve=-0.002), ego)
    assert a < 0 and s < 0


def test_lane_change_counting_needs_a_held_lane():
    assert count_lane_changes([1] * 10) == 0
    assert count_lane_changes([1] * 5 + [2] * 10) == 1
    assert count_lane_changes([1] * 5 + [2] * 2 + [1] * 5) == 0          # jitter at the line
    assert count_lane_changes([1] * 5 + [2] * 6 + [3] * 6) == 2


def test_observation_becomes_planner_input(cache):  # noqa: F811
    env = make_env(duration=1.0, vehicles=10)
    try:
        obs, _ = env.reset(seed=3)
        lanes = road_lanes(env)
        assert len(lanes) == 4 and np.allclose(lanes.widths, 4.0)
        adapter = HighwayAdapter(Planner.from_checkpoint(cache["path"], opt_steps=2), lanes)
        ego_row, others = adapter.parse(obs)
        ego = adapter.state(ego_row)
        u = env.unwrapped
        # mirrored into the planner's counter-clockwise frame
        assert (ego.x, -ego.y, -ego.heading) == pytest.approx(
            (u.vehicle.position[0], u.vehicle.position[1], u.vehicle.heading), abs=1e-4)
        assert ego.speed == pytest.approx(u.vehicle.speed, abs=1e-4)
        assert len(others) >= 1 and (ego.length, ego.width) == (5.0, 2.0)
        # a neighbour changing lanes (1.5 m/s sideways) is extrapolated along its lane
        row = np.array([ego.x + 20.0, -5.0, 22.0, -1.5, math.atan2(-1.5, 22.0)])
        aligned = adapter.neighbour(row)
        assert (aligned.heading, aligned.speed) == pytest.approx((0.0, 22.0))
        own = HighwayAdapter(adapter.planner, lanes, lane_aligned_neighbours=False).neighbour(row)
        assert (own.heading, own.speed) == pytest.approx((row[4], math.hypot(22.0, 1.5)))
        action = adapter.act(obs)
        assert action.shape == (2,) and np.all(np.abs(action) <= 1.0)
        assert adapter.last_plan.fallback is None and len(adapter.latencies) == 1
    finally:
        env.close()


def test_short_episode_end_to_end(cache):  # noqa: F811
    planner = Planner.from_checkpoint(cache["path"], opt_steps=2)
    report = evaluate_closed_loop(1, seed=5, duration=1.5, planner=planner,
                                  env_kwargs={"vehicles": 15})
    s = report["summary"]
    assert set(s) == {"ebm", "idm", "idle"}
    assert s["ebm"]["plans"] == 15 and s["ebm"]["latency_median_ms"] > 0
    for row in s.values():
        assert row["episodes"] == 1 and 0 <= row["collision_rate"] <= 1 and row["mean_speed"] > 5
    eps = {e["policy"]: e for e in report["episodes"]}
    assert eps["idle"]["steps"] == 15 or eps["idle"]["crashed"]
    assert "EBM-IOC planner" in format_table(s)
    rec = closed_loop_payload(report)
    assert rec["episodes"] == 1 and set(rec) >= {"ebm", "idm", "checkpoint"} and "idle" not in rec
    assert rec["ebm"]["collision"] == s["ebm"]["collision_rate"] and rec["idm"]["offroad"] == s["idm"]["offroad_rate"]
    assert rec["ebm"]["speed"] == s["ebm"]["mean_speed"] and rec["ebm"]["latency_median_ms"] > 0
    json.dumps(rec)
