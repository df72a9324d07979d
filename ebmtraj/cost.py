"""The learned cost C_theta(x(u), u, e, h) of energy-based continuous inverse optimal control.

The energy of a control sequence is the cost of the trajectory it produces:

    E(z | e, h) = C_theta(x(u(z)), u(z), e, h) + |z|^2 / (2 sigma_ref^2)

where ``z`` (B, T, 2) is the control sequence in whitened coordinates (see
:class:`ControlParam`), ``u`` (B, T, 2) the controls (change of acceleration [m/s^2] and change
of steering [rad] per step), ``x(u)`` the states (B, T, 6) rolled out through the kinematic
bicycle of :mod:`ebmtraj.dynamics`, ``e`` the environment (lane centre polylines, neighbours'
predicted positions) and ``h`` the history. Everything is pure torch, so Langevin on ``z``
back-propagates through the rollout (through time) at every step.

C_theta has two parts:

* interpretable features (:func:`trajectory_features`, each per step, summed over time, divided
  by its mean on the observed training trajectories and weighted by a learned ``exp(theta_k)``):
  offset from the lane centre, distance beyond the road edge, heading against the lane, speed
  against the history's speed, acceleration, jerk, steering, steering rate, time headway and
  inverse time-to-collision to the vehicle ahead, and proximity to any neighbour;
* a neural term (:class:`HistoryTerm`): an MLP encodes the history and the scene context into
  reference longitudinal / lateral positions and their precisions per step; the term is the
  precision-weighted squared distance of the rolled-out positions from those references.

All tensors are in the agent frame: origin at the agent's position at the last history frame,
x along its heading then (see :mod:`ebmtraj.cost_inputs`).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ebmcore.energy import EnergyModel

FEATURES = ("lane_offset", "road_edge", "lane_heading", "speed", "accel", "jerk", "steer",
            "steer_rate", "headway", "ttc", "proximity")
COND_KEYS = ("x0", "hist", "ctx", "lane_pts", "lane_seg", "lane_hw", "nbr_pos", "nbr_vel",
             "nbr_size", "nbr_valid", "size", "ref", "v_hist")
_EPS = 1e-6


# ----------------------------------------------------------------------------- geometry

def smooth_abs(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """|x| with a rounded tip (differentiable at 0): ``sqrt(x^2 + eps^2)``, one ``hypot``."""
    return torch.hypot(x, x.new_tensor(eps))


def robust_square(x: torch.Tensor, scale: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Pseudo-Huber ``2 s^2 (sqrt(1 + (x/s)^2) - 1)``: x^2 near 0, ``2 s |x|`` far out.

    Bounded slope (at most 2 s): a far-off Langevin sample gets a bounded push, which keeps the
    chains stable where a plain square would make the energy stiff. Computed as the equal
    ``2 s (hypot(x, s) - s)`` (three operations); ``scale``: a float or a tensor broadcasting
    against x (one scale per feature).
    """
    s = x.new_tensor(scale) if not torch.is_tensor(scale) else scale.to(x.dtype)
    return (2.0 * s) * (torch.hypot(x, s) - s)


def wrap_angle(a: torch.Tensor) -> torch.Tensor:
    """Angle difference wrapped to (-pi, pi], smooth away from +-pi."""
    return torch.atan2(torch.sin(a), torch.cos(a))


LANE_TABLE = ("ax", "ay", "dx", "dy", "inv_len2", "missing", "nx", "ny", "heading", "half_width")
MISSING = 1e30   # m^2: the squared-distance penalty of a segment that does not exist


def lane_table(pts: torch.Tensor, seg_valid: torch.Tensor, half_width: torch.Tensor) -> torch.Tensor:
    """Per-segment lane geometry (B, L*(P-1), 10), channels :data:`LANE_TABLE`: start point and
    direction [m], 1 / squared length [1/m^2], :data:`MISSING` [m^2] where the segment does not
    exist (else 0: added to squared distances, it rules the segment out), unit normal to the
    left, heading [rad] and the lane's half width [m]. All finite.

    pts: (B, L, P, 2) lane centre polylines; seg_valid: (B, L, P-1); half_width: (B, L). It does
    not depend on the trajectory: :func:`ebmtraj.cost_inputs.assemble_rows` stores it as the
    input ``lane_table`` so that :func:`lane_frame` does not rebuild it at every evaluation."""
    B, L, P = pts.shape[:3]
    a, d = pts[:, :, :-1], pts[:, :, 1:] - pts[:, :, :-1]                      # (B,L,S,2)
    dx, dy = d[..., 0], d[..., 1]
    len2 = dx * dx + dy * dy
    missing = torch.zeros_like(dx).masked_fill(~seg_valid.bool(), MISSING)
    normal = torch.stack([-dy, dx], -1) / torch.sqrt(len2 + _EPS)[..., None]
    hw = half_width[:, :, None].expand(B, L, P - 1)
    return torch.cat([a, d, torch.stack([1.0 / len2.clamp_min(_EPS), missing], -1), normal,
                      torch.stack([torch.atan2(dy, dx), hw], -1)], -1).reshape(B, L * (P - 1), len(LANE_TABLE))


def lane_frame(p: torch.Tensor, pts: torch.Tensor, seg_valid: torch.Tensor, half_width: torch.Tensor,
               table: torch.Tensor | None = None):
    """Signed offset, lane heading and half width of the nearest lane at every position.

    p: (B, T, 2) positions [m]; pts: (B, L, P, 2) lane centre polylines (along travel);
    seg_valid: (B, L, P-1) which segments exist; half_width: (B, L) [m]; ``table``: their
    :func:`lane_table` if already built (None: built here).
    Returns (offset (B,T) [m, + left], heading (B,T) [rad], half_width (B,T) [m], has_lane (B,) bool).

    The nearest segment is chosen without gradient: per lane, the nearest vertex (one batched
    matrix product), then the nearer of its two adjacent segments, then the nearest lane. The
    offset is the perpendicular distance to the chosen segment's line, smooth in p.
    """
    B, T = p.shape[:2]
    L, P = pts.shape[1], pts.shape[2]
    S = P - 1
    table = lane_table(pts, seg_valid, half_width) if table is None else table
    C = table.shape[-1]
    with torch.no_grad():
        pd = p.detach()
        flat_pts = pts.reshape(B, L * P, 2)
        # |p - q|^2 up to |p|^2, which is the same for every vertex q
        d2 = (flat_pts * flat_pts).sum(-1)[:, None] - 2 * torch.bmm(pd, flat_pts.transpose(1, 2))
        vert = d2.view(B, T, L, P).argmin(-1)                                # (B,T,L)
        lanes = torch.arange(L, device=p.device).view(1, 1, L, 1) * S
        cand = (torch.stack([vert - 1, vert], -1).clamp(0, S - 1) + lanes).view(B, T * 2 * L)
        c = table.gather(1, cand[..., None].expand(-1, -1, C)).view(B, T, 2 * L, C)
        cd = c[..., 2:4]
        r = pd[:, :, None] - c[..., :2]
        t = ((r * cd).sum(-1) * c[..., 4]).clamp(0.0, 1.0)
        f = r - t[..., None] * cd
        dist2 = (f * f).sum(-1) + c[..., 5]
        flat = cand.view(B, T, 2 * L).gather(2, dist2.argmin(-1, keepdim=True)).squeeze(-1)   # (B,T) in L*S
    chosen = table.gather(1, flat[..., None].expand(B, T, C))
    # the chosen segment's unit normal (to its left): the offset is one dot product
    offset = ((p - chosen[..., :2]) * chosen[..., 6:8]).sum(-1)
    return offset, chosen[..., 8], chosen[..., 9], seg_valid.flatten(1).any(1)


def neighbour_terms(p, heading, speed, nbr_pos, nbr_vel, nbr_size, nbr_valid, size):
    """Interaction features of the ego trajectory against neighbours' trajectories.

    p: (B,T,2), heading, speed: (B,T); nbr_pos, nbr_vel: (B,M,T,2); nbr_size: (B,M,2)
    (length, width) [m]; nbr_valid: (B,M) in {0,1}; size: (B,2).
    Returns per step (B,T): time headway term exp(-thw / 1 s) to vehicles ahead in the ego's lane,
    squared inverse time-to-collision [1/s^2] to them, and a proximity (soft overlap) term over
    every neighbour (:func:`neighbour_features` unbound).
    """
    head = torch.stack([torch.cos(heading), torch.sin(heading)], -1)
    return neighbour_features(p, head, speed, nbr_pos, nbr_vel, nbr_size, nbr_valid, size).unbind(-1)


def neighbour_features(p, head, speed, nbr_pos, nbr_vel, nbr_size, nbr_valid, size) -> torch.Tensor:
    """The three features of :func:`neighbour_terms` stacked, (B,T,3); ``head`` (B,T,2) the unit
    heading vectors (cos, sin)."""
    B, M = nbr_pos.shape[:2]
    if M == 0:
        return p.new_zeros(p.shape[:2] + (3,))
    # the ego frame's axes at each step: along the heading (c, s) and to its left (-s, c)
    axes = torch.stack([head, head.flip(-1) * head.new_tensor([-1.0, 1.0])], -2)[:, None]   # (B,1,T,2,2)
    rel = (nbr_pos - p[:, None]).unsqueeze(-2)                              # (B,M,T,1,2)
    loc = (rel * axes).sum(-1)                                              # (B,M,T,2): lon, lat
    lon, lat = loc.unbind(-1)
    v_lon = (nbr_vel * head[:, None]).sum(-1)                               # (B,M,T)
    half = 0.5 * (nbr_size + size[:, None])                                 # (B,M,2): length, width
    half_len = half[..., :1]                                                # (B,M,1)
    reach = -(half + half.new_tensor([1.0, 0.3])).pow(-2)[:, :, None]        # (B,M,1,2): -1 / reach^2
    valid = nbr_valid[..., None].to(p.dtype)                                # (B,M,1)
    v = speed[:, None]                                                      # (B,1,T)
    in_lane = torch.sigmoid(torch.rsub(smooth_abs(lat), 1.8 / 0.3, alpha=1.0 / 0.3))   # (1.8 - |lat|) / 0.3
    ahead = torch.sigmoid(lon)                                              # scale 1 m
    gap = F.softplus(lon - half_len, beta=2.0)                              # bumper gap [m], > 0
    closing = F.softplus(v - v_lon, beta=4.0)
    weight = valid * in_lane * ahead
    thw = gap / (v.clamp_min(0.0) + 1.0)
    inv_ttc = closing / (gap + 1.0)
    prox = torch.exp((loc * loc * reach).sum(-1))
    per = torch.stack([torch.exp(-thw), robust_square(inv_ttc, 0.5), prox], -1)       # (B,M,T,3)
    return (per * torch.stack([weight, weight, valid.expand_as(weight)], -1)).sum(1)


ROBUST_SCALES = (1.0, 0.5, 0.1, 2.0)   # pseudo-Huber scales of lane_offset, road_edge, lane_heading, speed


def trajectory_features(states: torch.Tensor, u: torch.Tensor, cond: dict, dt: float) -> torch.Tensor:
    """Per-step interpretable features (B, T, len(FEATURES)), all >= 0, in the order of FEATURES.

    states: (B,T,6) rolled out (x, y, speed, heading, accel, steering); u: (B,T,2) controls;
    cond: the agent-frame tensors of :mod:`ebmtraj.cost_inputs` (``nbr_pos``/``nbr_vel`` may be
    replaced by live trajectories in joint multi-agent sampling).

    The four pseudo-Huber features (scales :data:`ROBUST_SCALES`) and the four squares are each
    computed as one stacked tensor (few, larger operations: the cost is evaluated at every
    search step).
    """
    v, psi = states[..., 2], states[..., 3]
    head = torch.stack([torch.cos(psi), torch.sin(psi)], -1)                  # (B,T,2)
    # footprint centre: the recorded point moved back along the heading by ``ref``
    p = states[..., :2] - cond["ref"][:, None, None] * head
    offset, lane_psi, hw, has_lane = lane_frame(p, cond["lane_pts"], cond["lane_seg"], cond["lane_hw"],
                                                cond.get("lane_table"))
    lane_on = has_lane.to(p.dtype)[:, None, None]
    mask = torch.cat([lane_on.expand(-1, 1, 3), torch.ones_like(lane_on)], -1)       # (B,1,4)
    beyond = smooth_abs(offset) + (0.5 * cond["size"][:, 1:2] - hw)         # own half width - lane's
    robust = robust_square(torch.stack([offset / hw.clamp_min(0.5), F.softplus(beyond, beta=4.0),
                                        wrap_angle(psi - lane_psi), v - cond["v_hist"][:, None]], -1),
                           p.new_tensor(ROBUST_SCALES)) * mask
    squares = torch.stack([states[..., 4:6], u / dt], -1).flatten(-2) ** 2   # accel, jerk, steer, steer rate
    near = neighbour_features(p, head, v, cond["nbr_pos"], cond["nbr_vel"], cond["nbr_size"],
                              cond["nbr_valid"], cond["size"])
    return torch.cat([robust, squares, near], dim=-1)


# ----------------------------------------------------------------------------- controls

class ControlParam(nn.Module):
    """Fixed linear coordinates z (B,T,2) of the control sequence u (B,T,2), around a nominal.

    The nominal is constant velocity: acceleration and steering levels 0 after the first step.
    z describes the acceleration / steering *levels* ``l_t`` (the state's acceleration and
    steering after step t); u is the change between consecutive levels, the first from the
    initial state. Bases (``basis``):

    * ``'whitened'`` (default): ``l[:, :, c] = mix[c] @ z[:, :, c]`` with ``mix[c]`` the
      symmetric square root of the second-moment matrix (T x T) of the observed levels of
      channel c (:meth:`fit`). z ~ N(0, I) then has the demonstrations' covariance, so the
      Gaussian reference prior of the energy is a fit of the controls, and Langevin on z is
      Langevin on u preconditioned by that covariance (well conditioned: isotropic noise in z
      gives realistic, smooth trajectories instead of huge lateral excursions);
    * ``'level'``: ``l_t = scale * z_t`` (diagonal);
    * ``'increment'``: ``u = scale * z`` (z is the control itself; nominal: zero controls).

    Each is a fixed invertible linear map, so z = 0 is exactly the nominal.
    """

    def __init__(self, scale=(0.5, 0.01), basis: str = "whitened", steps: int = 40):
        super().__init__()
        if basis not in ("whitened", "level", "increment"):
            raise ValueError(f"basis must be 'whitened', 'level' or 'increment', got {basis!r}")
        self.basis = basis
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32).reshape(2))
        eye = torch.eye(steps)[None].repeat(2, 1, 1) * self.scale.view(2, 1, 1)
        self.register_buffer("mix", eye.clone())
        self.register_buffer("unmix", torch.linalg.inv(eye))
        # derived from ``mix`` (not saved; rebuilt by :meth:`refresh` whenever mix changes)
        self.register_buffer("control_map", torch.zeros(2 * steps + 2, 2 * steps), persistent=False)
        self.register_load_state_dict_post_hook(lambda module, keys: module.refresh())
        self.refresh()

    @torch.no_grad()
    def refresh(self) -> None:
        """Rebuild ``control_map`` (2T+2, 2T) from ``mix``: the linear map of :meth:`controls`,
        from the initial levels x0[4:6] followed by z flattened in (step, channel) order to u
        flattened alike, ``u_t = l_t - l_(t-1)`` with ``l_(-1)`` the initial level. Called after
        construction, :meth:`fit` and loading a state dict; call it after editing ``mix`` in
        place."""
        T = self.mix.shape[-1]
        cmap = torch.zeros(2 * T + 2, 2 * T, dtype=torch.float64, device=self.mix.device)
        if self.basis != "increment":
            for c in range(2):
                lv = self.mix[c].double() if self.basis == "whitened" else torch.eye(
                    T, dtype=torch.float64, device=self.mix.device) * float(self.scale[c])
                diff = lv - torch.cat([lv.new_zeros(1, T), lv[:-1]], 0)          # (T, T): u_t from z
                cmap[2 + c::2, c::2] = diff.T
                cmap[c, c] = -1.0
        self.control_map = cmap.to(self.control_map.dtype)

    def fit(self, levels: torch.Tensor, shrink: float = 1.0, floor: float = 1e-3) -> None:
        """Set ``mix`` from observed levels (N,T,2): ``shrink`` times the symmetric square root
        of E[l l^T] per channel, eigenvalues floored at ``floor`` times the largest.

        ``shrink`` < 1 makes a unit step in z a fraction of the demonstrations' spread, which
        keeps the cost's curvature in z moderate (stable Langevin steps); the energy's reference
        prior should then be widened by 1 / shrink to keep the same prior on the controls."""
        lv = levels.double()
        for c in range(2):
            m = lv[..., c].T @ lv[..., c] / lv.shape[0]
            w, v = torch.linalg.eigh(m)
            w = w.clamp_min(floor * w.max())
            self.mix[c] = shrink * (v * w.sqrt()) @ v.T
            self.unmix[c] = (v / w.sqrt()) @ v.T / shrink
        self.refresh()

    def levels(self, z: torch.Tensor) -> torch.Tensor:
        """z (B,T,2) -> acceleration / steering levels (B,T,2) relative to the nominal."""
        if self.basis == "whitened":
            return torch.einsum("cts,bsc->btc", self.mix.to(z.dtype), z)
        return z * self.scale.to(z.dtype)

    def controls(self, z: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """z (B,T,2), x0 (B,6) -> u (B,T,2): the steps between consecutive :meth:`levels`, the
        first from x0's acceleration and steering (one product with ``control_map``)."""
        if self.basis == "increment":
            return z * self.scale.to(z.dtype)
        return (torch.cat([x0[:, 4:6], z.flatten(1)], 1) @ self.control_map.to(z.dtype)).view(z.shape)

    def whiten(self, u: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`controls`: u (B,T,2) -> z (B,T,2)."""
        if self.basis == "increment":
            return u / self.scale.to(u.dtype)
        level = x0[:, None, 4:6] + torch.cumsum(u, dim=1)
        if self.basis == "whitened":
            return torch.einsum("cts,bsc->btc", self.unmix.to(u.dtype), level)
        return level / self.scale.to(u.dtype)


# ----------------------------------------------------------------------------- neural term

def interpolation_matrix(steps: int, knots: int) -> torch.Tensor:
    """(steps, knots) linear interpolation from knots at 0, .., steps (evenly) to steps 1..steps."""
    pos = torch.arange(1, steps + 1, dtype=torch.float64) * (knots - 1) / steps
    lo = pos.floor().clamp(max=knots - 2).long()
    frac = pos - lo
    m = torch.zeros(steps, knots, dtype=torch.float64)
    m[torch.arange(steps), lo] = 1 - frac
    m[torch.arange(steps), lo + 1] = frac
    return m.float()


class HistoryTerm(nn.Module):
    """Neural cost term conditioned on the history: a Gaussian energy of the rolled-out positions
    around history-dependent references, ``sum_t sum_axis ((p - nominal - ref) / sigma)^2 / 2``.

    An MLP encodes the history positions (B,H,2) and the scene context (B,C) into ``knots``
    values of the longitudinal / lateral reference offsets from the constant-velocity nominal,
    interpolated linearly over the T steps. The scales sigma_t are shared by all examples
    (homoscedastic): learned ``knots`` log-offsets per axis, bounded to [e^-2, e^2] times
    sigma0_t = (0.3 + 1.0 t, 0.2 + 0.25 t) m (longitudinal, lateral; t in s), which bounds the
    term's curvature. The output layer starts at zero (reference = nominal, scale = sigma0).
    A quadratic term with shared scales keeps the energy's minimum at the conditional mean, which
    is what RMSE rewards (per-example scales learned by likelihood let the fit give up on the
    hard examples).
    """

    def __init__(self, history: int, ctx_dim: int, steps: int, dt: float, hidden: int = 64,
                 knots: int = 9):
        super().__init__()
        self.steps, self.knots = steps, knots
        # LayerNorm keeps the hidden features O(1), so an optimiser step moves the references
        # by a bounded amount whatever the input statistics
        self.net = nn.Sequential(nn.Linear(2 * history + ctx_dim, hidden), nn.LayerNorm(hidden), nn.SiLU(),
                                 nn.Linear(hidden, hidden), nn.LayerNorm(hidden), nn.SiLU(),
                                 nn.Linear(hidden, 2 * knots))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.log_sigma = nn.Parameter(torch.zeros(knots, 2))
        self.register_buffer("interp", interpolation_matrix(steps, knots))
        t = torch.arange(1, steps + 1, dtype=torch.float32) * dt
        sigma = torch.stack([0.3 + 1.0 * t, 0.2 + 0.25 * t], dim=-1)         # (T,2)
        self.register_buffer("log_sigma0", torch.log(sigma))
        self.register_buffer("in_scale", torch.ones(2 * history + ctx_dim))

    def encode(self, cond: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (reference offset (B,T,2) [m] from the nominal, log-scale (1,T,2))."""
        h = torch.cat([cond["hist"].flatten(1), cond["ctx"]], dim=1) / self.in_scale.to(cond["ctx"].dtype)
        out = self.net(h).view(-1, 2, self.knots)
        interp = self.interp.to(out.dtype)
        ref = torch.einsum("tk,bck->btc", interp, out) * torch.tensor([2.0, 0.5], dtype=out.dtype,
                                                                       device=out.device)
        offset = interp @ self.log_sigma.to(out.dtype)                          # (T,2)
        log_sigma = (self.log_sigma0.to(out.dtype) + 2.0 * torch.tanh(offset / 2.0))[None]
        return ref, log_sigma

    def forward(self, pos: torch.Tensor, nominal: torch.Tensor, cond: dict, enc=None) -> torch.Tensor:
        """pos, nominal: (B,T,2) rolled-out and nominal positions -> (B,) cost."""
        ref, log_sigma = enc if enc is not None else self.encode(cond)
        r = (pos - (nominal + ref)) * torch.exp(-log_sigma)
        return 0.5 * (r * r).sum((1, 2))


class StartNet(nn.Module):
    """The cooperative generator's network: a correction (B,T,2) in z to the closed-form start
    (:func:`ebmtraj.search.generator_start`), from the history (B,H,2), the scene context (B,C)
    and a latent (B, latent) ~ N(0, I) (zeros: the deterministic start).

    Trained by MCMC teaching (:class:`ebmcore.cooperative.CooperativeChains`): it regresses onto
    where the energy's search takes its proposals, so later searches start nearer their end.
    ``knots`` values per channel are interpolated over the T steps; the output layer starts at
    zero (the proposal is then the closed-form start itself).
    """

    def __init__(self, history: int, ctx_dim: int, steps: int, hidden: int = 64, knots: int = 9,
                 latent: int = 8):
        super().__init__()
        self.knots, self.latent = knots, latent
        self.net = nn.Sequential(nn.Linear(2 * history + ctx_dim + latent, hidden), nn.LayerNorm(hidden), nn.SiLU(),
                                 nn.Linear(hidden, hidden), nn.LayerNorm(hidden), nn.SiLU(),
                                 nn.Linear(hidden, 2 * knots))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.register_buffer("interp", interpolation_matrix(steps, knots))

    def forward(self, cond: dict, in_scale: torch.Tensor, latent: torch.Tensor | None = None) -> torch.Tensor:
        """-> correction (B,T,2) in z; ``in_scale`` (2H+C,) the history inputs' scale."""
        h = torch.cat([cond["hist"].flatten(1), cond["ctx"]], dim=1) / in_scale.to(cond["ctx"].dtype)
        if latent is None:
            latent = h.new_zeros(h.shape[0], self.latent)
        out = self.net(torch.cat([h, latent.to(h.dtype)], 1)).view(-1, 2, self.knots)
        return torch.einsum("tk,bck->btc", self.interp.to(out.dtype), out)


# ----------------------------------------------------------------------------- the cost

class TrajectoryCost(nn.Module):
    """C_theta(x, u, e, h) = sum_k w_k sum_t phi_k,t / s_k + neural term, shape (B,).

    ``feature_scale`` s_k (buffer) holds each feature's mean per step on observed training
    trajectories, at least ``scale_floor`` (set by :meth:`calibrate`), so that
    ``exp(theta_k) = 1`` weighs every feature alike (the floor keeps rare events such as close
    encounters from getting huge weights); ``theta`` starts at ``log(init_weight)``. ``use_features`` / ``use_neural`` switch
    the two parts (ablation).
    """

    def __init__(self, history: int = 10, ctx_dim: int = 13, steps: int = 40, dt: float = 0.1,
                 hidden: int = 64, knots: int = 9, init_weight: float = 0.1,
                 use_features: bool = True, use_neural: bool = True):
        super().__init__()
        self.dt, self.steps, self.history = dt, steps, history
        self.scale_floor = 0.05
        self.use_features, self.use_neural = use_features, use_neural
        # weights exp(theta_scale * theta): the factor gives the few feature weights a larger
        # effective learning rate than the network's many parameters under one optimiser
        self.theta_scale = 10.0
        self.theta = nn.Parameter(torch.full((len(FEATURES),), math.log(init_weight) / self.theta_scale))
        self.register_buffer("feature_scale", torch.ones(len(FEATURES)))
        self.neural = HistoryTerm(history, ctx_dim, steps, dt, hidden, knots)

    @property
    def weights(self) -> dict[str, float]:
        """The learned feature weights by name (for reports)."""
        return {k: float(w) for k, w in zip(FEATURES, self.feature_weights().detach())}

    def feature_weights(self) -> torch.Tensor:
        """exp(theta_scale * theta), shape (len(FEATURES),)."""
        return torch.exp(self.theta_scale * self.theta)

    def forward(self, states, u, cond, nominal_pos, enc=None, per_step=False):
        """states (B,T,6), u (B,T,2), nominal_pos (B,T,2) -> cost (B,) (or (B,T) if per_step,
        neural term excluded)."""
        cost = None
        if self.use_features:
            feats = trajectory_features(states, u, cond, self.dt)
            w = self.feature_weights().to(feats.dtype) / self.feature_scale.to(feats.dtype).clamp_min(_EPS)
            cost = (feats * w).sum(-1 if per_step else (1, 2))
        if self.use_neural and not per_step:
            neural = self.neural(states[..., :2], nominal_pos, cond, enc)
            cost = neural if cost is None else cost + neural
        return states.new_zeros(states.shape[:2]) if cost is None else cost

    @torch.no_grad()
    def calibrate(self, states, u, cond, history_inputs: torch.Tensor | None = None) -> None:
        """Set ``feature_scale`` from observed trajectories (B,T,6) and the encoder's input scale."""
        feats = trajectory_features(states, u, cond, self.dt)
        self.feature_scale.copy_(feats.mean((0, 1)).clamp_min(self.scale_floor).to(self.feature_scale.dtype))
        if history_inputs is not None:
            self.neural.in_scale.copy_(history_inputs.std(0).clamp_min(1e-2).to(self.neural.in_scale.dtype))


class _ClipInputGrad(torch.autograd.Function):
    """Identity whose backward clips each example's gradient norm to ``max_norm``."""

    @staticmethod
    def forward(ctx, z, max_norm):
        ctx.max_norm = max_norm
        return z.view_as(z)

    @staticmethod
    def backward(ctx, g):
        norm = g.flatten(1).norm(dim=1).clamp_min(1e-12)
        factor = (ctx.max_norm / norm).clamp(max=1.0).view(-1, *([1] * (g.dim() - 1)))
        return g * factor, None


class IOCEnergy(EnergyModel):
    """The energy of EBM-IOC over whitened control sequences z (B, T, 2); ``cond`` is the dict of
    agent-frame tensors from :mod:`ebmtraj.cost_inputs`.

    ``energy(z, cond) = C_theta(rollout(x0, u(z)), u(z), cond) + |z|^2 / (2 sigma_ref^2)``:
    the rollout is the differentiable kinematic bicycle of :mod:`ebmtraj.dynamics`, so gradients
    of the energy with respect to z (Langevin) and theta (learning) run back through time.
    """

    def __init__(self, cost: TrajectoryCost, param: ControlParam, sigma_ref: float | None = 1.0,
                 wheelbase: float | None = None, grad_clip: float | None = None):
        super().__init__(sigma_ref)
        self.cost, self.param = cost, param
        self.wheelbase = wheelbase
        self.grad_clip = grad_clip
        self.start_net: StartNet | None = None   # the cooperative generator (ModelConfig.start_net)

    def rollout(self, z: torch.Tensor, cond: dict):
        """z (B,T,2) -> (states (B,T,6), controls (B,T,2))."""
        u = self.param.controls(z, cond["x0"])
        return rollout(cond["x0"], u, self.cost.dt, self.wheelbase), u

    def nominal(self, cond: dict) -> torch.Tensor:
        """Positions (B,T,2) of the nominal (z = 0) trajectory."""
        x0 = cond["x0"]
        zero = x0.new_zeros(x0.shape[0], self.cost.steps, 2)
        return self.rollout(zero, cond)[0][..., :2]

    def score(self, z: torch.Tensor, cond=None) -> torch.Tensor:
        if self.grad_clip is not None and z.requires_grad:
            # Bounded drift for the sampler: clips d(cost)/dz per example (the gradient with
            # respect to theta is untouched); the reference prior term is not clipped.
            z = _ClipInputGrad.apply(z, self.grad_clip)
        states, u = self.rollout(z, cond)
        nominal = cond["nominal"] if "nominal" in cond else self.nominal(cond).detach()
        return -self.cost(states, u, cond, nominal)


def rollout(x0: torch.Tensor, u: torch.Tensor, dt: float, wheelbase: float | None = None) -> torch.Tensor:
    """The shared bicycle rollout: x0 (B,6), u (B,T,2) -> states (B,T,6) after each control."""
    from .dynamics import BicycleParams, rollout as bicycle

    params = BicycleParams(dt=dt) if wheelbase is None else BicycleParams(dt=dt, wheelbase=wheelbase)
    return bicycle(x0, u, params)
