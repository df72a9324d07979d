"""Bad input gives a clear exception or a flagged fallback, never a silent wrong answer."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from shapely.geometry import LineString

from ebmtraj.planner import (AgentState, HorizonError, Planner, PlannerInputError, Scene,
                             SceneAgent)

from .test_planner_api import cache, needs_data, scene_inputs  # noqa: F401  (shared fixture)

LANES = [(LineString([(-200, 4.0 * i), (600, 4.0 * i)]), 4.0) for i in range(3)]
EGO = AgentState(0.0, 4.0, 0.0, 20.0, length=5.0, width=2.0)
HIST = np.stack([np.arange(-9, 1) * 2.0, np.full(10, 4.0)], 1)


@pytest.fixture
def planner(cache):  # noqa: F811
    return Planner.from_checkpoint(cache["path"], opt_steps=3)


def test_non_finite_states_raise_naming_the_field(planner):
    with pytest.raises(PlannerInputError, match=r"ego\.x is not finite"):
        planner.plan(AgentState(math.nan, 4.0, 0.0, 20.0), HIST, [], LANES)
    with pytest.raises(PlannerInputError, match=r"neighbours\[1\]\.speed is not finite"):
        planner.plan(EGO, HIST, [AgentState(30, 4, 0, 20), AgentState(50, 4, 0, math.inf)], LANES)
    bad = HIST.copy()
    bad[3, 1] = np.nan
    with pytest.raises(PlannerInputError, match="history row 3 is not finite"):
        planner.plan(EGO, bad, [], LANES)
    with pytest.raises(PlannerInputError, match="ego: expected an AgentState or a vector"):
        planner.plan([1.0, 2.0, 3.0], HIST, [], LANES)


def test_impossible_values_and_shapes_raise(planner):
    with pytest.raises(PlannerInputError, match="speed is negative"):
        planner.plan(AgentState(0, 4, 0, -3.0), HIST, [], LANES)
    with pytest.raises(PlannerInputError, match="not a vehicle"):
        planner.plan(AgentState(0, 4, 0, 10.0, length=0.0), HIST, [], LANES)
    with pytest.raises(PlannerInputError, match=r"expected \(H, 2\)"):
        planner.plan(EGO, HIST[:, :1], [], LANES)
    with pytest.raises(PlannerInputError, match="must end at the current time"):
        planner.plan(EGO, HIST - [30.0, 0.0], [], LANES)
    with pytest.raises(PlannerInputError, match=r"lanes\[1\]"):
        planner.plan(EGO, HIST, [], [LANES[0], LineString([(0, 0), (0, 0)])])
    with pytest.raises(PlannerInputError, match=r"lanes\[0\]: width"):
        planner.plan(EGO, HIST, [], [(LANES[0][0], 40.0)])


def test_horizon_beyond_training_raises_or_extends_flagged(planner, cache):  # noqa: F811
    with pytest.raises(HorizonError, match="beyond the 4.0 s"):
        planner.plan(EGO, HIST, [], LANES, horizon=6.0)
    with pytest.raises(HorizonError, match="multiple"):
        planner.plan(EGO, HIST, [], LANES, horizon=1.25)
    with pytest.raises(HorizonError, match="positive"):
        planner.plan(EGO, HIST, [], LANES, horizon=0.0)
    ext = Planner.from_checkpoint(cache["path"], opt_steps=2, beyond_horizon="extend")
    traj = ext.plan(EGO, HIST, [], LANES, horizon=6.0)
    assert traj.positions.shape == (60, 2) and np.isfinite(traj.positions).all()
    assert "extended_beyond_trained_horizon" in traj.flags
    # past 4 s the extension keeps the speed and heading reached at 4 s
    assert np.allclose(traj.speeds[40:], traj.speeds[39], atol=0.05)


def test_off_lane_and_no_lanes_fall_back_visibly(planner, cache):  # noqa: F811
    off = AgentState(0.0, 30.0, 0.3, 15.0, accel=1.0, steering=0.05)
    traj = planner.plan(off, None, [], LANES)
    assert traj.fallback == "off_lane" and traj.policy == "constant_velocity" and traj.is_fallback
    assert math.isnan(traj.cost)
    # constant velocity: accel and steering released in the first step, then a straight line
    d = np.diff(traj.positions[1:], axis=0)
    assert np.allclose(np.arctan2(d[:, 1], d[:, 0]), traj.headings[1], atol=1e-3)
    assert np.allclose(traj.speeds[1:], traj.speeds[1], atol=1e-6)
    near = planner.plan(AgentState(0.0, 12.5, 0.0, 15.0), None, [], LANES)   # 2.5 m past the edge
    assert near.fallback == "off_lane" and near.policy == "lane_keeping"
    assert abs(near.positions[-1, 1] - 8.0) < 0.2           # back onto the nearest lane
    assert planner.plan(EGO, HIST, [], []).fallback == "no_lanes"
    assert planner.plan(EGO, HIST, [], None).fallback == "no_lanes"
    strict = Planner.from_checkpoint(cache["path"], opt_steps=2, on_bad_input="raise")
    with pytest.raises(PlannerInputError, match="off every lane"):
        strict.plan(off, None, [], LANES)
    with pytest.raises(PlannerInputError, match="no lanes"):
        strict.plan(EGO, HIST, [], [])


def test_short_history_is_padded_and_flagged(planner):
    traj = planner.plan(EGO, HIST[-3:], [], LANES)
    assert "history_padded" in traj.flags and traj.fallback is None
    assert "history_padded" in planner.plan(EGO, None, [], LANES).flags
    assert "history_padded" not in planner.plan(EGO, HIST, [], LANES).flags


def test_non_finite_model_output_falls_back_to_lane_keeping(cache):  # noqa: F811
    broken = Planner.from_checkpoint(cache["path"], opt_steps=2)
    with torch.no_grad():
        broken.model.cost.theta.fill_(math.nan)
    ego = AgentState(0.0, 5.0, 0.05, 20.0)                 # 1 m left of the lane at y = 4
    traj = broken.plan(ego, None, [], LANES)
    assert traj.fallback == "model_nonfinite" and traj.policy == "lane_keeping"
    assert np.isfinite(traj.positions).all()
    assert abs(traj.positions[-1, 1] - 4.0) < 0.1          # converged onto the lane centre
    assert traj.positions[-1, 0] == pytest.approx(80.0, abs=1.0)


def test_predict_rejects_empty_scene_and_flags_off_lane_agents(planner):
    with pytest.raises(PlannerInputError, match="no agents"):
        planner.predict(Scene([], LANES))
    with pytest.raises(PlannerInputError, match="no agents"):
        planner.predict(None)
    agents = [SceneAgent(EGO, HIST), SceneAgent(AgentState(20.0, 40.0, 0.0, 20.0), None),
              SceneAgent(AgentState(25.0, 8.0, 0.0, 22.0), None)]
    preds = planner.predict(Scene(agents, LANES), samples=1)
    assert preds[1].fallback == "off_lane" and preds[0].fallback is None and preds[2].fallback is None
    with pytest.raises(PlannerInputError, match=r"scene\.agents\[2\]\.y is not finite"):
        planner.predict(Scene(agents[:2] + [SceneAgent(AgentState(0, math.nan, 0, 3), None)], LANES))
