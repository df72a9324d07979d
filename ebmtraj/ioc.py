"""Energy-based continuous inverse optimal control: learning, prediction, multi-agent sampling.

* Observed controls (:func:`fit_controls`): for each demonstrated future, the control sequence
  whose rollout from the causal initial state reproduces the smoothed future positions.
* Learning, in two stages (:func:`prepare_training`, :func:`pretrain_neural`, :func:`train`):

  1. exact maximum likelihood of the neural term's own (translation-invariant) factor, which
     needs no sampling and fits the history-dependent references and scales;
  2. maximum likelihood of the whole energy (features, neural term, dynamics, prior) by
     analysis by synthesis with :class:`ebmcore.learning.Trainer`: Langevin on the controls with
     the rollout inside the energy (back-propagation through time at every step), chains
     started at the observed controls (``train.chains.kind: data``) or at the nominal
     (``short_run``). The optimisation variant switches the noise off
     (``train.sampler.noise: none``): the synthesised example is then where gradient descent on
     the cost leads, so learning makes demonstrations (locally) minimum-cost.

  The best model on validation RMSE of the minimum-cost prediction is kept (``model.pt``),
  including the stage-1 model (step 0), so a stage 2 that does not help cannot make it worse.
* Prediction (:func:`predict`): the minimum-cost trajectory (Adam on the controls from the
  constant-velocity nominal), or K Langevin samples started there.
* Multi-agent (:class:`JointEnergy`): joint Langevin over every agent's controls of a scene
  with the summed cost, in which each agent's neighbours are the other agents' *current*
  samples, plus a pairwise overlap penalty; compared with independent per-agent prediction.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ebmcore.errors import ConfigError, DataError
from ebmcore.io import load_tensors, save_tensors
from ebmcore.learning import Trainer, TrainConfig
from ebmcore.sampling import langevin

from .cost import ControlParam, IOCEnergy, TrajectoryCost, _ClipInputGrad, rollout
from .cost_inputs import COND_TENSORS, CTX_NAMES

HORIZONS = (10, 20, 30, 40)   # steps = 1, 2, 3, 4 s at 10 Hz
MODEL_FILE = "model.pt"


@dataclass
class ModelConfig:
    """The cost and its control coordinates."""

    hidden: int = 64
    knots: int = 9
    init_weight: float = 0.1
    sigma_ref: float = 3.0
    basis: str = "whitened"
    use_features: bool = True
    use_neural: bool = True
    wheelbase: float = 2.7
    dt: float = 0.1
    grad_clip: float | None = 50.0   # per-example bound on |dC/dz| seen by the sampler
    whiten_shrink: float = 0.33      # z = 1 is this fraction of the demonstrations' control spread

    def validate(self, prefix=""):
        if self.basis not in ("whitened", "level", "increment"):
            raise ConfigError(f"{prefix}basis must be whitened, level or increment, got {self.basis!r}")
        if not (self.use_features or self.use_neural):
            raise ConfigError(f"{prefix}use_features and use_neural cannot both be false")
        if not 0 < self.whiten_shrink <= 10:
            raise ConfigError(f"{prefix}whiten_shrink must be in (0, 10], got {self.whiten_shrink}")


@dataclass
class PredictConfig:
    """How predictions are drawn from the learned energy.

    ``init``: where search starts: 'nominal' (z = 0, constant velocity), 'reference' (the
    closed-form start of :func:`reference_start`, following the neural term's references) or
    'mincost' (the reference start, then ``opt_steps`` Adam steps: the minimum-cost z).
    ``mode``: 'adam' (the minimum-cost trajectory: Adam on z for ``opt_steps`` from the start),
    'descent' (Langevin with the noise off for ``steps``: gradient descent at the sampler's step)
    or 'sample' (``samples`` Langevin chains of ``steps`` steps from the start plus
    N(0, init_std^2)).
    """

    mode: str = "sample"
    samples: int = 5
    steps: int = 20
    step_size: float = 0.15
    init: str = "mincost"
    init_std: float = 0.1
    opt_steps: int = 20
    adam_lr: float = 0.05
    chunk: int = 4096           # rows x samples per batch
    interaction_weight: float = 10.0   # multi-agent pairwise overlap penalty
    seed: int = 0

    def validate(self, prefix=""):
        if self.mode not in ("sample", "descent", "adam"):
            raise ConfigError(f"{prefix}mode must be sample, descent or adam, got {self.mode!r}")
        if self.init not in ("mincost", "reference", "nominal"):
            raise ConfigError(f"{prefix}init must be mincost, reference or nominal, got {self.init!r}")
        if self.samples < 1 or self.steps < 0 or self.step_size < 0 or self.opt_steps < 0:
            raise ConfigError(f"{prefix}samples >= 1, steps, opt_steps and step_size >= 0 are required")


# ----------------------------------------------------------------------------- building

def build_model(cfg: ModelConfig, history: int, steps: int, scale=(0.5, 0.01)) -> IOCEnergy:
    """The energy with untrained weights (``history`` frames in, ``steps`` controls out)."""
    cost = TrajectoryCost(history=history, ctx_dim=len(CTX_NAMES), steps=steps, dt=cfg.dt,
                          hidden=cfg.hidden, knots=cfg.knots, init_weight=cfg.init_weight,
                          use_features=cfg.use_features, use_neural=cfg.use_neural)
    return IOCEnergy(cost, ControlParam(scale, cfg.basis, steps), sigma_ref=cfg.sigma_ref,
                     wheelbase=cfg.wheelbase, grad_clip=cfg.grad_clip)


def cond_of(inputs: dict, model: IOCEnergy | None = None) -> dict:
    """The cost's inputs from :func:`ebmtraj.cost_inputs.build_inputs`, plus the nominal
    positions (computed once here instead of at every energy evaluation)."""
    cond = {k: inputs[k] for k in COND_TENSORS}
    if model is not None:
        with torch.no_grad():
            cond["nominal"] = model.nominal(cond)
    elif "nominal" in inputs:
        cond["nominal"] = inputs["nominal"]
    return cond


def control_scale(fstates: torch.Tensor) -> tuple[float, float]:
    """Acceleration [m/s^2] and steering [rad] spread of observed states (the diagonal bases)."""
    return (float(fstates[..., 4].std().clamp_min(0.05)), float(fstates[..., 5].std().clamp_min(1e-3)))


def fit_controls(model: IOCEnergy, cond: dict, fstates: torch.Tensor, *, iters: int = 60,
                 smooth: float = 1e-3, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Observed controls: z (N,T,2) whose rollout from ``cond['x0']`` matches the smoothed
    future positions ``fstates[..., :2]`` (N,T,2) in least squares, with a small penalty
    ``smooth * |dz|^2`` against jitter. Starts at the observed acceleration / steering levels;
    L-BFGS. Returns (z, per-row position RMSE [m] of the reconstruction)."""
    zs, errs = [], []
    param = model.param
    for lo in range(0, len(fstates), chunk):
        sl = slice(lo, lo + chunk)
        x0, target = cond["x0"][sl].double(), fstates[sl].double()
        u_obs = torch.diff(torch.cat([x0[:, None, 4:6], target[..., 4:6]], 1), dim=1)
        z = param.whiten(u_obs, x0).detach().contiguous().requires_grad_(True)
        opt = torch.optim.LBFGS([z], lr=1.0, max_iter=iters, history_size=20,
                                line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            st = rollout(x0, param.controls(z, x0), model.cost.dt, model.wheelbase)
            loss = ((st[..., :2] - target[..., :2]) ** 2).sum() + smooth * (z.diff(dim=1) ** 2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            st = rollout(x0, param.controls(z, x0), model.cost.dt, model.wheelbase)
            errs.append(((st[..., :2] - target[..., :2]) ** 2).sum(-1).mean(1).sqrt())
        zs.append(z.detach().float())
    return torch.cat(zs), torch.cat(errs).float()


def prepare_training(model: IOCEnergy, inputs: dict, fstates: torch.Tensor, *, fit_iters: int = 60,
                     shrink: float = 0.33):
    """Observed controls and calibration: fit the demonstrated controls, set the whitened
    control basis from their levels, the feature scales and the encoder's input scale.
    Returns (data dict for the Trainer: ``x`` = observed z plus the cond tensors, per-row
    reconstruction RMSE [m])."""
    cond = cond_of(inputs, model)
    z_obs, err = fit_controls(model, cond, fstates, iters=fit_iters)
    with torch.no_grad():
        u_obs = model.param.controls(z_obs, cond["x0"])
        if model.param.basis == "whitened":
            model.param.fit(cond["x0"][:, None, 4:6] + torch.cumsum(u_obs, 1), shrink)
            z_obs = model.param.whiten(u_obs, cond["x0"])
        states, u = model.rollout(z_obs, cond)
        hist_in = torch.cat([cond["hist"].flatten(1), cond["ctx"]], 1)
        model.cost.calibrate(states, u, cond, hist_in)
    return {"x": z_obs.contiguous(), **cond}, err


def pretrain_neural(model: IOCEnergy, data: dict, *, steps: int = 2000, batch_size: int = 256,
                    lr: float = 3e-3, seed: int = 0, log=None, val=None, eval_every: int = 250) -> list[float]:
    """Stage 1: exact maximum likelihood of the neural term's own factor.

    The neural term alone, ``exp(-sum ((p - nominal - ref) / sigma)^2 / 2)`` over positions p, is
    a Gaussian: its normaliser is ``prod (sqrt(2 pi) sigma)`` whatever the reference, so its
    negative log-likelihood on the observed positions, ``sum (r / sigma)^2 / 2 + log sigma``, is
    exact and needs no sampling. Minimising it with Adam fits the references and scales; the
    whole energy is then trained by analysis by synthesis (:func:`train`).
    ``data``: the Trainer's dict (``x`` = observed z). ``val = (cond, future)``: early stopping --
    every ``eval_every`` steps the references' RMSE (mean over 1-4 s) against the validation
    futures (N,T,2) is measured and the best state is kept (small data sets overfit).
    Returns the loss every 100 steps.
    """
    term = model.cost.neural
    with torch.no_grad():
        pos = torch.cat([model.rollout(data["x"][i:i + 4096],
                                       {k: v[i:i + 4096] for k, v in data.items() if k != "x"})[0][..., :2]
                         for i in range(0, len(data["x"]), 4096)])
    target = pos - data["nominal"]
    opt = torch.optim.Adam(term.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    n, losses = len(target), []
    best, best_state = math.inf, None

    def check(step):
        nonlocal best, best_state
        with torch.no_grad():
            ref, _ = term.encode(val[0])
        score = sum(rmse_table(val[0]["nominal"] + ref, val[1])) / len(HORIZONS)
        if log:
            log(step, f"validation RMSE of the references {score:.3f}")
        if score < best:
            best, best_state = score, {k: v.detach().clone() for k, v in term.state_dict().items()}

    term.train()
    for step in range(steps):
        if val is not None and step % eval_every == 0:
            check(step)
        idx = torch.randint(0, n, (min(batch_size, n),), generator=gen)
        ref, log_sigma = term.encode({"hist": data["hist"][idx], "ctx": data["ctx"][idx]})
        r = (target[idx] - ref) * torch.exp(-log_sigma)
        loss = (0.5 * r * r + log_sigma).sum((1, 2)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            losses.append(float(loss.detach()))
            if log:
                log(step, losses[-1])
    if val is not None:
        check(steps)
        term.load_state_dict(best_state)
    return losses


# ----------------------------------------------------------------------------- prediction

def _repeat(cond: dict, k: int) -> dict:
    return {key: v.repeat_interleave(k, dim=0) for key, v in cond.items()}


def minimise(energy_fn, z0: torch.Tensor, steps: int, lr: float, groups: torch.Tensor | None = None
             ) -> torch.Tensor:
    """Adam on z from z0 (B,T,2) for ``steps``; returns, per row, the lowest-energy z visited.

    ``groups`` (B,) int: rows that share an energy (the agents of one scene under the joint
    energy) are kept or replaced together, on the sum of their energies."""
    z = z0.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    best = z0.detach().clone()
    best_e = torch.full((z0.shape[0],), math.inf, dtype=z0.dtype)
    if groups is not None:
        _, groups = torch.unique(groups, return_inverse=True)
    for _ in range(steps + 1):
        e = energy_fn(z)
        with torch.no_grad():
            score = e
            if groups is not None:
                score = torch.zeros(int(groups.max()) + 1, dtype=e.dtype).index_add_(0, groups, e)[groups]
            better = score < best_e
            best[better], best_e[better] = z[better], score[better]
        opt.zero_grad()
        e.sum().backward()
        opt.step()
    return best


def _straight_jacobian(model: IOCEnergy, v_ref: float) -> torch.Tensor:
    """d positions / d z (T,2,T,2) of a straight drive at ``v_ref`` from the nominal, float64.

    Cached on the model, keyed by the control basis (the only buffer it depends on)."""
    T = model.cost.steps
    mix = model.param.mix
    key = (v_ref, mix.data_ptr(), mix._version, model.cost.dt, model.wheelbase)
    cache = model.__dict__.setdefault("_jacobian_cache", {})
    if key not in cache:
        x_ref = torch.zeros(1, 6, dtype=torch.float64)
        x_ref[0, 2] = v_ref
        param = ControlParam(tuple(model.param.scale.tolist()), model.param.basis, T).double()
        param.mix.copy_(mix.double())

        def pos(z):
            u = param.controls(z.view(1, T, 2), x_ref)
            return rollout(x_ref, u, model.cost.dt, model.wheelbase)[0, :, :2]

        cache.clear()
        cache[key] = torch.autograd.functional.jacobian(
            pos, torch.zeros(1, T, 2, dtype=torch.float64)).view(T, 2, T, 2)
    return cache[key]


def reference_start(model: IOCEnergy, cond: dict, v_ref: float = 20.0) -> torch.Tensor:
    """Controls z (B,T,2) whose linearised rollout best follows the neural term's references.

    Around the nominal, positions are linear in z: the longitudinal offset depends on the
    acceleration channel alone (independently of speed), the lateral one on the steering channel,
    in proportion to speed. With the Jacobians J of a straight drive at ``v_ref`` (computed once),
    each row solves the linearised (neural term + reference prior) problem
    ``min_z |W^(1/2) (J z - ref)|^2 + |z|^2 / sigma_ref^2`` in closed form (W: the term's
    precisions), a start from which a few optimiser steps reach the minimum cost.
    """
    T = model.cost.steps
    dtype = cond["x0"].dtype
    J = _straight_jacobian(model, v_ref)
    with torch.no_grad():
        ref, log_sigma = model.cost.neural.encode(cond)
        prec = torch.exp(-2 * log_sigma.double()).expand(ref.shape[0], T, 2)        # (B,T,2)
        lam = 0.0 if model.sigma_ref is None else 1.0 / model.sigma_ref ** 2
        eye = torch.eye(T, dtype=torch.float64)
        scale = (cond["x0"][:, 2].double().clamp_min(2.0) / v_ref)                   # (B,)
        z = []
        for c, jac in ((0, J[:, 0, :, 0]), (1, J[:, 1, :, 1])):
            Jb = jac[None] * (scale[:, None, None] if c == 1 else 1.0)              # (B,T,T)
            JtW = Jb.transpose(1, 2) * prec[:, None, :, c]
            A = JtW @ Jb + (lam + 1e-6) * eye
            b = JtW @ ref[..., c].double()[..., None]
            z.append(torch.linalg.solve(A, b)[..., 0])
    return torch.stack(z, -1).to(dtype)


def predict(model: IOCEnergy, cond: dict, cfg: PredictConfig, *, energy_fn=None,
            rows_per_chunk: int | None = None) -> dict[str, torch.Tensor]:
    """Predictions per row: ``z`` (N,K,T,2), ``states`` (N,K,T,6) in the agent frame and their
    ``energy`` (N,K); K = ``cfg.samples`` for 'sample', else 1 (see :class:`PredictConfig`).

    ``energy_fn(z, cond) -> (B,)`` replaces the model's energy (multi-agent: a
    :class:`JointEnergy`; its cond carries ``nbr_row`` and chunks never split a scene, see
    :func:`predict_joint`).
    """
    model.eval()
    n = cond["x0"].shape[0]
    k = cfg.samples if cfg.mode == "sample" else 1
    gen = torch.Generator().manual_seed(cfg.seed)
    out = {"z": [], "states": [], "energy": []}
    efn = energy_fn or (lambda z, c: model.energy(z, c))
    for sl in _chunks(cond, max(1, cfg.chunk // k)):
        c = {key: v[sl] for key, v in cond.items()}
        if "nbr_row" in c:
            c["nbr_row"] = torch.where(c["nbr_row"] >= 0, c["nbr_row"] - sl.start, c["nbr_row"])
        start = c["x0"].new_zeros(c["x0"].shape[0], model.cost.steps, 2)
        if cfg.init in ("reference", "mincost") and model.cost.use_neural:
            start = reference_start(model, c)
        if cfg.mode == "adam" or (cfg.mode == "sample" and cfg.init == "mincost"):
            start = minimise(lambda zz: efn(zz, c), start, cfg.opt_steps, cfg.adam_lr,
                             groups=c["scene"] if "nbr_row" in c else None)
        if cfg.mode == "adam":
            z = start
        elif cfg.mode == "descent":
            z = langevin(lambda zz: efn(zz, c), start, cfg.steps, cfg.step_size, noise="off")
        else:
            c = _repeat(c, k)
            if "nbr_row" in c:          # copy j of a row sees copy j of its neighbours
                row, copy = c["nbr_row"], torch.arange(c["nbr_row"].shape[0]) % k
                c["nbr_row"] = torch.where(row >= 0, row * k + copy[:, None], row)
            start = start.repeat_interleave(k, dim=0)
            z0 = start + cfg.init_std * torch.randn(start.shape, generator=gen, dtype=start.dtype)
            z = langevin(lambda zz: efn(zz, c), z0, cfg.steps, cfg.step_size, generator=gen)
        with torch.no_grad():
            e = efn(z, c)
            states, _ = model.rollout(z, c)
        out["z"].append(z.view(-1, k, *z.shape[1:]))
        out["states"].append(states.view(-1, k, *states.shape[1:]))
        out["energy"].append(e.view(-1, k))
    return {key: torch.cat(v) for key, v in out.items()}


def _chunks(cond: dict, rows: int):
    """Row slices of about ``rows``; with ``scene`` present (multi-agent), never splitting one."""
    n = cond["x0"].shape[0]
    if "nbr_row" not in cond:
        return [slice(lo, min(lo + rows, n)) for lo in range(0, n, rows)]
    scene = cond["scene"]
    cuts = [0]
    while cuts[-1] < n:
        hi = min(cuts[-1] + rows, n)
        while 0 < hi < n and scene[hi] == scene[hi - 1]:
            hi += 1
        cuts.append(hi)
    return [slice(a, b) for a, b in zip(cuts[:-1], cuts[1:])]


def positions(pred: dict) -> torch.Tensor:
    """Predicted recorded-point positions (N,K,T,2) in the agent frame."""
    return pred["states"][..., :2]


def rmse_table(pos: torch.Tensor, future: torch.Tensor, horizons=HORIZONS) -> list[float]:
    """RMSE [m] at each horizon step over rows; pos (N,T,2) or (N,K,T,2) (K averaged first)."""
    if pos.dim() == 4:
        pos = pos.mean(1)
    err2 = ((pos - future) ** 2).sum(-1)
    return [float(err2[:, h - 1].mean().sqrt()) for h in horizons]


# ----------------------------------------------------------------------------- multi-agent

def pair_index(cond: dict) -> dict:
    """Joint-sampling indices for rows of ``build_inputs(rows='all')`` sorted by scene: per row and
    neighbour slot, the row holding that neighbour (-1: none) and the rigid transform from the
    neighbour's agent frame into this row's (rotation angle, translation)."""
    scene, agent, nb = cond["scene"], cond["agent"], cond["nbr_agent"]
    if len(scene) > 1 and bool((scene[1:] < scene[:-1]).any()):
        raise DataError("multi-agent rows must be sorted by scene")
    key = {(int(s), int(a)): i for i, (s, a) in enumerate(zip(scene.tolist(), agent.tolist()))}
    row = torch.tensor([[key.get((int(s), int(b)), -1) if b >= 0 else -1 for b in bs.tolist()]
                        for s, bs in zip(scene.tolist(), nb)], dtype=torch.int64).view(nb.shape)
    o = cond["origin"].double()
    ob = o[row.clamp_min(0)]                                       # (N,M,3)
    dpsi = ob[..., 2] - o[:, None, 2]
    d = ob[..., :2] - o[:, None, :2]
    c, s = o[:, None, 2].cos(), o[:, None, 2].sin()
    t = torch.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]], -1)
    return {"nbr_row": row, "rel_angle": dpsi.float(), "rel_shift": t.float()}


class JointEnergy:
    """Energy of all agents' controls of every scene at once, for joint Langevin.

    ``cond`` holds one row per agent (``build_inputs(rows='all')``) plus :func:`pair_index`. Row
    a's neighbour slot holding agent b of the same scene is filled, at every evaluation, with b's
    *current* rolled-out trajectory (moved into a's frame) instead of its constant-velocity
    extrapolation, and every such pair pays ``weight`` times an overlap penalty (three discs per
    vehicle, :func:`overlap_penalty`) plus a same-lane gap-keeping penalty that preserves the
    pair's initial order (:func:`order_penalty`). ``__call__(z (N,T,2), cond) -> (N,)``: each row's own energy plus half of its pair
    terms, so the sum over a scene's rows is the scene's joint energy; the gradient of that sum
    (what Langevin uses) couples the agents.
    """

    def __init__(self, model: IOCEnergy, weight: float = 10.0):
        self.model, self.weight = model, weight

    def __call__(self, z: torch.Tensor, cond: dict) -> torch.Tensor:
        model = self.model
        zc = z
        if model.grad_clip is not None and z.requires_grad:
            zc = _ClipInputGrad.apply(z, model.grad_clip)
        states, u = model.rollout(zc, cond)
        p, psi, v = states[..., :2], states[..., 3], states[..., 2]
        head = torch.stack([psi.cos(), psi.sin()], -1)
        centre = p - cond["ref"][:, None, None] * head                 # (N,T,2) own frame
        row = cond["nbr_row"]
        live = row >= 0
        r = row.clamp_min(0)
        ang = cond["rel_angle"][..., None]                              # (N,M,1)
        ca, sa = ang.cos(), ang.sin()

        def move(x, shift=True):                                       # rows' (N,T,2) -> (N,M,T,2)
            xb = x[r]
            out = torch.stack([ca * xb[..., 0] - sa * xb[..., 1], sa * xb[..., 0] + ca * xb[..., 1]], -1)
            return out + cond["rel_shift"][:, :, None] if shift else out

        lm = live[..., None, None]
        c2 = dict(cond)
        c2["nbr_pos"] = torch.where(lm, move(centre), cond["nbr_pos"])
        c2["nbr_vel"] = torch.where(lm, move(v[..., None] * head, shift=False), cond["nbr_vel"])
        nominal = cond["nominal"] if "nominal" in cond else model.nominal(cond).detach()
        energy = model.cost(states, u, c2, nominal)
        if model.sigma_ref is not None:
            energy = energy + z.pow(2).flatten(1).sum(1) / (2 * model.sigma_ref ** 2)
        if self.weight:
            nb_head = psi[r] + cond["rel_angle"][..., None]              # (N,M,T)
            pair = overlap_penalty(centre, psi, cond["size"], c2["nbr_pos"], nb_head,
                                   cond["nbr_size"], live)
            pair = pair + order_penalty(centre, psi, cond["size"], c2["nbr_pos"], cond["nbr_size"],
                                        live, torch.sign(cond["rel_shift"][..., 0]))
            energy = energy + 0.5 * self.weight * pair
        return energy


def order_penalty(centre, heading, size, nbr_centre, nbr_size, live, order, margin: float = 2.0):
    """Same-lane gap keeping between each row's vehicle and its live neighbours, (N,).

    ``order`` (N,M) = +1 where the neighbour started ahead, -1 behind. Along the row's heading,
    the bumper gap in that order is ``order * lon - (L_a + L_b) / 2``; each step pays
    ``softplus(margin - gap)^2`` times a soft same-lane weight. Unlike a symmetric overlap
    penalty, its gradient always restores the initial order (the follower back, the leader on),
    even from trajectories that pass through each other.
    """
    c, s = heading.cos()[:, None], heading.sin()[:, None]                    # (N,1,T)
    rel = nbr_centre - centre[:, None]                                        # (N,M,T,2)
    lon = rel[..., 0] * c + rel[..., 1] * s
    lat = -rel[..., 0] * s + rel[..., 1] * c
    half = 0.5 * (size[:, None, 0] + nbr_size[..., 0])[..., None]
    width = 0.5 * (size[:, None, 1] + nbr_size[..., 1])[..., None]
    gap = order[..., None] * lon - half
    same_lane = torch.sigmoid((width + 0.3 - torch.sqrt(lat * lat + 1e-6)) / 0.3)
    pen = same_lane * torch.nn.functional.softplus(margin - gap, beta=2.0) ** 2
    return (pen.sum(-1) * live.to(pen.dtype)).sum(1)


def predict_joint(model: IOCEnergy, cond: dict, cfg: PredictConfig) -> dict[str, torch.Tensor]:
    """:func:`predict` with the joint multi-agent energy (rows of ``build_inputs(rows='all')``)."""
    c = dict(cond)
    c.update(pair_index(cond))
    return predict(model, c, cfg, energy_fn=JointEnergy(model, cfg.interaction_weight))


def _discs(centre, heading, size, n: int = 3):
    """Disc centres (..., T, n, 2) and radii (...) covering vehicle rectangles.

    centre (..., T, 2), heading (..., T), size (..., 2) = length, width."""
    length, width = size[..., 0], size[..., 1]
    step = (length - width).clamp_min(0.0) / (n - 1)                      # (...)
    k = torch.arange(n, dtype=centre.dtype, device=centre.device) - (n - 1) / 2
    along = (k * step[..., None])[..., None, :, None]                     # (...,1,n,1)
    d = torch.stack([heading.cos(), heading.sin()], -1)[..., None, :]    # (...,T,1,2)
    pts = centre[..., None, :] + along * d
    radius = torch.sqrt((width / 2) ** 2 + (step / 2) ** 2)
    return pts, radius


def overlap_penalty(centre, heading, size, nbr_centre, nbr_heading, nbr_size, live):
    """sum_t sum_disc-pairs softplus(overlap)^2 between each row's vehicle and its live neighbours.

    centre (N,T,2), heading (N,T), size (N,2); nbr_centre (N,M,T,2), nbr_heading (N,M,T),
    nbr_size (N,M,2), live (N,M) bool -> (N,)."""
    pa, ra = _discs(centre, heading, size)                         # (N,T,n,2), (N,)
    pb, rb = _discs(nbr_centre, nbr_heading, nbr_size)             # (N,M,T,n,2), (N,M)
    diff = pa[:, None, :, :, None, :] - pb[:, :, :, None, :, :]     # (N,M,T,n,n,2)
    d = torch.sqrt((diff * diff).sum(-1) + 1e-6)
    reach = (ra[:, None] + rb)[..., None, None, None]
    over = torch.nn.functional.softplus(reach - d, beta=8.0) ** 2
    return (over.sum((2, 3, 4)) * live.to(over.dtype)).sum(1)


# ----------------------------------------------------------------------------- training

@dataclass
class ValidationState:
    best: float = math.inf
    best_step: int = -1
    history: list = field(default_factory=list)


def selection_config(pcfg: PredictConfig) -> PredictConfig:
    """The deterministic predictor models are selected on: the minimum-cost trajectory."""
    return PredictConfig(**{**pcfg.__dict__, "mode": "adam", "samples": 1})


def validation_callback(model: IOCEnergy, cond_val: dict, future_val: torch.Tensor, run_dir: Path,
                        every: int, pcfg: PredictConfig, full_config: dict | None = None):
    """Callback for the Trainer: at step 0 (call it once before training) and every ``every``
    steps, the RMSE of the minimum-cost prediction on the validation rows; the best model (mean
    RMSE over 1-4 s) goes to ``run_dir/model.pt``."""
    state = ValidationState()
    det = selection_config(pcfg)

    def cb(trainer, step, metrics):
        if step % every and (trainer is None or step != trainer.cfg.steps):
            return
        pred = predict(model, cond_val, det)
        table = rmse_table(positions(pred)[:, 0], future_val)
        score = sum(table) / len(table)
        state.history.append({"step": step, "rmse": table})
        metrics.update({f"val_rmse_{i + 1}s": v for i, v in enumerate(table)})
        if score < state.best and all(math.isfinite(v) for v in table):
            state.best, state.best_step = score, step
            save_model(model, run_dir / MODEL_FILE, full_config, extra={"val_rmse": table, "step": step})
        model.train()

    cb.state = state
    return cb


def save_model(model: IOCEnergy, path: Path, config: dict | None, extra: dict | None = None) -> Path:
    """The model's weights and buffers with the config that rebuilds it (safe to load)."""
    blob = {"format": 1, "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "config": config or {}, "extra": extra or {},
            "history": int(model.cost.neural.net[0].in_features - len(CTX_NAMES)) // 2,
            "steps": int(model.cost.steps)}
    return save_tensors(blob, path)


def load_model(path: str | Path, model_cfg: ModelConfig | None = None) -> tuple[IOCEnergy, dict]:
    """Rebuild a saved model (weights only). Returns (model, the saved blob)."""
    from ebmcore.config import from_dict

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no saved model (train first)")
    blob = load_tensors(path)
    if model_cfg is None:
        model_cfg = from_dict(ModelConfig, blob["config"].get("model", {}))
    model = build_model(model_cfg, int(blob["history"]), int(blob["steps"]))
    model.load_state_dict(blob["state"])
    model.eval()
    return model, blob


def train(model: IOCEnergy, data: dict, tcfg: TrainConfig, run_dir: str | Path, *, val=None,
          full_config=None, resume: bool = True, eval_every: int = 50,
          pcfg: PredictConfig | None = None) -> dict:
    """Stage 2: analysis by synthesis on ``data`` (``{"x": z_obs, **cond}``) with the engine's
    Trainer (Langevin on the controls, BPTT through the rollout).

    ``val = (cond_val, future_val)`` turns on model selection on validation RMSE (model.pt holds
    the best, step 0 included); without it model.pt is the last state. ``full_config`` (a
    dataclass) is saved with the run and in model.pt. Returns a summary dict.
    """
    from ebmcore.config import to_dict

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    pcfg = pcfg or PredictConfig()
    cfg_dict = to_dict(full_config) if full_config is not None else {}
    callbacks = []
    trainer = Trainer(model, data, tcfg, run_dir, resume=resume, callbacks=callbacks,
                      full_config=full_config)
    if val is not None:
        cb = validation_callback(model, val[0], val[1], run_dir, eval_every, pcfg, cfg_dict)
        callbacks.append(cb)
        trainer.callbacks.append(cb)
        if trainer.step == 0:
            cb(None, 0, {})
    start = time.time()
    last = trainer.fit()
    elapsed = time.time() - start
    summary = {"last": last, "elapsed_s": elapsed, "steps": trainer.step}
    if val is not None:
        summary.update(best_val=cb.state.best, best_step=cb.state.best_step, val_history=cb.state.history)
        if cb.state.best_step < 0:
            save_model(model, run_dir / MODEL_FILE, cfg_dict)
    else:
        save_model(model, run_dir / MODEL_FILE, cfg_dict)
    return summary
