"""The fused forms of the cost's per-step computations give what the plain, one-quantity-at-a-time
computations give (float64, real CommonRoad rows, values and gradients):

* :func:`ebmtraj.cost.trajectory_features` (pseudo-Huber features and squares stacked, the
  neighbour terms rotated as one tensor, the lane offset as one dot product) against the
  features written one by one;
* :meth:`ebmtraj.cost.ControlParam.controls` (one product with ``control_map``) against the
  differences of consecutive :meth:`~ebmtraj.cost.ControlParam.levels`, also after loading a
  state dict and after :meth:`~ebmtraj.cost.ControlParam.fit`.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ebmtraj import cost as C
from ebmtraj.cost_inputs import COND_TENSORS

from .ioc_helpers import real_scenes


def plain_neighbour_terms(p, heading, speed, nbr_pos, nbr_vel, nbr_size, nbr_valid, size):
    """The neighbour terms (headway, ttc, proximity), each (B,T), one quantity at a time."""
    c, s = torch.cos(heading)[:, None], torch.sin(heading)[:, None]
    rel = nbr_pos - p[:, None]
    lon = rel[..., 0] * c + rel[..., 1] * s
    lat = -rel[..., 0] * s + rel[..., 1] * c
    half_len = 0.5 * (nbr_size[..., 0] + size[:, None, 0])[..., None]
    half_wid = 0.5 * (nbr_size[..., 1] + size[:, None, 1])[..., None]
    valid = nbr_valid[..., None].to(p.dtype)
    in_lane = torch.sigmoid((1.8 - C.smooth_abs(lat)) / 0.3)
    ahead = torch.sigmoid(lon / 1.0)
    gap = F.softplus(lon - half_len, beta=2.0)
    v_lon = nbr_vel[..., 0] * c + nbr_vel[..., 1] * s
    closing = F.softplus(speed[:, None] - v_lon, beta=4.0)
    weight = valid * in_lane * ahead
    headway = (weight * torch.exp(-gap / (speed[:, None].clamp_min(0.0) + 1.0))).sum(1)
    ttc = (weight * C.robust_square(closing / (gap + 1.0), 0.5)).sum(1)
    prox = (valid * torch.exp(-(lon / (half_len + 1.0)) ** 2 - (lat / (half_wid + 0.3)) ** 2)).sum(1)
    return headway, ttc, prox


def plain_features(states, u, cond, dt):
    """:func:`ebmtraj.cost.trajectory_features` written one feature at a time, (B,T,11)."""
    v, psi, acc, steer = states[..., 2], states[..., 3], states[..., 4], states[..., 5]
    p = states[..., :2] - cond["ref"][:, None, None] * torch.stack([torch.cos(psi), torch.sin(psi)], -1)
    offset, lane_psi, hw, has_lane = C.lane_frame(p, cond["lane_pts"], cond["lane_seg"], cond["lane_hw"])  # no table
    lane_on = has_lane.to(p.dtype)[:, None]
    lane_offset = lane_on * C.robust_square(offset / hw.clamp_min(0.5), 1.0)
    beyond = C.smooth_abs(offset) + 0.5 * cond["size"][:, 1:2] - hw
    road_edge = lane_on * C.robust_square(F.softplus(beyond, beta=4.0), 0.5)
    lane_heading = lane_on * C.robust_square(C.wrap_angle(psi - lane_psi), 0.1)
    speed = C.robust_square(v - cond["v_hist"][:, None], 2.0)
    headway, ttc, prox = plain_neighbour_terms(p, psi, v, cond["nbr_pos"], cond["nbr_vel"], cond["nbr_size"],
                                               cond["nbr_valid"], cond["size"])
    return torch.stack([lane_offset, road_edge, lane_heading, speed, acc ** 2, (u[..., 0] / dt) ** 2,
                        steer ** 2, (u[..., 1] / dt) ** 2, headway, ttc, prox], -1)


@pytest.fixture(scope="module")
def rows():
    """48 real rows in float64, the last neighbour slot of every third row emptied (as the
    inputs leave an empty slot: zeros, ``nbr_valid`` 0)."""
    torch.set_num_threads(1)
    inp = real_scenes()["all"]
    cond = {k: (inp[k][:48].double() if inp[k].is_floating_point() else inp[k][:48]).clone() for k in COND_TENSORS}
    for key in ("nbr_valid", "nbr_pos", "nbr_vel", "nbr_size"):
        cond[key][::3, -1] = 0.0
    cond["lane_table"] = C.lane_table(cond["lane_pts"], cond["lane_seg"], cond["lane_hw"])   # in float64
    return cond


def test_fused_features_match_the_plain_ones(rows):
    from ebmtraj.dynamics import rollout

    cond = rows
    g = torch.Generator().manual_seed(0)
    u = (torch.randn(48, 40, 2, generator=g, dtype=torch.float64)
         * torch.tensor([0.3, 0.004], dtype=torch.float64)).requires_grad_(True)
    states = rollout(cond["x0"], u)
    fused, plain = C.trajectory_features(states, u, cond, 0.1), plain_features(states, u, cond, 0.1)
    assert fused.shape == plain.shape == (48, 40, len(C.FEATURES))
    assert (cond["nbr_valid"] == 0).any() and (cond["nbr_valid"] == 1).any()
    assert (plain[..., 8:] > 1e-6).any()                            # the neighbour terms are live
    assert (fused - plain).abs().max() < 1e-9 * (1 + plain.abs().max())
    w = torch.randn(fused.shape, generator=g, dtype=torch.float64)
    (gf,) = torch.autograd.grad((fused * w).sum(), u, retain_graph=True)
    (gp,) = torch.autograd.grad((plain * w).sum(), u)
    assert (gf - gp).abs().max() < 1e-9 * (1 + gp.abs().max())
    # the inputs' lane table is the one lane_frame builds itself, and gives its frame
    inp = real_scenes()["all"]
    assert torch.equal(inp["lane_table"], C.lane_table(inp["lane_pts"], inp["lane_seg"], inp["lane_hw"]))
    assert torch.isfinite(inp["lane_table"]).all() and inp["lane_table"].shape[-1] == len(C.LANE_TABLE)
    p = states[:, :, :2].detach()
    args = (cond["lane_pts"], cond["lane_seg"], cond["lane_hw"])
    for a, b in zip(C.lane_frame(p, *args, cond["lane_table"]), C.lane_frame(p, *args)):
        assert torch.equal(a, b)
    # the public per-term function is the fused one unbound
    head = states[..., 3]
    p = states[..., :2].detach()
    args = (cond["nbr_pos"], cond["nbr_vel"], cond["nbr_size"], cond["nbr_valid"], cond["size"])
    for a, b in zip(C.neighbour_terms(p, head.detach(), states[..., 2].detach(), *args),
                    plain_neighbour_terms(p, head.detach(), states[..., 2].detach(), *args)):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("basis", ["whitened", "level", "increment"])
def test_control_map_gives_the_differences_of_the_levels(basis):
    g = torch.Generator().manual_seed(1)
    T = 12
    param = C.ControlParam((0.7, 0.02), basis, T).double()
    levels = torch.randn(64, T, 2, generator=g, dtype=torch.float64).cumsum(1) * torch.tensor([0.3, 0.004],
                                                                                               dtype=torch.float64)
    param.fit(levels, shrink=0.5)
    x0 = torch.randn(5, 6, generator=g, dtype=torch.float64)
    z = torch.randn(5, T, 2, generator=g, dtype=torch.float64)

    def plain(prm):
        if basis == "increment":
            return z * prm.scale
        lv = prm.levels(z)
        return lv - torch.cat([x0[:, None, 4:6], lv[:, :-1]], 1)

    assert torch.allclose(param.controls(z, x0), plain(param), rtol=0, atol=1e-12)
    # a fresh module loading the fitted state rebuilds its map (it is not part of the state)
    fresh = C.ControlParam((0.7, 0.02), basis, T).double()
    assert "control_map" not in fresh.state_dict()
    fresh.load_state_dict(param.state_dict())
    assert torch.allclose(fresh.controls(z, x0), plain(param), rtol=0, atol=1e-12)
    if basis == "whitened":                                   # fit changed the map
        assert not torch.allclose(fresh.controls(z, x0), C.ControlParam((0.7, 0.02), basis, T).double()
                                  .controls(z, x0))


def test_polylines_match_shapely_on_real_lanes():
    """:class:`ebmtraj.geometry.Polylines` (the lane sampler's and the planner's lane
    queries) against shapely's distance, line_locate_point and line_interpolate_point."""
    import numpy as np
    import shapely

    from ebmtraj.cost_inputs import lane_lists
    from ebmtraj.geometry import Polylines

    lane_map = next(iter(real_scenes()["lanes"].values()))
    lines, _ = lane_lists(lane_map)
    geo = Polylines(lines)
    rng = np.random.default_rng(0)
    verts = np.concatenate(geo.coords)
    lo, hi = verts.min(0) - 30.0, verts.max(0) + 30.0             # also beyond the lines' ends
    xy = np.concatenate([rng.uniform(lo, hi, (300, 2)), verts[::7]])   # and exactly on vertices
    pts = shapely.points(xy[:, 0], xy[:, 1])
    want = shapely.distance(np.array(lines, dtype=object)[None, :], pts[:, None])
    assert geo.distances(xy).shape == (len(xy), len(lines)) and len(lines) > 1
    assert np.abs(geo.distances(xy) - want).max() < 1e-9
    dist, arc = geo.project(xy, chunk=len(geo.a) * 7)                                  # chunked alike
    assert np.abs(dist - want).max() < 1e-9
    for j, line in enumerate(lines):
        assert abs(geo.lengths[j] - line.length) < 1e-9
        assert np.abs(arc[:, j] - shapely.line_locate_point(line, pts)).max() < 1e-6
        s = rng.uniform(0.0, line.length, 50)
        got = geo.interpolate(j, s)
        assert np.abs(got - shapely.get_coordinates(shapely.line_interpolate_point(line, s))).max() < 1e-9


def test_on_lanes_is_edge_excess_at_most_zero():
    """The road guard's test (``LaneSet.on_lanes``, nearby segments only) against the edge
    excess over every segment, on points on, near and far off real lanes."""
    import numpy as np

    from ebmtraj.planner.inputs import LaneSet

    lanes = LaneSet.from_any(next(iter(real_scenes()["lanes"].values())))
    rng = np.random.default_rng(1)
    verts = np.concatenate(lanes.geometry.coords)
    for scale in (0.5, 2.0, 4.0, 40.0):                       # around the lanes, then far off
        xy = verts[rng.integers(0, len(verts), 400)] + rng.normal(0.0, scale, (400, 2))
        excess = lanes.edge_excess(xy)
        assert (excess <= 0).any() or scale == 40.0
        assert np.array_equal(lanes.on_lanes(xy), excess <= 0)
        path = xy[:40]                                          # a box spanning few points too
        assert np.array_equal(lanes.on_lanes(path), lanes.edge_excess(path) <= 0)
    assert not LaneSet.from_any(None).on_lanes(xy[:3]).any()
