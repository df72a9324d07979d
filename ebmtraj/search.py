"""The search over control sequences z (B, T, 2): where it starts and how it moves.

* :func:`reference_start`: the closed-form start. Around the nominal, rolled-out positions are
  linear in z (the longitudinal offset in the acceleration channel, independently of speed;
  the lateral one in the steering channel, in proportion to speed), so the controls that best
  follow the neural term's references (weighted by its precisions, with the reference prior)
  solve one T x T linear system per channel and row (:func:`solve_start`).
* :func:`anytime_search`: Adam (the minimum-cost search), gradient descent or Langevin
  (sampling) from z_0, evaluating E and its gradient at z_0 .. z_n (n <= ``steps``). It stops
  early when the next evaluation would pass a deadline (timing each evaluation and assuming the
  next takes as long as the slowest so far). Without noise it keeps the lowest-energy iterate,
  per *group* of rows (the agents of one scene under the joint energy are kept or replaced
  together, on the sum of their energies), so a truncated search returns the best whole scene
  evaluated; with noise it returns the last states.

:func:`solve_start`, :func:`adam_update` and :func:`clip_rows` are TorchScript-compatible; the
export (:mod:`ebmtraj.planner.export`) scripts them.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from .cost import IOCEnergy

V_REF = 20.0   # m/s: the straight drive the start's Jacobians are taken around


def clip_rows(g: torch.Tensor, max_norm: float) -> torch.Tensor:
    """Scale each example's gradient g (B, ...) to norm at most ``max_norm`` (<= 0: no clip)."""
    if max_norm <= 0:
        return g
    norm = torch.linalg.vector_norm(g.flatten(1), 2.0, [1]).clamp_min(1e-12)
    scale = (max_norm / norm).clamp(max=1.0)
    return g * scale.view([-1] + [1] * (g.dim() - 1))


def adam_update(z: torch.Tensor, g: torch.Tensor, m: torch.Tensor, v: torch.Tensor, t: int,
                lr: float):
    """One step of :class:`torch.optim.Adam` (betas 0.9 / 0.999, eps 1e-8) at step ``t`` >= 1.
    Returns (z, m, v)."""
    m = torch.lerp(m, g, 0.1)
    v = v * 0.999 + 0.001 * g * g
    denom = v.sqrt() / math.sqrt(1.0 - 0.999 ** t) + 1e-8
    return z - (lr / (1.0 - 0.9 ** t)) * m / denom, m, v


def solve_start(jac_a: torch.Tensor, jac_s: torch.Tensor, speed: torch.Tensor, ref: torch.Tensor,
                log_sigma: torch.Tensor, lam: float, v_ref: float) -> torch.Tensor:
    """Closed-form z (B, T, 2): per row and channel, ``min |W^(1/2) (J z - ref)|^2 + lam |z|^2``.

    jac_a, jac_s (T, T): d longitudinal / d z_acc and d lateral / d z_steer of a straight drive at
    ``v_ref`` [m/s]; speed (B,) [m/s] scales the lateral one; ref (B, T, 2) [m] the neural term's
    reference offsets, log_sigma (B or 1, T, 2) its log scales (W = exp(-2 log_sigma))."""
    B, T = ref.shape[0], ref.shape[1]
    prec = torch.exp(-2.0 * log_sigma.double()).expand(B, T, 2).transpose(1, 2)      # (B, 2, T)
    scale = speed.double().clamp_min(2.0) / v_ref
    jb = torch.stack([jac_a.unsqueeze(0).expand(B, T, T), jac_s.unsqueeze(0) * scale.view(-1, 1, 1)], 1)
    jtw = jb.transpose(2, 3) * prec.unsqueeze(2)                                     # (B, 2, T, T)
    a = jtw @ jb + (lam + 1e-6) * torch.eye(T, dtype=torch.float64)
    b = jtw @ ref.double().transpose(1, 2).unsqueeze(-1)                              # (B, 2, T, 1)
    return torch.linalg.solve(a, b)[..., 0].transpose(1, 2).to(ref.dtype)


def straight_jacobians(model: IOCEnergy, v_ref: float = V_REF) -> tuple[torch.Tensor, torch.Tensor]:
    """(d lon / d z_acc, d lat / d z_steer), each (T, T) float64, of a straight drive at ``v_ref``
    from the nominal. Cached on the model, keyed by its control basis."""
    from .cost import ControlParam, rollout

    T = model.cost.steps
    mix = model.param.mix
    key = (v_ref, mix.data_ptr(), mix._version, model.cost.dt, model.wheelbase)
    cache = model.__dict__.setdefault("_jacobian_cache", {})
    if key not in cache:
        x_ref = torch.zeros(1, 6, dtype=torch.float64)
        x_ref[0, 2] = v_ref
        param = ControlParam(tuple(model.param.scale.tolist()), model.param.basis, T).double()
        param.mix.copy_(mix.double())
        param.refresh()

        def pos(z):
            return rollout(x_ref, param.controls(z.view(1, T, 2), x_ref), model.cost.dt,
                           model.wheelbase)[0, :, :2]

        jac = torch.autograd.functional.jacobian(pos, torch.zeros(1, T, 2, dtype=torch.float64))
        jac = jac.view(T, 2, T, 2)
        cache.clear()
        cache[key] = (jac[:, 0, :, 0].clone(), jac[:, 1, :, 1].clone())
    return cache[key]


def reference_start(model: IOCEnergy, cond: dict, enc=None, v_ref: float = V_REF) -> torch.Tensor:
    """The closed-form start z (B, T, 2) for the rows of ``cond`` (``enc``: the neural term's
    (reference, log-scale) for them, computed here when None)."""
    jac_a, jac_s = straight_jacobians(model, v_ref)
    with torch.no_grad():
        ref, log_sigma = model.cost.neural.encode(cond) if enc is None else enc
        lam = 0.0 if model.sigma_ref is None else 1.0 / model.sigma_ref ** 2
        return solve_start(jac_a, jac_s, cond["x0"][:, 2], ref, log_sigma, lam, v_ref).to(cond["x0"].dtype)


def generator_start(model: IOCEnergy, cond: dict, enc=None, latent: torch.Tensor | None = None) -> torch.Tensor:
    """The cooperative generator's proposal z (B, T, 2): the closed-form start plus the model's
    :class:`ebmtraj.cost.StartNet` correction for ``latent`` (B, latent) (None: zeros, the
    deterministic start); the closed-form start alone on a model without one. Differentiable in
    the generator's weights (MCMC teaching), not in the energy's."""
    z = reference_start(model, cond, enc)
    if model.start_net is None:
        return z
    return z + model.start_net(cond, model.cost.neural.in_scale, latent).to(z.dtype)


@dataclass
class SearchResult:
    z: torch.Tensor            # (B, T, 2) the returned chains
    energy: torch.Tensor       # (B,) their energies
    iterations: int            # energy evaluations
    deadline_hit: bool
    seconds: float = 0.0       # spent in the evaluations


def group_sum(e: torch.Tensor, groups: torch.Tensor | None) -> torch.Tensor:
    """Each row's group total (B,) of the per-row energies e (B,); groups (B,) int64 in [0, G)."""
    if groups is None:
        return e
    return torch.zeros(int(groups.max()) + 1, dtype=e.dtype).index_add_(0, groups, e)[groups]


def anytime_search(energy_and_grad, z0: torch.Tensor, *, steps: int, optimiser: str = "adam",
                   lr: float = 0.05, step_size: float = 0.1, noise: bool = False,
                   generator: torch.Generator | None = None, deadline: float | None = None,
                   groups: torch.Tensor | None = None, expected: float = 0.0,
                   energy_fn=None) -> SearchResult:
    """Search from z0 (B, T, 2) (see module docstring). ``energy_and_grad(z) -> (energy (B,),
    grad (B, T, 2))``; ``energy_fn(z) -> energy (B,)``: the same energy without its gradient,
    used for the last evaluation, whose gradient no step uses (None: ``energy_and_grad``);
    ``optimiser``: 'adam' (rate ``lr``) or 'langevin' (``step_size``, with
    N(0, I) noise when ``noise``; without it, gradient descent); ``deadline``: a
    :func:`time.perf_counter` time or None; ``groups`` (B,) int64: rows kept together;
    ``expected``: seconds one evaluation is expected to take (the first one too: with too little
    time left, z0 comes back unevaluated, energy +inf, 0 iterations)."""
    if optimiser not in ("adam", "langevin"):
        raise ValueError(f"optimiser must be 'adam' or 'langevin', got {optimiser!r}")
    noise = noise and optimiser == "langevin"
    drift = 0.5 * step_size ** 2
    z = z0.detach().clone()
    m, v = torch.zeros_like(z), torch.zeros_like(z)
    best_z, best_e = z, torch.full(z.shape[:1], math.inf, dtype=z.dtype)
    slowest, hit, done, spent = expected, False, 0, 0.0
    if deadline is not None and time.perf_counter() + expected > deadline:
        return SearchResult(best_z, best_e, 0, True)
    for i in range(steps + 1):
        t0 = time.perf_counter()
        if i == steps and energy_fn is not None:
            e, g = energy_fn(z), None
        else:
            e, g = energy_and_grad(z)
        done += 1
        if noise:
            best_z, best_e = z, e
        else:
            better = group_sum(e, groups) < group_sum(best_e, groups)
            best_z = torch.where(better[:, None, None], z, best_z)
            best_e = torch.where(better, e, best_e)
        if i == steps:
            break
        now = time.perf_counter()
        spent += now - t0
        slowest = max(slowest, now - t0)
        if deadline is not None and now + slowest > deadline:
            hit = True
            break
        if optimiser == "adam":
            z, m, v = adam_update(z, g, m, v, i + 1, lr)
        else:
            z = z - drift * g
            if noise:
                z = z + step_size * torch.randn(z.shape, dtype=z.dtype, generator=generator)
    return SearchResult(best_z, best_e, done, hit, spent)
