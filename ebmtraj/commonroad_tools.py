"""CommonRoad as its users work: the drivability checker, the reactive planner, solution files.

* :func:`check_trajectory` (and :class:`ScenarioChecker`, which builds the checks of one scenario
  once) judges a driven trajectory with ``commonroad-drivability-checker`` (``commonroad_dc``):

  - **collision**: the scenario's obstacles as the checker's collision objects
    (``create_collision_object`` of each obstacle, as ``create_collision_checker`` builds them)
    against the ego's time-variant collision object (its rectangle along the trajectory);
  - **road compliance**: the ego's rectangle stays enclosed in the road polygons
    (``create_road_polygons(method='whole_polygon')`` and
    ``trajectories_enclosure_polygons_static``) at every time step and does not touch the road
    boundary (``create_road_boundary_obstacle``, oriented rectangles on the road's border);
  - **feasibility**: ``trajectory_feasibility`` of ``commonroad_dc.feasibility`` for the vehicle
    model and type (default: kinematic single track, BMW 320i -- CommonRoad's ``KS2``): an input
    within the model's bounds is reconstructed for every 0.1 s transition;
  - **goal**: ``PlanningProblem.goal_reached`` of commonroad-io (any driven state inside the goal
    region's position, orientation, velocity and time intervals).

* :func:`reactive_planner_plan` runs ``commonroad-reactive-planner`` (``commonroad_rp``) with its
  default configuration on a planning problem, in the replanning loop of the package's example
  (plan every ``replanning_frequency`` steps, follow the plan in between), bounded in simulated
  steps and wall time.

* :func:`write_solution` / :func:`read_solution` write and read a CommonRoad solution file with
  commonroad-io's ``CommonRoadSolutionWriter`` / ``CommonRoadSolutionReader``.

* :func:`evaluate_planning_problems` runs planners (``plan_fn(scenario, planning_problem) ->
  states``) on the planning problems of scenario files and scores every driven trajectory with
  the checker; :func:`ebm_plan_fn` makes such a function from an :class:`ebmtraj.planner.Planner`
  through the closed loop of :mod:`ebmtraj.commonroad_planning`.

Conventions (CommonRoad's): positions [m] are the vehicle's centre in the scenario frame,
orientations [rad] counter-clockwise, velocities [m/s], steering angles [rad] (front wheel),
time steps of the scenario's ``dt`` (0.1 s in the NGSIM scenarios). "States" are commonroad-io
states with ``time_step``, ``position``, ``orientation`` and ``velocity``
(``steering_angle`` where known); they are turned into kinematic-single-track states
(:func:`to_ks_states`) for the checks and solution files.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

DEFAULT_VEHICLE_TYPE_ID = 2      # commonroad-io VehicleType.BMW_320i
DEFAULT_VEHICLE_MODEL = "KS"     # commonroad-io VehicleModel.KS (kinematic single track)
DEFAULT_COST_FUNCTION = "WX1"    # commonroad-io CostFunction.WX1


def _vehicle_type(vehicle_type):
    from commonroad.common.solution import VehicleType

    if isinstance(vehicle_type, VehicleType):
        return vehicle_type
    if isinstance(vehicle_type, str):
        return VehicleType[vehicle_type]
    return VehicleType(int(vehicle_type))


def _vehicle_model(vehicle_model):
    from commonroad.common.solution import VehicleModel

    return vehicle_model if isinstance(vehicle_model, VehicleModel) else VehicleModel[str(vehicle_model)]


def _cost_function(cost_function):
    from commonroad.common.solution import CostFunction

    return cost_function if isinstance(cost_function, CostFunction) else CostFunction[str(cost_function)]


def vehicle_parameters(vehicle_type=DEFAULT_VEHICLE_TYPE_ID):
    """The CommonRoad vehicle parameters of a vehicle type (``VehicleType``, its name or id):
    ``.l``, ``.w`` length and width [m], ``.a``, ``.b`` centre to front / rear axle [m]."""
    from commonroad_dc.feasibility.vehicle_dynamics import VehicleParameterMapping

    return VehicleParameterMapping.from_vehicle_type(_vehicle_type(vehicle_type))


def ks_states_from_arrays(xy, heading, speed, *, time_step0: int, dt: float = 0.1,
                          vehicle_type=DEFAULT_VEHICLE_TYPE_ID, steering=None) -> list:
    """Kinematic-single-track states (commonroad-io ``KSState``) from arrays.

    ``xy`` (T, 2) centre positions [m], ``heading`` (T,) [rad], ``speed`` (T,) [m/s], the first
    at time step ``time_step0``, one per ``dt`` seconds. ``steering`` (T,) [rad], if not given,
    is the steering angle that makes the vehicle type's wheelbase (``a + b``) follow the
    heading's rate: ``atan(wheelbase * dheading/dt / speed)`` (0 below 0.1 m/s)."""
    from commonroad.scenario.state import KSState

    xy = np.asarray(xy, dtype=float)
    heading = np.asarray(heading, dtype=float)
    speed = np.asarray(speed, dtype=float)
    if xy.ndim != 2 or xy.shape[1] != 2 or not (len(xy) == len(heading) == len(speed)):
        raise ValueError(f"xy must be (T, 2) and heading, speed (T,); got {xy.shape}, {heading.shape}, {speed.shape}")
    if not (np.isfinite(xy).all() and np.isfinite(heading).all() and np.isfinite(speed).all()):
        raise ValueError("states must be finite")
    if steering is None:
        p = vehicle_parameters(vehicle_type)
        rate = np.gradient(np.unwrap(heading), dt) if len(heading) > 1 else np.zeros(len(heading))
        steering = np.where(speed > 0.1, np.arctan((p.a + p.b) * rate / np.maximum(speed, 0.1)), 0.0)
    return [KSState(time_step=int(time_step0) + k, position=xy[k].copy(), steering_angle=float(steering[k]),
                    velocity=float(speed[k]), orientation=float(heading[k])) for k in range(len(xy))]


def to_ks_states(states, vehicle_type=DEFAULT_VEHICLE_TYPE_ID, dt: float = 0.1) -> list:
    """Any commonroad-io states (``time_step``, ``position``, ``orientation``, ``velocity``;
    consecutive time steps) as ``KSState``s: a state's ``steering_angle`` is kept where set,
    else derived from the heading's rate as in :func:`ks_states_from_arrays`."""
    states = list(states)
    if not states:
        raise ValueError("no states")
    steps = [int(s.time_step) for s in states]
    if any(b - a != 1 for a, b in zip(steps, steps[1:])):
        raise ValueError(f"states must have consecutive time steps, got {steps[:5]}...")
    xy = np.array([np.asarray(s.position, dtype=float) for s in states])
    heading = np.array([float(s.orientation) for s in states])
    speed = np.array([float(s.velocity) for s in states])
    given = [getattr(s, "steering_angle", None) for s in states]
    steering = None
    if all(g is not None for g in given):
        steering = np.array(given, dtype=float)
    return ks_states_from_arrays(xy, heading, speed, time_step0=steps[0], dt=dt,
                                 vehicle_type=vehicle_type, steering=steering)


def _trajectory(states):
    from commonroad.scenario.trajectory import Trajectory

    return Trajectory(initial_time_step=int(states[0].time_step), state_list=list(states))


@dataclass
class ScenarioChecker:
    """The drivability checker's objects for one scenario, built once and reused.

    ``ignore_obstacles``: obstacle ids left out of the collision checks (a recorded vehicle
    whose own track is being checked)."""

    scenario: object
    ignore_obstacles: tuple = ()
    _obstacles: list = field(init=False, repr=False)
    _checker: object = field(init=False, repr=False)
    _road: object = field(init=False, repr=False)
    _boundary: object = field(init=False, repr=False)

    def __post_init__(self):
        import commonroad_dc.pycrcc as pycrcc
        from commonroad_dc.boundary.boundary import create_road_boundary_obstacle, create_road_polygons
        from commonroad_dc.collision.collision_detection.pycrcc_collision_dispatch import create_collision_object

        ignore = {int(i) for i in self.ignore_obstacles}
        self._obstacles = [(int(o.obstacle_id), create_collision_object(o)) for o in self.scenario.obstacles
                           if int(o.obstacle_id) not in ignore]
        self._checker = pycrcc.CollisionChecker()
        for _, co in self._obstacles:
            self._checker.add_collision_object(co)
        self._road = create_road_polygons(self.scenario, method="whole_polygon", triangulate=False)
        _, boundary = create_road_boundary_obstacle(self.scenario)
        self._boundary = pycrcc.CollisionChecker()
        self._boundary.add_collision_object(boundary)

    def check(self, planning_problem, states, *, vehicle_type=DEFAULT_VEHICLE_TYPE_ID,
              vehicle_model=DEFAULT_VEHICLE_MODEL, shape: tuple[float, float] | None = None,
              feasibility: bool = True) -> dict:
        """See :func:`check_trajectory`."""
        from commonroad.geometry.shape import Rectangle
        from commonroad.prediction.prediction import TrajectoryPrediction
        from commonroad_dc.collision.collision_detection.pycrcc_collision_dispatch import create_collision_object
        from commonroad_dc.collision.trajectory_queries.trajectory_queries import (
            trajectories_enclosure_polygons_static)
        from commonroad_dc.feasibility.feasibility_checker import trajectory_feasibility
        from commonroad_dc.feasibility.vehicle_dynamics import VehicleDynamics

        dt = float(self.scenario.dt)
        ks = to_ks_states(states, vehicle_type, dt)
        traj = _trajectory(ks)
        if shape is None:
            p = vehicle_parameters(vehicle_type)
            shape = (p.l, p.w)
        ego = create_collision_object(TrajectoryPrediction(traj, Rectangle(float(shape[0]), float(shape[1]))))
        steps = [int(s.time_step) for s in ks]
        reasons = []

        collision = bool(self._checker.collide(ego))
        first_collision, hit = None, []
        if collision:
            hit = [oid for oid, co in self._obstacles if co.collide(ego)]
            for k in steps:
                if self._checker.time_slice(k).collide(ego.obstacle_at_time(k)):
                    first_collision = k
                    break
            reasons.append(f"collision with obstacle(s) {hit} (first at time step {first_collision})")

        left = int(trajectories_enclosure_polygons_static([ego], self._road, method="grid", num_cells=32)[0])
        boundary = bool(self._boundary.collide(ego))
        road_compliant = left == -1 and not boundary
        if left != -1:
            reasons.append(f"not enclosed by the road polygons from time step {left}")
        if boundary:
            reasons.append("touches the road boundary")

        feasible, infeasible_at = None, None
        if feasibility and len(ks) > 1:
            dyn = VehicleDynamics.from_model(_vehicle_model(vehicle_model), _vehicle_type(vehicle_type))
            feasible, inputs = trajectory_feasibility(traj, dyn, dt)
            feasible = bool(feasible)
            if not feasible:
                infeasible_at = steps[0] + len(inputs.state_list) - 1
                reasons.append(f"infeasible for {_vehicle_model(vehicle_model).name} "
                               f"{_vehicle_type(vehicle_type).name} from time step {infeasible_at}")
        elif feasibility:
            feasible = True

        goal_reached, goal_step = None, None
        if planning_problem is not None:
            ok, idx = planning_problem.goal_reached(traj)
            goal_reached = bool(ok)
            goal_step = steps[idx] if ok else None
            if not ok:
                reasons.append("goal region not reached")
        return {"collision": collision, "road_compliant": road_compliant, "feasible": feasible,
                "goal_reached": goal_reached, "reasons": reasons, "first_collision_step": first_collision,
                "collided_with": hit, "left_road_step": None if left == -1 else left,
                "touches_boundary": boundary, "infeasible_step": infeasible_at, "goal_step": goal_step,
                "steps": len(ks) - 1, "time_steps": (steps[0], steps[-1])}


def check_trajectory(scenario, planning_problem, states, *, vehicle_type=DEFAULT_VEHICLE_TYPE_ID,
                     vehicle_model=DEFAULT_VEHICLE_MODEL, shape: tuple[float, float] | None = None,
                     ignore_obstacles: Iterable[int] = (), feasibility: bool = True) -> dict:
    """Judge a driven trajectory with the drivability checker (see the module docstring).

    ``states``: commonroad-io states at consecutive time steps (centre positions). The ego is a
    rectangle of ``shape`` = (length, width) [m], by default the vehicle type's. ``planning_problem``
    may be None (no goal check: ``goal_reached`` None). Returns ``collision``,
    ``road_compliant``, ``feasible`` (None when ``feasibility=False``), ``goal_reached`` (bools),
    ``reasons`` (one line per failed check) and details: ``first_collision_step``,
    ``collided_with`` (obstacle ids), ``left_road_step``, ``touches_boundary``,
    ``infeasible_step``, ``goal_step``, ``steps`` (transitions) and ``time_steps`` (first, last).
    Build a :class:`ScenarioChecker` to check many trajectories of one scenario."""
    return ScenarioChecker(scenario, tuple(ignore_obstacles)).check(
        planning_problem, states, vehicle_type=vehicle_type, vehicle_model=vehicle_model, shape=shape,
        feasibility=feasibility)


# ---------------------------------------------------------------------------------- reactive planner
def reactive_planner_available() -> str | None:
    """None when ``commonroad_rp`` imports, else why not (it supports Python < 3.12 only)."""
    try:
        import commonroad_rp.reactive_planner  # noqa: F401
    except ImportError as err:
        return f"commonroad-reactive-planner is not importable: {err}"
    return None


def reactive_planner_plan(scenario, planning_problem, *, max_steps: int | None = None,
                          time_limit_s: float = 120.0, config=None, extend_reference_m: float = 200.0,
                          info: dict | None = None) -> list:
    """Drive a planning problem with commonroad-reactive-planner; returns the driven states.

    The planner runs with ``ReactivePlannerConfiguration()`` (the package's defaults: 6 s
    horizon, replanning every 3 steps of 0.1 s, BMW 320i) except ``debug.multiproc = False``
    (one process) and logging at WARNING, or with ``config``. Its reference path is the route
    planner's shortest route (``create_initial_ref_path``) extended by ``extend_reference_m``
    [m] at both ends along the lanelets (``commonroad_clcs.util.extend_reference_path``; the
    planner's samples may reach beyond the route's end), in the package's coordinate system
    (``create_coordinate_system``). The loop follows the package's example: plan every
    ``replanning_frequency`` steps, follow the plan in between, until the goal is reached, the
    goal's last time step (or ``max_steps`` steps), a failed plan, or ``time_limit_s`` seconds of
    wall time. Returns commonroad-io states at the vehicle's centre (``KSState``: position,
    steering angle, velocity, orientation), the first being the planning problem's initial
    state. ``info`` (a dict), if given, receives ``stop`` (why the loop ended), ``plans``,
    ``plan_seconds`` (list) and ``wall_seconds``."""
    import logging

    from commonroad_clcs.util import extend_reference_path
    from commonroad_rp.reactive_planner import ReactivePlanner
    from commonroad_rp.state import ReactivePlannerState
    from commonroad_rp.utility.config import ReactivePlannerConfiguration
    from commonroad_rp.utility.utils_coordinate_system import create_coordinate_system, create_initial_ref_path

    t_start = time.perf_counter()
    info = {} if info is None else info
    if config is None:
        config = ReactivePlannerConfiguration()
        config.debug.multiproc = False
        config.debug.logging_level = "WARNING"
    logging.getLogger("RP_LOGGER").setLevel(config.debug.logging_level)
    config.update(scenario=scenario, planning_problem=planning_problem)
    t0 = int(planning_problem.initial_state.time_step)
    if max_steps is None:
        max_steps = int(max(s.time_step.end for s in planning_problem.goal.state_list)) - t0
    ref = create_initial_ref_path(scenario.lanelet_network, planning_problem)
    ref = extend_reference_path(ref, 1.0, extend_reference_m, extend_reference_m, scenario.lanelet_network)
    planner = ReactivePlanner(config)
    planner.set_reference_path(coordinate_system=create_coordinate_system(ref))
    planner.record_state_and_input(planner.x_0)
    freq = int(config.planning.replanning_frequency)
    info.update(stop="goal_time_passed", plans=0, plan_seconds=[])
    optimal = None
    while True:
        if planner.goal_reached():
            info["stop"] = "goal_reached"
            break
        k = len(planner.record_state_list) - 1
        if k >= max_steps:
            break
        if time.perf_counter() - t_start > time_limit_s:
            info["stop"] = f"time_limit ({time_limit_s:.0f} s)"
            break
        if k % freq == 0:
            planner.set_desired_velocity(current_speed=planner.x_0.velocity)
            t = time.perf_counter()
            try:
                optimal = planner.plan()
            except Exception as err:  # the planner and its coordinate system raise many types
                optimal = None
                info["error"] = f"{type(err).__name__}: {err}"
            info["plan_seconds"].append(time.perf_counter() - t)
            info["plans"] += 1
            if not optimal:
                info["stop"] = "plan_failed"
                break
        j = 1 + k % freq
        if j >= len(optimal[0].state_list):
            info["stop"] = "plan_too_short"
            break
        planner.record_state_and_input(optimal[0].state_list[j])
        planner.reset(initial_state_cart=planner.record_state_list[-1],
                      initial_state_curv=(optimal[1][j], optimal[2][j]),
                      collision_checker=planner.collision_checker, coordinate_system=planner.coordinate_system)
    info["wall_seconds"] = time.perf_counter() - t_start
    centre = [ReactivePlannerState.shift_state_to_center(s, config.vehicle.wb_rear_axle)
              for s in planner.record_state_list]
    for k, s in enumerate(centre):
        s.time_step = t0 + k
    return to_ks_states(centre, DEFAULT_VEHICLE_TYPE_ID, float(scenario.dt))


# ---------------------------------------------------------------------------------- solution files
def write_solution(path, scenario, planning_problem, states, vehicle_type=DEFAULT_VEHICLE_TYPE_ID, *,
                   vehicle_model=DEFAULT_VEHICLE_MODEL, cost_function=DEFAULT_COST_FUNCTION,
                   computation_time: float | None = None, overwrite: bool = True) -> Path:
    """Write a CommonRoad solution file (commonroad-io's ``CommonRoadSolutionWriter``) for one
    planning problem: its ``PlanningProblemSolution`` with the vehicle model, vehicle type and
    cost function ids and the states as a trajectory of that model's states (KS: position,
    steering angle, velocity, orientation per time step). ``computation_time`` [s] is optional.
    Returns the file's path."""
    from commonroad.common.solution import CommonRoadSolutionWriter, PlanningProblemSolution, Solution

    model = _vehicle_model(vehicle_model)
    if model.name != "KS":
        raise ValueError(f"write_solution writes KS trajectories; got vehicle model {model.name}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pps = PlanningProblemSolution(planning_problem_id=int(planning_problem.planning_problem_id),
                                  vehicle_model=model, vehicle_type=_vehicle_type(vehicle_type),
                                  cost_function=_cost_function(cost_function),
                                  trajectory=_trajectory(to_ks_states(states, vehicle_type, float(scenario.dt))))
    solution = Solution(scenario.scenario_id, [pps], computation_time=computation_time)
    CommonRoadSolutionWriter(solution).write_to_file(output_path=str(path.parent), filename=path.name,
                                                     overwrite=overwrite)
    return path


def read_solution(path):
    """Read a CommonRoad solution file (commonroad-io's ``CommonRoadSolutionReader``) -> Solution."""
    from commonroad.common.solution import CommonRoadSolutionReader

    return CommonRoadSolutionReader.open(str(path))


# ---------------------------------------------------------------------------------- evaluation
PlanFn = Callable[[object, object], list]


def ebm_plan_fn(planner, *, replan: int = 1, horizon: float = 4.0) -> PlanFn:
    """``plan_fn(scenario, planning_problem) -> states`` driving an :class:`ebmtraj.planner.Planner`
    through :func:`ebmtraj.commonroad_planning.simulate`: closed loop at 10 Hz among the replayed
    recorded traffic, a 4.5 m x 1.8 m ego starting at the planning problem's initial state (no
    history), replanning every ``replan`` steps, following its plan exactly; the episode ends at
    the goal (commonroad-io ``GoalRegion.is_reached``), the goal's last time step or the first
    overlap with a recorded vehicle. Returns the driven states (centre, time steps from the
    problem's initial one); the last episode's summary is in ``plan_fn.last``."""
    from . import commonroad_planning as crp
    from .data.lanes import LaneMap
    from .planner import AgentState, LaneSet

    cache: dict = {}

    def plan_fn(scenario, planning_problem):
        key = str(scenario.scenario_id)
        if key not in cache:
            cache.clear()
            lanes = LaneSet.from_any(LaneMap.from_lanelet_network(scenario.lanelet_network, source=key))
            cache[key] = (crp.read_traffic(scenario)[0], lanes)
        traffic, lanes = cache[key]
        s0 = planning_problem.initial_state
        ego = AgentState(float(s0.position[0]), float(s0.position[1]), float(s0.orientation), float(s0.velocity),
                         float(getattr(s0, "acceleration", 0.0) or 0.0), 0.0, crp.EGO_LENGTH, crp.EGO_WIDTH)
        plans = []

        def recorded(e, h, n, l, hz, t):
            plan = planner.plan(e, h, n, l, hz, timestamp=t)
            plans.append(plan)
            return plan

        planner.reset()
        r = crp.simulate(recorded, ego, None, traffic, lanes, crp.Goal(planning_problem.goal),
                         int(s0.time_step), replan=replan, horizon=horizon)
        # simulate() follows each plan's first min(replan, len) states, exactly as queued here
        driven = [p.states[i] for p in plans for i in range(min(replan, len(p.t)))][:r["steps"]]
        plan_fn.last = {k: v for k, v in r.items() if k != "latencies"} | {
            "plan_seconds": list(r["latencies"])}
        xy = np.array([[s0.position[0], s0.position[1]]] + [[d[0], d[1]] for d in driven], dtype=float)
        heading = np.array([s0.orientation] + [d[3] for d in driven], dtype=float)
        speed = np.array([s0.velocity] + [max(float(d[2]), 0.0) for d in driven], dtype=float)
        return ks_states_from_arrays(xy, heading, speed, time_step0=int(s0.time_step), dt=float(scenario.dt))

    plan_fn.last = {}
    return plan_fn


def reactive_plan_fn(time_limit_s: float = 120.0) -> PlanFn:
    """``plan_fn(scenario, planning_problem) -> states`` running :func:`reactive_planner_plan`;
    the last run's ``info`` is in ``plan_fn.last``."""

    def plan_fn(scenario, planning_problem):
        info: dict = {}
        plan_fn.last = info
        return reactive_planner_plan(scenario, planning_problem, time_limit_s=time_limit_s, info=info)

    plan_fn.last = {}
    return plan_fn


def evaluate_planning_problems(plan_fns: dict, scenarios, *, vehicle_type=DEFAULT_VEHICLE_TYPE_ID,
                               feasibility: bool = True, log=None) -> dict:
    """Run every planner on every planning problem of ``scenarios`` and judge each driven
    trajectory with the drivability checker (:class:`ScenarioChecker`, the vehicle type's
    rectangle -- BMW 320i, 4.508 m x 1.61 m -- for every planner).

    ``plan_fns``: name -> ``plan_fn(scenario, planning_problem) -> states`` (commonroad-io
    states at consecutive time steps from the problem's initial one, centre positions).
    ``scenarios``: CommonRoad XML paths, or (scenario, planning_problem_set) pairs. A planner
    that raises gets the problem counted as failed (goal not reached; it is left out of the
    collision, road-compliance and feasibility rates, and listed with the error).

    Returns ``{"summary": {name: {"goal", "collision", "road_compliance", "feasible" (rates
    over problems), "problems", "failed", "plan_seconds_median"}}, "problems": [one row per
    planner and problem]}``."""
    from commonroad.common.file_reader import CommonRoadFileReader

    rows = []
    for item in scenarios:
        if isinstance(item, (str, Path)):
            scenario, problems = CommonRoadFileReader(str(item)).open()
        else:
            scenario, problems = item
        checker = ScenarioChecker(scenario)
        for pid, problem in problems.planning_problem_dict.items():
            for name, fn in plan_fns.items():
                row = {"scenario": str(scenario.scenario_id), "planning_problem": int(pid), "planner": name}
                t = time.perf_counter()
                try:
                    states = fn(scenario, problem)
                except Exception as err:  # a planner's failure is a result, not a crash of the evaluation
                    row.update(failed=f"{type(err).__name__}: {err}", goal_reached=False)
                    rows.append(row)
                    if log:
                        log(f"{row['scenario']} {name}: failed ({row['failed']})")
                    continue
                row["plan_wall_seconds"] = time.perf_counter() - t
                extra = getattr(fn, "last", None) or {}
                row["stop"] = extra.get("stop", extra.get("end_reason"))
                for key in ("error", "solution_check"):
                    if extra.get(key) is not None:
                        row[key] = extra[key]
                ps = extra.get("plan_seconds") or extra.get("latencies")
                row["plan_seconds_median"] = float(np.median(ps)) if ps else None
                res = checker.check(problem, states, vehicle_type=vehicle_type, feasibility=feasibility)
                row.update(res)
                rows.append(row)
                if log:
                    log(f"{row['scenario']} {name}: goal {res['goal_reached']}, collision {res['collision']}, "
                        f"road compliant {res['road_compliant']}, feasible {res['feasible']}, "
                        f"{res['steps']} steps, stop {row['stop']}")
    return {"summary": summarise(rows), "problems": rows}


def summarise(rows: list[dict]) -> dict:
    """Rates per planner over the rows of :func:`evaluate_planning_problems`."""
    out = {}
    for name in dict.fromkeys(r["planner"] for r in rows):
        rs = [r for r in rows if r["planner"] == name]
        ok = [r for r in rs if "failed" not in r]
        feas = [r["feasible"] for r in ok if r.get("feasible") is not None]
        secs = [r["plan_seconds_median"] for r in ok if r.get("plan_seconds_median") is not None]

        def rate(key, rows_=ok):
            return float(np.mean([bool(r[key]) for r in rows_])) if rows_ else None

        out[name] = {"goal": float(np.mean([bool(r.get("goal_reached")) for r in rs])) if rs else None,
                     "collision": rate("collision"), "road_compliance": rate("road_compliant"),
                     "feasible": float(np.mean(feas)) if feas else None,
                     "problems": len(rs), "failed": len(rs) - len(ok),
                     "plan_seconds_median": float(np.median(secs)) if secs else None}
    return out


def format_table(summary: dict) -> str:
    """A Markdown table of :func:`summarise`'s rates."""
    names = {"ebm": "EBM-IOC planner", "reactive_planner": "CommonRoad reactive planner"}
    lines = ["| planner | problems | goal reached | collision | road compliance | KS feasible | "
             "plan time median [s] |", "|---|---|---|---|---|---|---|"]

    def f(v):
        return "-" if v is None else f"{v:.2f}"

    for name, r in summary.items():
        lines.append(f"| {names.get(name, name)} | {r['problems']} | {f(r['goal'])} | {f(r['collision'])} | "
                     f"{f(r['road_compliance'])} | {f(r['feasible'])} | {f(r['plan_seconds_median'])} |")
    return "\n".join(lines)
