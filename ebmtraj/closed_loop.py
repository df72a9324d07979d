"""Closed loop in highway-env: the learned planner drives the ego of ``highway-v0``.

The adapter (:class:`HighwayAdapter`):

* configures ``highway-v0`` with continuous actions (acceleration, steering), a 10 Hz policy
  (20 Hz simulation) and an absolute, unnormalised ``Kinematics`` observation of the nearest
  vehicles (presence, x, y, vx, vy, heading);
* converts each observation to the planner's input, mirrored into the planner's
  counter-clockwise frame (highway-env's y and headings point to the driver's right): the
  ego's state (the acceleration and steering it was last commanded; highway-env vehicles are
  5 m x 2 m, positions are centres),
  its own 10 Hz position history, the other observed vehicles as neighbours, and the road
  network's straight lanes as centre lines (4 m wide);
* gives each neighbour the heading of its nearest lane and its speed along it
  (``lane_aligned_neighbours``, default): the planner extrapolates neighbours at constant
  velocity, and a vehicle in the middle of a lane change extrapolated along its own heading
  crosses the next lane into the ego's within 2-3 s, where highway-env's lane changes end at the
  next lane's centre; the plan's pair and cost terms then swerve the ego across lanes toward
  where the other vehicle came from;
* plans at every policy step (10 Hz) with the warm start, and tracks the plan with a simple
  controller: acceleration that reaches the plan's speed 0.5 s ahead, and pure pursuit of the
  planned path (lookahead max(8 m, 0.6 s x speed)) converted to highway-env's steering through
  its own bicycle model (slip angle beta = atan(tan(delta) / 2), yaw rate v sin(beta) / 2.5 m).

:func:`evaluate_closed_loop` runs N seeded episodes of ``duration`` seconds with three egos on the
same seeds: the planner, highway-env's own IDM/MOBIL vehicle (``IDMVehicle``, target speed its
initial speed) and a do-nothing ego (zero acceleration and steering), and reports per policy the
collision rate, mean speed, lane changes per episode, off-road rate and (planner) latency.
"""
from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .eval.harness import (entry, episode_records, finish, latency_summary, load_planner, markdown_table,
                           planner_parser)
from .planner import AgentState, LaneSet, Planner

VEHICLE_LENGTH, VEHICLE_WIDTH = 5.0, 2.0      # highway-env's Vehicle.LENGTH / WIDTH
HALF_BASE = 2.5                                # highway-env's yaw rate uses LENGTH / 2
ACCEL_RANGE, STEER_RANGE = 5.0, math.pi / 4    # ContinuousAction's ranges
POLICIES = ("ebm", "idm", "idle")


def make_env(duration: float = 20.0, vehicles: int = 50, density: float = 1.0, observed: int = 15):
    """``highway-v0`` with continuous actions at 10 Hz (20 Hz simulation), ``duration`` seconds."""
    import gymnasium as gym
    import highway_env  # noqa: F401  (registers the environments)

    config = {
        "action": {"type": "ContinuousAction"},
        "observation": {"type": "Kinematics", "vehicles_count": observed,
                        "features": ["presence", "x", "y", "vx", "vy", "heading"],
                        "absolute": True, "normalize": False, "clip": False, "see_behind": True,
                        "order": "sorted"},
        "policy_frequency": 10, "simulation_frequency": 20, "duration": duration,
        "vehicles_count": vehicles, "vehicles_density": density,
    }
    return gym.make("highway-v0", config=config)


def road_lanes(env) -> LaneSet:
    """The road network's lanes as centre lines with widths (a LaneSet, built once), in the
    planner's frame (see :meth:`HighwayAdapter.parse`)."""
    from shapely.geometry import LineString

    lanes = []
    for lane in env.unwrapped.road.network.lanes_list():
        (x0, y0), (x1, y1) = lane.start, lane.end
        lanes.append((LineString([(x0, -y0), (x1, -y1)]), float(lane.width)))   # planner frame
    return LaneSet.from_any(lanes)


class HighwayAdapter:
    """Observation -> planner input -> plan -> tracking action, at 10 Hz (see module docstring)."""

    def __init__(self, planner: Planner, lanes: LaneSet, horizon: float = 4.0,
                 lane_aligned_neighbours: bool = True):
        self.planner = planner
        self.lanes = lanes
        self.horizon = horizon
        self.lane_aligned = lane_aligned_neighbours
        frames = planner.history_frames
        self.history: deque = deque(maxlen=frames)
        self.last_action = (0.0, 0.0)      # commanded acceleration [m/s^2], steering [rad]
        self.latencies: list[float] = []
        self.fallbacks = 0
        self.last_plan = None
        self.t = 0.0

    def reset(self) -> None:
        self.history.clear()
        self.last_action = (0.0, 0.0)
        self.planner.reset()
        self.t = 0.0

    @staticmethod
    def parse(obs: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """Rows of present vehicles (x, y, vx, vy, heading) in the planner's frame; the first is
        the ego. highway-env's y points to the driver's right (a positive heading or steering
        turns right), the planner's to the left (counter-clockwise headings, the frame it was
        trained in): y, vy and heading change sign."""
        rows = [r[1:6] * np.array([1.0, -1.0, 1.0, -1.0, -1.0]) for r in np.asarray(obs) if r[0] > 0.5]
        return rows[0], rows[1:]

    def state(self, row) -> AgentState:
        x, y, vx, vy, heading = (float(v) for v in row)
        return AgentState(x, y, heading, float(math.hypot(vx, vy)), self.last_action[0],
                          self._plan_steering(), VEHICLE_LENGTH, VEHICLE_WIDTH)

    def _plan_steering(self) -> float:
        """The planner's bicycle steering giving the yaw rate of highway-env's last command:
        v tan(delta) / wheelbase = v sin(beta) / 2.5 m."""
        delta_hw = -self.last_action[1]              # highway-env turns right for positive
        beta = math.atan(math.tan(delta_hw) / 2)
        wheelbase = self.planner.loaded.cost_config.wheelbase
        return float(np.clip(math.atan(wheelbase * math.sin(beta) / HALF_BASE), -0.45, 0.45))

    def neighbour(self, row) -> AgentState:
        """A neighbour's state from its row (x, y, vx, vy, heading; planner frame): its own
        heading and speed, or (``lane_aligned``) the heading of its nearest lane's centre line
        and its velocity's component along it."""
        x, y, vx, vy, heading = (float(v) for v in row)
        speed = math.hypot(vx, vy)
        if self.lane_aligned and len(self.lanes):
            (x0, y0), (x1, y1) = self.lanes.lines[int(np.argmin(self.lanes.distances(np.array([[x, y]]))[0]))].coords[:2]
            heading = math.atan2(y1 - y0, x1 - x0)
            speed = max(vx * math.cos(heading) + vy * math.sin(heading), 0.0)
        return AgentState(x, y, heading, speed, length=VEHICLE_LENGTH, width=VEHICLE_WIDTH)

    def act(self, obs) -> np.ndarray:
        """Plan from the observation and return the normalised action [accel, steering]."""
        ego_row, others = self.parse(obs)
        ego = self.state(ego_row)
        self.history.append((ego.x, ego.y))
        neighbours = [self.neighbour(r) for r in others]
        t0 = time.perf_counter()
        plan = self.planner.plan(ego, np.array(self.history), neighbours, self.lanes, self.horizon,
                                 timestamp=self.t)
        self.latencies.append(time.perf_counter() - t0)
        self.fallbacks += plan.is_fallback
        self.last_plan = plan
        self.t += 0.1
        accel, steer = track(plan, ego)
        steer = -steer                               # back to highway-env's sign
        self.last_action = (accel, steer)
        return np.array([accel / ACCEL_RANGE, steer / STEER_RANGE], dtype=np.float32)


def track(plan, ego: AgentState, tau: float = 0.5) -> tuple[float, float]:
    """(acceleration [m/s^2], steering [rad] of highway-env's bicycle model, positive to the
    left) following ``plan`` from ``ego`` (both in the planner's frame)."""
    v = max(ego.speed, 0.1)
    v_ref = float(np.interp(tau, plan.t, plan.speeds))
    accel = float(np.clip((v_ref - ego.speed) / tau, -ACCEL_RANGE, ACCEL_RANGE))
    pts = np.concatenate([[[ego.x, ego.y]], plan.positions], 0)
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
    look = max(8.0, 0.6 * v)
    if arc[-1] < 1e-3:
        return accel, 0.0
    target = np.array([np.interp(min(look, arc[-1]), arc, pts[:, 0]),
                       np.interp(min(look, arc[-1]), arc, pts[:, 1])])
    d = target - pts[0]
    alpha = math.atan2(d[1], d[0]) - ego.heading
    dist = max(float(np.hypot(*d)), 1e-3)
    yaw_rate = v * 2 * math.sin(alpha) / dist
    sin_beta = float(np.clip(yaw_rate * HALF_BASE / v, -0.7, 0.7))
    steer = math.atan(2 * math.tan(math.asin(sin_beta)))
    return accel, float(np.clip(steer, -STEER_RANGE, STEER_RANGE))


@dataclass
class EpisodeResult:
    policy: str
    seed: int
    crashed: bool
    crash_time: float | None
    offroad: bool
    mean_speed: float
    lane_changes: int
    distance: float
    steps: int
    latencies: list = field(default_factory=list)
    fallbacks: int = 0


def _lane_of(y: float, lanes: LaneSet) -> int:
    ys = np.array([ln.coords[0][1] for ln in lanes.lines])
    return int(np.argmin(np.abs(ys - y)))


def _swap_ego_for_idm(env):
    """Replace the controlled ego by highway-env's IDM/MOBIL vehicle at the same state."""
    from highway_env.vehicle.behavior import IDMVehicle

    u = env.unwrapped
    ego = u.vehicle
    idm = IDMVehicle(u.road, ego.position.copy(), ego.heading, ego.speed,
                     target_lane_index=ego.lane_index, target_speed=ego.speed)
    u.road.vehicles[u.road.vehicles.index(ego)] = idm
    u.controlled_vehicles[0] = idm
    return idm


def run_episode(policy: str, seed: int, duration: float = 20.0, planner: Planner | None = None,
                env_kwargs: dict | None = None) -> EpisodeResult:
    """One seeded episode of ``policy`` ('ebm', 'idm' or 'idle')."""
    env = make_env(duration, **(env_kwargs or {}))
    try:
        obs, _ = env.reset(seed=seed)
        lanes = road_lanes(env)
        adapter = None
        if policy == "ebm":
            adapter = HighwayAdapter(planner, lanes)
            adapter.reset()
        elif policy == "idm":
            _swap_ego_for_idm(env)
        elif policy != "idle":
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        u = env.unwrapped
        speeds, lane_seq, offroad, crash_time = [], [], False, None
        start_x = float(u.vehicle.position[0])
        steps = int(round(duration * 10))
        for k in range(steps):
            action = adapter.act(obs) if adapter else np.zeros(2, dtype=np.float32)
            obs, _, terminated, truncated, _ = env.step(action)
            ego = u.vehicle
            speeds.append(float(ego.speed))
            lane_seq.append(_lane_of(-float(ego.position[1]), lanes))
            offroad |= not ego.on_road
            if ego.crashed:
                crash_time = (k + 1) / 10
                break
            if terminated or truncated:
                break
        return EpisodeResult(policy, seed, crash_time is not None, crash_time, offroad,
                             float(np.mean(speeds)), count_lane_changes(lane_seq),
                             float(u.vehicle.position[0] - start_x), len(speeds),
                             adapter.latencies if adapter else [], adapter.fallbacks if adapter else 0)
    finally:
        env.close()


def count_lane_changes(lanes: list[int], hold: int = 5) -> int:
    """Lane changes in a per-step lane sequence: a new lane counts once held ``hold`` steps."""
    changes, current, run, cand = 0, lanes[0] if lanes else 0, 0, None
    for lane in lanes:
        if lane == current:
            cand, run = None, 0
            continue
        if lane != cand:
            cand, run = lane, 0
        run += 1
        if run >= hold:
            changes += 1
            current, cand, run = lane, None, 0
    return changes


def summarise(results: list[EpisodeResult]) -> dict:
    out = {}
    for policy in POLICIES:
        rs = [r for r in results if r.policy == policy]
        if not rs:
            continue
        row = {"episodes": len(rs), "collision_rate": float(np.mean([r.crashed for r in rs])),
               "mean_speed": float(np.mean([r.mean_speed for r in rs])),
               "lane_changes": float(np.mean([r.lane_changes for r in rs])),
               "offroad_rate": float(np.mean([r.offroad for r in rs])),
               "mean_crash_time": (float(np.mean([r.crash_time for r in rs if r.crashed]))
                                   if any(r.crashed for r in rs) else None),
               "distance": float(np.mean([r.distance for r in rs]))}
        lat = latency_summary(rs)
        if lat:
            row.update(lat, fallback_rate=float(sum(r.fallbacks for r in rs) / lat["plans"]))
        out[policy] = row
    return out


def evaluate_closed_loop(n_episodes: int, seed: int, duration: float = 20.0, *,
                         planner: Planner | None = None, checkpoint: str | Path | None = None,
                         policies=POLICIES, env_kwargs: dict | None = None, log=None) -> dict:
    """N seeded episodes per policy on the same seeds (``seed``, ``seed + 1``, ...).

    Returns {"summary": {policy: metrics}, "episodes": [per-episode dicts], "config": ...}."""
    if "ebm" in policies and planner is None:
        if checkpoint is None:
            raise ValueError("the 'ebm' policy needs a planner or a checkpoint")
        planner = Planner.from_checkpoint(checkpoint)
    results = []
    for i in range(n_episodes):
        for policy in policies:
            r = run_episode(policy, seed + i, duration, planner, env_kwargs)
            results.append(r)
            if log:
                log(f"episode {i} seed {seed + i} {policy}: crashed={r.crashed} "
                    f"t={r.crash_time} v={r.mean_speed:.1f} lc={r.lane_changes}")
    cfg = {"n_episodes": n_episodes, "seed": seed, "duration": duration, "policies": list(policies),
           "env": env_kwargs or {}}
    if planner is not None:
        cfg["planner"] = asdict(planner.config)
        cfg["checkpoint"] = planner.loaded.path
    return {"summary": summarise(results), "episodes": episode_records(results), "config": cfg}


def format_table(summary: dict) -> str:
    """Markdown table of :func:`summarise`'s output."""
    names = {"ebm": "EBM-IOC planner", "idm": "highway-env IDM/MOBIL", "idle": "do-nothing"}
    rows = []
    for policy, r in summary.items():
        lat = (f"{r['latency_median_ms']:.0f} / {r['latency_p95_ms']:.0f}"
               if "latency_median_ms" in r else "-")
        crash_t = f"{r['mean_crash_time']:.1f}" if r["mean_crash_time"] is not None else "-"
        rows.append([names[policy], r["episodes"], f"{r['collision_rate']:.2f}", crash_t, f"{r['mean_speed']:.1f}",
                     f"{r['lane_changes']:.1f}", f"{r['offroad_rate']:.2f}", lat])
    return markdown_table(["ego", "episodes", "collision rate", "mean crash time [s]", "mean speed [m/s]",
                           "lane changes / ep.", "off-road rate", "latency median / p95 [ms]"], rows)


def closed_loop_payload(report: dict) -> dict:
    """The recorded figures of a closed-loop report: episodes, and per policy ('ebm', 'idm', as
    run) the collision and off-road rates and mean speed [m/s], with the planner's checkpoint,
    search settings and latency in the loop [ms]."""
    summary, cfg = report["summary"], report["config"]
    out = {"episodes": cfg["n_episodes"], "duration_s": cfg["duration"], "seed": cfg["seed"]}
    for policy in ("ebm", "idm"):
        if policy in summary:
            r = summary[policy]
            out[policy] = {"collision": r["collision_rate"], "offroad": r["offroad_rate"],
                           "speed": r["mean_speed"], "lane_changes": r["lane_changes"]}
    if "ebm" in summary:
        out["ebm"].update({k: summary["ebm"][k] for k in ("latency_median_ms", "latency_p95_ms", "fallback_rate")
                           if k in summary["ebm"]})
        out["checkpoint"], out["planner"] = str(cfg.get("checkpoint")), cfg.get("planner")
    return out


def run_closed_loop(argv=None) -> dict:
    """``ebmtraj evaluate-closed-loop``: N seeded highway-v0 episodes, planner vs references."""
    ap = planner_parser("ebmtraj evaluate-closed-loop", __doc__.split("\n")[0])
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per episode")
    ap.add_argument("--policies", default=",".join(POLICIES), help="comma-separated subset of ebm,idm,idle")
    ap.add_argument("--vehicles", type=int, default=50)
    ap.add_argument("--record", action="store_true",
                    help="record the episodes and the ebm / idm rates as section closed_loop of "
                         "docs/results/ebmtraj.json")
    args = ap.parse_args(argv)
    started = time.time()
    policies = tuple(p for p in args.policies.split(",") if p)
    planner = load_planner(args) if "ebm" in policies else None
    report = evaluate_closed_loop(args.episodes, args.seed, args.duration, planner=planner,
                                  policies=policies, env_kwargs={"vehicles": args.vehicles},
                                  log=lambda s: print(s, flush=True))
    out = finish(report, format_table(report["summary"]), args.out)
    if args.record:
        from ebmcore.results import record

        print("recorded in", record("ebmtraj", "closed_loop", closed_loop_payload(report), started=started))
    return out


closed_loop_main = entry(run_closed_loop, "ebmtraj evaluate-closed-loop")


if __name__ == "__main__":
    raise SystemExit(closed_loop_main())
