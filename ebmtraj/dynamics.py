"""A batched, differentiable kinematic bicycle model and its inverse (controls from a track).

State (..., 6): x, y [m], speed v [m/s], heading theta [rad], acceleration a [m/s^2],
steering delta [rad] (front wheel angle). Control (..., 2) per step of ``dt`` seconds: the change
of acceleration and the change of steering over that step. Any leading dims batch (scenes,
agents, samples).

Continuous model inside a step (the reference point is the one tracked; the kinematic
single-track model of CommonRoad uses the rear axle):

    x' = v cos(theta),  y' = v sin(theta),  theta' = v tan(delta) / wheelbase,
    v' = a,  with a and delta moving linearly across the step (constant jerk and
    steering rate: a changes by u_a, delta by u_delta over the step).

Integration (vectorised over time as products with constant matrices over the steps, see
:func:`integration_matrices`; no Python loop over steps): speed is integrated exactly
(trapezoid of a linear a), heading and position by Simpson's rule with the mid-step values in
closed form. The local error is O(dt^4)-small for smooth inputs; the test
against CommonRoad's ``vehicle_dynamics_ks`` integrated by an adaptive RK45 states the
agreement.

Bounds, applied differentiably by :func:`softclip` -- the identity inside ``[lo + margin, hi -
margin]`` and a tanh saturation toward the bound within the margin (C1; gradients fade only
asymptotically, where a hard clamp would cut them at the bound): acceleration in [accel_min,
accel_max], steering in [-steer_max, steer_max], speed in [0, speed_max]. They apply to the
accumulated value: the latent acceleration is ``a_0' + cumsum(u_a)`` and the state's
acceleration its soft-clipped value (likewise steering, and speed from the integrated
acceleration), so a control that pushes past a bound has to be undone before the state moves
back.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

STATE_DIM, CONTROL_DIM = 6, 2
X, Y, V, THETA, A, DELTA = range(6)


@dataclass(frozen=True)
class BicycleParams:
    """Model constants (SI units)."""

    dt: float = 0.1
    wheelbase: float = 2.7
    accel_min: float = -8.0
    accel_max: float = 4.0
    accel_margin: float = 1.0
    steer_max: float = 0.5
    steer_margin: float = 0.1
    speed_max: float = 50.0
    speed_margin: float = 0.5


def softclip(z: torch.Tensor, lo, hi, margin) -> torch.Tensor:
    """Identity on [lo + margin, hi - margin], tanh-saturating to (lo, hi) beyond; C1.

    Written as ``c + margin * tanh((z - c) / margin)`` with ``c`` = z clamped to the identity
    range (``c = z`` inside, the nearer end outside; the last multiply-add as one op): five
    element-wise ops, forward and backward, for any shape. ``lo``, ``hi``, ``margin``: floats,
    or tensors broadcasting against ``z`` (one bound per channel: several bounded quantities in
    one call)."""
    return _saturate(z, lo + margin, hi - margin, margin)


def _saturate(z: torch.Tensor, inner_lo, inner_hi, margin) -> torch.Tensor:
    """:func:`softclip` from its identity range [inner_lo, inner_hi] and margin."""
    c = z.clamp(inner_lo, inner_hi)
    if torch.is_tensor(margin):
        return torch.addcmul(c, margin, torch.tanh((z - c) / margin))
    return torch.add(c, torch.tanh((z - c) / margin), alpha=margin)


def softclip_inverse(y: torch.Tensor, lo, hi, margin, eps: float = 1e-3) -> torch.Tensor:
    """The latent value whose :func:`softclip` is ``y`` (``y`` clamped inside (lo, hi)); bounds
    as in :func:`softclip`."""
    return _unsaturate(y, lo + eps * margin, hi - eps * margin, lo + margin, hi - margin, margin)


def _unsaturate(y: torch.Tensor, outer_lo, outer_hi, inner_lo, inner_hi, margin) -> torch.Tensor:
    """:func:`softclip_inverse` from the range ``y`` is clamped to first, the identity range
    and the margin."""
    y = y.clamp(outer_lo, outer_hi)
    c = y.clamp(inner_lo, inner_hi)
    return c + margin * torch.atanh((y - c) / margin)


LATENT = (V, A, DELTA)   # the state channels with soft bounds, in the order of :meth:`latent`


@dataclass(frozen=True)
class _Bounds:
    """The soft bounds of :data:`LATENT` as tensors (3,) of one dtype and device: the inverse's
    clamp range (``outer_*``), the identity range (``inner_*``) and the margins."""

    outer_lo: torch.Tensor
    outer_hi: torch.Tensor
    inner_lo: torch.Tensor
    inner_hi: torch.Tensor
    margin: torch.Tensor
    channels: torch.Tensor   # int64 (3,): the indices of :data:`LATENT`


@functools.lru_cache(maxsize=64)
def _bounds(p: BicycleParams, dtype: torch.dtype, device: torch.device, eps: float = 1e-3) -> _Bounds:
    """:class:`_Bounds` of ``p`` (computed in float64 as :func:`softclip` and
    :func:`softclip_inverse` compute them from floats)."""
    lo = (0.0, p.accel_min, -p.steer_max)
    hi = (p.speed_max, p.accel_max, p.steer_max)
    m = (p.speed_margin, p.accel_margin, p.steer_margin)
    t = lambda xs: torch.tensor(xs, dtype=dtype, device=device)
    return _Bounds(t([a + eps * c for a, c in zip(lo, m)]), t([b - eps * c for b, c in zip(hi, m)]),
                   t([a + c for a, c in zip(lo, m)]), t([b - c for b, c in zip(hi, m)]), t(m),
                   torch.tensor(LATENT, dtype=torch.int64, device=device))


@functools.lru_cache(maxsize=64)
def integration_matrices(steps: int, dt: float, dtype: torch.dtype = torch.float64,
                         device: torch.device = torch.device("cpu")) -> tuple[torch.Tensor, ...]:
    """The rollout's linear integration rules as matrices over an extended time axis of
    ``E = 2 steps + 1`` points: the grid 0..T (indices 0..T), then the mid-steps 1..T (indices
    T+1..2T; mid-step k lies between grid points k-1 and k). Returns

    * ``speed`` (T+1, 2T): acceleration on the grid [m/s^2] -> latent speed change [m/s] since
      step 0 at grid points 1..T, then at mid-steps 1..T (trapezoid of a linear acceleration;
      at a mid-step the exact half-step integral ``dt (3 a_{k-1} + a_k) / 8``);
    * ``steer`` (T+1, E): steering on the grid -> on the extended axis (the mean of the two ends
      at a mid-step);
    * ``simpson`` (E, E): rates on the extended axis -> their integral since step 0 (Simpson's
      rule over each step, ``dt / 6 (f_{k-1} + 4 f_mid + f_k)``; at a mid-step the half-step
      rule ``dt / 24 (5 f_{k-1} + 8 f_mid - f_k)``), used for the heading; its grid columns
      1..T integrate the velocity into positions.

    Cached per (steps, dt, dtype, device)."""
    T, E = steps, 2 * steps + 1
    speed = np.zeros((T + 1, 2 * T))
    steer = np.zeros((T + 1, E))
    simpson = np.zeros((E, E))
    steer[np.arange(T + 1), np.arange(T + 1)] = 1.0
    for k in range(1, T + 1):
        m = T + k                                               # mid-step k on the extended axis
        speed[:, k - 1] = (speed[:, k - 2] if k > 1 else 0.0)
        speed[[k - 1, k], k - 1] += dt / 2
        speed[:, T + k - 1] = (speed[:, k - 2] if k > 1 else 0.0)
        speed[[k - 1, k], T + k - 1] += (3 * dt / 8, dt / 8)
        steer[[k - 1, k], m] = 0.5
        simpson[:, k] = simpson[:, k - 1]
        simpson[[k - 1, m, k], k] += (dt / 6, 4 * dt / 6, dt / 6)
        simpson[:, m] = simpson[:, k - 1]
        simpson[[k - 1, m, k], m] += (5 * dt / 24, 8 * dt / 24, -dt / 24)
    return tuple(torch.tensor(x, dtype=dtype, device=device) for x in (speed, steer, simpson))


class KinematicBicycle:
    """The model with fixed :class:`BicycleParams`; :meth:`rollout` is the forward map."""

    def __init__(self, params: BicycleParams | None = None):
        self.p = params or BicycleParams()

    # latent <-> bounded ----------------------------------------------------------------
    def _accel(self, z):
        return softclip(z, self.p.accel_min, self.p.accel_max, self.p.accel_margin)

    def _steer(self, z):
        return softclip(z, -self.p.steer_max, self.p.steer_max, self.p.steer_margin)

    def _speed(self, z):
        return softclip(z, 0.0, self.p.speed_max, self.p.speed_margin)

    def latent_levels(self, state: torch.Tensor) -> torch.Tensor:
        """Latent (unbounded) speed, acceleration and steering (..., 3) of states (..., 6)."""
        b = _bounds(self.p, state.dtype, state.device)
        return _unsaturate(state.index_select(-1, b.channels), b.outer_lo, b.outer_hi, b.inner_lo, b.inner_hi, b.margin)

    def latent(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Latent (unbounded) speed, acceleration and steering of states (..., 6)."""
        return self.latent_levels(state).unbind(-1)

    def rollout(self, x0: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Roll controls out from an initial state.

        x0: (..., 6) state at step 0; u: (..., T, 2) controls for steps 1..T.
        Returns states (..., T, 6) at steps 1..T (x0 not included).

        The integration rules (see the module docstring) are linear maps, applied as matrix
        products over the steps (:func:`integration_matrices`); the bounds of acceleration and
        steering, and of the speed on the grid and at the mid-steps, are one soft clip each.
        """
        if x0.shape[-1] != STATE_DIM or u.shape[-1] != CONTROL_DIM:
            raise ValueError(f"rollout expects x0 (...,6) and u (...,T,2), got "
                             f"{tuple(x0.shape)} and {tuple(u.shape)}")
        if x0.shape[:-1] != u.shape[:-2]:
            raise ValueError(f"leading dims differ: x0 {tuple(x0.shape)} vs u {tuple(u.shape)}")
        T, p = u.shape[-2], self.p
        b = _bounds(p, u.dtype, u.device)
        speed_m, steer_m, simpson = integration_matrices(T, p.dt, u.dtype, u.device)
        lat0 = self.latent_levels(x0)                                               # (..., 3)
        # acceleration and steering on the grid 0..T (step 0 from x0, already inside the bounds)
        ad = _saturate(lat0[..., None, 1:] + torch.cumsum(u, dim=-2), b.inner_lo[1:], b.inner_hi[1:],
                       b.margin[1:])                                                  # (..., T, 2)
        grid = torch.cat([x0[..., None, A:DELTA + 1], ad], dim=-2)                    # (..., T+1, 2)
        # speed at grid 1..T and mid-steps 1..T, then with step 0: the extended axis (..., E)
        v_lat = lat0[..., 0:1] + grid[..., 0] @ speed_m
        v = torch.cat([x0[..., V:V + 1], softclip(v_lat, 0.0, p.speed_max, p.speed_margin)], dim=-1)
        # heading: the yaw rate v tan(delta) / wheelbase integrated (1 / wheelbase folded in)
        th = x0[..., THETA:THETA + 1] + (v * torch.tan(grid[..., 1] @ steer_m)) @ (simpson / p.wheelbase)
        vel = v.unsqueeze(-2) * torch.stack([torch.cos(th), torch.sin(th)], -2)      # (..., 2, E)
        xy = x0[..., None, X:Y + 1] + (vel @ simpson[:, 1:T + 1]).transpose(-1, -2)   # (..., T, 2)
        return torch.cat([xy, torch.stack([v, th], -1)[..., 1:T + 1, :], ad], -1)

    def controls_from_states(self, x0: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        """Closed-form controls: the steps of the latent acceleration and steering.

        x0: (..., 6); states: (..., T, 6) at steps 1..T. Returns u (..., T, 2). Rolling these
        out reproduces the states' acceleration and steering exactly; positions follow only as
        far as the states are consistent with the model (see :func:`inverse_dynamics`).
        """
        seq = torch.cat([x0.unsqueeze(-2), states], dim=-2)
        _, a_lat, d_lat = self.latent(seq)
        return torch.stack([a_lat.diff(dim=-1), d_lat.diff(dim=-1)], dim=-1)


def rollout(x0: torch.Tensor, u: torch.Tensor, params: BicycleParams | None = None
            ) -> torch.Tensor:
    """:meth:`KinematicBicycle.rollout` with ``params`` (default :class:`BicycleParams`)."""
    return KinematicBicycle(params).rollout(x0, u)


def inverse_dynamics(x0: torch.Tensor, states: torch.Tensor,
                     params: BicycleParams | None = None, *, iters: int = 50, steps: int = 4,
                     control_weight: float = 1e-3, steer_scale: float = 0.01
                     ) -> tuple[torch.Tensor, dict]:
    """Controls whose rollout from ``x0`` reproduces the observed positions of ``states``.

    x0: (..., 6) the observed state at step 0; states: (..., T, 6) observed (smoothed) states at
    steps 1..T. Starts from the closed form :meth:`KinematicBicycle.controls_from_states`, then
    refines with L-BFGS (``steps`` runs of ``iters`` iterations, strong-Wolfe line search)
    through the rollout, minimising the summed squared position error plus ``control_weight``
    times the summed squared controls. The steering control is optimised in units of
    ``steer_scale`` rad (it moves positions far more per unit than the acceleration control).

    Returns (u (..., T, 2), info): info holds the position RMSE [m] over all steps and batch
    elements of the closed form (``rmse_closed_form``) and of the result (``rmse``), and the
    result's RMSE per track (``rmse_per_track``, shape (...)). Near standstill a bicycle cannot
    follow a smoothed track's sideways jitter, so such tracks keep a larger error.
    """
    model = KinematicBicycle(params)
    x0, states = x0.detach(), states.detach()
    target = states[..., :2]
    scale = torch.tensor([1.0, steer_scale], dtype=states.dtype, device=states.device)
    with torch.no_grad():
        u0 = model.controls_from_states(x0, states)
        rmse0 = _rmse(model.rollout(x0, u0)[..., :2], target)
    z = (u0 / scale).clone().requires_grad_(True)
    opt = torch.optim.LBFGS([z], lr=1.0, max_iter=iters, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-12, tolerance_change=1e-14, history_size=50)

    def closure():
        opt.zero_grad()
        u = z * scale
        err = ((model.rollout(x0, u)[..., :2] - target) ** 2).sum()
        loss = err + control_weight * (u ** 2).sum()
        loss.backward()
        return loss

    for _ in range(steps):
        opt.step(closure)
    u = (z * scale).detach()
    with torch.no_grad():
        sq = ((model.rollout(x0, u)[..., :2] - target) ** 2).sum(-1)
    return u, {"rmse_closed_form": rmse0, "rmse": float(sq.mean().sqrt()),
               "rmse_per_track": sq.mean(-1).sqrt()}


def _rmse(pred: torch.Tensor, target: torch.Tensor) -> float:
    return float(((pred - target) ** 2).sum(-1).mean().sqrt())


def main(argv=None) -> None:
    """Measure inverse-dynamics reconstruction on prepared real tracks (prints JSON).

    ``python -m ebmtraj.dynamics --dataset us101-vehicles --split test --n 256``: for ``n``
    random target agents, x0 = the first future frame's smoothed state, targets = the next 39
    frames (3.9 s).
    """
    import argparse
    import json
    import time

    from ebmcore.paths import cache_root
    from .data.scenes import SceneDataset

    ap = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="us101-vehicles")
    ap.add_argument("--split", default="test")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on "
                                                           "a shared 2-core machine)")
    a = ap.parse_args(argv)
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    sc = SceneDataset(cache_root() / "ebmtraj" / a.dataset, a.split).tensors
    h = int(sc["history"])
    states = sc["states"][:, 0, h:].double()
    pick = torch.randperm(states.shape[0])[: a.n]
    w = states[pick]
    started = time.process_time()
    _, info = inverse_dynamics(w[:, 0], w[:, 1:], iters=a.iters, steps=a.steps)
    per = info.pop("rmse_per_track")
    info.update(n=int(w.shape[0]), cpu_s=round(time.process_time() - started, 1),
                median_per_track=float(per.median()), p95_per_track=float(per.quantile(0.95)),
                max_per_track=float(per.max()))
    print(json.dumps(info, indent=1))


if __name__ == "__main__":
    main()
