"""Bad per-call arguments raise PlannerInputError naming the argument; a neighbour overlapping
the ego is flagged on the plan. Synthetic scenes, no real data."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest

from ebmtraj.planner import PlannerConfig, PlannerInputError

from .test_planner_budget import planner, scene_of  # noqa: F401  (shared fixture)


@pytest.fixture(scope="module")
def scene():
    return scene_of(4)


@pytest.mark.parametrize("budget", [0.0, -1.0, math.nan, math.inf])
def test_bad_time_budget_raises(planner, scene, budget):  # noqa: F811
    ego = scene.agents[0]
    with pytest.raises(PlannerInputError, match="time_budget"):
        planner.plan(ego.state, ego.history, [], scene.lanes, time_budget=budget)
    with pytest.raises(PlannerInputError, match="time_budget"):
        planner.predict(scene, time_budget=budget)


@pytest.mark.parametrize("kwargs, name", [({"samples": 0}, "samples"), ({"samples": -3}, "samples"),
                                          ({"mode": "fastest"}, "mode"), ({"opt_steps": -1}, "opt_steps"),
                                          ({"steps": 2.5}, "steps")])
def test_bad_search_arguments_raise_planner_input_error(planner, scene, kwargs, name):  # noqa: F811
    ego = scene.agents[0]
    with pytest.raises(PlannerInputError, match=name):
        planner.plan(ego.state, ego.history, [], scene.lanes, **kwargs)
    with pytest.raises(PlannerInputError, match=name):
        planner.predict(scene, **kwargs)


@pytest.mark.parametrize("field, value", [("mode", "fastest"), ("samples", 0), ("time_budget", 0.0),
                                          ("time_budget", math.nan)])
def test_bad_planner_config_raises_planner_input_error(field, value):
    with pytest.raises(PlannerInputError, match=field):
        replace(PlannerConfig(), **{field: value}).validate()


@pytest.mark.parametrize("dx, flagged", [(0.0, True), (3.0, True), (12.0, False)])
def test_neighbour_overlapping_the_ego_is_flagged(planner, scene, dx, flagged):  # noqa: F811
    ego = scene.agents[0]
    other = replace(ego.state, x=ego.state.x + dx, y=ego.state.y + 0.3)
    plan = planner.plan(ego.state, ego.history, [other], scene.lanes)
    assert ("neighbour_overlaps_ego" in plan.flags) == flagged


def test_road_guard_keeps_a_drifting_plan_on_the_road(planner):  # noqa: F811
    """An ego in the outer lane drifting toward the road's edge at 1 m/s: its plan leaves the
    road without the guard; with it the plan is lane keeping at the plan's own speeds."""
    import numpy as np

    from ebmtraj.data.toy import straight_road
    from ebmtraj.planner import AgentState, LaneSet, Planner

    lanes = LaneSet.from_any(straight_road())                      # lane centres y = 0, 3.7, 7.4
    t = np.arange(-9, 1) * 0.1
    history = np.stack([20.0 * t, -0.5 - 1.0 * t], 1)               # 20 m/s along x, 1 m/s outward
    ego = AgentState(0.0, -0.5, math.atan2(-1.0, 20.0), math.hypot(20.0, 1.0))
    loose = Planner(planner.loaded, replace(planner.config, road_guard=False))
    free = loose.plan(ego, history, [], lanes)
    assert free.fallback is None and (lanes.edge_excess(free.positions) > 0).any()
    kept = planner.plan(ego, history, [], lanes)
    assert (kept.fallback, kept.policy) == ("plan_off_road", "lane_keeping")
    assert (lanes.edge_excess(kept.positions) <= 0).all()
    assert np.allclose(kept.speeds, free.speeds) and abs(kept.positions[-1, 1]) < 0.3


def test_the_road_guard_brakes_for_a_vehicle_ahead_not_for_one_behind():
    """The guard's lane keeping at the plan's speeds brakes as little as keeps its footprint off
    a slower vehicle ahead in the lane (constant velocity); a faster one behind does not make it
    brake; without neighbours the plan's speeds stay."""
    import numpy as np

    from ebmtraj.data.toy import straight_road
    from ebmtraj.planner import AgentState, LaneSet
    from ebmtraj.planner.fallback import _paths, _touches, lane_keeping_behind

    lanes = LaneSet.from_any(straight_road())                      # lane centres y = 0, 3.7, 7.4
    ego = AgentState(0.0, 0.0, 0.0, 20.0, length=4.5, width=1.8)
    speeds, t = np.full(40, 20.0), np.arange(1, 41) * 0.1
    slow = AgentState(20.0, 0.0, 0.0, 10.0, length=4.5, width=1.8)
    fast_behind = AgentState(-9.0, 0.0, 0.0, 30.0, length=4.5, width=1.8)
    free, _, none = lane_keeping_behind(ego, lanes, 40, speeds, [])
    assert none == 0 and np.allclose(free[:, 2], speeds)
    assert _touches(free, ego, _paths([slow], t))
    held, _, decel = lane_keeping_behind(ego, lanes, 40, speeds, [slow, fast_behind])
    assert decel > 0 and not _touches(held, ego, _paths([slow], t))
    assert (held[:, 2] <= speeds + 1e-9).all() and held[-1, 2] < 15.0
    assert abs(held[:, 1]).max() < 1e-6                           # still in its lane
    _, _, behind_only = lane_keeping_behind(ego, lanes, 40, speeds, [fast_behind])
    assert behind_only == 0
