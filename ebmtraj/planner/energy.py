"""The energies the planner searches: one agent at a time, or every agent of a scene jointly.

Both give ``energy_and_grad(z) -> (energy (B,), cost (B,), grad (B, T, 2))`` over whitened
control sequences z (:class:`ebmtraj.cost.ControlParam`), with

    energy(z) = C_theta(x(u(z)), u(z), e, h) + |z|^2 / (2 sigma_ref^2)

exactly as :meth:`ebmtraj.cost.IOCEnergy.energy`, including its per-example bound on the cost's
gradient (``grad_clip``). What does not depend on z is computed once per plan (the nominal
trajectory and the history encoding of the neural term) instead of at every step.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..cost import IOCEnergy


def clip_rows(g: torch.Tensor, max_norm: float | None) -> torch.Tensor:
    """Scale each example's gradient g (B, ...) to norm at most ``max_norm``."""
    if max_norm is None:
        return g
    norm = g.flatten(1).norm(dim=1).clamp_min(1e-12)
    return g * (max_norm / norm).clamp(max=1.0).view(-1, *([1] * (g.dim() - 1)))


def agent_forward(model: IOCEnergy, z: torch.Tensor, cond: dict, enc):
    """Rollout and cost of z (B,T,2) against fixed neighbours -> (cost (B,), states, controls).

    With ``cond["pair_weight"]`` (planning), the cost adds that weight times the pair overlap
    penalty of the joint multi-agent energy against the neighbours' extrapolated footprints
    (headings ``nbr_heading``), the ego's footprint grown by ``cond["margin"]`` [m]: the ego's
    energy given its neighbours' predicted trajectories."""
    states, u = model.rollout(z, cond)
    cost = model.cost(states, u, cond, cond["nominal"], enc=enc)
    if "pair_weight" in cond:
        psi = states[..., 3]
        head = torch.stack([psi.cos(), psi.sin()], -1)
        centre = states[..., :2] - cond["ref"][:, None, None] * head
        T = states.shape[1]
        nb_head = cond["nbr_heading"][..., None].expand(-1, -1, T)
        pair = overlap_penalty(centre, psi, cond["size"] + cond["margin"], cond["nbr_pos"], nb_head,
                               cond["nbr_size"], cond["nbr_valid"] > 0)
        cost = cost + cond["pair_weight"] * pair
    return cost, states, u


_COMPILED: dict = {}


def compiled(fn):
    """``torch.compile`` of a forward function, made once per process (shape-specialised: each
    new batch / neighbour count compiles once more)."""
    if fn not in _COMPILED:
        _COMPILED[fn] = torch.compile(fn, dynamic=False)
    return _COMPILED[fn]


class AgentEnergy:
    """Energy of each row's own controls against fixed (extrapolated) neighbours.

    ``compile=True`` runs the forward pass (and its backward) through ``torch.compile``: the
    same function, fused into a few kernels (about 5x fewer CPU seconds per evaluation here),
    after a one-off compilation of minutes per input shape."""

    forward_fn = staticmethod(agent_forward)

    def __init__(self, model: IOCEnergy, cond: dict, compile: bool = False):
        self.model = model
        self.sigma = model.sigma_ref
        self.clip = model.grad_clip
        self.compile = compile
        with torch.no_grad():
            cond = dict(cond)
            cond["nominal"] = model.nominal(cond)
            self.enc = model.cost.neural.encode(cond) if model.cost.use_neural else None
        self.cond = cond

    def _forward(self, z: torch.Tensor):
        fn = compiled(self.forward_fn) if self.compile else self.forward_fn
        return fn(self.model, z, self.cond, self.enc)

    def rollout(self, z: torch.Tensor, cond: dict | None = None):
        """z (B,T,2) -> (states (B,T,6), controls (B,T,2))."""
        return self.model.rollout(z, self.cond if cond is None else cond)

    def cost(self, z: torch.Tensor) -> torch.Tensor:
        return self._forward(z)[0]

    def prior(self, z: torch.Tensor) -> torch.Tensor:
        if self.sigma is None:
            return z.new_zeros(z.shape[0])
        return z.pow(2).flatten(1).sum(1) / (2 * self.sigma ** 2)

    def energy_and_grad(self, z: torch.Tensor):
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            cost = self.cost(z)
            (g,) = torch.autograd.grad(cost.sum(), z)
        z = z.detach()
        g = clip_rows(g, self.clip)
        if self.sigma is not None:
            g = g + z / self.sigma ** 2
        cost = cost.detach()
        return cost + self.prior(z), cost, g

    def evaluate(self, z: torch.Tensor):
        """(energy (B,), cost (B,), states (B,T,6), controls (B,T,2)) without gradients."""
        z = z.detach()
        if self.compile:       # reuse the compiled training-mode graph instead of a second one
            with torch.enable_grad():
                cost, states, u = self._forward(z.clone().requires_grad_(True))
        else:
            with torch.no_grad():
                cost, states, u = self._forward(z)
        cost, states, u = cost.detach(), states.detach(), u.detach()
        return cost + self.prior(z), cost, states, u


def joint_forward(model: IOCEnergy, z: torch.Tensor, cond: dict, enc):
    """Joint rollout and cost (see :class:`JointEnergy`); ``cond`` carries the pair indices."""
    states, u = model.rollout(z, cond)
    p, psi, v = states[..., :2], states[..., 3], states[..., 2]
    head = torch.stack([psi.cos(), psi.sin()], -1)
    centre = p - cond["ref"][:, None, None] * head
    vel = v[..., None] * head
    rows, live = cond["pair_rows"], cond["pair_live"]
    ang = cond["pair_angle"]
    ca, sa = ang.cos(), ang.sin()

    def move(x, shift: bool):
        xb = x[rows]                                                          # (B,M,T,2)
        out = torch.stack([ca * xb[..., 0] - sa * xb[..., 1], sa * xb[..., 0] + ca * xb[..., 1]], -1)
        return out + cond["pair_shift"] if shift else out

    lm = live[..., None, None]
    c2 = dict(cond)
    c2["nbr_pos"] = torch.where(lm, move(centre, True), cond["nbr_pos"])
    c2["nbr_vel"] = torch.where(lm, move(vel, False), cond["nbr_vel"])
    own = model.cost(states, u, c2, cond["nominal"], enc=enc)
    nb_head = psi[rows] + ang
    pair = overlap_penalty(centre, psi, cond["size"], c2["nbr_pos"], nb_head, cond["nbr_size"], live)
    return own + 0.5 * cond["pair_weight"] * pair, states, u


class JointEnergy(AgentEnergy):
    """The summed energy of every agent of a scene, each agent's neighbours being the other
    agents' *current* trajectories, plus a pairwise overlap penalty (weight ``interaction``).

    Rows are ``K`` independent copies of the scene's ``A`` agents, row ``k * A + a``. ``cond``
    holds the A agents' inputs (neighbour slot m of agent a holds agent ``nbr[a, m]``, -1 none)
    and ``origin`` (A, 3) their agent frames in the world. The energy of a row is its own cost
    (with live neighbours) plus half its pair penalties, so the row energies sum to the joint
    energy of each copy and the gradient of that sum couples the agents.
    """

    forward_fn = staticmethod(joint_forward)

    def __init__(self, model: IOCEnergy, cond: dict, origin, nbr: torch.Tensor, copies: int,
                 interaction: float = 10.0, compile: bool = False):
        A = cond["x0"].shape[0]
        rep = {k: v.repeat((copies,) + (1,) * (v.dim() - 1)) for k, v in cond.items()}
        o = torch.as_tensor(origin, dtype=torch.float64)
        nb = nbr.clamp_min(0)
        dpsi = o[nb, 2] - o[:, None, 2]
        d = o[nb, :2] - o[:, None, :2]
        c, s = o[:, None, 2].cos(), o[:, None, 2].sin()
        shift = torch.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]], -1)
        offset = (torch.arange(copies) * A).view(copies, 1, 1)
        rep.update(pair_live=(nbr >= 0).repeat(copies, 1),                              # (B,M)
                   pair_angle=dpsi.float().repeat(copies, 1)[..., None],                # (B,M,1)
                   pair_shift=shift.float().repeat(copies, 1, 1)[:, :, None],           # (B,M,1,2)
                   pair_rows=(nb[None] + offset).reshape(copies * A, -1),               # (B,M)
                   pair_weight=torch.tensor(float(interaction)))
        super().__init__(model, rep, compile)
        self.A, self.K, self.weight = A, copies, interaction


def _discs(centre, heading, size, n: int = 3):
    """Centres (..., T, n, 2) and radius (...) of n discs covering each vehicle rectangle.

    centre (..., T, 2), heading (..., T), size (..., 2) = length, width."""
    length, width = size[..., 0], size[..., 1]
    step = (length - width).clamp_min(0.0) / (n - 1)                              # (...)
    k = torch.arange(n, dtype=centre.dtype) - (n - 1) / 2
    offs = k * step[..., None]                                                    # (..., n)
    d = torch.stack([heading.cos(), heading.sin()], -1)                           # (..., T, 2)
    pts = centre[..., None, :] + offs[..., None, :, None] * d[..., None, :]
    radius = torch.sqrt((width / 2) ** 2 + (step / 2) ** 2)
    return pts, radius


def overlap_penalty(centre, heading, size, nbr_centre, nbr_heading, nbr_size, live):
    """sum over time and disc pairs of softplus(overlap)^2 against live neighbours.

    centre (B,T,2), heading (B,T), size (B,2); nbr_centre (B,M,T,2), nbr_heading (B,M,T),
    nbr_size (B,M,2), live (B,M) bool -> (B,)."""
    pa, ra = _discs(centre, heading, size)
    pb, rb = _discs(nbr_centre, nbr_heading, nbr_size)
    d = (pa[:, None, :, :, None] - pb[:, :, :, None]).norm(dim=-1)
    reach = (ra[:, None] + rb)[..., None, None, None]
    over = F.softplus(reach - d, beta=8.0) ** 2
    return (over.sum((2, 3, 4)) * live.to(over.dtype)).sum(1)
