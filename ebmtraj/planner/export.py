"""Export: the cost and rollout compiled to TorchScript, with the minimum-cost search loop
written against them, in one file that runs without Python (``torch::jit::load`` in C++).

The file holds a scripted module whose ``forward`` is the whole planning step::

    z, energy, cost, states = module(x0, hist, ctx, v_hist, lane_pts, lane_seg, lane_hw,
                                     nbr_pos, nbr_vel, nbr_size, nbr_valid, size, ref,
                                     nbr_heading, pair_weight, margin, z_offset, steps,
                                     step_size, adam, lr, reference)

with the tensors of :mod:`ebmtraj.cost_inputs` (agent frame, float32; ``lane_seg`` bool) for
one agent repeated over the ``K`` chains, plus the neighbours' headings ``nbr_heading`` (K, M)
[rad, agent frame], the pair-penalty weight ``pair_weight`` (scalar; 0 turns the interaction
off) and the ego's footprint margin ``margin`` (K, 2) [m]; ``z_offset`` (K, T, 2) added to each chain's start
(zeros for chain 0); ``reference``: start at the closed-form reference start (else the
nominal, z = 0); ``adam``: ``steps`` Adam steps at rate ``lr`` (the minimum-cost search), else
``steps`` noise-free Langevin steps of ``step_size``. Outputs: the lowest-energy z seen per
chain (K, T, 2), its energy and cost (K,) and rolled-out states (K, T, 6) in the agent frame.
The loop is the minimum-cost search of :mod:`ebmtraj.search` (its start, Adam update and
gradient bound, scripted). Shapes are fixed at export: K chains, M neighbour slots (pad
with ``nbr_valid = 0``), L lanes x P points (the checkpoint's input config). The anytime
deadline, the warm start and the sampling mode stay on the Python side.

:class:`ExportedPlanner` runs the file from Python with the planner's own input building, so
tests can check that it plans what :class:`ebmtraj.planner.Planner` plans.
"""
from __future__ import annotations

import math
import time
import warnings
from pathlib import Path
from typing import Tuple

import numpy as np
import torch
from torch import nn

from ebmcore.errors import ConfigError

from ..prediction import row_forward
from ..search import adam_update, clip_rows, solve_start, straight_jacobians
from .core import Planner, as_state
from .inputs import LaneSet, build_rows
from .types import Trajectory

COND_ORDER = ("x0", "hist", "ctx", "v_hist", "lane_pts", "lane_seg", "lane_hw", "nbr_pos",
              "nbr_vel", "nbr_size", "nbr_valid", "size", "ref", "nbr_heading")


class _CostGraph(nn.Module):
    """What gets traced: rollout, history encoding and the cost, all positional tensors."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def rollout(self, z, x0):
        return self.model.rollout(z, {"x0": x0})[0]

    def encode(self, hist, ctx):
        return self.model.cost.neural.encode({"hist": hist, "ctx": ctx})

    def forward(self, z, x0, v_hist, lane_pts, lane_seg, lane_hw, nbr_pos, nbr_vel, nbr_size,
                nbr_valid, size, ref, nbr_heading, pair_weight, margin, nominal, enc_ref,
                enc_log_sigma):
        cond = {"x0": x0, "v_hist": v_hist, "lane_pts": lane_pts, "lane_seg": lane_seg,
                "lane_hw": lane_hw, "nbr_pos": nbr_pos, "nbr_vel": nbr_vel, "nbr_size": nbr_size,
                "nbr_valid": nbr_valid, "size": size, "ref": ref, "nbr_heading": nbr_heading,
                "nominal": nominal}
        enc = (enc_ref, enc_log_sigma) if self.model.cost.use_neural else None
        return row_forward(self.model, z, cond, enc, 0.0, pair_weight, margin)[0]


class _SearchLoop(nn.Module):
    """Scripted search over the traced graph (see module docstring): the closed-form reference
    start (optional), then Adam (the minimum-cost search) or noise-free Langevin steps."""

    def __init__(self, graph, sigma: float, clip: float, jac_a: torch.Tensor, jac_s: torch.Tensor,
                 v_ref: float):
        super().__init__()
        self.graph = graph
        self.sigma = sigma
        self.clip = clip
        self.register_buffer("jac_a", jac_a.double())
        self.register_buffer("jac_s", jac_s.double())
        self.v_ref = v_ref
        self.lam = 1.0 / (sigma * sigma) if sigma > 0 else 0.0

    def forward(self, x0, hist, ctx, v_hist, lane_pts, lane_seg, lane_hw, nbr_pos, nbr_vel,
                nbr_size, nbr_valid, size, ref, nbr_heading, pair_weight, margin, z_offset,
                steps: int, step_size: float, adam: bool, lr: float, reference: bool
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        nominal = self.graph.rollout(torch.zeros_like(z_offset), x0)[:, :, 0:2].detach()
        enc = self.graph.encode(hist, ctx)
        enc_ref, enc_ls = enc[0].detach(), enc[1].detach()
        z = z_offset.detach().clone()
        if reference:
            z = z + solve_start(self.jac_a, self.jac_s, x0[:, 2], enc_ref, enc_ls, self.lam, self.v_ref)
        drift = 0.5 * step_size * step_size
        best_z = z.clone()
        best_e = torch.full([z.shape[0]], math.inf)
        best_c = torch.full([z.shape[0]], math.inf)
        m = torch.zeros_like(z)
        v = torch.zeros_like(z)
        for i in range(steps + 1):
            zg = z.detach().requires_grad_(True)
            cost = self.graph(zg, x0, v_hist, lane_pts, lane_seg, lane_hw, nbr_pos, nbr_vel,
                              nbr_size, nbr_valid, size, ref, nbr_heading, pair_weight, margin,
                              nominal, enc_ref, enc_ls)
            grads = torch.autograd.grad([cost.sum()], [zg])
            g = grads[0]
            assert g is not None
            cost = cost.detach()
            g = clip_rows(g, self.clip)
            energy = cost
            if self.sigma > 0:
                g = g + z / (self.sigma * self.sigma)
                energy = cost + z.pow(2).flatten(1).sum(1) / (2.0 * self.sigma * self.sigma)
            better = energy < best_e
            best_z = torch.where(better.view(-1, 1, 1), z, best_z)
            best_e = torch.where(better, energy, best_e)
            best_c = torch.where(better, cost, best_c)
            if i == steps:
                break
            if adam:
                z, m, v = adam_update(z, g, m, v, i + 1, lr)
            else:
                z = z - drift * g
        states = self.graph.rollout(best_z, x0).detach()
        return best_z, best_e, best_c, states


def export_planner(planner: Planner, path: str | Path, *, chains: int = 1, neighbours: int = 5,
                   example=None) -> Path:
    """Trace the cost and rollout of ``planner`` and script the search loop around them; save
    to ``path`` (``torch.jit.save``). ``chains`` K and ``neighbours`` M fix the input shapes.
    ``example``: optional (ego, history, neighbours, lanes) to trace with (default: a straight
    two-lane road)."""
    loaded = planner.loaded
    if loaded.search.init == "generator":
        raise ConfigError(f"{loaded.path}: predict.init = 'generator' (a learned start network) is "
                          f"not exported; the export starts at the closed-form or nominal start")
    if loaded.spec.virtual_leaders:
        raise ConfigError(f"{loaded.path}: trained with virtual leaders (data.headway_leads); the "
                          f"export takes no headway input, so it would plan without them")
    cond = _example_cond(planner, neighbours, example)
    cond = {k: v.repeat((chains,) + (1,) * (v.dim() - 1)) for k, v in cond.items()}
    graph = _CostGraph(loaded.model).eval()
    z = torch.zeros(chains, loaded.steps, 2)
    with torch.no_grad():
        nominal = loaded.model.nominal(cond)
        enc = loaded.model.cost.neural.encode(cond)
    args = (z, cond["x0"], cond["v_hist"], cond["lane_pts"], cond["lane_seg"], cond["lane_hw"],
            cond["nbr_pos"], cond["nbr_vel"], cond["nbr_size"], cond["nbr_valid"], cond["size"],
            cond["ref"], cond["nbr_heading"], torch.tensor(10.0), torch.full((chains, 2), 0.5),
            nominal, enc[0], enc[1])
    with warnings.catch_warnings():
        # shape checks and constants of the cost are fixed in the trace by design (fixed shapes);
        # TorchScript itself is deprecated in favour of torch.export but still loads in libtorch
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace_module(graph, {"forward": args, "rollout": (z, cond["x0"]),
                                                "encode": (cond["hist"], cond["ctx"])},
                                        check_trace=False)
        scripted = _script(traced, loaded)
    extra = {"meta.txt": (f"ebmtraj planner export; chains={chains} neighbours={neighbours} "
                          f"steps={loaded.steps} history={loaded.history} dt=0.1 "
                          f"lanes={loaded.inputs.lanes}x{loaded.inputs.lane_points} "
                          f"default_steps={loaded.search.steps} "
                          f"default_step_size={loaded.search.step_size} source={loaded.path}")}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(scripted, str(tmp), _extra_files=extra)
    tmp.replace(path)
    return path


def _script(traced, loaded):
    from ..search import V_REF

    jac_a, jac_s = straight_jacobians(loaded.model, V_REF)
    loop = _SearchLoop(traced, float(loaded.model.sigma_ref or 0.0),
                       float(loaded.model.grad_clip or 0.0), jac_a, jac_s, V_REF)
    return torch.jit.script(loop)


def _example_cond(planner: Planner, neighbours: int, example) -> dict:
    from shapely.geometry import LineString

    from .types import AgentState

    if example is None:
        lanes = [(LineString([(-100, 1.85), (300, 1.85)]), 3.7), (LineString([(-100, -1.85), (300, -1.85)]), 3.7)]
        ego = AgentState(0.0, -1.85, 0.0, 20.0)
        nbrs = [AgentState(30.0 + 10 * i, 1.85 * (-1) ** i, 0.0, 18.0) for i in range(neighbours)]
        example = (ego, None, nbrs, lanes)
    ego, hist, nbrs, lanes = example
    rows = build_rows([as_state(ego, "ego")], [hist], [list(nbrs)], LaneSet.from_any(lanes),
                      planner.loaded.inputs, history=planner.loaded.history,
                      steps=planner.loaded.steps, max_neighbours=neighbours, radius=math.inf,
                      min_slots=neighbours)
    return rows.cond


class ExportedPlanner:
    """Runs an exported file from Python: the planner's input building, then the file's loop.

    Minimum-cost only; chain 0 starts at the nominal, further chains at the nominal plus
    ``init_std`` noise from ``seed`` (as :meth:`Planner.plan` without a warm start)."""

    def __init__(self, path: str | Path, planner: Planner):
        files = {"meta.txt": ""}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            self.module = torch.jit.load(str(path), _extra_files=files)
        text = files["meta.txt"]
        text = text.decode() if isinstance(text, bytes) else text
        meta = dict(kv.split("=", 1) for kv in text.split() if "=" in kv)
        self.chains, self.neighbours = int(meta["chains"]), int(meta["neighbours"])
        self.planner = planner

    def plan(self, ego, history=None, neighbours=(), lanes=None, horizon: float = 4.0, *,
             opt_steps: int | None = None, steps: int | None = None, seed: int | None = None) -> Trajectory:
        p = self.planner
        t0 = time.perf_counter()
        ego = as_state(ego, "ego")
        nbrs = [as_state(b, f"neighbours[{i}]") for i, b in enumerate(neighbours or ())]
        n_out, _ = p._horizon_steps(horizon)
        st = p.settings("min_cost", self.chains, steps, opt_steps)
        rows = build_rows([ego], [history], [nbrs], LaneSet.from_any(lanes), p.loaded.inputs,
                          history=p.loaded.history, steps=p.loaded.steps,
                          max_neighbours=min(self.neighbours, p.config.max_neighbours),
                          radius=p.config.neighbour_radius, min_slots=self.neighbours)
        cond = {k: v.repeat((self.chains,) + (1,) * (v.dim() - 1)) for k, v in rows.cond.items()}
        seed = int(p.config.seed if seed is None else seed)
        gen = torch.Generator().manual_seed(seed)
        T = p.loaded.steps
        extra = st.init_std * torch.randn((self.chains - 1), T, 2, generator=gen)
        offsets = torch.cat([torch.zeros(1, T, 2), extra], 0)
        adam = st.opt_steps is not None
        n = st.opt_steps if adam else st.steps
        weight = p.config.interaction_weight
        weight = p.loaded.search.interaction_weight if weight is None else weight
        weight = torch.tensor(float(weight) if p.config.interaction else 0.0)
        margin = torch.full((self.chains, 2), float(p.config.safety_margin))
        z, e, c, states = self.module(*[cond[k] for k in COND_ORDER], weight, margin, offsets, int(n),
                                      st.step_size, adam, st.adam_lr, st.init != "nominal")
        best = int(torch.argmin(e))
        w = p._to_world(states[best:best + 1], rows.origin[0])[0]
        u = p.model.param.controls(z[best:best + 1], cond["x0"][:1])[0]
        traj = Trajectory(t=np.arange(1, T + 1) * p.dt, positions=w[:, :2],
                          headings=w[:, 3], speeds=w[:, 2], accelerations=w[:, 4], steering=w[:, 5],
                          controls=u.double().numpy(), cost=float(c[best]), energy=float(e[best]),
                          start=ego, mode="min_cost", iterations=int(n) + 1, seed=seed)
        traj = traj.truncated(n_out)
        traj.elapsed_s = time.perf_counter() - t0
        return traj
