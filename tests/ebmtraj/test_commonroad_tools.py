"""The drivability checker, the reactive planner and solution files on real CommonRoad NGSIM scenarios."""
from __future__ import annotations

import numpy as np
import pytest

from ebmcore.paths import data_root
from ebmtraj import commonroad_tools as ct

CR_DIR = data_root() / "commonroad-ngsim-us101"
SCENARIO = CR_DIR / "USA_US101-24_1_T-1.xml"
pytestmark = pytest.mark.skipif(not SCENARIO.is_file(),
                                reason=f"the CommonRoad NGSIM scenarios are not under {CR_DIR}")


@pytest.fixture(scope="module")
def scene():
    from commonroad.common.file_reader import CommonRoadFileReader

    scenario, problems = CommonRoadFileReader(str(SCENARIO)).open()
    problem = next(iter(problems.planning_problem_dict.values()))
    return scenario, problems, problem


def _track(obstacle):
    return [obstacle.initial_state] + list(obstacle.prediction.trajectory.state_list)


def test_recorded_human_tracks_are_collision_free_and_on_the_road(scene):
    scenario, _, _ = scene
    long = [o for o in scenario.dynamic_obstacles if len(_track(o)) >= 40]
    assert len(long) >= 30
    results = {}
    for o in long:   # each recorded vehicle against all the others, in its own footprint
        results[o.obstacle_id] = ct.check_trajectory(
            scenario, None, _track(o), shape=(o.obstacle_shape.length, o.obstacle_shape.width),
            ignore_obstacles=[o.obstacle_id], feasibility=False)
    assert not any(r["collision"] for r in results.values())
    assert np.mean([r["road_compliant"] for r in results.values()]) >= 0.9
    r = results[82]   # a vehicle recorded for 13 s, in lane throughout
    assert r["steps"] == 129 and r["road_compliant"] and not r["collision"] and r["reasons"] == []
    assert r["goal_reached"] is None and r["feasible"] is None


def test_driving_into_a_vehicle_is_a_collision(scene):
    scenario, _, _ = scene
    target = next(o for o in scenario.dynamic_obstacles if o.obstacle_id == 82)
    track = _track(target)
    s0 = track[0]
    h = float(s0.orientation)
    d = np.array([np.cos(h), np.sin(h)])
    k = np.arange(30)
    xy = np.asarray(s0.position) - 15.0 * d + np.outer((float(s0.velocity) + 10.0) * 0.1 * k, d)
    states = ct.ks_states_from_arrays(xy, np.full(30, h), np.full(30, float(s0.velocity) + 10.0),
                                      time_step0=int(s0.time_step))
    r = ct.check_trajectory(scenario, None, states)
    assert r["collision"] and 82 in r["collided_with"]
    assert int(s0.time_step) < r["first_collision_step"] <= int(s0.time_step) + 25
    assert any("collision" in x for x in r["reasons"])
    # the same run 30 m behind the vehicle, slower than it, touches nobody
    xy_behind = np.asarray(s0.position) - 30.0 * d + np.outer(float(s0.velocity) * 0.1 * k, d)
    calm = ct.ks_states_from_arrays(xy_behind, np.full(30, h), np.full(30, float(s0.velocity)),
                                    time_step0=int(s0.time_step))
    assert 82 not in ct.check_trajectory(scenario, None, calm, feasibility=False)["collided_with"]


def test_leaving_the_road_is_not_road_compliant(scene):
    scenario, _, _ = scene
    target = next(o for o in scenario.dynamic_obstacles if o.obstacle_id == 82)
    s0 = _track(target)[40]                          # mid-scenario, in lane
    h = float(s0.orientation)
    side = np.array([-np.sin(h), np.cos(h)])         # to the left of travel
    k = np.arange(40)
    xy = np.asarray(s0.position) + np.outer(1.0 * k, side)   # drifting left 10 m/s for 4 s
    heading = np.full(40, h + 0.3)
    states = ct.ks_states_from_arrays(xy, heading, np.full(40, 10.0), time_step0=int(s0.time_step))
    r = ct.check_trajectory(scenario, None, states, ignore_obstacles=[82], feasibility=False)
    assert not r["road_compliant"] and r["touches_boundary"]
    assert int(s0.time_step) < r["left_road_step"] < int(s0.time_step) + 40
    assert any("road" in x for x in r["reasons"])
    # the recorded vehicle's own motion over the same steps stays on the road
    own = ct.check_trajectory(scenario, None, _track(target)[40:80], ignore_obstacles=[82], feasibility=False)
    assert own["road_compliant"] and own["left_road_step"] is None


def test_feasibility_and_goal_from_the_checker(scene):
    scenario, _, problem = scene
    s0 = problem.initial_state
    h, v = float(s0.orientation), float(s0.velocity)
    d = np.array([np.cos(h), np.sin(h)])
    k = np.arange(11)
    straight = ct.ks_states_from_arrays(np.asarray(s0.position) + np.outer(v * 0.1 * k, d), np.full(11, h),
                                        np.full(11, v), time_step0=int(s0.time_step))
    r = ct.check_trajectory(scenario, problem, straight)
    assert r["feasible"] and r["goal_reached"] is False and "goal region not reached" in r["reasons"]
    # a 90 degree turn within 0.1 s at highway speed is beyond the kinematic single-track model
    jump = ct.ks_states_from_arrays(np.asarray(s0.position) + np.outer(v * 0.1 * k, d),
                                    np.r_[np.full(5, h), np.full(6, h + np.pi / 2)], np.full(11, v),
                                    time_step0=int(s0.time_step), steering=np.zeros(11))
    r = ct.check_trajectory(scenario, problem, jump)
    assert r["feasible"] is False and r["infeasible_step"] == int(s0.time_step) + 4


def test_solution_file_round_trip(scene, tmp_path):
    from commonroad.common.solution import CostFunction, VehicleModel, VehicleType

    scenario, _, problem = scene
    s0 = problem.initial_state
    h, v = float(s0.orientation), float(s0.velocity)
    k = np.arange(20)
    xy = np.asarray(s0.position) + np.outer(v * 0.1 * k, [np.cos(h), np.sin(h)])
    states = ct.ks_states_from_arrays(xy, np.full(20, h), np.full(20, v), time_step0=int(s0.time_step))
    path = ct.write_solution(tmp_path / "solution.xml", scenario, problem, states, "BMW_320i",
                             computation_time=1.5)
    sol = ct.read_solution(path)
    assert str(sol.scenario_id) == str(scenario.scenario_id)
    (pps,) = sol.planning_problem_solutions
    assert pps.planning_problem_id == problem.planning_problem_id
    assert (pps.vehicle_model, pps.vehicle_type, pps.cost_function) == (
        VehicleModel.KS, VehicleType.BMW_320i, CostFunction.WX1)
    back = pps.trajectory.state_list
    assert [s.time_step for s in back] == list(range(int(s0.time_step), int(s0.time_step) + 20))
    np.testing.assert_allclose([s.position for s in back], xy, atol=1e-6)
    np.testing.assert_allclose([s.velocity for s in back], v, atol=1e-6)
    assert sol.computation_time == pytest.approx(1.5)
    # what was read back is what the checker judges
    assert ct.check_trajectory(scenario, problem, back, feasibility=False)["steps"] == 19


def test_reactive_planner_drives_the_planning_problem(scene):
    why = ct.reactive_planner_available()
    if why:
        pytest.skip(why)
    scenario, _, problem = scene
    info = {}
    states = ct.reactive_planner_plan(scenario, problem, max_steps=15, info=info)
    assert info["stop"] == "goal_time_passed" and info["plans"] == 5, info   # 15 steps, replanning every 3
    t0 = int(problem.initial_state.time_step)
    assert [s.time_step for s in states] == list(range(t0, t0 + 16))
    np.testing.assert_allclose(states[0].position, problem.initial_state.position, atol=1e-6)
    r = ct.check_trajectory(scenario, problem, states)
    assert not r["collision"] and r["road_compliant"] and r["feasible"], r["reasons"]
    speeds = [s.velocity for s in states]
    assert min(speeds) > 5.0          # it drives on, not stops
