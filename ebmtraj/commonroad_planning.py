"""Plan for the ego of the shared CommonRoad NGSIM scenarios, among the recorded traffic.

Two kinds of ego (``ego=``):

* ``'problem'``: the scenario's planning problem -- its initial state (no history: padded at
  constant velocity, as the planner flags) and its goal region (``GoalRegion.is_reached`` of
  commonroad-io: position, orientation, velocity and time intervals, whichever it sets). The
  ego is 4.5 m x 1.8 m. It is not one of the recorded vehicles, so there is no human
  trajectory to compare with.
* ``'recorded'``: up to ``per_scenario`` recorded vehicles that have 1 s of history before the
  start step and ``goal_s`` seconds after it (each vehicle once per recording: scenarios cut
  from one NGSIM recording share vehicles). The vehicle is taken out of the traffic; its start
  state is its recorded state (acceleration from its speeds), its history its recorded positions, its goal region a
  rectangle of ``goal_length`` x its lane width around its recorded position ``goal_s`` later,
  reached within +-1 s of that time. The distance from the recorded human trajectory is
  reported (mean over the simulated steps, and at the goal time).

Closed loop (receding horizon): the planner plans every ``replan`` steps of 0.1 s, the ego
follows the plan exactly (its next states are the plan's), the recorded traffic replays
regardless of the ego. An episode ends when the goal is reached, at the goal's last time step
(or the recording's end), or at the first collision: the ego's rectangle overlapping a
recorded vehicle's (shapely); a collision with a vehicle coming from behind is reported apart
(``'rear'``): the replayed traffic does not react to an ego that drives differently from the
recorded one. Obstacles without a trajectory (set-based predictions) are
skipped; scenarios with none are listed as skipped.

A constant-velocity ego runs the same episodes as a reference (``policies``).
"""
from __future__ import annotations

import glob
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import Polygon

from ebmcore.errors import DataError
from ebmcore.paths import data_root

from .eval.harness import (entry, episode_records, finish, latency_summary, load_planner,
                           markdown_table, planner_parser, rate)
from .planner import AgentState, LaneSet, Planner
from .planner.fallback import constant_velocity

DT = 0.1
EGO_LENGTH, EGO_WIDTH = 4.5, 1.8


@dataclass
class Traffic:
    """Recorded vehicles of a scenario: states per time step (NaN where absent)."""

    ids: np.ndarray          # (V,)
    xy: np.ndarray           # (V, S, 2) centre [m]
    heading: np.ndarray      # (V, S)
    speed: np.ndarray        # (V, S)
    size: np.ndarray         # (V, 2) length, width

    def at(self, step: int, exclude=None) -> list[AgentState]:
        if step >= self.xy.shape[1]:
            return []
        out = []
        for v in range(len(self.ids)):
            if self.ids[v] == exclude or not np.isfinite(self.xy[v, step]).all():
                continue
            out.append(AgentState(float(self.xy[v, step, 0]), float(self.xy[v, step, 1]),
                                  float(self.heading[v, step]), float(max(self.speed[v, step], 0.0)),
                                  length=float(self.size[v, 0]), width=float(self.size[v, 1]),
                                  agent_id=int(self.ids[v])))
        return out


def read_traffic(scenario) -> tuple[Traffic, list[dict]]:
    """The scenario's dynamic obstacles with trajectories (and what was skipped)."""
    obs, skipped = [], []
    for o in scenario.dynamic_obstacles:
        pred = o.prediction
        if pred is None or getattr(pred, "trajectory", None) is None or not hasattr(o.obstacle_shape, "length"):
            skipped.append({"obstacle_id": int(o.obstacle_id), "reason": f"no trajectory ({type(pred).__name__})"})
            continue
        obs.append(o)
    steps = 1 + max([int(o.prediction.trajectory.final_state.time_step) for o in obs], default=0)
    V = len(obs)
    xy = np.full((V, steps, 2), np.nan)
    head = np.full((V, steps), np.nan)
    speed = np.full((V, steps), np.nan)
    size = np.zeros((V, 2))
    for i, o in enumerate(obs):
        size[i] = (o.obstacle_shape.length, o.obstacle_shape.width)
        for s in [o.initial_state] + list(o.prediction.trajectory.state_list):
            k = int(s.time_step)
            xy[i, k] = s.position
            head[i, k] = s.orientation
            speed[i, k] = getattr(s, "velocity", np.nan)
    return Traffic(np.array([int(o.obstacle_id) for o in obs]), xy, head, speed, size), skipped


def rectangle(x, y, heading, length, width) -> Polygon:
    c, s = math.cos(heading), math.sin(heading)
    hl, hw = length / 2, width / 2
    pts = [(x + c * dx - s * dy, y + s * dx + c * dy) for dx, dy in
           ((hl, hw), (-hl, hw), (-hl, -hw), (hl, -hw))]
    return Polygon(pts)


def collides(ego: AgentState, others: list[AgentState], min_area: float = 0.01) -> str | None:
    """The first collision of the ego's rectangle with another's (overlap > ``min_area`` m^2):
    ``'rear'`` when the other vehicle's centre is behind the ego's rear half (it ran into the
    ego: a replayed vehicle does not react to the ego), ``'front_or_side'`` otherwise; None."""
    box = rectangle(ego.x, ego.y, ego.heading, ego.length, ego.width)
    for o in others:
        if abs(o.x - ego.x) > 12 or abs(o.y - ego.y) > 12:
            continue
        if box.intersection(rectangle(o.x, o.y, o.heading, o.length, o.width)).area > min_area:
            lon = (o.x - ego.x) * math.cos(ego.heading) + (o.y - ego.y) * math.sin(ego.heading)
            return "rear" if lon < -ego.length / 4 else "front_or_side"
    return None


@dataclass
class Episode:
    scenario: str
    ego: str                  # 'problem' or the recorded vehicle id
    policy: str
    goal_reached: bool
    collision: bool
    steps: int
    end_reason: str
    ade: float | None = None  # mean distance from the human trajectory [m]
    fde: float | None = None  # at the goal time [m]
    latencies: list = field(default_factory=list)
    fallbacks: int = 0


class Goal:
    """A goal test over (state, step): commonroad-io's GoalRegion or a recorded-vehicle box."""

    def __init__(self, region=None, box: Polygon | None = None, steps=(0, 0)):
        self.region, self.box, self.steps = region, box, steps

    @property
    def last_step(self) -> int:
        if self.region is not None:
            return int(max(s.time_step.end for s in self.region.state_list))
        return int(self.steps[1])

    def reached(self, state: AgentState, step: int) -> bool:
        if self.region is not None:
            from commonroad.scenario.state import CustomState

            cs = CustomState(time_step=int(step), position=np.array([state.x, state.y]),
                             orientation=float(state.heading), velocity=float(state.speed))
            return bool(self.region.is_reached(cs))
        return self.steps[0] <= step <= self.steps[1] and self.box.contains(shapely.points(state.x, state.y))


def simulate(plan_fn, ego: AgentState, history, traffic: Traffic, lanes: LaneSet, goal: Goal,
             start: int, replan: int = 1, exclude=None, human: np.ndarray | None = None,
             horizon: float = 4.0) -> dict:
    """Receding-horizon episode from step ``start`` (see module docstring).

    ``plan_fn(ego, history (H,2), neighbours, lanes, horizon, time_s) -> Trajectory``."""
    hist = [] if history is None else [tuple(p) for p in np.asarray(history)]
    hist.append((ego.x, ego.y))
    last = min(goal.last_step, traffic.xy.shape[1] - 1 if traffic.xy.shape[1] else goal.last_step)
    step, latencies, fallbacks, dists = start, [], 0, []
    end = "goal_time_passed"
    reached = collided = False
    queue = []
    while step < last:
        if not queue:
            t0 = time.perf_counter()
            plan = plan_fn(ego, np.array(hist[-10:]), traffic.at(step, exclude), lanes, horizon,
                           step * DT)
            latencies.append(time.perf_counter() - t0)
            fallbacks += bool(getattr(plan, "fallback", None))
            queue = [plan.states[i] for i in range(min(replan, len(plan.t)))]
        s = queue.pop(0)
        ego = AgentState(s[0], s[1], s[3], max(float(s[2]), 0.0), s[4], s[5], ego.length, ego.width, ego.ref)
        step += 1
        hist.append((ego.x, ego.y))
        if human is not None and step < len(human) and np.isfinite(human[step]).all():
            dists.append(float(np.hypot(*(human[step] - [ego.x, ego.y]))))
        kind = collides(ego, traffic.at(step, exclude))
        if kind is not None:
            collided, end = True, f"collision_{kind}"
            break
        if goal.reached(ego, step):
            reached, end = True, "goal_reached"
            break
    fde = None
    if human is not None and goal.region is None:
        k = int(round(np.mean(goal.steps)))
        fde = dists[k - start - 1] if 0 <= k - start - 1 < len(dists) else None
    return {"goal_reached": reached, "collision": collided, "steps": step - start, "end_reason": end,
            "ade": float(np.mean(dists)) if dists else None, "fde": fde,
            "latencies": latencies, "fallbacks": fallbacks}


def cv_plan(ego, history, neighbours, lanes, horizon, time_s=None):
    """The constant-velocity reference policy (same call signature as Planner.plan)."""
    from .planner.types import Trajectory

    steps = int(round(horizon / DT))
    st, u = constant_velocity(ego, steps, DT)
    return Trajectory(np.arange(1, steps + 1) * DT, st[:, :2], st[:, 3], st[:, 2], st[:, 4], st[:, 5],
                      u, math.nan, math.nan, ego, policy="constant_velocity")


def load_scenario(path: Path):
    from commonroad.common.file_reader import CommonRoadFileReader

    from .data.lanes import LaneMap

    try:
        scenario, problems = CommonRoadFileReader(str(path)).open()
    except Exception as err:
        raise DataError(f"{path}: cannot read the CommonRoad scenario: {err}") from err
    lanes = LaneSet.from_any(LaneMap.from_lanelet_network(scenario.lanelet_network, source=str(path)))
    return scenario, problems, lanes


def problem_episode(path: Path, plan_fns: dict) -> tuple[list[Episode], dict | None]:
    scenario, problems, lanes = load_scenario(path)
    traffic, skipped = read_traffic(scenario)
    if len(traffic.ids) == 0:
        return [], {"scenario": path.stem, "reason": "no recorded vehicle with a trajectory",
                    "obstacles_skipped": len(skipped)}
    out = []
    for pid, problem in problems.planning_problem_dict.items():
        s0 = problem.initial_state
        ego = AgentState(float(s0.position[0]), float(s0.position[1]), float(s0.orientation),
                         float(s0.velocity), float(getattr(s0, "acceleration", 0.0) or 0.0), 0.0,
                         EGO_LENGTH, EGO_WIDTH)
        for name, fn in plan_fns.items():
            r = simulate(fn, ego, None, traffic, lanes, Goal(problem.goal), int(s0.time_step))
            out.append(Episode(path.stem, f"problem:{pid}", name, **r))
    return out, None


def recorded_episodes(path: Path, plan_fns: dict, per_scenario: int = 2, goal_s: float = 6.0,
                      goal_length: float = 10.0, start: int = 10,
                      seen: set | None = None) -> tuple[list[Episode], dict | None]:
    """Episodes of recorded egos; ``seen`` holds (recording group, vehicle id) already used
    (scenarios cut from one recording share vehicles), which are skipped and added to."""
    from .data.commonroad import recording_of

    scenario, _, lanes = load_scenario(path)
    traffic, skipped = read_traffic(scenario)
    group = recording_of(path.stem)
    seen = set() if seen is None else seen
    g = int(round(goal_s / DT))
    ok = [v for v in range(len(traffic.ids))
          if np.isfinite(traffic.xy[v, max(start - 9, 0):start + g + 1]).all()
          and traffic.xy.shape[1] > start + g and float(traffic.speed[v, start]) > 1.0
          and (group, int(traffic.ids[v])) not in seen]
    if not ok:
        return [], {"scenario": path.stem, "reason": "no recorded vehicle (not used yet) spans history + goal time",
                    "obstacles_skipped": len(skipped)}
    out = []
    for v in ok[:per_scenario]:
        seen.add((group, int(traffic.ids[v])))
        xy, head, speed = traffic.xy[v], traffic.heading[v], traffic.speed[v]
        acc = float((speed[start + 1] - speed[start - 1]) / (2 * DT))
        ego = AgentState(float(xy[start, 0]), float(xy[start, 1]), float(head[start]), float(speed[start]),
                         float(np.clip(acc, -4, 3)), 0.0, float(traffic.size[v, 0]), float(traffic.size[v, 1]))
        k = start + g
        width = 3.7
        dist = lanes.distances(xy[k][None])[0]
        if dist.size:
            width = float(lanes.widths[int(np.argmin(dist))])
        box = rectangle(xy[k, 0], xy[k, 1], head[k], goal_length, width)
        goal = Goal(box=box, steps=(k - 10, k + 10))
        for name, fn in plan_fns.items():
            r = simulate(fn, ego, xy[start - 9:start], traffic, lanes, goal, start,
                         exclude=traffic.ids[v], human=xy)
            out.append(Episode(path.stem, f"vehicle:{int(traffic.ids[v])}", name, **r))
    return out, None


def default_scenarios() -> list[Path]:
    """The test-split scenarios of the prepared CommonRoad cache (its manifest's test groups),
    else every trajectory (T) scenario of ``data_root()/commonroad-ngsim-us101``."""
    from ebmcore.paths import cache_root

    folder = data_root() / "commonroad-ngsim-us101"
    files = sorted(Path(p) for p in glob.glob(str(folder / "*_T-*.xml")))
    manifest = cache_root() / "ebmtraj" / "commonroad" / "manifest.json"
    if manifest.is_file():
        groups = json.loads(manifest.read_text()).get("split", {}).get("groups", {}).get("test")
        if groups:
            from .data.commonroad import recording_of

            files = [f for f in files if recording_of(f.stem) in set(groups)]
    return files


def evaluate_commonroad(planner: Planner | None, scenarios: list[Path], *, ego: str = "problem",
                        policies=("ebm", "cv"), replan: int = 1, per_scenario: int = 2,
                        log=None) -> dict:
    """Episodes for every scenario and policy; returns {"summary", "episodes", "skipped"}."""
    fns = {}
    if "ebm" in policies:
        if planner is None:
            raise ValueError("policy 'ebm' needs a planner")
        fns["ebm"] = lambda e, h, n, l, hz, t: planner.plan(e, h, n, l, hz, timestamp=t)
    if "cv" in policies:
        fns["cv"] = cv_plan
    episodes, skipped, seen = [], [], set()
    for path in scenarios:
        if planner is not None:
            planner.reset()
        if ego == "problem":
            eps, skip = problem_episode(Path(path), fns)
        elif ego == "recorded":
            eps, skip = recorded_episodes(Path(path), fns, per_scenario, seen=seen)
        else:
            raise ValueError(f"ego must be 'problem' or 'recorded', got {ego!r}")
        episodes += eps
        if skip:
            skipped.append(skip)
        if log:
            for e in eps:
                log(f"{e.scenario} {e.ego} {e.policy}: {e.end_reason} after {e.steps} steps"
                    + (f", ADE {e.ade:.2f} m" if e.ade is not None else ""))
    return {"summary": summarise(episodes), "episodes": episode_records(episodes), "skipped": skipped}


def summarise(episodes: list[Episode]) -> dict:
    """Per policy: episodes, goal / collision / rear-ended rates, mean ADE / FDE to the human
    track [m] (None without one), plan latency and fallbacks."""
    out = {}
    for policy in sorted({e.policy for e in episodes}):
        es = [e for e in episodes if e.policy == policy]
        ade = [e.ade for e in es if e.ade is not None]
        fde = [e.fde for e in es if e.fde is not None]
        out[policy] = {"episodes": len(es), "goal_reached_rate": rate(es, lambda e: e.goal_reached),
                       "collision_rate": rate(es, lambda e: e.collision),
                       "rear_ended_rate": rate(es, lambda e: e.end_reason == "collision_rear"),
                       "ade": float(np.mean(ade)) if ade else None, "fde": float(np.mean(fde)) if fde else None,
                       "latency_median_ms": latency_summary(es).get("latency_median_ms"),
                       "fallbacks": int(sum(e.fallbacks for e in es))}
    return out


def format_table(summary: dict) -> str:
    """Markdown table of :func:`summarise`'s output."""
    names = {"ebm": "EBM-IOC planner", "cv": "constant velocity"}
    rows = []
    for p, r in summary.items():
        d = (f"{r['ade']:.2f} / {r['fde']:.2f}" if r["ade"] is not None and r["fde"] is not None else
             (f"{r['ade']:.2f} / -" if r["ade"] is not None else "n/a"))
        lat = f"{r['latency_median_ms']:.0f}" if r["latency_median_ms"] is not None else "-"
        rows.append([names.get(p, p), r["episodes"], f"{r['goal_reached_rate']:.2f}",
                     f"{r['collision_rate']:.2f} ({r['rear_ended_rate']:.2f})", d, lat])
    return markdown_table(["ego policy", "episodes", "goal reached",
                           "collisions (of which rear-ended by replayed traffic)",
                           "dist. from human, mean / at goal time [m]", "plan latency median [ms]"], rows)


def run_commonroad(argv=None) -> dict:
    """``ebmtraj plan-commonroad``: plan for the ego of the CommonRoad NGSIM scenarios."""
    ap = planner_parser("ebmtraj plan-commonroad", __doc__.split("\n")[0], modes=False)
    ap.add_argument("--scenarios", nargs="*", default=None,
                    help="XML files (default: the prepared cache's test split)")
    ap.add_argument("--ego", choices=("problem", "recorded"), default="problem")
    ap.add_argument("--per-scenario", type=int, default=2, help="recorded egos per scenario")
    ap.add_argument("--replan", type=int, default=1, help="steps (0.1 s) between plans")
    args = ap.parse_args(argv)
    planner = load_planner(args)
    files = [Path(p) for p in args.scenarios] if args.scenarios else default_scenarios()
    if not files:
        raise DataError(f"no CommonRoad scenarios found under {data_root() / 'commonroad-ngsim-us101'}")
    report = evaluate_commonroad(planner, files, ego=args.ego, replan=args.replan,
                                 per_scenario=args.per_scenario, log=lambda s: print(s, flush=True))
    report["config"] = {"checkpoint": str(args.checkpoint), "ego": args.ego, "replan": args.replan,
                        "scenarios": [str(f) for f in files], "planner": asdict(planner.config)}
    return finish(report, format_table(report["summary"]), args.out)


commonroad_main = entry(run_commonroad, "ebmtraj plan-commonroad")


if __name__ == "__main__":
    raise SystemExit(commonroad_main())
