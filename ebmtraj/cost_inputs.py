"""Scene windows -> the agent-frame tensors the cost reads (lanes pre-sampled, neighbours
extrapolated), so that the cost itself is pure torch.

Input: one split of prepared scenes (:mod:`ebmtraj.data.scenes`: ``states``,
``positions_raw``, ``mask``, ``size``, ``ref_offset`` ... of N scenes x A agents x
(H history + T future) frames) and the recordings' :class:`~ebmtraj.data.lanes.LaneMap`.

Causality: everything a prediction sees is computed from the *raw* positions of the history
frames only (:func:`estimate_state`). The scenes' smoothed ``states`` come from a centred Savitzky-Golay window that
reaches about a second into the future, so they are used only to build training targets
(:func:`future_states`), never as inputs.

Per row (one agent of one scene; ``rows='target'`` takes agent 0 of every scene, ``'all'`` every
agent), in the agent frame (origin at the agent's fitted position at the last history frame,
x along its fitted heading there):

============  =============  ==============================================================
key           shape          meaning
============  =============  ==============================================================
x0            (N,6)          initial state (0, 0, speed, 0, accel, steering)
hist          (N,H,2)        raw history positions [m]
ctx           (N,13)         scene context (see :data:`CTX_NAMES`)
v_hist        (N,)           mean history speed [m/s]
lane_pts      (N,L,P,2)      centre polylines of the L nearest lanes, along travel [m]
lane_seg      (N,L,P-1)      which polyline segments exist (bool)
lane_hw       (N,L)          lane half widths [m]
lane_table    (N,L*(P-1),10) per-segment lane geometry (:func:`ebmtraj.cost.lane_table`),
                             derived from the three above once instead of at every evaluation
nbr_pos       (N,M,T,2)      neighbours' footprint centres, constant-velocity extrapolated
nbr_vel       (N,M,T,2)      their velocities [m/s]
nbr_size      (N,M,2)        their length, width [m]
nbr_valid     (N,M)          slot filled (float 0/1)
nbr_heading   (N,M)          neighbours' headings [rad]
size          (N,2)          the agent's length, width [m]
ref           (N,)           recorded point -> footprint centre, along heading [m]
future        (N,T,2)        raw future positions (the ground truth; not an input)
origin        (N,3)          agent frame in the recording frame: x, y [m], heading [rad]
scene, agent  (N,) int64     where the row comes from
nbr_agent     (N,M) int64    which agent of the same scene each neighbour slot holds (-1: none)
============  =============  ==============================================================
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from ebmcore.errors import DataError

from .geometry import Polylines

CTX_NAMES = ("speed", "accel", "steer_x10", "lane_offset", "lane_heading", "half_width",
             "lane_left", "lane_right", "lead_gap", "lead_dv", "has_lead", "v_hist", "dv_hist")
COND_TENSORS = ("x0", "hist", "ctx", "v_hist", "lane_pts", "lane_seg", "lane_hw", "lane_table", "nbr_pos",
                "nbr_vel", "nbr_size", "nbr_valid", "nbr_heading", "size", "ref")


@dataclass
class InputConfig:
    """How scenes become cost inputs."""

    fit_frames: int = 3        # history frames in the causal line fit of position and velocity
    fit_degree: int = 1
    accel_frames: int = 9      # history frames in the causal quadratic fit of acceleration and
    accel_degree: int = 2      # curvature (steering)
    lanes: int = 5             # L nearest lane centre lines
    lane_points: int = 26      # P samples per lane
    lane_behind: float = 20.0  # m behind the agent
    lane_ahead: float = 180.0  # m ahead of the agent
    lane_radius: float = 12.0  # m; lanes farther than this from the agent are left out
    wheelbase: float = 2.7
    max_steering: float = 0.1     # rad; highway steering estimates beyond this are noise
    min_accel: float = -6.0       # m/s^2; estimates beyond these are noise (and the bicycle
    max_accel: float = 3.0        # model's identity range ends at -7 / +3)
    min_speed_steering: float = 5.0  # m/s; below it the curvature estimate is noise: steering 0
    lead_cap: float = 100.0    # m; gap reported when no vehicle is ahead
    lead_frames: int = 5       # history frames of recorded headway a virtual leader needs
    lead_max: float = 120.0    # m; longer recorded headways make no virtual leader
    lead_merge: float = 4.0    # m; no virtual leader where a scene agent is this close to it
    lead_jump: float = 2.0     # m per frame; a larger headway change is a change of leader
    lead_length: float = 4.5   # m; its footprint
    lead_width: float = 1.8


def causal_fit(raw: np.ndarray, dt: float, frames: int, degree: int) -> tuple[np.ndarray, ...]:
    """Least-squares polynomial in time through the last ``frames`` positions of ``raw`` (..., H, 2).

    Returns position, velocity and acceleration vectors (..., 2) at the last frame.
    """
    if raw.shape[-2] < frames:
        raise DataError(f"history has {raw.shape[-2]} frames, the state fit needs {frames}")
    coef = np.einsum("df,...fc->...dc", _fit_matrix(dt, frames, degree), raw[..., -frames:, :])
    pos, vel = coef[..., 0, :], coef[..., 1, :]
    acc = 2 * coef[..., 2, :] if degree >= 2 else np.zeros_like(vel)
    return pos, vel, acc


@functools.lru_cache(maxsize=16)
def _fit_matrix(dt: float, frames: int, degree: int) -> np.ndarray:
    """(degree+1, frames): the least-squares polynomial fit of :func:`causal_fit` (read-only)."""
    tau = (np.arange(frames) - (frames - 1)) * dt
    design = np.stack([tau ** k for k in range(degree + 1)], axis=1)          # (F, D+1)
    solve = np.linalg.pinv(design)                                            # (D+1, F)
    solve.flags.writeable = False
    return solve


def estimate_state(hist: np.ndarray, dt: float, cfg: InputConfig) -> dict[str, np.ndarray]:
    """The current state from raw history positions (..., H, 2) [m] alone (causal).

    Position and velocity: a line through the last ``fit_frames`` positions; acceleration and
    curvature: a quadratic through the last ``accel_frames``; steering = atan(wheelbase *
    curvature), clipped to +-``max_steering`` and 0 below ``min_speed_steering``; acceleration
    clipped to [``min_accel``, ``max_accel``] (inside the bicycle model's bounds). Returns
    ``pos``, ``vel`` (..., 2) and ``speed``, ``heading``, ``accel``, ``steer`` (...).
    """
    pos, vel, _ = causal_fit(hist, dt, cfg.fit_frames, cfg.fit_degree)
    _, vel2, acc = causal_fit(hist, dt, min(cfg.accel_frames, hist.shape[-2]), cfg.accel_degree)
    speed = np.linalg.norm(vel, axis=-1)
    heading = np.arctan2(vel[..., 1], vel[..., 0])
    safe = np.maximum(np.linalg.norm(vel2, axis=-1), 0.5)
    curv = (vel2[..., 0] * acc[..., 1] - vel2[..., 1] * acc[..., 0]) / safe ** 3
    accel, steer = clip_controls(speed, (vel2 * acc).sum(-1) / safe, np.arctan(cfg.wheelbase * curv), cfg)
    return {"pos": pos, "vel": vel, "speed": speed, "heading": heading, "accel": accel, "steer": steer}


def clip_controls(speed, accel, steer, cfg: InputConfig):
    """The acceleration [m/s^2] and steering [rad] a row starts from: acceleration clipped to
    [``min_accel``, ``max_accel``], steering to +-``max_steering`` and 0 below
    ``min_speed_steering`` m/s (beyond these, estimates are noise). Arrays of one shape."""
    accel = np.clip(accel, cfg.min_accel, cfg.max_accel)
    steer = np.clip(steer, -cfg.max_steering, cfg.max_steering)
    return accel, np.where(np.asarray(speed) > cfg.min_speed_steering, steer, 0.0)


def _rotate(xy: np.ndarray, origin_xy: np.ndarray, heading: np.ndarray) -> np.ndarray:
    """Recording frame -> agent frame. xy (N, ..., 2), origin_xy (N,2), heading (N,)."""
    shape = (-1,) + (1,) * (xy.ndim - 2)
    c, s = np.cos(heading).reshape(shape), np.sin(heading).reshape(shape)
    d = xy - origin_xy.reshape((-1,) + (1,) * (xy.ndim - 2) + (2,))
    return np.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]], axis=-1)


def to_recording_frame(xy: torch.Tensor, origin: torch.Tensor) -> torch.Tensor:
    """Agent frame -> recording frame. xy (N, ..., 2), origin (N,3) = x, y, heading."""
    shape = (-1,) + (1,) * (xy.dim() - 2)
    c, s = origin[:, 2].cos().reshape(shape), origin[:, 2].sin().reshape(shape)
    x = c * xy[..., 0] - s * xy[..., 1] + origin[:, 0].reshape(shape)
    y = s * xy[..., 0] + c * xy[..., 1] + origin[:, 1].reshape(shape)
    return torch.stack([x, y], dim=-1)


def sample_lanes(lines, widths, p0: np.ndarray, cfg: InputConfig):
    """Centre-line samples of the ``cfg.lanes`` nearest lanes around each point p0 (n, 2).

    ``lines``: shapely LineStrings (centre lines along travel) or their :class:`Polylines`,
    ``widths`` their widths [m]. Each lane within ``lane_radius`` m is sampled at
    ``lane_points`` points from ``lane_behind`` m behind to ``lane_ahead`` m ahead of the
    point's projection. Returns samples (n, L, P, 2), filled (n, L) bool and half widths (n, L)
    [m]."""
    n, L, P = len(p0), cfg.lanes, cfg.lane_points
    pts = np.zeros((n, L, P, 2))
    hw = np.full((n, L), 1.8)
    filled = np.zeros((n, L), bool)
    if len(lines) == 0 or n == 0:
        return pts, filled, hw
    geo = lines if isinstance(lines, Polylines) else Polylines(lines)
    p0 = np.asarray(p0, dtype=float)
    dist, arc = geo.project(p0)                                                    # (n, nl)
    order = np.argsort(dist, axis=1, kind="stable")[:, :L]
    offsets = np.linspace(-cfg.lane_behind, cfg.lane_ahead, P)
    for j, width in enumerate(widths):
        rows, slots = np.nonzero(order == j)
        keep = dist[rows, j] <= cfg.lane_radius
        rows, slots = rows[keep], slots[keep]
        if rows.size == 0:
            continue
        st = np.clip(arc[rows, j, None] + offsets[None], 0.0, geo.lengths[j])
        pts[rows, slots] = geo.interpolate(j, st)
        hw[rows, slots] = width / 2.0
        filled[rows, slots] = True
    return pts, filled, hw


def lane_lists(lane_map) -> tuple[list, list]:
    """(centre lines, widths [m]) of a :class:`~ebmtraj.data.lanes.LaneMap` (None: no lanes)."""
    if lane_map is None:
        return [], []
    return [lane.centre for lane in lane_map.lanes], [lane.width for lane in lane_map.lanes]


@dataclass
class Neighbours:
    """The neighbour slots of N rows, recording (world) frame: footprint centres at t0
    ``centre`` (N, M, 2) [m], velocities ``vel`` (N, M, 2) [m/s], headings ``heading`` (N, M)
    [rad], sizes ``size`` (N, M, 2) [m], filled ``valid`` (N, M) bool."""

    centre: np.ndarray
    vel: np.ndarray
    heading: np.ndarray
    size: np.ndarray
    valid: np.ndarray


def assemble_rows(hist_raw: np.ndarray, est: dict, size: np.ndarray, ref: np.ndarray,
                  nbrs: Neighbours, lanes: tuple, cfg: InputConfig, dt: float, steps: int,
                  headways: np.ndarray | None = None) -> dict[str, torch.Tensor]:
    """The cost inputs of N rows (see the module docstring), for recorded scenes and live ones.

    hist_raw (N, H, 2): raw history positions [m], recording frame; ``est``: the rows' state
    (:func:`estimate_state` keys, each (N,) / (N, 2)); size (N, 2), ref (N,) [m]; ``nbrs``: the
    neighbour slots, extrapolated at constant velocity over ``steps`` steps of ``dt`` s;
    ``lanes``: (samples (N, L, P, 2), filled (N, L), half widths (N, L)) of :func:`sample_lanes`
    at the rows' positions; ``headways`` (N, H) [m] or None: one more slot, a virtual leader.
    Adds ``origin`` (N, 3) float64 and ``nbr_heading`` (N, M) [rad, agent frame]."""
    N, M = nbrs.valid.shape
    origin = np.stack([est["pos"][:, 0], est["pos"][:, 1], est["heading"]], 1)
    tgrid = np.arange(1, steps + 1) * dt
    valid = nbrs.valid.astype(bool)
    npos = nbrs.centre[:, :, None, :] + nbrs.vel[:, :, None, :] * tgrid[None, None, :, None]
    npos_a = np.where(valid[..., None, None],
                      _rotate(npos.reshape(N, -1, 2), origin[:, :2], origin[:, 2]).reshape(N, M, steps, 2), 0.0)
    c, s = np.cos(origin[:, 2])[:, None], np.sin(origin[:, 2])[:, None]
    nvel_a = np.where(valid[..., None], np.stack([c * nbrs.vel[..., 0] + s * nbrs.vel[..., 1],
                                                  -s * nbrs.vel[..., 0] + c * nbrs.vel[..., 1]], -1), 0.0)
    nsize = np.where(valid[..., None], nbrs.size, 0.0)
    nhead = np.where(valid, nbrs.heading - origin[:, 2:3], 0.0)
    if headways is not None:
        lead = _virtual_leads(np.asarray(headways, dtype=float), est["speed"], ref, dt, cfg,
                              npos_a[:, :, 0] - nvel_a * dt, valid, tgrid)
        npos_a = np.concatenate([npos_a, lead["pos"][:, None]], 1)
        nvel_a = np.concatenate([nvel_a, lead["vel"][:, None]], 1)
        nsize = np.concatenate([nsize, np.where(lead["valid"][:, None], [[cfg.lead_length, cfg.lead_width]],
                                                0.0)[:, None]], 1)
        valid = np.concatenate([valid, lead["valid"][:, None]], 1)
        nhead = np.concatenate([nhead, np.zeros((N, 1))], 1)
    pts, filled, hw = lanes
    L, P = cfg.lanes, cfg.lane_points
    lane_pts = _rotate(pts.reshape(N, -1, 2), origin[:, :2], origin[:, 2]).reshape(N, L, P, 2)
    lane_seg = filled[..., None] & (np.linalg.norm(np.diff(lane_pts, axis=2), axis=-1) > 0.5)
    lane_pts = np.where(filled[..., None, None], lane_pts, 0.0)
    x0 = np.zeros((N, 6))
    x0[:, 2], x0[:, 4], x0[:, 5] = est["speed"], est["accel"], est["steer"]
    out = {"x0": x0, "hist": _rotate(hist_raw, origin[:, :2], origin[:, 2]),
           "v_hist": (np.linalg.norm(np.diff(hist_raw, axis=1), axis=-1) / dt).mean(1),
           "lane_pts": lane_pts, "lane_seg": lane_seg, "lane_hw": hw, "nbr_pos": npos_a,
           "nbr_vel": np.repeat(nvel_a[:, :, None], steps, 2), "nbr_size": nsize,
           "nbr_valid": valid.astype(float), "nbr_heading": nhead, "size": size, "ref": ref}
    out = {k: torch.as_tensor(v, dtype=torch.bool if v.dtype == bool else torch.float32)
           for k, v in out.items()}
    out["origin"] = torch.as_tensor(origin, dtype=torch.float64)
    from .cost import lane_table

    out["lane_table"] = lane_table(out["lane_pts"], out["lane_seg"], out["lane_hw"])
    out["ctx"] = context(out, cfg)
    return out


def build_inputs(scenes: dict, lane_maps: dict, rows: str = "target",
                 config: InputConfig | None = None, headways=None) -> dict[str, torch.Tensor]:
    """Cost inputs (see module docstring) for one split of scenes.

    ``lane_maps``: recording name -> LaneMap (a recording without one gets no lanes; the lane
    features are then zero). ``headways`` (S, A, H) [m], optional: each agent's recorded
    front-to-front distance to the vehicle it follows over the history frames (NGSIM
    ``Space_Headway``; 0 or NaN: none). Where given, every row gets one more neighbour slot: a
    *virtual leader* that many metres ahead along its heading, with the speed implied by the
    history's headway rate, extrapolated at constant velocity (for data such as the per-vehicle
    US-101 tracks, whose leaders are mostly not among the recorded vehicles; left out where a
    scene agent already sits there). Raises DataError on non-finite history positions.
    """
    cfg = config or InputConfig()
    if rows not in ("target", "all"):
        raise ValueError(f"rows must be 'target' or 'all', got {rows!r}")
    H, T, dt = int(scenes["history"]), int(scenes["future"]), float(scenes["dt"])
    raw = scenes["positions_raw"].double().numpy()                    # (S,A,H+T,2)
    mask = scenes["mask"].numpy()
    S, A = mask.shape
    hist_raw = raw[:, :, :H]
    bad = mask & ~np.isfinite(hist_raw).all((2, 3))
    if bad.any():
        s, a = np.argwhere(bad)[0]
        raise DataError(f"scene {s}, agent {a}: non-finite history positions")
    est = estimate_state(np.nan_to_num(hist_raw), dt, cfg)                                # (S,A,...)
    size = scenes["size"].double().numpy()
    ref = scenes["ref_offset"].double().numpy()
    centre0 = est["pos"] - ref[..., None] * np.stack([np.cos(est["heading"]), np.sin(est["heading"])], -1)
    sel = np.stack([np.arange(S), np.zeros(S, int)], 1) if rows == "target" else np.argwhere(mask)
    si, ai = sel[:, 0], sel[:, 1]
    others = np.array([[b for b in range(A) if b != a] for a in range(A)]).reshape(A, A - 1)
    nb = others[ai]                                                    # (N,M): the scene's other agents
    nvalid = mask[si[:, None], nb]
    nbrs = Neighbours(centre0[si[:, None], nb], est["vel"][si[:, None], nb],
                      est["heading"][si[:, None], nb], size[si[:, None], nb], nvalid)
    names, rec = scenes["recordings"], scenes["recording"].numpy()[si]
    L, P = cfg.lanes, cfg.lane_points
    lanes = (np.zeros((len(si), L, P, 2)), np.zeros((len(si), L), bool), np.full((len(si), L), 1.8))
    for r in np.unique(rec):
        idx = np.flatnonzero(rec == r)
        sampled = sample_lanes(*lane_lists(lane_maps.get(names[r])), est["pos"][si[idx], ai[idx]], cfg)
        for full, part in zip(lanes, sampled):
            full[idx] = part
    row_est = {k: v[si, ai] for k, v in est.items()}
    hw = None if headways is None else np.asarray(headways, dtype=float)[si, ai]
    out = assemble_rows(hist_raw[si, ai], row_est, size[si, ai], ref[si, ai], nbrs, lanes, cfg, dt, T, hw)
    out["future"] = torch.as_tensor(_rotate(raw[si, ai, H:], row_est["pos"], row_est["heading"]),
                                    dtype=torch.float32)
    nb = np.where(nvalid, nb, -1)
    if headways is not None:
        nb = np.concatenate([nb, np.full((len(si), 1), -1)], 1)
    out["scene"] = torch.as_tensor(si, dtype=torch.int64)
    out["agent"] = torch.as_tensor(ai, dtype=torch.int64)
    out["nbr_agent"] = torch.as_tensor(nb, dtype=torch.int64)
    return out


def _virtual_leads(headway: np.ndarray, speed: np.ndarray, ref: np.ndarray, dt: float, cfg: InputConfig,
                   nbr_now: np.ndarray, nbr_valid: np.ndarray, tgrid: np.ndarray) -> dict:
    """Virtual leaders from recorded headways (N,H) [m]: footprint-centre position (N,T,2) and
    velocity (N,2) in the agent frame, valid (N,). A leader needs a headway in (0, lead_max]
    over the last ``lead_frames`` history frames; its recorded point is that far ahead of the
    agent's (same reference convention, ``ref`` back to the centre); its speed is the agent's
    plus the fitted headway rate."""
    n, H = headway.shape
    k = min(cfg.lead_frames, H)
    last = headway[:, -k:]
    valid = np.isfinite(last).all(1) & (last > 0).all(1) & (last[:, -1] <= cfg.lead_max)
    # a jump means the leader changed inside the window: its rate would be meaningless
    valid &= (np.abs(np.diff(np.nan_to_num(last), axis=1)) < cfg.lead_jump).all(1)
    tau = (np.arange(k) - (k - 1)) * dt
    design = np.stack([np.ones(k), tau], 1)
    coef = np.linalg.pinv(design) @ np.where(valid[:, None], last, 0.0).T          # (2,N)
    gap0, rate = coef[0] - ref, coef[1]
    v_lead = np.clip(speed + rate, 0.0, None)
    dup = nbr_valid & (np.hypot(nbr_now[..., 0] - gap0[:, None], nbr_now[..., 1]) < cfg.lead_merge)
    valid &= ~dup.any(1)
    pos = np.stack([gap0[:, None] + v_lead[:, None] * tgrid[None], np.zeros((n, len(tgrid)))], -1)
    vel = np.stack([v_lead, np.zeros(n)], -1)
    return {"pos": np.where(valid[:, None, None], pos, 0.0), "vel": np.where(valid[:, None], vel, 0.0),
            "valid": valid}


def context(inp: dict, cfg: InputConfig) -> torch.Tensor:
    """The (N, 13) scene context of :data:`CTX_NAMES` from the other agent-frame tensors."""
    from .cost import lane_frame

    x0 = inp["x0"]
    N = x0.shape[0]
    zero = x0.new_zeros(N, 1, 2)
    offset, lane_psi, hw, has_lane = lane_frame(zero, inp["lane_pts"], inp["lane_seg"], inp["lane_hw"],
                                                inp.get("lane_table"))
    on = has_lane.float()
    # lateral position of each lane's centre near the agent (agent frame y at the nearest sample)
    pts, ok = inp["lane_pts"], inp["lane_seg"].any(-1)
    near = pts.norm(dim=-1).argmin(-1)                                   # (N,L)
    lat = pts[..., 1].gather(2, near[..., None]).squeeze(-1)            # (N,L)
    left = (ok & (lat > 2.0) & (lat < 6.0)).any(1).float()
    right = (ok & (lat < -2.0) & (lat > -6.0)).any(1).float()
    # vehicle ahead in the agent's lane at t0 (neighbour positions at t=0 from the extrapolation)
    v0 = x0[:, 2]
    npos0 = inp["nbr_pos"][:, :, 0] - inp["nbr_vel"][:, :, 0] * 0.1       # back one step to t0
    lon, lat_n = npos0[..., 0] + inp["ref"][:, None], npos0[..., 1]     # from the ego centre
    gap = lon - 0.5 * (inp["nbr_size"][..., 0] + inp["size"][:, None, 0])
    ahead = (inp["nbr_valid"] > 0) & (lat_n.abs() < 1.8) & (lon > 0)
    gap = torch.where(ahead, gap, torch.full_like(gap, cfg.lead_cap)).clamp(max=cfg.lead_cap)
    lead_gap, which = gap.min(1)
    has_lead = ahead.any(1).float()
    v_lead = inp["nbr_vel"][:, :, 0, 0].gather(1, which[:, None]).squeeze(1)
    lead_dv = has_lead * (v_lead - v0)
    first = (inp["hist"][:, 1] - inp["hist"][:, 0]).norm(dim=-1) / 0.1
    return torch.stack([v0, x0[:, 4], 10 * x0[:, 5], on * offset[:, 0], on * lane_psi[:, 0],
                        hw[:, 0], left, right, lead_gap, lead_dv, has_lead, inp["v_hist"],
                        v0 - first], dim=1)


def future_states(scenes: dict, inp: dict) -> torch.Tensor:
    """Smoothed future states (N,T,6) of each row in its agent frame: the target the observed
    controls are fitted to (training only; never a model input)."""
    H = int(scenes["history"])
    st = scenes["states"][inp["scene"], inp["agent"], H:].double()          # (N,T,6)
    origin = inp["origin"]
    xy = st[..., :2]
    c, s = origin[:, 2].cos()[:, None], origin[:, 2].sin()[:, None]
    d = xy - origin[:, None, :2]
    x = c * d[..., 0] + s * d[..., 1]
    y = -s * d[..., 0] + c * d[..., 1]
    head = torch.atan2(torch.sin(st[..., 3] - origin[:, 2:3]), torch.cos(st[..., 3] - origin[:, 2:3]))
    return torch.stack([x, y, st[..., 2], head, st[..., 4], st[..., 5]], -1).float()


def select(inp: dict, idx) -> dict:
    """Rows ``idx`` of every per-row tensor."""
    return {k: v[idx] for k, v in inp.items()}
