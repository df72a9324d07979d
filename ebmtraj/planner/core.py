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

from ebmcore.errors import ConfigError

from .checkpoint import DT, LoadedModel, load_checkpoint
from .energy import AgentEnergy, JointEnergy
from .fallback import constant_velocity, lane_keeping
from .inputs import LaneSet, build_rows, to_world
from .search import search
from .start import ReferenceStart
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
        calibrated. Checkpoints without a minimum-cost search (no ``opt_steps``) use
        noise-free Langevin for min_cost.
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
    compile: bool = False

    def validate(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"planner mode must be one of {MODES}, got {self.mode!r}")
        if self.on_bad_input not in ("fallback", "raise"):
            raise ConfigError(f"on_bad_input must be 'fallback' or 'raise', got {self.on_bad_input!r}")
        if self.beyond_horizon not in ("raise", "extend"):
            raise ConfigError(f"beyond_horizon must be 'raise' or 'extend', got {self.beyond_horizon!r}")
        if self.samples is not None and not 1 <= self.samples <= 1024:
            raise ConfigError(f"samples must be in [1, 1024], got {self.samples}")
        for name in ("steps", "opt_steps"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 10_000:
                raise ConfigError(f"{name} must be in [0, 10000], got {value}")
        if self.time_budget is not None and not self.time_budget > 0:
            raise ConfigError(f"time_budget must be positive seconds, got {self.time_budget}")


@dataclass
class SearchSettings:
    """Resolved settings of one call."""

    mode: str
    samples: int
    init: str
    opt_steps: int | None     # None: minimum cost by noise-free Langevin
    adam_lr: float
    steps: int
    step_size: float
    init_std: float


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
        self._reference = None

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

    def settings(self, mode=None, samples=None, steps=None, opt_steps=None) -> SearchSettings:
        """The search settings of a call: its arguments, else the config, else the checkpoint's."""
        d, c = self.loaded.search, self.config
        mode = mode or c.mode
        if mode not in MODES:
            raise ConfigError(f"planner mode must be one of {MODES}, got {mode!r}")
        pick = lambda *xs: next((x for x in xs if x is not None), None)
        k = pick(samples, c.samples, 1 if mode == "min_cost" else d.samples)
        n = int(pick(steps, c.steps, d.steps))
        if c.step_size is not None:
            size = float(c.step_size)
        elif n > 0 and d.steps > 0:
            size = float(d.step_size * math.sqrt(d.steps / n))    # equal drift
        else:
            size = float(d.step_size)
        init = d.init if self.model.cost.use_neural else "nominal"
        return SearchSettings(mode, int(k), init, pick(opt_steps, c.opt_steps, d.opt_steps),
                              float(d.adam_lr), n, size, float(pick(c.init_std, d.init_std)))

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

    # ------------------------------------------------------------------ the search
    def _start(self, energy: AgentEnergy, init: str) -> torch.Tensor:
        """The deterministic chain start of each row of ``energy`` (B, T, 2)."""
        B, T = energy.cond["x0"].shape[0], self.loaded.steps
        if init == "nominal" or energy.enc is None:
            return torch.zeros(B, T, 2)
        if self._reference is None:
            self._reference = ReferenceStart(self.model)
        return self._reference(energy.cond, energy.enc)

    def _search(self, make_energy, rows: int, st: SearchSettings, gen, deadline,
                warm: torch.Tensor | None = None):
        """Run the configured search on ``rows`` rows; ``make_energy(copies)`` builds the energy
        of ``copies`` stacked copies of the rows. Returns (energy object, SearchResult, chains per
        row K')."""
        T = self.loaded.steps
        base_energy = make_energy(1)
        start = self._start(base_energy, st.init)                                 # (rows, T, 2)
        if st.mode == "sample":
            if st.init == "mincost" and st.opt_steps:
                pre = search(base_energy.energy_and_grad, start, steps=st.opt_steps,
                             optimiser="adam", lr=st.adam_lr, deadline=deadline)
                start = pre.z
            k = st.samples
            energy = make_energy(k) if k > 1 else base_energy
            z0 = start.repeat(k, 1, 1) + st.init_std * torch.randn(k * rows, T, 2, generator=gen)
            res = search(energy.energy_and_grad, z0, steps=st.steps, step_size=st.step_size,
                         noise=True, generator=gen, deadline=deadline, evaluate=energy.evaluate)
            return energy, res, k
        extra = st.init_std * torch.randn(max(st.samples - 1, 0) * rows, T, 2, generator=gen)
        chains = [start] + ([warm] if warm is not None else []) + ([start.repeat(st.samples - 1, 1, 1) + extra]
                                                                   if st.samples > 1 else [])
        z0 = torch.cat(chains, 0)
        k = z0.shape[0] // rows
        energy = make_energy(k) if k > 1 else base_energy
        if st.opt_steps is None:
            res = search(energy.energy_and_grad, z0, steps=st.steps, step_size=st.step_size,
                         noise=False, deadline=deadline, evaluate=energy.evaluate)
        else:
            res = search(energy.energy_and_grad, z0, steps=st.opt_steps, optimiser="adam",
                         lr=st.adam_lr, deadline=deadline, evaluate=energy.evaluate)
        return energy, res, k

    @staticmethod
    def _result(energy, res):
        """(energy, cost, states, controls) of the search's returned chains."""
        if res.states is not None:
            return res.energy, res.cost, res.states, res.controls
        return energy.evaluate(res.z)

    # ------------------------------------------------------------------ planning
    def plan(self, ego, history=None, neighbours=(), lanes=None, horizon: float = 4.0, *,
             mode: str | None = None, samples: int | None = None, steps: int | None = None,
             opt_steps: int | None = None, seed: int | None = None,
             time_budget: float | None = None, warm_start: "bool | Trajectory | None" = None,
             return_samples: bool = False, timestamp: float | None = None) -> Trajectory:
        """One planning cycle for one vehicle.

        ego: :class:`AgentState` (or a dict of its fields, or a vector x, y, speed, heading[,
            accel, steering]); history: (H, 2) past positions at 0.1 s, last row = now (None or
            short: padded at constant velocity, flag ``'history_padded'``); neighbours: the
            other vehicles' current states (extrapolated at constant velocity, as in training);
            lanes: see :class:`ebmtraj.planner.inputs.LaneSet` (a LaneSet built once can be
            reused); horizon [s]: a multiple of 0.1 up to the trained horizon.
        mode / samples / steps / opt_steps / seed / time_budget override the config for this
        call; warm_start: True/False, or a previous :class:`Trajectory` to start from;
        timestamp [s]: the inputs' time, used to shift the warm start by the elapsed steps.
        Returns a :class:`Trajectory` (``fallback`` set if a simple policy replaced the model).
        """
        t_start = time.perf_counter()
        budget = time_budget if time_budget is not None else self.config.time_budget
        deadline = None if budget is None else t_start + budget
        ego = as_state(ego, "ego")
        nbrs = [as_state(b, f"neighbours[{i}]") for i, b in enumerate(neighbours or ())]
        n_out, extend = self._horizon_steps(horizon)
        lane_set = LaneSet.from_any(lanes)
        seed = self.config.seed if seed is None else seed
        st = self.settings(mode, samples, steps, opt_steps)
        flags = ["extended_beyond_trained_horizon"] if extend else []

        reason = self._lane_problem(ego, lane_set)
        if reason is not None:
            self._memory = None
            return self._fallback(ego, lane_set, reason, n_out, flags, t_start, st.mode, seed, timestamp)

        rows = build_rows([ego], [history], [nbrs], lane_set, self.loaded.inputs,
                          history=self.loaded.history, steps=self.loaded.steps, dt=self.dt,
                          max_neighbours=self.config.max_neighbours,
                          radius=self.config.neighbour_radius,
                          min_slots=self.config.max_neighbours if self.config.compile else 1)
        if rows.padded[0]:
            flags.append("history_padded")
        if sum(1 for b in nbrs if np.hypot(*(b.centre - ego.centre)) <= self.config.neighbour_radius) \
                > self.config.max_neighbours:
            flags.append("neighbours_truncated")
        gen = torch.Generator().manual_seed(int(seed))
        warm = None
        if st.mode == "min_cost":
            memory = warm_start.latent if isinstance(warm_start, Trajectory) else (
                self._memory if (warm_start if warm_start is not None else self.config.warm_start) else None)
            warm = self._shifted(memory, timestamp, rows.cond["x0"]) if memory is not None else None
            if warm is not None:
                flags.append("warm_start")

        cond = dict(rows.cond)
        if self.config.interaction:
            weight = self.config.interaction_weight
            cond["pair_weight"] = torch.tensor(float(self.loaded.search.interaction_weight
                                                     if weight is None else weight))
            cond["margin"] = torch.full((1, 2), float(self.config.safety_margin))

        def make_energy(copies):
            return AgentEnergy(self.model, {key: (v.expand((copies,) + v.shape[1:]) if v.dim() else v)
                                            for key, v in cond.items()}, self.config.compile)

        energy, res, _ = self._search(make_energy, 1, st, gen, deadline, warm)
        if res.deadline_hit:
            flags.append("deadline")
        e, c, states, u = self._result(energy, res)
        finite = torch.isfinite(e) & torch.isfinite(states).flatten(1).all(1)
        if not bool(finite.any()):
            self._memory = None
            return self._fallback(ego, lane_set, "model_nonfinite", n_out, flags, t_start, st.mode,
                                  seed, timestamp)
        e = torch.where(finite, e, torch.full_like(e, math.inf))
        best = int(torch.argmin(e))
        world = self._to_world(states, rows.origin[0])
        traj = Trajectory(
            t=np.arange(1, self.loaded.steps + 1) * self.dt, positions=world[best, :, :2],
            headings=world[best, :, 3], speeds=world[best, :, 2], accelerations=world[best, :, 4],
            steering=world[best, :, 5], controls=u[best].double().numpy(), cost=float(c[best]),
            energy=float(e[best]), start=ego, mode=st.mode, iterations=res.iterations, seed=int(seed),
            timestamp=timestamp,
            latent={"levels": self.model.param.levels(res.z[best:best + 1])[0].numpy(),
                    "timestamp": timestamp})
        if return_samples:
            traj.samples = TrajectorySamples(world[:, :, :2], world[:, :, 3], world[:, :, 2],
                                             c.double().numpy(), e.double().numpy())
        self._memory = traj.latent
        traj = self._fit_horizon(traj, n_out, ego)
        traj.flags = tuple(flags)
        traj.elapsed_s = time.perf_counter() - t_start
        return traj

    def _lane_problem(self, ego: AgentState, lanes: LaneSet) -> str | None:
        if len(lanes) == 0:
            why = "no_lanes"
        elif lanes.edge_excess(ego.centre[None])[0] > self.config.off_lane_margin:
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
        """Agent-frame states (B, T, 6) -> world (B, T, 6) float64."""
        st = states.double().numpy().copy()
        st[..., :2] = to_world(st[..., :2].reshape(1, -1, 2), origin[None]).reshape(st.shape[:-1] + (2,))
        st[..., 3] += origin[2]
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

        ``joint=True``: one search over all agents' controls at once, each agent's neighbours
        being the others' current trajectories, plus the pair overlap penalty; the returned set
        is the copy (of K) with the lowest joint energy. ``joint=False``: each agent on its own
        against the others' constant-velocity extrapolations (batched). Agents off every lane get
        a flagged fallback and stay constant-velocity neighbours of the others
        (``on_bad_input='raise'`` raises instead)."""
        t_start = time.perf_counter()
        budget = time_budget if time_budget is not None else self.config.time_budget
        deadline = None if budget is None else t_start + budget
        if scene is None or not getattr(scene, "agents", None):
            raise PlannerInputError("scene has no agents to predict")
        states = [as_state(a.state, f"scene.agents[{i}]") for i, a in enumerate(scene.agents)]
        hists = [a.history for a in scene.agents]
        n_out, extend = self._horizon_steps(horizon)
        lane_set = LaneSet.from_any(scene.lanes)
        seed = self.config.seed if seed is None else seed
        st = self.settings(mode, samples, steps, opt_steps)
        A = len(states)
        reasons = []
        for s in states:
            try:
                reasons.append(self._lane_problem(s, lane_set))
            except PlannerInputError as err:
                raise PlannerInputError(f"scene agent: {err}") from None
        active = [i for i in range(A) if reasons[i] is None]
        out: list[Trajectory | None] = [None] * A
        for i in range(A):
            if reasons[i] is not None:
                out[i] = self._fallback(states[i], lane_set, reasons[i], n_out, [], t_start, st.mode,
                                        seed, None)
        if not active:
            return out
        others = [[states[j] for j in range(A) if j != i] for i in active]
        other_ids = [[j for j in range(A) if j != i] for i in active]
        rows = build_rows([states[i] for i in active], [hists[i] for i in active], others, lane_set,
                          self.loaded.inputs, history=self.loaded.history, steps=self.loaded.steps,
                          dt=self.dt, max_neighbours=A - 1 if joint else self.config.max_neighbours,
                          radius=math.inf if joint else self.config.neighbour_radius)
        gen = torch.Generator().manual_seed(int(seed))
        T, n = self.loaded.steps, len(active)
        if joint:
            pos = {j: r for r, j in enumerate(active)}
            nbr = torch.full(rows.neighbours.shape, -1, dtype=torch.long)
            for r in range(n):
                for m, idx in enumerate(rows.neighbours[r]):
                    if idx >= 0:
                        nbr[r, m] = pos.get(other_ids[r][idx], -1)
            weight = self.config.interaction_weight
            weight = self.loaded.search.interaction_weight if weight is None else weight

            def make_energy(copies):
                return JointEnergy(self.model, rows.cond, rows.origin, nbr, copies, weight,
                                   self.config.compile)
        else:
            def make_energy(copies):
                return AgentEnergy(self.model, {key: v.repeat((copies,) + (1,) * (v.dim() - 1))
                                                for key, v in rows.cond.items()}, self.config.compile)

        energy, res, k = self._search(make_energy, n, st, gen, deadline)
        e, c, sts, u = self._result(energy, res)
        e, c = e.view(k, n), c.view(k, n)
        total = torch.where(torch.isfinite(e), e, torch.full_like(e, math.inf)).sum(1)
        best = int(torch.argmin(total))
        sts, u = sts.view(k, n, T, 6)[best], u.view(k, n, T, 2)[best]
        elapsed = time.perf_counter() - t_start
        for r, i in enumerate(active):
            if not (torch.isfinite(e[best, r]) and torch.isfinite(sts[r]).all()):
                out[i] = self._fallback(states[i], lane_set, "model_nonfinite", n_out, [], t_start,
                                        st.mode, seed, None)
                continue
            w = self._to_world(sts[r:r + 1], rows.origin[r])[0]
            traj = Trajectory(t=np.arange(1, T + 1) * self.dt, positions=w[:, :2], headings=w[:, 3],
                              speeds=w[:, 2], accelerations=w[:, 4], steering=w[:, 5],
                              controls=u[r].double().numpy(), cost=float(c[best, r]),
                              energy=float(e[best, r]), start=states[i], mode=st.mode,
                              iterations=res.iterations, seed=int(seed))
            traj = self._fit_horizon(traj, n_out, states[i])
            flags = ["joint" if joint else "independent"]
            flags += ["history_padded"] if rows.padded[r] else []
            flags += ["deadline"] if res.deadline_hit else []
            flags += ["extended_beyond_trained_horizon"] if extend else []
            traj.flags = tuple(flags)
            traj.elapsed_s = elapsed
            out[i] = traj
        return out
