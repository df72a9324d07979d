"""Interaction between vehicles: disc footprints, overlap and same-lane order penalties, and the
live neighbour slots of the joint multi-agent energy.

Every function works in one row's agent frame (metres, radians). ``centre`` (N, T, 2) and
``heading`` (N, T) are the row's own footprint centres and headings over the horizon, ``size``
(N, 2) its length and width; ``nbr_*`` are the same for its M neighbour slots (N, M, ...);
``live`` (N, M) bool marks filled slots.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def heading_vectors(heading: torch.Tensor) -> torch.Tensor:
    """Unit heading vectors (..., 2) = (cos, sin) of headings (...) [rad]."""
    return torch.stack([heading.cos(), heading.sin()], -1)


def disc_offsets(size: torch.Tensor, n: int = 3):
    """Offsets (..., n) [m] along the heading from the footprint centre, and radius (...) [m],
    of the n discs covering vehicle rectangles of size (..., 2) = length, width."""
    length, width = size[..., 0], size[..., 1]
    step = (length - width).clamp_min(0.0) / (n - 1)                              # (...)
    k = torch.arange(n, dtype=size.dtype, device=size.device) - (n - 1) / 2
    return k * step[..., None], torch.sqrt((width / 2) ** 2 + (step / 2) ** 2)


def place_discs(centre: torch.Tensor, head: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """Disc centres (..., T, n, 2) from footprint centres (..., T, 2), unit heading vectors
    (..., T, 2) and the discs' offsets (..., n) (:func:`disc_offsets`)."""
    return centre[..., None, :] + offset[..., None, :, None] * head[..., None, :]


def discs(centre: torch.Tensor, heading: torch.Tensor, size: torch.Tensor, n: int = 3):
    """Centres (..., T, n, 2) and radius (...) of n discs covering each vehicle rectangle.

    centre (..., T, 2), heading (..., T), size (..., 2) = length, width [m]."""
    offset, radius = disc_offsets(size.to(centre.dtype), n)
    return place_discs(centre, heading_vectors(heading), offset), radius


def disc_contact(centre, heading, size, nbr_centre, nbr_heading, nbr_size, live) -> torch.Tensor:
    """(N,) bool: rows whose covering discs (:func:`discs`) touch a live neighbour's at some step
    (a conservative test of rectangle overlap)."""
    pa, ra = discs(centre, heading, size)
    pb, rb = discs(nbr_centre, nbr_heading, nbr_size)
    diff = pa[:, None, :, :, None, :] - pb[:, :, :, None, :, :]      # (N,M,T,n,n,2)
    touch = (diff * diff).sum(-1) < ((ra[:, None] + rb) ** 2)[..., None, None, None]
    return (touch.flatten(2).any(-1) & live).any(1)


def box_contact(centre, heading, size, nbr_centre, nbr_heading, nbr_size, live) -> torch.Tensor:
    """(N,) bool: rows whose footprint rectangle overlaps a live neighbour's at some step (the
    separating-axis test of :func:`ebmtraj.metrics.boxes_overlap`, the collision metric's)."""
    from .metrics import box_corners, boxes_overlap

    a = box_corners(centre, heading, size[:, None].expand(-1, centre.shape[1], -1))       # (N,T,4,2)
    b = box_corners(nbr_centre, nbr_heading, nbr_size[:, :, None].expand(-1, -1, centre.shape[1], -1))
    return (boxes_overlap(a[:, None], b).any(-1) & live).any(1)


def pair_parts(size, nbr_size, live, order, *, nbr_centre=None, nbr_heading=None,
               cond: dict | None = None) -> dict:
    """The control-independent parts of :func:`pair_penalty_fast` for rows of ``size`` (N, 2) and
    neighbour slots of ``nbr_size`` (N, M, 2) [m] (any footprint growth included), ``live``
    (N, M) bool and start ``order`` (N, M): disc offsets and summed radii, the order penalty's
    half lengths and widths. With fixed neighbours (``nbr_centre`` (N, M, T, 2) and
    ``nbr_heading`` (N, M, T)) also their discs; with ``cond`` holding live slots (``nbr_row``,
    ``rel_angle``, ``rel_shift``; :func:`pair_index`) the slots' gather index and rotation
    (:func:`live_tracks`). Computed once per energy, passed to :func:`pair_penalty_fast`."""
    offset, ra = disc_offsets(size)
    nbr_offset, rb = disc_offsets(nbr_size)
    out = {"offset": offset, "nbr_offset": nbr_offset,
           "reach": (ra[:, None] + rb)[..., None, None, None],
           "live": live.to(size.dtype),
           "order": order[..., None].to(size.dtype),
           "half": 0.5 * (size[:, None, 0] + nbr_size[..., 0])[..., None],
           "lane_reach": (0.5 * (size[:, None, 1] + nbr_size[..., 1])[..., None] + 0.3) / 0.3,
           "offset_a": offset[:, None, None, :, None, None],                         # (N,1,1,n,1,1)
           "flip": size.new_tensor([-1.0, 1.0])}
    if nbr_centre is not None:
        out["nbr_discs"] = place_discs(nbr_centre, heading_vectors(nbr_heading), nbr_offset)
    if cond is not None and "nbr_row" in cond:
        out.update(slot_transform(cond))
    return out


def slot_transform(cond: dict) -> dict:
    """The live slots' gather index and rigid transform (:func:`pair_index` keys of ``cond``):
    ``row`` (N, M) the row each slot holds (0 where empty), ``slot_live`` (N, M, 1, 1) bool,
    ``rot_cos`` / ``rot_sin`` (N, M, 1, 1) and ``shift`` (N, M, 1, 2) [m], for :func:`live_tracks`."""
    row = cond["nbr_row"]
    ang = cond["rel_angle"][..., None, None]                                        # (N,M,1,1)
    return {"row": row.clamp_min(0), "slot_live": (row >= 0)[..., None, None],
            "rot_cos": ang.cos(), "rot_sin": ang.sin(), "shift": cond["rel_shift"][:, :, None]}


def live_tracks(parts: dict, centre, head, speed, nbr_pos, nbr_vel):
    """Neighbour slots (:func:`slot_transform`, in ``parts``) filled
    with the other rows' current footprint centres, velocities and unit heading vectors, one
    gather and one rotation. centre (N, T, 2), head (N, T, 2) unit heading vectors, speed (N, T);
    ``nbr_pos`` / ``nbr_vel`` (N, M, T, 2) kept in the other slots. Returns (nbr_pos, nbr_vel,
    nbr_head (N, M, T, 2) unit vectors)."""
    x = torch.stack([centre, head, speed[..., None] * head], -2)[parts["row"]]   # (N,M,T,3,2)
    ca, sa = parts["rot_cos"], parts["rot_sin"]                                  # (N,M,1,1)
    xs, ys = x[..., 0], x[..., 1]
    rot = torch.stack([ca * xs - sa * ys, sa * xs + ca * ys], -1)               # (N,M,T,3,2)
    lm = parts["slot_live"]
    pos = torch.where(lm, rot[..., 0, :] + parts["shift"], nbr_pos)
    vel = torch.where(lm, rot[..., 2, :], nbr_vel)
    return pos, vel, rot[..., 1, :]


def pair_penalty_fast(parts: dict, centre, head, nbr_centre, nbr_head=None,
                      gap: float = 2.0) -> torch.Tensor:
    """The pair terms of the joint energy, (N,), with the control-independent parts of
    :func:`pair_parts`: overlap, sum over steps and disc pairs of softplus(reach - distance)^2;
    plus same-lane gap keeping: along the row's heading the bumper gap in the start order
    (``order`` +1 where the neighbour started ahead, -1 behind) is ``order * lon - (L_a + L_b) / 2``,
    and each step pays softplus(``gap`` - bumper gap)^2 times a soft same-lane weight. Unlike the
    symmetric overlap, its gradient always restores the initial order, even from trajectories
    that pass through each other.
    centre (N, T, 2), head (N, T, 2) the row's unit heading vectors; nbr_centre (N, M, T, 2)
    and nbr_head (N, M, T, 2) its neighbours' (nbr_head unused with fixed neighbours, whose
    discs ``parts`` holds)."""
    pa = centre[:, None, :, None, None] + parts["offset_a"] * head[:, None, :, None, None]   # (N,1,T,n,1,2)
    pb = parts.get("nbr_discs")
    if pb is None:
        pb = place_discs(nbr_centre, nbr_head, parts["nbr_offset"])                # (N,M,T,n,2)
    diff = pa - pb[:, :, :, None]                                                   # (N,M,T,n,n,2)
    d = torch.sqrt((diff * diff).sum(-1) + 1e-6)
    over = F.softplus(parts["reach"] - d, beta=8.0) ** 2
    rel = (nbr_centre - centre[:, None]).unsqueeze(-2)                              # (N,M,T,1,2)
    lon, lat = (rel * torch.stack([head, head.flip(-1) * parts["flip"]], -2)[:, None]).sum(-1).unbind(-1)
    same_lane = torch.sigmoid(torch.rsub(torch.sqrt(lat * lat + 1e-6), parts["lane_reach"], alpha=1.0 / 0.3))
    pen = same_lane * F.softplus(torch.addcmul(parts["half"] + gap, parts["order"], lon, value=-1.0),
                                 beta=2.0) ** 2
    return ((over.sum((2, 3, 4)) + pen.sum(-1)) * parts["live"]).sum(1)


def pair_penalty(centre, heading, size, nbr_centre, nbr_heading, nbr_size, live, order,
                 gap: float = 2.0) -> torch.Tensor:
    """The pair terms of the joint energy, (N,), from scratch: :func:`pair_penalty_fast` on
    :func:`pair_parts`. centre (N, T, 2), heading (N, T) [rad], size (N, 2); nbr_centre
    (N, M, T, 2), nbr_heading (N, M, T), nbr_size (N, M, 2); live (N, M) bool; order (N, M)."""
    parts = pair_parts(size, nbr_size, live, order)
    return pair_penalty_fast(parts, centre, heading_vectors(heading), nbr_centre, heading_vectors(nbr_heading), gap)


def footprint(states: torch.Tensor, ref: torch.Tensor, head: torch.Tensor | None = None):
    """Footprint centres (N, T, 2) and headings (N, T) of rolled-out states (N, T, 6) whose
    position is the reference point ``ref`` (N,) [m] ahead of the centre; ``head`` (N, T, 2):
    the headings' unit vectors, when already computed."""
    psi = states[..., 3]
    head = heading_vectors(psi) if head is None else head
    return states[..., :2] - ref[:, None, None] * head, psi


def pair_index(scene: torch.Tensor, agent: torch.Tensor, nbr_agent: torch.Tensor,
               origin: torch.Tensor) -> dict:
    """Live-slot indices of rows sorted by scene: per row and neighbour slot, the row holding
    that neighbour (-1: none) and the rigid transform from its agent frame into this row's.

    scene, agent (N,) int64; nbr_agent (N, M) int64 (-1: empty); origin (N, 3) = x, y [m],
    heading [rad] of each row's agent frame. Returns ``nbr_row`` (N, M) int64, ``rel_angle``
    (N, M) [rad] and ``rel_shift`` (N, M, 2) [m]."""
    key = {(int(s), int(a)): i for i, (s, a) in enumerate(zip(scene.tolist(), agent.tolist()))}
    row = torch.tensor([[key.get((int(s), int(b)), -1) if b >= 0 else -1 for b in bs]
                        for s, bs in zip(scene.tolist(), nbr_agent.tolist())],
                       dtype=torch.int64).view(nbr_agent.shape)
    o = origin.double()
    ob = o[row.clamp_min(0)]                                       # (N,M,3)
    d = ob[..., :2] - o[:, None, :2]
    c, s = o[:, None, 2].cos(), o[:, None, 2].sin()
    shift = torch.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]], -1)
    return {"nbr_row": row, "rel_angle": (ob[..., 2] - o[:, None, 2]).float(), "rel_shift": shift.float()}


def live_neighbours(cond: dict, centre: torch.Tensor, heading: torch.Tensor, speed: torch.Tensor):
    """Neighbour slots filled with the other rows' *current* trajectories.

    centre (N, T, 2), heading (N, T), speed (N, T) of every row in its own frame; ``cond`` holds
    ``nbr_row``, ``rel_angle``, ``rel_shift`` (:func:`pair_index`) and the extrapolated
    ``nbr_pos``/``nbr_vel``. Returns (nbr_pos (N,M,T,2), nbr_vel (N,M,T,2), nbr_heading (N,M,T),
    live (N,M) bool) with live slots replaced, others kept (:func:`live_tracks`)."""
    slots = slot_transform(cond)
    pos, vel, _ = live_tracks(slots, centre, heading_vectors(heading), speed, cond["nbr_pos"], cond["nbr_vel"])
    return pos, vel, heading[slots["row"]] + cond["rel_angle"][..., None], cond["nbr_row"] >= 0
