"""The anytime search over control sequences: Adam or gradient descent (minimum cost), or
Langevin (sampling).

Updates: ``'adam'`` is :class:`torch.optim.Adam` at rate ``lr`` (the training code's
minimum-cost search); ``'langevin'`` is the engine's :func:`ebmcore.sampling.langevin` rule with
step size delta,

    z <- z - delta^2 / 2 * grad E(z) + delta * s * N(0, I),   s = 1 (``noise``) or 0 (descent).

The loop evaluates E and its gradient at z_0 .. z_n (n <= ``steps``; the last evaluation needs
no gradient) and stops early when the next evaluation would pass the deadline (it times each
evaluation and assumes the next one takes as long as the slowest so far). Without noise it keeps,
per chain, the lowest-energy z it evaluated, so stopping early returns the best trajectory found
by then; with noise it returns the chains' last states. With no deadline the result depends only
on z_0 and the generator's seed.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch


@dataclass
class SearchResult:
    z: torch.Tensor            # (B, T, 2) the returned chains
    energy: torch.Tensor       # (B,) their energies
    cost: torch.Tensor         # (B,) their costs
    iterations: int            # energy evaluations (the last one without a gradient)
    deadline_hit: bool
    states: torch.Tensor | None = None     # (B, T, 6) rolled out, when the last evaluation had them
    controls: torch.Tensor | None = None   # (B, T, 2)


def search(energy_and_grad, z0: torch.Tensor, *, steps: int, step_size: float = 0.1,
           noise: bool = False, generator: torch.Generator | None = None,
           deadline: float | None = None, evaluate=None, optimiser: str = "langevin",
           lr: float = 0.05) -> SearchResult:
    """Run the search from z0 (B, T, 2). ``energy_and_grad(z) -> (energy, cost, grad)``;
    ``evaluate(z) -> (energy, cost, states, controls)`` (optional) scores the final z without a
    gradient; ``deadline``: a :func:`time.perf_counter` time, or None; ``optimiser``:
    ``'langevin'`` (``step_size``, ``noise``) or ``'adam'`` (``lr``; no noise)."""
    if optimiser not in ("langevin", "adam"):
        raise ValueError(f"optimiser must be 'langevin' or 'adam', got {optimiser!r}")
    drift = 0.5 * step_size ** 2
    z = z0.detach().clone()
    adam = None
    if optimiser == "adam":
        noise = False
        leaf = z.clone().requires_grad_(True)
        adam = torch.optim.Adam([leaf], lr=lr)
    best_z = best_e = best_c = None
    slowest, hit, done = 0.0, False, 0
    states = controls = None
    for i in range(steps + 1):
        t0 = time.perf_counter()
        final = i == steps
        if final and evaluate is not None:
            e, c, states, controls = evaluate(z)
            g = None
        else:
            e, c, g = energy_and_grad(z)
        done += 1
        if noise or best_e is None:
            best_z, best_e, best_c = z, e, c
            last_is_best = torch.ones_like(e, dtype=torch.bool)
        else:
            last_is_best = e < best_e
            best_z = torch.where(last_is_best[:, None, None], z, best_z)
            best_e, best_c = torch.where(last_is_best, e, best_e), torch.where(last_is_best, c, best_c)
        if final:
            break
        now = time.perf_counter()
        slowest = max(slowest, now - t0)
        if deadline is not None and now + slowest > deadline:
            hit = True
            break
        if adam is not None:
            leaf.grad = g
            adam.step()
            z = leaf.detach().clone()
            continue
        z = z - drift * g
        if noise:
            z = z + step_size * torch.randn(z.shape, dtype=z.dtype, generator=generator)
    if states is not None and not bool(last_is_best.all()):
        states = controls = None            # the best is an earlier iterate: caller re-evaluates
    return SearchResult(best_z, best_e, best_c, done, hit, states, controls)
