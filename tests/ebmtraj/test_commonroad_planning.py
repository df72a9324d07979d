"""Planning for the ego of real CommonRoad NGSIM scenarios: goal, collisions, human distance."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ebmtraj import commonroad_planning as crp
from ebmtraj.planner import AgentState, Planner
from ebmtraj.planner.types import Trajectory

from .test_planner_api import CR_DIR, SCENARIO, cache  # noqa: F401  (shared fixture)

PATH = CR_DIR / SCENARIO
pytestmark = pytest.mark.skipif(not PATH.is_file(), reason=f"CommonRoad data not found under {CR_DIR}")


def test_rectangle_collisions():
    a = AgentState(0.0, 0.0, 0.0, 10.0, length=4.0, width=2.0)
    assert crp.collides(a, [AgentState(3.9, 0.0, 0.0, 10.0, length=4.0, width=2.0)]) == "front_or_side"
    assert crp.collides(a, [AgentState(4.1, 0.0, 0.0, 10.0, length=4.0, width=2.0)]) is None
    assert crp.collides(a, [AgentState(0.0, 1.5, math.pi / 2, 1.0, length=4.0, width=2.0)]) == "front_or_side"
    assert crp.collides(a, [AgentState(0.0, 3.2, 0.0, 1.0, length=4.0, width=2.0)]) is None
    assert crp.collides(a, [AgentState(-3.8, 0.2, 0.0, 12.0, length=4.0, width=2.0)]) == "rear"


def test_goal_region_and_traffic_from_the_scenario():
    scenario, problems, lanes = crp.load_scenario(PATH)
    traffic, skipped = crp.read_traffic(scenario)
    assert len(traffic.ids) > 10 and traffic.xy.shape[1] >= 70 and len(lanes) > 0
    problem = next(iter(problems.planning_problem_dict.values()))
    goal = crp.Goal(problem.goal)
    g = problem.goal.state_list[0]
    c = tuple(float(v) for v in np.ravel(g.position.center))[:2]     # ndarray or Point by version
    t = int(g.time_step.start)
    v = 0.5 * (g.velocity.start + g.velocity.end)
    h = 0.5 * (g.orientation.start + g.orientation.end)
    assert goal.reached(AgentState(c[0], c[1], h, v), t)
    assert not goal.reached(AgentState(c[0] + 30, c[1], h, v), t)
    assert not goal.reached(AgentState(c[0], c[1], h, v), t - 20)
    assert goal.last_step == int(g.time_step.end)
    others = traffic.at(0)
    assert all(np.isfinite([o.x, o.y, o.heading, o.speed]).all() for o in others)


def test_problem_episode_runs_with_planner_and_reference(cache):  # noqa: F811
    planner = Planner.from_checkpoint(cache["path"], opt_steps=2)
    report = crp.evaluate_commonroad(planner, [PATH], ego="problem", replan=10)
    s = report["summary"]
    assert set(s) == {"ebm", "cv"}
    for row in s.values():
        assert row["episodes"] == 1 and row["ade"] is None      # no human for the problem's ego
    eps = report["episodes"]
    assert {e["end_reason"] for e in eps} <= {"goal_reached", "collision_front_or_side",
                                              "collision_rear", "goal_time_passed"}
    assert all(e["steps"] > 0 for e in eps)
    assert "EBM-IOC planner" in crp.format_table(s)


def test_recorded_ego_distance_from_human_is_measured():
    """Replaying the human's own future reaches its goal at zero distance; CV drifts off."""
    scenario, _, _ = crp.load_scenario(PATH)
    traffic, _ = crp.read_traffic(scenario)
    calls = {}

    def replay(ego, history, neighbours, lanes, horizon, time_s):
        v = calls["v"]
        k = calls.setdefault("k", 10)
        xy = traffic.xy[v, k + 1:k + 41]
        n = int(np.isfinite(xy).all(1).sum())
        head, sp = traffic.heading[v, k + 1:k + 1 + n], traffic.speed[v, k + 1:k + 1 + n]
        calls["k"] = k + 1
        z = np.zeros(n)
        return Trajectory(np.arange(1, n + 1) * 0.1, xy[:n], head, sp, z, z, np.zeros((n, 2)), 0.0, 0.0, ego)

    first = [v for v in range(len(traffic.ids))
             if np.isfinite(traffic.xy[v, 1:71]).all() and traffic.speed[v, 10] > 1.0][0]
    calls["v"] = first
    eps, skip = crp.recorded_episodes(PATH, {"human": replay, "cv": crp.cv_plan}, per_scenario=1)
    assert skip is None and len(eps) == 2
    human = next(e for e in eps if e.policy == "human")
    assert human.goal_reached and not human.collision and human.ade < 1e-6
    cv = next(e for e in eps if e.policy == "cv")
    assert cv.ade is not None and cv.ade > 0
