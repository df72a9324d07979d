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

Integration (vectorised over time with cumulative sums, no Python loop over steps): speed is
integrated exactly (trapezoid of a linear a), heading and position by Simpson's rule with the
mid-step values in closed form. The local error is O(dt^4)-small for smooth inputs; the test
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

from dataclasses import dataclass

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


def softclip(z: torch.Tensor, lo: float, hi: float, margin: float) -> torch.Tensor:
    """Identity on [lo + margin, hi - margin], tanh-saturating to (lo, hi) beyond; C1.

    Written as ``c + margin * tanh((z - c) / margin)`` with ``c`` = z clamped to the identity
    range (``c = z`` inside, the nearer end outside): six element-wise ops, forward and
    backward, for any shape."""
    c = z.clamp(lo + margin, hi - margin)
    return c + margin * torch.tanh((z - c) / margin)


def softclip_inverse(y: torch.Tensor, lo: float, hi: float, margin: float,
                     eps: float = 1e-3) -> torch.Tensor:
    """The latent value whose :func:`softclip` is ``y`` (``y`` clamped inside (lo, hi))."""
    y = y.clamp(lo + eps * margin, hi - eps * margin)
    c = y.clamp(lo + margin, hi - margin)
    return c + margin * torch.atanh((y - c) / margin)


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

    def latent(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Latent (unbounded) speed, acceleration and steering of states (..., 6)."""
        p = self.p
        return (softclip_inverse(state[..., V], 0.0, p.speed_max, p.speed_margin),
                softclip_inverse(state[..., A], p.accel_min, p.accel_max, p.accel_margin),
                softclip_inverse(state[..., DELTA], -p.steer_max, p.steer_max, p.steer_margin))

    def rollout(self, x0: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Roll controls out from an initial state.

        x0: (..., 6) state at step 0; u: (..., T, 2) controls for steps 1..T.
        Returns states (..., T, 6) at steps 1..T (x0 not included).
        """
        if x0.shape[-1] != STATE_DIM or u.shape[-1] != CONTROL_DIM:
            raise ValueError(f"rollout expects x0 (...,6) and u (...,T,2), got "
                             f"{tuple(x0.shape)} and {tuple(u.shape)}")
        if x0.shape[:-1] != u.shape[:-2]:
            raise ValueError(f"leading dims differ: x0 {tuple(x0.shape)} vs u {tuple(u.shape)}")
        p, dt = self.p, self.p.dt
        v_lat0, a_lat0, d_lat0 = self.latent(x0)
        lat = torch.stack([a_lat0, d_lat0], -1).unsqueeze(-2) + torch.cumsum(u, dim=-2)   # (..., T, 2)
        # Grid values at steps 0..T (step 0 from x0 itself, already inside the bounds).
        a = torch.cat([x0[..., A:A + 1], self._accel(lat[..., 0])], dim=-1)
        d = torch.cat([x0[..., DELTA:DELTA + 1], self._steer(lat[..., 1])], dim=-1)
        a0, a1 = a[..., :-1], a[..., 1:]
        dv = torch.cumsum(dt * (a0 + a1) / 2, dim=-1)
        dv_prev = torch.cat([torch.zeros_like(dv[..., :1]), dv[..., :-1]], dim=-1)
        v_lat = v_lat0.unsqueeze(-1) + dv
        v = torch.cat([x0[..., V:V + 1], self._speed(v_lat)], dim=-1)
        v_mid = self._speed(v_lat0.unsqueeze(-1) + dv_prev + dt * (3 * a0 + a1) / 8)
        d_mid = (d[..., :-1] + d[..., 1:]) / 2
        w = v * torch.tan(d) / p.wheelbase
        w_mid = v_mid * torch.tan(d_mid) / p.wheelbase
        w0, w1 = w[..., :-1], w[..., 1:]
        dth = torch.cumsum(dt / 6 * (w0 + 4 * w_mid + w1), dim=-1)
        th0 = x0[..., THETA:THETA + 1]
        th = torch.cat([th0, th0 + dth], dim=-1)
        th_mid = th[..., :-1] + dt / 24 * (5 * w0 + 8 * w_mid - w1)
        # velocity vectors (x, y) on the grid and at mid-steps, integrated together
        vel = v.unsqueeze(-1) * torch.stack([torch.cos(th), torch.sin(th)], -1)          # (..., T+1, 2)
        vel_mid = v_mid.unsqueeze(-1) * torch.stack([torch.cos(th_mid), torch.sin(th_mid)], -1)
        xy = x0[..., None, X:Y + 1] + torch.cumsum(dt / 6 * (vel[..., :-1, :] + 4 * vel_mid + vel[..., 1:, :]), -2)
        return torch.cat([xy, torch.stack([v[..., 1:], th[..., 1:], a[..., 1:], d[..., 1:]], -1)], -1)

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
