"""The search energy's pair terms with their control-independent parts computed once per
energy (:func:`ebmtraj.prediction.row_pair_parts`, :func:`ebmtraj.interaction.pair_penalty_fast`)
equal the plain computation (footprints, live slots and pair terms written out here, every
part at every evaluation), values and gradients, on real rows in float64."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ebmtraj import ioc
from ebmtraj import prediction as P
from ebmtraj.cost_inputs import COND_TENSORS
from ebmtraj.interaction import discs, footprint, pair_index

from .ioc_helpers import real_scenes

N = 24


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    inp = real_scenes()["all"]
    keep = ("scene", "agent", "nbr_agent", "origin")
    raw = {k: inp[k][:N] for k in list(COND_TENSORS) + list(keep)}
    cond = {k: (v.double() if v.is_floating_point() and k not in keep else v) for k, v in raw.items()}
    cond.update(pair_index(cond["scene"], cond["agent"], cond["nbr_agent"], cond["origin"]))
    cond["rel_angle"], cond["rel_shift"] = cond["rel_angle"].double(), cond["rel_shift"].double()
    for k in keep:
        cond.pop(k)
    model = ioc.build_model(ioc.ModelConfig(start_net=False), 10, 40).double()
    model.eval()
    cond["nominal"] = model.nominal(cond)
    assert bool((cond["nbr_row"] >= 0).any()) and bool((cond["nbr_valid"] > 0).any())
    return model, cond


def overlap_penalty(centre, heading, size, nbr_centre, nbr_heading, nbr_size, live) -> torch.Tensor:
    """sum over steps and disc pairs of softplus(overlap)^2 against live neighbours, (N,)."""
    pa, ra = discs(centre, heading, size)                          # (N,T,n,2), (N,)
    pb, rb = discs(nbr_centre, nbr_heading, nbr_size)              # (N,M,T,n,2), (N,M)
    diff = pa[:, None, :, :, None, :] - pb[:, :, :, None, :, :]     # (N,M,T,n,n,2)
    d = torch.sqrt((diff * diff).sum(-1) + 1e-6)
    reach = (ra[:, None] + rb)[..., None, None, None]
    over = F.softplus(reach - d, beta=8.0) ** 2
    return (over.sum((2, 3, 4)) * live.to(over.dtype)).sum(1)


def order_penalty(centre, heading, size, nbr_centre, nbr_size, live, order,
                  margin: float = 2.0) -> torch.Tensor:
    """Same-lane gap keeping between each row's vehicle and its live neighbours, (N,).

    ``order`` (N, M) = +1 where the neighbour started ahead, -1 behind. Along the row's heading,
    the bumper gap in that order is ``order * lon - (L_a + L_b) / 2``; each step pays
    ``softplus(margin - gap)^2`` times a soft same-lane weight. Unlike the symmetric overlap
    penalty, its gradient always restores the initial order (the follower back, the leader on),
    even from trajectories that pass through each other."""
    c, s = heading.cos()[:, None], heading.sin()[:, None]                    # (N,1,T)
    rel = nbr_centre - centre[:, None]                                        # (N,M,T,2)
    lon = rel[..., 0] * c + rel[..., 1] * s
    lat = -rel[..., 0] * s + rel[..., 1] * c
    half = 0.5 * (size[:, None, 0] + nbr_size[..., 0])[..., None]
    width = 0.5 * (size[:, None, 1] + nbr_size[..., 1])[..., None]
    gap = order[..., None] * lon - half
    same_lane = torch.sigmoid((width + 0.3 - torch.sqrt(lat * lat + 1e-6)) / 0.3)
    pen = same_lane * F.softplus(margin - gap, beta=2.0) ** 2
    return (pen.sum(-1) * live.to(pen.dtype)).sum(1)


def pair_penalty(centre, heading, size, nbr_centre, nbr_heading, nbr_size, live, order, gap=2.0):
    """The plain pair terms: overlap plus same-lane order, every part from the states."""
    return (overlap_penalty(centre, heading, size, nbr_centre, nbr_heading, nbr_size, live)
            + order_penalty(centre, heading, size, nbr_centre, nbr_size, live, order, gap))


def plain_live_neighbours(cond, centre, heading, speed):
    """Live slots filled one quantity at a time, each rotated on its own (the reference for
    :func:`ebmtraj.interaction.live_tracks`)."""
    row = cond["nbr_row"]
    r, lm = row.clamp_min(0), (row >= 0)[..., None, None]
    ang = cond["rel_angle"][..., None]
    ca, sa = ang.cos(), ang.sin()

    def move(x):
        xb = x[r]
        return torch.stack([ca * xb[..., 0] - sa * xb[..., 1], sa * xb[..., 0] + ca * xb[..., 1]], -1)

    vel = speed[..., None] * torch.stack([heading.cos(), heading.sin()], -1)
    return (torch.where(lm, move(centre) + cond["rel_shift"][:, :, None], cond["nbr_pos"]),
            torch.where(lm, move(vel), cond["nbr_vel"]), heading[r] + ang, row >= 0)


def plain_forward(model, z, cond, joint_weight, fixed_weight, margin, gap=2.0):
    """row_forward as it was: every part recomputed from the states at each evaluation."""
    states, u = model.rollout(z, cond)
    centre, psi = footprint(states, cond["ref"])
    order = P.start_order(cond)
    if joint_weight:
        nbr_pos, nbr_vel, nbr_head, live = plain_live_neighbours(cond, centre, psi, states[..., 2])
        cost = model.cost(states, u, dict(cond, nbr_pos=nbr_pos, nbr_vel=nbr_vel), cond["nominal"])
        pair = pair_penalty(centre, psi, cond["size"] + margin, nbr_pos, nbr_head, cond["nbr_size"] + margin,
                            live, order, gap)
        return cost + 0.5 * joint_weight * pair, pair
    cost = model.cost(states, u, cond, cond["nominal"])
    nbr_head = cond["nbr_heading"][..., None].expand(-1, -1, states.shape[1])
    pair = pair_penalty(centre, psi, cond["size"] + margin, cond["nbr_pos"], nbr_head, cond["nbr_size"],
                        cond["nbr_valid"] > 0, order)
    return cost + fixed_weight * pair, pair


def _value_and_grad(fn, z):
    z = z.clone().requires_grad_(True)
    e = fn(z)
    (g,) = torch.autograd.grad(e.sum(), z)
    return e.detach(), g


@pytest.mark.parametrize("kind", ["joint", "fixed"])
def test_precomputed_pair_terms_equal_the_plain_ones(setup, kind):
    model, cond = setup
    kw = dict(joint_weight=10.0, fixed_weight=0.0, margin=0.4) if kind == "joint" else \
        dict(joint_weight=0.0, fixed_weight=10.0, margin=0.3)
    if kind == "fixed":
        cond = {k: v for k, v in cond.items() if k not in P.PAIR_KEYS}
    energy = P.RowEnergy(model, cond, **kw)
    assert energy.parts is not None
    w = tuple(kw.values())
    z = 1.5 * torch.randn(N, 40, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    e_plain, g_plain = _value_and_grad(lambda zz: plain_forward(model, zz, cond, *w)[0], z)
    pair = plain_forward(model, z, cond, *w)[1]
    assert int((pair > 1e-3).sum()) >= 3          # the pair terms are active on several rows
    e_fast, g_fast = _value_and_grad(lambda zz: energy.forward(zz)[0], z)
    e_lazy, g_lazy = _value_and_grad(lambda zz: P.row_forward(model, zz, cond, None, *w)[0], z)
    for e, g in ((e_fast, g_fast), (e_lazy, g_lazy)):
        torch.testing.assert_close(e, e_plain, rtol=1e-10, atol=1e-9)
        torch.testing.assert_close(g, g_plain, rtol=1e-9, atol=1e-9)
    # the gradient of the pair terms alone (not drowned by the cost's) matches too
    no_pair = P.RowEnergy(model, cond)
    g_cost = _value_and_grad(lambda zz: no_pair.forward(zz)[0], z)[1]
    assert float((g_plain - g_cost).abs().max()) > 1e-3
    torch.testing.assert_close(g_fast - g_cost, g_plain - g_cost, rtol=1e-8, atol=1e-9)


def test_parts_follow_the_rows_they_were_built_for(setup):
    """Parts of other rows (another margin) give another energy: the comparison above can fail."""
    model, cond = setup
    energy = P.RowEnergy(model, cond, joint_weight=10.0, margin=0.4)
    wrong = P.row_pair_parts(cond, 10.0, 0.0, 0.0)
    z = 1.5 * torch.randn(N, 40, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        right = energy.forward(z)[0]
        other = P.row_forward(model, z, cond, None, 10.0, 0.0, 0.4, 2.0, wrong)[0]
    assert float((right - other).abs().max()) > 1e-3


def test_live_neighbours_fill_the_slots_like_the_plain_computation(setup):
    model, cond = setup
    from ebmtraj.interaction import live_neighbours

    z = torch.randn(N, 40, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    states = model.rollout(z, cond)[0]
    centre, psi = footprint(states, cond["ref"])
    got = live_neighbours(cond, centre, psi, states[..., 2])
    want = plain_live_neighbours(cond, centre, psi, states[..., 2])
    assert bool(got[3].any())
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_pair_penalty_from_scratch_equals_the_plain_terms(setup):
    from ebmtraj.interaction import pair_penalty as library_pair_penalty

    model, cond = setup
    z = torch.randn(N, 40, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    states = model.rollout(z, cond)[0]
    centre, psi = footprint(states, cond["ref"])
    nbr_head = cond["nbr_heading"][..., None].expand(-1, -1, states.shape[1])
    args = (centre, psi, cond["size"] + 0.3, cond["nbr_pos"], nbr_head, cond["nbr_size"],
            cond["nbr_valid"] > 0, P.start_order(cond))
    want = pair_penalty(*args)
    assert float(want.max()) > 1e-3
    torch.testing.assert_close(library_pair_penalty(*args), want, rtol=1e-10, atol=1e-10)
