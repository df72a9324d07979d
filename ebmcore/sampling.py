"""Gradient-based MCMC on an energy: Langevin dynamics and Hamiltonian Monte Carlo.

Both samplers are plain functions of ``(energy_fn, x0, steps, step_size, ...)``
with ``energy_fn(x) -> (B,)``. They work for any tensor shape ``(B, ...)``: a voxel
grid, a point set, or a control sequence that ``energy_fn`` rolls out through a
differentiable vehicle model (then back-propagation through time falls out of
autograd). Hooks shared by both:

- ``mask`` / ``observed``: entries where ``mask`` is True are reset to ``observed``
  after every step (recovery of corrupted data);
- ``project``: a function applied after every step (e.g. the block-average
  projection of super-resolution, :func:`block_average_projection`);
- ``clamp``: ``(low, high)`` bounds applied after every step;
- ``callback``: called after every step with a dict (``step``, ``x``, ``energy``,
  ``grad_norm`` and, for HMC, ``accept_rate``) for diagnostics and progress.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from .errors import ConfigError

EnergyFn = Callable[[torch.Tensor], torch.Tensor]
NoiseSchedule = Callable[[int, int], float]


def noise_schedule(kind: str | float | NoiseSchedule) -> NoiseSchedule:
    """Turn a schedule name into ``scale(step, steps) -> float`` multiplying the Langevin noise.

    ``"constant"`` (1), ``"off"`` or ``"none"`` (0: gradient descent on the energy), ``"annealed"``
    (linear from 1 at the first step to 0 at the last), a number (that constant),
    or a callable passed through.
    """
    if callable(kind):
        return kind
    if isinstance(kind, (int, float)):
        value = float(kind)
        return lambda step, steps: value
    if kind == "constant":
        return lambda step, steps: 1.0
    if kind in ("off", "none"):
        return lambda step, steps: 0.0
    if kind == "annealed":
        return lambda step, steps: 1.0 - step / max(steps - 1, 1)
    raise ValueError(f"unknown noise schedule {kind!r}; use constant, off/none, annealed, a number or a callable")


def scaled_schedule(kind: str | float | NoiseSchedule, scale: float = 1.0) -> NoiseSchedule:
    """The schedule ``kind`` with every value multiplied by ``scale`` (a sampling temperature knob)."""
    base = noise_schedule(kind)
    return base if scale == 1.0 else (lambda step, steps: scale * base(step, steps))


def energy_and_grad(energy_fn: EnergyFn, x: torch.Tensor, create_graph: bool = False):
    """Energies (B,) and their gradient with respect to ``x`` (same shape as ``x``).

    With ``create_graph=False`` the gradient is taken on a detached copy, so no graph
    reaches the caller; with True the graph is kept for differentiating through it.
    """
    with torch.enable_grad():
        if not (create_graph and x.requires_grad):
            x = x.detach().requires_grad_(True)
        energy = energy_fn(x)
        (grad,) = torch.autograd.grad(energy.sum(), x, create_graph=create_graph)
    return energy, grad


def _apply_hooks(x, mask, observed, project, clamp):
    if project is not None:
        x = project(x)
    if clamp is not None:
        x = x.clamp(clamp[0], clamp[1])
    if mask is not None:
        x = torch.where(mask, observed, x)
    return x


def _on_generator_device(x: torch.Tensor, generator: torch.Generator | None) -> torch.device:
    """Draw where the generator lives (a CPU generator may drive a CUDA chain)."""
    return x.device if generator is None else generator.device


def _noise_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    dev = _on_generator_device(x, generator)
    return torch.randn(x.shape, dtype=x.dtype, device=dev, generator=generator).to(x.device, non_blocking=True)


def langevin(
    energy_fn: EnergyFn,
    x0: torch.Tensor,
    steps: int,
    step_size: float,
    *,
    noise: str | float | NoiseSchedule = "constant",
    mask: torch.Tensor | None = None,
    observed: torch.Tensor | None = None,
    project: Callable[[torch.Tensor], torch.Tensor] | None = None,
    clamp: Sequence[float] | None = None,
    differentiable: bool = False,
    callback: Callable[[dict], None] | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Run ``steps`` Langevin updates from ``x0`` (B, ...) and return the last state.

    Update with step size ``delta`` and noise scale ``s_t`` from the schedule:
    ``x <- x - delta^2 / 2 * grad E(x) + delta * s_t * N(0, I)``.

    ``differentiable=True`` keeps every step in the autograd graph (``create_graph``),
    so a loss on the result can be differentiated with respect to ``x0`` or the
    energy's parameters (used to optimise a short-run chain's initial noise). Off,
    the chain runs detached and in place, and the result carries no graph.
    """
    if steps < 0 or not step_size >= 0:
        raise ValueError(f"langevin needs steps >= 0 and step_size >= 0, got {steps}, {step_size}")
    if steps > 0 and step_size == 0:
        raise ConfigError(f"sampler step_size is 0 with {steps} steps: the chains would never move; "
                          "use a step size > 0 (or 0 steps)")
    schedule = noise_schedule(noise)
    if mask is not None:
        mask = mask.bool()
        observed = x0.detach() if observed is None else observed
    drift = 0.5 * step_size**2
    x = x0 if differentiable else x0.detach().clone()
    for step in range(steps):
        energy, grad = energy_and_grad(energy_fn, x, create_graph=differentiable)
        scale = schedule(step, steps) * step_size
        if differentiable:
            x = x - drift * grad
            if scale:
                x = x + scale * _noise_like(x, generator)
        else:
            x.add_(grad, alpha=-drift)
            if scale:
                x.add_(_noise_like(x, generator), alpha=scale)
        if mask is not None or project is not None or clamp is not None:
            x = _apply_hooks(x, mask, observed, project, clamp)
        if callback is not None:
            callback({"step": step, "x": x, "energy": energy.detach(), "grad_norm": grad.detach().flatten(1).norm(dim=1)})
    return x


def hmc(
    energy_fn: EnergyFn,
    x0: torch.Tensor,
    steps: int,
    step_size: float,
    *,
    leapfrog_steps: int = 10,
    metropolis: bool = True,
    mask: torch.Tensor | None = None,
    observed: torch.Tensor | None = None,
    project: Callable[[torch.Tensor], torch.Tensor] | None = None,
    clamp: Sequence[float] | None = None,
    callback: Callable[[dict], None] | None = None,
    generator: torch.Generator | None = None,
    return_accept: bool = False,
):
    """Hamiltonian Monte Carlo with unit mass, ``steps`` trajectories of ``leapfrog_steps``.

    With ``metropolis=True`` each example's proposal is accepted with probability
    ``min(1, exp(H_old - H_new))``, ``H = E(x) + |p|^2 / 2``, which makes the chain exact
    for ``exp(-E)``. Observed entries (``mask``) get zero momentum and stay fixed.
    ``project``/``clamp`` run after the accept step; they change the stationary
    distribution, as they do for Langevin.

    Returns the last state (B, ...), and with ``return_accept`` also the mean
    acceptance rate over all steps and examples.
    """
    if steps < 0 or leapfrog_steps < 1 or not step_size > 0:
        raise ValueError("hmc needs steps >= 0, leapfrog_steps >= 1 and step_size > 0")
    if mask is not None:
        mask = mask.bool()
        observed = x0.detach() if observed is None else observed
    free = None if mask is None else (~mask).to(x0.dtype)
    x = x0.detach().clone()
    energy, grad = energy_and_grad(energy_fn, x)
    accepted = 0.0
    for step in range(steps):
        p = _noise_like(x, generator)
        if free is not None:
            p = p * free
            grad = grad * free
        kinetic0 = 0.5 * p.pow(2).flatten(1).sum(1)
        xn, pn = x, p - 0.5 * step_size * grad
        for i in range(leapfrog_steps):
            xn = xn + step_size * pn
            en, gn = energy_and_grad(energy_fn, xn)
            if free is not None:
                gn = gn * free
            pn = pn - (step_size if i < leapfrog_steps - 1 else 0.5 * step_size) * gn
        if metropolis:
            log_ratio = (energy + kinetic0) - (en + 0.5 * pn.pow(2).flatten(1).sum(1))
            log_u = torch.rand(log_ratio.shape, dtype=x.dtype, device=_on_generator_device(x, generator),
                               generator=generator).log().to(x.device)
            accept = torch.nan_to_num(log_ratio, nan=-math.inf) >= log_u
        else:
            accept = torch.ones_like(energy, dtype=torch.bool)
        shape = (-1,) + (1,) * (x.dim() - 1)
        x = torch.where(accept.view(shape), xn, x)
        energy = torch.where(accept, en, energy)
        grad = torch.where(accept.view(shape), gn, grad)
        accepted += accept.float().mean().item()
        if mask is not None or project is not None or clamp is not None:
            x = _apply_hooks(x, mask, observed, project, clamp)
            energy, grad = energy_and_grad(energy_fn, x)
        if callback is not None:
            callback({"step": step, "x": x, "energy": energy.detach(), "grad_norm": grad.flatten(1).norm(dim=1),
                      "accept_rate": accepted / (step + 1)})
    rate = accepted / max(steps, 1)
    return (x, rate) if return_accept else x


def block_average_projection(low: torch.Tensor, factor: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Projection for super-resolution: ``y <- y - up(avgpool(y) - low)``.

    ``low`` is (B, C, *S) with 1-3 spatial dims; the returned function maps a
    high-resolution ``y`` (B, C, *(S * factor)) to the nearest grid whose
    ``factor``-block averages equal ``low``.
    """
    spatial = low.dim() - 2
    pool = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[spatial]

    def project(y: torch.Tensor) -> torch.Tensor:
        residual = pool(y, factor) - low
        return y - F.interpolate(residual, scale_factor=factor, mode="nearest")

    return project


def sample(energy_fn: EnergyFn, x0: torch.Tensor, method: str = "langevin", **kwargs) -> torch.Tensor:
    """Dispatch to :func:`langevin` or :func:`hmc` by name (what configs name)."""
    if method == "langevin":
        return langevin(energy_fn, x0, **kwargs)
    if method == "hmc":
        kwargs.pop("differentiable", None)
        kwargs.pop("noise", None)
        return hmc(energy_fn, x0, **kwargs)
    raise ValueError(f"unknown sampler {method!r}; use langevin or hmc")
