"""The fast paths of the shared model stack give what the plain computations give.

* the vectorised bicycle rollout (cumulative sums over time) against the same integration
  written one step at a time, in and beyond the soft bounds;
* the clamp form of the soft clip against its piecewise definition (values and gradients);
* the search's last evaluation without a gradient against one with it;
* the joint repair, which searches only the scenes whose independent plans touch, against the
  joint search of every scene with the touching scenes' results kept.
"""
from __future__ import annotations

import pytest
import torch

from ebmtraj.dynamics import BicycleParams, KinematicBicycle, rollout, softclip, softclip_inverse


def stepwise_rollout(x0: torch.Tensor, u: torch.Tensor, p: BicycleParams) -> torch.Tensor:
    """The reference: the integration of :mod:`ebmtraj.dynamics` one step at a time.
    x0 (..., 6), u (..., T, 2) -> states (..., T, 6)."""
    m = KinematicBicycle(p)
    dt, wb = p.dt, p.wheelbase
    v_lat, a_lat, d_lat = m.latent(x0)
    x, y, v, th, a, d = x0.unbind(-1)
    out = []
    for t in range(u.shape[-2]):
        a_lat, d_lat = a_lat + u[..., t, 0], d_lat + u[..., t, 1]
        a1, d1 = m._accel(a_lat), m._steer(d_lat)
        v_mid = m._speed(v_lat + dt * (3 * a + a1) / 8)          # latent speed at mid-step
        v_lat = v_lat + dt * (a + a1) / 2
        v1 = m._speed(v_lat)
        w0, w_mid = v * torch.tan(d) / wb, v_mid * torch.tan((d + d1) / 2) / wb
        w1 = v1 * torch.tan(d1) / wb
        th1 = th + dt / 6 * (w0 + 4 * w_mid + w1)
        th_mid = th + dt / 24 * (5 * w0 + 8 * w_mid - w1)
        x = x + dt / 6 * (v * torch.cos(th) + 4 * v_mid * torch.cos(th_mid) + v1 * torch.cos(th1))
        y = y + dt / 6 * (v * torch.sin(th) + 4 * v_mid * torch.sin(th_mid) + v1 * torch.sin(th1))
        v, th, a, d = v1, th1, a1, d1
        out.append(torch.stack([x, y, v, th, a, d], -1))
    return torch.stack(out, -2)


@pytest.mark.parametrize("u_scale", [(0.08, 0.01), (1.5, 0.08)])   # inside / far past the bounds
def test_vectorised_rollout_matches_the_stepwise_one(u_scale):
    g = torch.Generator().manual_seed(0)
    B, T = (2, 3), 40
    x0 = torch.stack([torch.rand(B, generator=g, dtype=torch.float64) * 100 - 50,
                      torch.rand(B, generator=g, dtype=torch.float64) * 100 - 50,
                      torch.rand(B, generator=g, dtype=torch.float64) * 30,
                      torch.rand(B, generator=g, dtype=torch.float64) * 6 - 3,
                      torch.rand(B, generator=g, dtype=torch.float64) * 4 - 2,
                      torch.rand(B, generator=g, dtype=torch.float64) * 0.2 - 0.1], -1)
    u = torch.randn(B + (T, 2), generator=g, dtype=torch.float64) * torch.tensor(u_scale, dtype=torch.float64)
    u.requires_grad_(True)
    p = BicycleParams()
    fast, ref = rollout(x0, u, p), stepwise_rollout(x0, u, p)
    assert fast.shape == ref.shape == B + (T, 6)
    assert (fast - ref).abs().max() < 1e-9
    if u_scale[0] > 1:                                           # the bounds are reached
        assert fast[..., 4].max() > p.accel_max - p.accel_margin
        assert fast[..., 2].min() < p.speed_margin
    w = torch.randn(fast.shape, generator=g, dtype=torch.float64)
    (g_fast,) = torch.autograd.grad((fast * w).sum(), u)
    (g_ref,) = torch.autograd.grad((ref * w).sum(), u)
    assert (g_fast - g_ref).abs().max() < 1e-8 * (1 + g_ref.abs().max())
    # float32 (the search's dtype) to float32 rounding
    f32 = rollout(x0.float(), u.detach().float(), p)
    assert (f32.double() - ref.detach()).abs()[..., :2].max() < 2e-3


def piecewise_softclip(z, lo, hi, margin):
    a, b = lo + margin, hi - margin
    return torch.where(z > b, b + margin * torch.tanh((z - b) / margin),
                       torch.where(z < a, a - margin * torch.tanh((a - z) / margin), z))


def test_softclip_matches_its_piecewise_definition():
    z = torch.linspace(-12, 8, 2001, dtype=torch.float64, requires_grad=True)
    fast, ref = softclip(z, -8.0, 4.0, 1.0), piecewise_softclip(z, -8.0, 4.0, 1.0)
    assert (fast - ref).abs().max() < 1e-14
    (gf,) = torch.autograd.grad(fast.sum(), z)
    (gr,) = torch.autograd.grad(ref.sum(), z)
    assert (gf - gr).abs().max() < 1e-12
    y = torch.linspace(-0.499, 0.499, 999, dtype=torch.float64)
    assert (softclip(softclip_inverse(y, -0.5, 0.5, 0.1), -0.5, 0.5, 0.1) - y).abs().max() < 1e-10


@pytest.fixture(scope="module")
def two_scenes():
    """An untrained model and the rows of two toy scenes: one far apart, one with a fast
    follower 6 m behind a slow leader (its independent plan runs into the leader)."""
    from ebmtraj.cost_inputs import build_inputs
    from ebmtraj.data.toy import RECORDING, straight_road, traffic_scene
    from ebmtraj.interaction import pair_index
    from ebmtraj.ioc import cond_of
    from ebmtraj.model import ModelConfig, build_model

    torch.set_num_threads(1)
    torch.manual_seed(3)
    far = traffic_scene(4, seed=1, spacing=30.0)
    close = traffic_scene(4, seed=2, gaps=[0.0, 0.0, 0.0, -6.0], speeds=[12.0, 15.0, 15.0, 25.0])
    sc = {k: (torch.cat([far[k], close[k]]) if torch.is_tensor(far[k]) else far[k]) for k in far}
    inp = build_inputs(sc, {RECORDING: straight_road()}, "all")
    model = build_model(ModelConfig(), 10, 40).eval()
    cond = cond_of(inp, model)
    cond.update(pair_index(inp["scene"], inp["agent"], inp["nbr_agent"], inp["origin"]))
    return model, cond, inp["scene"]


def test_last_evaluation_without_gradient_changes_nothing(two_scenes):
    from ebmtraj.prediction import RowEnergy
    from ebmtraj.search import anytime_search, reference_start

    model, cond, _ = two_scenes
    energy = RowEnergy(model, {k: v for k, v in cond.items() if k not in ("nbr_row", "rel_angle", "rel_shift")})
    start = reference_start(model, energy.cond, energy.enc)
    plain = anytime_search(energy.energy_and_grad, start, steps=4, lr=0.05)
    fast = anytime_search(energy.energy_and_grad, start, steps=4, lr=0.05, energy_fn=energy.energy)
    assert plain.iterations == fast.iterations == 5
    assert torch.equal(plain.z, fast.z) and torch.allclose(plain.energy, fast.energy, rtol=1e-6)
    states, _ = energy.rollout(fast.z)                         # the last evaluation's states
    assert torch.allclose(states, model.rollout(fast.z, energy.cond)[0], atol=1e-6)


def test_joint_repair_searches_only_the_touching_scenes(two_scenes):
    from dataclasses import replace

    from ebmtraj.model import PredictConfig
    from ebmtraj.prediction import RowEnergy, predict_rows, scene_contact, search_rows

    model, cond, groups = two_scenes
    cfg = PredictConfig(mode="adam", samples=1, init="reference", opt_steps=3, interaction_weight=10.0,
                        joint_start="independent", joint_steps=4)
    alone = search_rows(model, cond, cfg, make_energy=lambda c: RowEnergy(model, c))
    touch = scene_contact(alone["states"][:, 0], cond, groups, test=cfg.repair_contact)
    assert touch.tolist() == [False] * 4 + [True] * 4
    # the joint search of every scene from the independent controls, touching scenes kept
    every = search_rows(model, cond, replace(cfg, opt_steps=4), groups=groups, start=alone["z"][:, 0],
                        make_energy=lambda c: RowEnergy(model, c, joint_weight=10.0, margin=cfg.repair_margin))
    got = predict_rows(model, cond, cfg, joint=True, groups=groups)
    for key in ("z", "states", "energy"):
        want = torch.where(touch.view(-1, *[1] * (every[key].dim() - 1)), every[key], alone[key])
        assert torch.allclose(got[key], want, atol=1e-5), key
    assert (got["states"][4:] - alone["states"][4:]).abs().max() > 0.05     # the repair moved them
    assert got["iterations"] == 5
