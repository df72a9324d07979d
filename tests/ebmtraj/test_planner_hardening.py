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
