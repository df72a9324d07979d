"""The search energy's pair terms with their control-independent parts computed once per
energy (:func:`ebmtraj.prediction.row_pair_parts`, :func:`ebmtraj.interaction.pair_penalty_fast`)
equal the plain computation (footprints, live slots, :func:`ebmtraj.interaction.pair_penalty`
at every evaluation), values and gradients, on real rows in float64."""
from __future__ import annotations

import pytest
import torch

from ebmtraj import ioc
from ebmtraj import prediction as P
from ebmtraj.cost_inputs import COND_TENSORS
from ebmtraj.interaction import footprint, pair_index, pair_penalty

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
