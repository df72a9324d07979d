"""The planner: a learned EBM-IOC cost searched for a plan (one agent) or a joint prediction.

See :mod:`ebmtraj.planner` for the input conventions and :class:`PlannerConfig` for the modes.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..interaction import pair_index
from ..model import PredictConfig
from ..prediction import RowEnergy, predict_rows
from .checkpoint import DT, LoadedModel, load_checkpoint
from .fallback import constant_velocity, constant_velocity_many, lane_keeping, lane_keeping_behind
from .inputs import LaneSet, build_rows, overlapping, to_world
from .types import (AgentState, HorizonError, PlannerInputError, Scene, Trajectory,
                    TrajectorySamples)

MODES = ("min_cost", "sample")


@dataclass
class PlannerConfig:
    """How the planner searches and what it does with bad input.

    mode: ``'min_cost'`` (the training code's minimum-cost prediction: from the checkpoint's
        chain start, Adam for ``opt_steps``; the lowest-energy chain is the plan;
        deterministic given ``seed`` when no ``time_budget`` cuts it short) or ``'sample'``
        (Langevin: K samples of p(u | e, h) from the start -- after the minimum-cost search when
        the checkpoint's ``init`` is 'mincost' -- plus noise; the lowest-energy sample is the
        plan).
    samples: chains K. None: 1 for min_cost (plus the warm start), the training run's K for
        sample. Extra min_cost chains start at the start plus ``init_std`` noise.
    opt_steps: Adam steps of the minimum-cost search (None: the training run's).
    steps, step_size, init_std: Langevin settings (None: the training run's). With ``steps``
        set and ``step_size`` not, the step size is scaled so that the chain covers the
        training chain's drift (steps x step_size^2 / 2), to which the learned cost is
        calibrated.
    time_budget: seconds per call, or None; the search stops before the deadline and returns the
        best trajectory found (flag ``'deadline'``).
    warm_start: min_cost also starts a chain from the previous plan shifted by the elapsed steps
        (one step at 10 Hz); ``reset()`` forgets it.
    max_neighbours, neighbour_radius: the nearest vehicles within the radius [m] the cost sees
        (the training scenes' 5 within 30 m).
    off_lane_margin: the ego counts as off every lane when its centre lies more than this [m]
        beyond the nearest lane's edge.
    on_bad_input: ``'fallback'`` (a flagged plan by a simple policy when the ego is off every
        lane -- lane keeping back to the nearest lane within ``rejoin_distance`` m, else
        constant velocity -- when there are no lanes (constant velocity), or when the model's
        output is not finite (lane keeping)) or ``'raise'`` (:class:`PlannerInputError`).
        Non-finite or impossible states always raise.
    beyond_horizon: ``'raise'`` (:class:`HorizonError`) or ``'extend'`` (plan the trained
        horizon, continue at constant velocity, flag ``'extended_beyond_trained_horizon'``).
    interaction_weight: the joint energy's pair overlap penalty (None: the training run's).
    interaction: plan with the ego's energy given its neighbours' extrapolated trajectories,
        i.e. the learned cost plus the joint multi-agent energy's pair overlap penalty against
        them (weight ``interaction_weight``); off, the learned cost alone.
    safety_margin: metres added to the ego's length and width in that penalty.
    road_guard: a plan whose footprint centre passes beyond the road's edge (off every lane)
        within the horizon is replaced by lane keeping to the nearest lane at the plan's own
        speeds (policy ``'lane_keeping'``, fallback ``'plan_off_road'``); the next call starts
        without the warm start. The learned cost's lane terms are soft: from a history that
        drifts toward the outer edge the plan can follow the drift off the road.
    compile: evaluate the cost through ``torch.compile`` (about 5x fewer CPU seconds per
        evaluation here, after a one-off compilation of minutes per input shape; neighbour
        slots are then padded to ``max_neighbours`` so that shapes stay fixed).
    """

    mode: str = "min_cost"
    samples: int | None = None
    opt_steps: int | None = None
    steps: int | None = None
    step_size: float | None = None
    init_std: float | None = None
    seed: int = 0
    time_budget: float | None = None
    warm_start: bool = True
    max_neighbours: int = 5
    neighbour_radius: float = 30.0
    off_lane_margin: float = 1.0
    rejoin_distance: float = 6.0
    on_bad_input: str = "fallback"
    beyond_horizon: str = "raise"
    interaction_weight: float | None = None
    interaction: bool = True
    safety_margin: float = 0.5
    road_guard: bool = True
    compile: bool = False

    def validate(self) -> None:
        """Raise :class:`PlannerInputError` naming the first unusable field."""
        check_mode(self.mode)
        if self.on_bad_input not in ("fallback", "raise"):
            raise PlannerInputError(f"on_bad_input must be 'fallback' or 'raise', got {self.on_bad_input!r}")
        if self.beyond_horizon not in ("raise", "extend"):
            raise PlannerInputError(f"beyond_horizon must be 'raise' or 'extend', got {self.beyond_horizon!r}")
        check_count("samples", self.samples, 1, 1024)
        check_count("steps", self.steps, 0, 10**6)
        check_count("opt_steps", self.opt_steps, 0, 10**6)
        check_budget(self.time_budget)
        if not 1 <= self.max_neighbours <= 64:
            raise PlannerInputError(f"max_neighbours must be in [1, 64], got {self.max_neighbours}")


def check_mode(mode) -> None:
    if mode not in MODES:
        raise PlannerInputError(f"mode must be one of {MODES}, got {mode!r}")


def check_count(name: str, value, lo: int, hi: int) -> None:
    """A None or an integer in [lo, hi], else PlannerInputError naming ``name``."""
    if value is not None and not (isinstance(value, (int, np.integer)) and lo <= value <= hi):
        raise PlannerInputError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")


def check_budget(budget) -> None:
    """A None or a positive, finite number of seconds, else PlannerInputError."""
    if budget is not None and not (isinstance(budget, (int, float)) and math.isfinite(budget) and budget > 0):
        raise PlannerInputError(f"time_budget must be a positive, finite number of seconds, got {budget!r}")


def as_state(value, name: str) -> AgentState:
    """An AgentState from an AgentState, a dict of its fields, or a vector
    (x, y, speed, heading[, accel, steering]) in the dynamics' state order."""
    if isinstance(value, AgentState):
        state = value
    elif isinstance(value, dict):
        try:
            state = AgentState(**value)
        except TypeError as err:
            raise PlannerInputError(f"{name}: {err}") from None
    else:
        v = np.asarray(value, dtype=float).ravel()
        if v.size not in (4, 6):
            raise PlannerInputError(f"{name}: expected an AgentState or a vector (x, y, speed, "
                                    f"heading[, accel, steering]), got {v.size} values")
        extra = v[4:6] if v.size == 6 else (0.0, 0.0)
        state = AgentState(v[0], v[1], v[3], v[2], extra[0], extra[1])
    state.validate(name)
    return state


class Planner:
    """Plans with a learned cost. Build with :meth:`from_checkpoint`.

    ``plan(...)`` is one planning cycle for one vehicle; ``predict(scene)`` predicts every agent
    of a scene jointly. The planner keeps the previous plan for the warm start (not thread-safe;
    use one planner per vehicle)."""

    def __init__(self, loaded: LoadedModel, config: PlannerConfig | None = None):
        self.loaded = loaded
        self.model = loaded.model
        self.config = config or PlannerConfig()
        self.config.validate()
        self.dt = DT
        self._memory = None
        self._row_seconds = None     # measured seconds of one energy evaluation per row
        self._tail_seconds = 5e-4    # measured seconds per agent of turning results into plans
        self._overhead_seconds = 1e-3  # measured (x 1.2) seconds per agent of a predict() call
        #                                besides its evaluations: inputs, start, output

    @classmethod
    def from_checkpoint(cls, path: str | Path, config: PlannerConfig | None = None,
                        **overrides) -> "Planner":
        """Load a checkpoint (weights only; version and config checked) -> Planner.
        ``overrides`` set :class:`PlannerConfig` fields."""
        cfg = replace(config or PlannerConfig(), **overrides)
        return cls(load_checkpoint(path), cfg)

    # ------------------------------------------------------------------ properties
    @property
    def trained_horizon(self) -> float:
        """Seconds of future the model was trained on (its control sequence length x dt)."""
        return self.loaded.steps * self.dt

    @property
    def history_frames(self) -> int:
        return self.loaded.history

    def reset(self) -> None:
        """Forget the previous plan (no warm start on the next call)."""
        self._memory = None

    def settings(self, mode=None, samples=None, steps=None, opt_steps=None, seed=0) -> PredictConfig:
        """The search of a call as a :class:`ebmtraj.model.PredictConfig` (what training-side
        prediction runs): its arguments, else the planner config, else the checkpoint's.
        'min_cost' is mode 'adam', 'sample' is 'sample'."""
        d, c = self.loaded.search, self.config
        mode = mode or c.mode
        check_mode(mode)
        check_count("samples", samples, 1, 1024)
        check_count("steps", steps, 0, 10**6)
        check_count("opt_steps", opt_steps, 0, 10**6)
        pick = lambda *xs: next((x for x in xs if x is not None), None)
        n = int(pick(steps, c.steps, d.steps))
        if c.step_size is not None:
            size = float(c.step_size)
        elif n > 0 and d.steps > 0:
            size = float(d.step_size * math.sqrt(d.steps / n))    # equal drift
        else:
            size = float(d.step_size)
        weight = pick(c.interaction_weight, d.interaction_weight)
        return replace(d, mode="adam" if mode == "min_cost" else "sample",
                       samples=int(pick(samples, c.samples, 1 if mode == "min_cost" else d.samples)),
                       steps=n, step_size=size, init=d.init if self.model.cost.use_neural else "nominal",
                       init_std=float(pick(c.init_std, d.init_std)),
                       opt_steps=int(pick(opt_steps, c.opt_steps, d.opt_steps)),
                       interaction_weight=float(weight), seed=int(seed))

    def _deadline(self, t_start: float, time_budget) -> float | None:
        check_budget(time_budget)
        budget = time_budget if time_budget is not None else self.config.time_budget
        return None if budget is None else t_start + budget

    def _search(self, rows, cfg: PredictConfig, deadline, seed: int, **kw) -> dict:
        """:func:`ebmtraj.prediction.predict_rows` (training's prediction of one batch of rows) on
        ``rows``, keeping time for the output: the
        search ends by ``deadline`` minus the expected time of building the plans, and starts
        no evaluation expected to end after that (the time per row is measured on earlier
        calls; on the first call with a deadline, on a few rows)."""
        n = rows.cond["x0"].shape[0]
        if deadline is not None:
            deadline -= self._tail_seconds * n
            if self._row_seconds is None:
                self._row_seconds = self._calibrate(rows.cond)
        res = predict_rows(self.model, rows.cond, cfg, deadline=deadline, compile=self.config.compile,
                           generator=torch.Generator().manual_seed(seed),
                           seconds_per_row=self._row_seconds or 0.0, **kw)
        rate = res["seconds_per_row"]
        if rate is not None:
            self._row_seconds = max(rate, 0.7 * (self._row_seconds or rate))
        return res

    def _calibrate(self, cond: dict) -> float:
        """Seconds per row of one energy evaluation, timed on up to 4 rows (x 1.2; an
        overestimate for more rows, whose fixed costs are shared)."""
        sub = {k: v[:4] for k, v in cond.items() if k not in ("nbr_row", "rel_angle", "rel_shift")}
        energy = RowEnergy(self.model, sub)
        t0 = time.perf_counter()
        energy.energy_and_grad(torch.zeros(len(sub["x0"]), self.loaded.steps, 2))
        return 1.2 * (time.perf_counter() - t0) / len(sub["x0"])

    def _scene_headways(self, scene, active: list[int]) -> list | None:
        """The active agents' headways for checkpoints with virtual leaders: an agent's own
        ``headway`` where given, else derived from the scene's agents' histories by the function
        that prepares the training data (:func:`ebmtraj.data.headways.headways_of_positions`;
        the scene is then taken as the complete traffic around the agent)."""
        if not self.loaded.spec.virtual_leaders:
            return None
        given = [getattr(scene.agents[i], "headway", None) for i in active]
        if all(h is not None for h in given):
            return given
        derived = self._derive_headways([agent.history for agent in scene.agents])
        return [h if h is not None else derived[i] for h, i in zip(given, active)]

    def _ego_headway(self, history, neighbours: list) -> np.ndarray:
        """(H,) the ego's headway [m] derived as :meth:`_scene_headways` does, from its history
        and the neighbours' positions over the history frames, taken back from their current
        states at constant velocity (``plan`` sees the neighbours' current states only)."""
        H = self.loaded.history
        back = (np.arange(H) - (H - 1)) * self.dt                   # (H,) s, 0 = now
        paths = [np.array([b.x, b.y]) + back[:, None] * b.velocity for b in neighbours]
        return self._derive_headways([history] + paths)[0]

    def _derive_headways(self, histories: list) -> np.ndarray:
        """(V, H) headways [m] of V vehicles from their position histories ((k, 2) arrays at
        0.1 s, last row = now, or None; NaN before a short history's first frame)."""
        from ..data.headways import headways_of_positions  # its module imports pandas: only when needed

        H = self.loaded.history
        xy = np.full((len(histories), H, 2), np.nan)
        for a, hist in enumerate(histories):
            if hist is not None:
                hist = np.asarray(hist, dtype=float).reshape(-1, 2)[-H:]
                xy[a, H - len(hist):] = hist
        return headways_of_positions(xy)

    def _horizon_steps(self, horizon: float) -> tuple[int, bool]:
        if not (isinstance(horizon, (int, float)) and math.isfinite(horizon)) or horizon <= 0:
            raise HorizonError(f"horizon must be a positive number of seconds, got {horizon!r}")
        n = int(round(horizon / self.dt))
        if abs(n * self.dt - horizon) > 1e-6:
            raise HorizonError(f"horizon {horizon} s is not a multiple of the {self.dt} s step")
        if n > self.loaded.steps:
            if self.config.beyond_horizon == "raise":
                raise HorizonError(f"horizon {horizon} s is beyond the {self.trained_horizon:.1f} s "
                                   f"the model was trained for (set beyond_horizon='extend' to "
                                   f"continue at constant velocity)")
            return n, True
        return n, False

    # ------------------------------------------------------------------ planning
    def plan(self, ego, history=None, neighbours=(), lanes=None, horizon: float = 4.0, *,
             mode: str | None = None, samples: int | None = None, steps: int | None = None,
             opt_steps: int | None = None, seed: int | None = None,
             time_budget: float | None = None, warm_start: "bool | Trajectory | None" = None,
             return_samples: bool = False, timestamp: float | None = None,
             headway=None) -> Trajectory:
        """One planning cycle for one vehicle.

        ego: :class:`AgentState` (or a dict of its fields, or a vector x, y, speed, heading[,
            accel, steering]); history: (H, 2) past positions at 0.1 s, last row = now (None or
            short: padded at constant velocity, flag ``'history_padded'``); neighbours: the
            other vehicles' current states (extrapolated at constant velocity, as in training);
            lanes: see :class:`ebmtraj.planner.inputs.LaneSet` (a LaneSet built once can be
            reused); horizon [s]: a multiple of 0.1 up to the trained horizon.
        mode / samples / steps / opt_steps / seed / time_budget override the config for this
        call; warm_start: True/False, or a previous :class:`Trajectory` to start from;
        timestamp [s]: the inputs' time, used to shift the warm start by the elapsed steps;
        headway: (H,) recorded front-to-front distances [m] to the ego's leader over the history
            (NaN or 0: none) for checkpoints trained with virtual leaders; when not given, it
            is derived from the history and the neighbours as in training, the neighbours'
            past positions taken back from their current states at constant velocity.
        The plan starts from the state estimated from the history, as in training
        (``Trajectory.start``). Flags: ``deadline`` (the time budget cut the search short),
        ``neighbour_overlaps_ego`` (a neighbour's footprint overlaps the ego's now), and those
        above.
        Returns a :class:`Trajectory` (``fallback`` set if a simple policy replaced the model).
        """
        t_start = time.perf_counter()
        deadline = self._deadline(t_start, time_budget)
        ego = as_state(ego, "ego")
        nbrs = [as_state(b, f"neighbours[{i}]") for i, b in enumerate(neighbours or ())]
        n_out, extend = self._horizon_steps(horizon)
        lane_set = LaneSet.from_any(lanes)
        seed = int(self.config.seed if seed is None else seed)
        cfg = self.settings(mode, samples, steps, opt_steps, seed)
        pmode = mode or self.config.mode
        flags = ["extended_beyond_trained_horizon"] if extend else []
        if any(overlapping(ego, b) for b in nbrs):
            flags.append("neighbour_overlaps_ego")
        excess = lane_set.edge_excess(ego.centre[None])
        reason = self._lane_problem(ego, lane_set, excess[0])
        if reason is not None:
            self._memory = None
            return self._fallback(ego, lane_set, reason, n_out, flags, t_start, pmode, seed, timestamp)

        headways = None
        if self.loaded.spec.virtual_leaders:
            headways = [self._ego_headway(history, nbrs) if headway is None else headway]
        rows = build_rows([ego], [history], [nbrs], lane_set, self.loaded.inputs,
                          history=self.loaded.history, steps=self.loaded.steps, dt=self.dt,
                          max_neighbours=self.config.max_neighbours,
                          radius=self.config.neighbour_radius,
                          min_slots=self.config.max_neighbours if self.config.compile else 1,
                          headways=headways, edge_excess=excess)
        if rows.padded[0]:
            flags.append("history_padded")
        if sum(1 for b in nbrs if np.hypot(*(b.centre - ego.centre)) <= self.config.neighbour_radius) \
                > self.config.max_neighbours:
            flags.append("neighbours_truncated")
        warm = None
        if pmode == "min_cost":
            memory = warm_start.latent if isinstance(warm_start, Trajectory) else (
                self._memory if (warm_start if warm_start is not None else self.config.warm_start) else None)
            warm = self._shifted(memory, timestamp, rows.cond["x0"]) if memory is not None else None
            if warm is not None:
                flags.append("warm_start")
        res = self._search(rows, cfg, deadline, seed,
                           fixed_weight=cfg.interaction_weight if self.config.interaction else 0.0,
                           margin=self.config.safety_margin,
                           extra_starts=None if warm is None else warm[:, None],
                           chains=cfg.samples if pmode == "min_cost" else 1)
        if res["deadline_hit"]:
            flags.append("deadline")
        e, c, states, u = (res[k][0] for k in ("energy", "cost", "states", "controls"))
        # NaN energies are expected only where the deadline left no evaluation
        finite = torch.isfinite(states).flatten(1).all(1) & (torch.isfinite(e) | (res["iterations"] == 0))
        if not bool(finite.any()):
            self._memory = None
            return self._fallback(ego, lane_set, "model_nonfinite", n_out, flags, t_start, pmode,
                                  seed, timestamp)
        best = int(torch.argmin(torch.where(finite, e.nan_to_num(math.inf), torch.full_like(e, math.inf))))
        world = self._to_world(states, rows.origin[0])
        traj = self._trajectory(world[best], u[best], c[best], e[best], rows.states[0], pmode,
                                res["iterations"], seed, timestamp)
        traj.latent = {"levels": self.model.param.levels(res["z"][0, best:best + 1])[0].numpy(),
                       "timestamp": timestamp}
        if return_samples:
            traj.samples = TrajectorySamples(world[:, :, :2], world[:, :, 3], world[:, :, 2],
                                             c.double().numpy(), e.double().numpy())
        self._memory = traj.latent
        if self.config.road_guard and self._leaves_road(traj, lane_set):
            traj, braking = self._road_keeping(traj, lane_set, nbrs)
            if braking > 0:
                flags.append("road_guard_braked")
            self._memory = None
        traj = self._fit_horizon(traj, n_out, ego)
        traj.flags = tuple(flags)
        traj.elapsed_s = time.perf_counter() - t_start
        return traj

    def _trajectory(self, world: np.ndarray, u, cost, energy, start: AgentState, mode: str,
                    iterations: int, seed: int, timestamp=None) -> Trajectory:
        """A Trajectory from world-frame states (T, 6), controls (T, 2) and its energy."""
        return Trajectory(t=np.arange(1, len(world) + 1) * self.dt, positions=world[:, :2],
                          headings=world[:, 3], speeds=world[:, 2], accelerations=world[:, 4],
                          steering=world[:, 5], controls=u.double().numpy(), cost=float(cost),
                          energy=float(energy), start=start, mode=mode, iterations=iterations,
                          seed=seed, timestamp=timestamp)

    @staticmethod
    def _leaves_road(traj: Trajectory, lanes: LaneSet) -> bool:
        """Whether the plan's footprint centres (its positions moved back by the start's ``ref``
        along the heading) leave every lane at some step."""
        ref = traj.start.ref
        centre = traj.positions - ref * np.stack([np.cos(traj.headings), np.sin(traj.headings)], 1)
        return not bool(lanes.on_lanes(centre).all())

    def _road_keeping(self, traj: Trajectory, lanes: LaneSet,
                      neighbours: list[AgentState]) -> tuple[Trajectory, float]:
        """``traj`` replaced by lane keeping from its start along the nearest lane at its own
        speeds, braking as little as keeps it clear of the neighbours ahead
        (:func:`~ebmtraj.planner.fallback.lane_keeping_behind`; the road guard of
        :class:`PlannerConfig`), and that deceleration [m/s^2]."""
        st, u, braking = lane_keeping_behind(traj.start, lanes, len(traj.t), traj.speeds, neighbours,
                                             self.dt, self.loaded.cost_config.wheelbase)
        accel = traj.accelerations if braking == 0 else np.diff(np.r_[traj.start.speed, st[:, 2]]) / self.dt
        return replace(traj, positions=st[:, :2], headings=st[:, 3], speeds=st[:, 2], accelerations=accel,
                       steering=st[:, 5], controls=u, cost=math.nan, energy=math.nan, policy="lane_keeping",
                       fallback="plan_off_road", samples=None), braking

    def _lane_problem(self, ego: AgentState, lanes: LaneSet, excess: float | None = None) -> str | None:
        """None, or why the ego cannot be planned for ('no_lanes', 'off_lane'); ``excess``: its
        precomputed :meth:`LaneSet.edge_excess`."""
        if len(lanes) == 0:
            why = "no_lanes"
        elif (lanes.edge_excess(ego.centre[None])[0] if excess is None else excess) > self.config.off_lane_margin:
            why = "off_lane"
        else:
            return None
        if self.config.on_bad_input == "raise":
            raise PlannerInputError("ego: no lanes given" if why == "no_lanes" else
                                    f"ego is off every lane (centre more than "
                                    f"{self.config.off_lane_margin} m beyond the nearest lane edge)")
        return why

    def _shifted(self, memory, timestamp, x0):
        """The previous plan's latent acceleration / steering levels advanced by the elapsed
        steps (1 without timestamps), the last level held; None if too old."""
        levels = torch.as_tensor(memory["levels"], dtype=torch.float32)
        shift = 1
        if timestamp is not None and memory.get("timestamp") is not None:
            shift = int(round((timestamp - memory["timestamp"]) / self.dt))
        if not 0 <= shift < min(len(levels), 10):
            return None
        lv = torch.cat([levels[shift:], levels[-1:].repeat(shift, 1)], 0)[None]
        u = torch.diff(torch.cat([x0[:, None, 4:6], lv], 1), dim=1)
        return self.model.param.whiten(u, x0)

    @staticmethod
    def _to_world(states: torch.Tensor, origin: np.ndarray) -> np.ndarray:
        """Agent-frame states (B, T, 6) -> world (B, T, 6) float64; origin (3,) for all rows or
        (B, 3) per row."""
        st = states.double().numpy().copy()
        o = np.broadcast_to(np.asarray(origin, dtype=float), (len(st), 3))
        st[..., :2] = to_world(st[..., :2], o)
        st[..., 3] += o[:, 2:3]
        return st

    def _fit_horizon(self, traj: Trajectory, n_out: int, ego: AgentState) -> Trajectory:
        """Truncate to n_out steps, or extend past the trained horizon at constant velocity."""
        T = len(traj.t)
        if n_out <= T:
            return traj.truncated(n_out)
        last = traj.states[-1]
        tail = AgentState(last[0], last[1], last[3], last[2], last[4], last[5], ego.length,
                          ego.width, ego.ref)
        st, u = constant_velocity(tail, n_out - T, self.dt, self.loaded.cost_config.wheelbase)
        cat = lambda a, b: np.concatenate([a, b], 0)
        return replace(traj, t=np.arange(1, n_out + 1) * self.dt, positions=cat(traj.positions, st[:, :2]),
                       headings=cat(traj.headings, st[:, 3]), speeds=cat(traj.speeds, st[:, 2]),
                       accelerations=cat(traj.accelerations, st[:, 4]),
                       steering=cat(traj.steering, st[:, 5]), controls=cat(traj.controls, u),
                       samples=None)

    def _fallback(self, ego, lanes, reason, n_out, flags, t_start, mode, seed, timestamp):
        steps = max(n_out, 1)
        policy = "constant_velocity"
        out = None
        rejoin = reason == "off_lane" and lanes.edge_excess(ego.centre[None])[0] <= self.config.rejoin_distance
        if reason == "model_nonfinite" or rejoin:
            out = lane_keeping(ego, lanes, steps, self.dt, self.loaded.cost_config.wheelbase)
            policy = "lane_keeping" if out is not None else policy
        if out is None:
            out = constant_velocity(ego, steps, self.dt, self.loaded.cost_config.wheelbase)
        st, u = out
        return Trajectory(t=np.arange(1, steps + 1) * self.dt, positions=st[:, :2], headings=st[:, 3],
                          speeds=st[:, 2], accelerations=st[:, 4], steering=st[:, 5], controls=u,
                          cost=math.nan, energy=math.nan, start=ego, policy=policy, fallback=reason,
                          flags=tuple(flags), mode=mode, seed=int(seed), timestamp=timestamp,
                          elapsed_s=time.perf_counter() - t_start)

    # ------------------------------------------------------------------ prediction
    def predict(self, scene: Scene, horizon: float = 4.0, *, joint: bool = True,
                mode: str | None = None, samples: int | None = None, steps: int | None = None,
                opt_steps: int | None = None, seed: int | None = None,
                time_budget: float | None = None) -> list[Trajectory]:
        """Predict every agent of ``scene`` (one :class:`Trajectory` per agent, scene order).

        ``joint=True``: one search over all agents' controls at once (the training code's joint
        prediction, :func:`ebmtraj.prediction.predict` with ``joint=True``), each agent's
        ``max_neighbours`` nearest neighbours within ``neighbour_radius`` being the others'
        current trajectories, plus the pair overlap and same-lane order penalties; the minimum-cost
        search keeps or replaces the whole scene, and the returned set is the copy (of K) with
        the lowest joint energy. Memory and time grow linearly with the agents. Scene agents
        may carry ``headway`` (see :meth:`plan`); for checkpoints with virtual leaders, an agent
        without one gets it derived from the scene's histories. ``joint=False``: each agent on its own
        against the others' constant-velocity extrapolations (batched). Agents off every lane get
        a flagged fallback and stay constant-velocity neighbours of the others
        (``on_bad_input='raise'`` raises instead)."""
        t_start = time.perf_counter()
        deadline = self._deadline(t_start, time_budget)
        if scene is None or not getattr(scene, "agents", None):
            raise PlannerInputError("scene has no agents to predict")
        states = [as_state(a.state, f"scene.agents[{i}]") for i, a in enumerate(scene.agents)]
        n_out, extend = self._horizon_steps(horizon)
        lane_set = LaneSet.from_any(scene.lanes)
        seed = int(self.config.seed if seed is None else seed)
        cfg = self.settings(mode, samples, steps, opt_steps, seed)
        pmode = mode or self.config.mode
        A = len(states)
        excess = lane_set.edge_excess(np.array([s.centre for s in states]))
        try:
            reasons = [self._lane_problem(s, lane_set, x) for s, x in zip(states, excess)]
        except PlannerInputError as err:
            raise PlannerInputError(f"scene agent: {err}") from None
        active = [i for i in range(A) if reasons[i] is None]
        out: list[Trajectory | None] = [None] * A
        for i in range(A):
            if reasons[i] is not None:
                out[i] = self._fallback(states[i], lane_set, reasons[i], n_out, [], t_start, pmode, seed, None)
        if not active:
            return out
        t_setup = time.perf_counter()
        if deadline is not None and t_setup + self._overhead_seconds * len(active) > deadline:
            return self._out_of_time(states, active, out, n_out, t_start, pmode, seed)
        rows, groups = self._scene_rows(scene, states, active, lane_set, joint, excess[active])
        res = self._search(rows, cfg, deadline, seed, joint=joint, groups=groups)
        e = res["energy"]
        best = int(torch.argmin(e.nan_to_num(math.inf).sum(0)))         # lowest joint energy of K
        t_tail = time.perf_counter()
        flags = ["joint" if joint else "independent"] + (["deadline"] if res["deadline_hit"] else []) \
            + (["extended_beyond_trained_horizon"] if extend else [])
        world = self._to_world(res["states"][:, best], rows.origin)                    # (n, T, 6)
        ok = np.isfinite(world).all((1, 2)) & (torch.isfinite(e[:, best]).numpy() | (res["iterations"] == 0))
        u, c, eb = res["controls"][:, best], res["cost"][:, best].tolist(), e[:, best].tolist()
        for r, i in enumerate(active):
            if not ok[r]:
                out[i] = self._fallback(states[i], lane_set, "model_nonfinite", n_out, [], t_start,
                                        pmode, seed, None)
                continue
            traj = self._trajectory(world[r], u[r], c[r], eb[r], rows.states[r], pmode,
                                    res["iterations"], seed)
            traj = self._fit_horizon(traj, n_out, states[i])
            traj.flags = tuple(flags + (["history_padded"] if rows.padded[r] else []))
            out[i] = traj
        self._tail_seconds = max((time.perf_counter() - t_tail) / len(active), 0.7 * self._tail_seconds)
        overhead = (time.perf_counter() - t_setup - res["search_seconds"]) / len(active)
        self._overhead_seconds = max(1.2 * overhead, 0.7 * self._overhead_seconds)
        elapsed = time.perf_counter() - t_start
        for i in active:
            out[i].elapsed_s = elapsed
        return out

    def _out_of_time(self, states, active, out, n_out, t_start, mode, seed) -> list[Trajectory]:
        """Constant-velocity plans for the active agents (policy 'constant_velocity', fallback
        and flag 'deadline'): the budget does not cover what a call does besides evaluating the
        model (inputs, start, output; per agent, measured on earlier calls)."""
        st, u = constant_velocity_many([states[i] for i in active], max(n_out, 1), self.dt,
                                       self.loaded.cost_config.wheelbase)
        elapsed = time.perf_counter() - t_start
        for r, i in enumerate(active):
            out[i] = Trajectory(t=np.arange(1, len(st[r]) + 1) * self.dt, positions=st[r, :, :2],
                                headings=st[r, :, 3], speeds=st[r, :, 2], accelerations=st[r, :, 4],
                                steering=st[r, :, 5], controls=u[r], cost=math.nan, energy=math.nan,
                                start=states[i], policy="constant_velocity", fallback="deadline",
                                flags=("deadline",), mode=mode, seed=seed, elapsed_s=elapsed)
        return out

    def _scene_rows(self, scene, states, active, lane_set, joint, excess=None):
        """The rows of a scene's active agents, with live neighbour slots when ``joint``, and
        their groups (one scene: all zero; None when independent); ``excess``: the active
        agents' :meth:`LaneSet.edge_excess` if known."""
        cen = np.array([s.centre for s in states])
        d = np.hypot(*(cen[active][:, None] - cen[None]).transpose(2, 0, 1))          # (n, A)
        d[np.arange(len(active)), active] = np.inf
        order = np.argsort(d, axis=1, kind="stable")[:, :self.config.max_neighbours]
        other_ids = [[int(j) for j in row if d[r, j] <= self.config.neighbour_radius]
                     for r, row in enumerate(order)]
        others = [[states[j] for j in ids] for ids in other_ids]
        rows = build_rows([states[i] for i in active], [scene.agents[i].history for i in active], others,
                          lane_set, self.loaded.inputs, history=self.loaded.history,
                          steps=self.loaded.steps, dt=self.dt, max_neighbours=self.config.max_neighbours,
                          radius=self.config.neighbour_radius,
                          headways=self._scene_headways(scene, active),
                          edge_excess=excess)
        if not joint:
            return rows, None
        n = len(active)
        pos = {j: r for r, j in enumerate(active)}
        nbr = torch.tensor([[pos.get(other_ids[r][m], -1) if m >= 0 else -1 for m in rows.neighbours[r]]
                            for r in range(n)], dtype=torch.int64).view(rows.neighbours.shape)
        rows.cond.update(pair_index(torch.zeros(n, dtype=torch.int64), torch.arange(n), nbr,
                                    torch.as_tensor(rows.origin)))
        return rows, torch.zeros(n, dtype=torch.int64)
