"""The EBM-IOC cost: finite on real scenes, geometry against shapely, gradients through the
rollout (gradcheck in float64), control coordinates, causal inputs and bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ebmcore.errors import DataError
from ebmtraj import cost as C
from ebmtraj import ioc
from ebmtraj.cost_inputs import CTX_NAMES, build_inputs, future_states

from .ioc_helpers import real_scenes


@pytest.fixture(scope="module")
def real():
    torch.set_num_threads(1)
    return real_scenes()


def _model_on(real, n=48, fit_iters=15):
    inp = {k: v[:n] for k, v in real["target"].items()}
    sc = real["scenes"]
    fs = future_states(sc, real["target"])[:n]
    model = ioc.build_model(ioc.ModelConfig(), int(sc["history"]), int(sc["future"]), ioc.control_scale(fs))
    data, err = ioc.prepare_training(model, inp, fs, fit_iters=fit_iters)
    return model, data, err


def test_inputs_shapes_and_causality(real):
    inp, sc = real["target"], real["scenes"]
    n, H, T = sc["mask"].shape[0], int(sc["history"]), int(sc["future"])
    assert inp["x0"].shape == (n, 6) and inp["hist"].shape == (n, H, 2) and inp["future"].shape == (n, T, 2)
    assert inp["ctx"].shape == (n, len(CTX_NAMES))
    assert all(torch.isfinite(v).all() for v in inp.values() if v.is_floating_point())
    # agent frame: the agent starts at the origin heading along +x; moving agents go forward
    moving = inp["x0"][:, 2] > 3.0
    assert inp["x0"][:, :2].abs().max() == 0 and moving.sum() > 20
    assert (inp["future"][moving, -1, 0] > 0).all()
    # the inputs do not change when the future is scrambled (they read the history only)
    sc2 = dict(sc)
    raw = sc["positions_raw"].clone()
    raw[:, :, H:] += 5.0 * torch.randn_like(raw[:, :, H:])
    sc2["positions_raw"] = raw
    inp2 = build_inputs(sc2, real["lanes"], "target")
    for k in ("x0", "hist", "ctx", "nbr_pos", "lane_pts"):
        assert torch.equal(inp[k], inp2[k]), k


def test_cost_finite_on_real_scenes(real):
    model, data, _ = _model_on(real)
    cond = {k: v for k, v in data.items() if k != "x"}
    g = torch.Generator().manual_seed(0)
    for z in (data["x"], torch.zeros_like(data["x"]), 3 * torch.randn(data["x"].shape, generator=g)):
        z = z.clone().requires_grad_(True)
        e = model.energy(z, cond)
        assert e.shape == (z.shape[0],) and torch.isfinite(e).all()
        (grad,) = torch.autograd.grad(e.sum(), z)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0
        states, u = model.rollout(z.detach(), cond)
        feats = C.trajectory_features(states, u, cond, 0.1)
        assert feats.shape == (z.shape[0], z.shape[1], len(C.FEATURES))
        assert torch.isfinite(feats).all() and (feats >= 0).all()


def test_lane_offset_matches_shapely(real):
    inp, sc = real["all"], real["scenes"]
    # positions: the observed futures, in the agent frame and in the recording frame
    n = min(200, inp["x0"].shape[0])
    p = inp["future"][:n]
    offset, _, _, has = C.lane_frame(p, inp["lane_pts"][:n], inp["lane_seg"][:n], inp["lane_hw"][:n])
    from ebmtraj.cost_inputs import to_recording_frame

    world = to_recording_frame(p.double(), inp["origin"][:n]).numpy()
    lanes = real["lanes"][sc["recordings"][int(sc["recording"][0])]]
    ref = lanes.frenet(world[..., 0], world[..., 1])["offset"]
    ok = has[:, None].expand_as(offset).numpy() & (np.abs(ref) < 1.5)
    diff = np.abs(offset.numpy() - ref)[ok]
    assert ok.sum() > 1000
    assert np.median(diff) < 0.02 and np.quantile(diff, 0.95) < 0.25


def _tiny_case(seed=0, T=6, B=2):
    g = torch.Generator().manual_seed(seed)
    dt = torch.float64
    xs = torch.linspace(-10, 60, 8, dtype=dt)
    lane0 = torch.stack([xs, 0.02 * xs], -1)
    lane1 = torch.stack([xs, 3.6 + 0.02 * xs], -1)
    lanes = torch.stack([lane0, lane1])[None].repeat(B, 1, 1, 1)
    x0 = torch.tensor([[0.0, 0.3, 12.0, 0.01, 0.2, 0.003], [0.0, -0.4, 9.0, -0.02, -0.3, -0.002]], dtype=dt)
    tt = torch.arange(1, T + 1, dtype=dt) * 0.1
    nbr = torch.stack([8.0 + 10.0 * tt, 0.2 + 0 * tt], -1)[None, None].repeat(B, 1, 1, 1)
    cond = {"x0": x0, "hist": torch.randn(B, 3, 2, generator=g, dtype=dt),
            "ctx": torch.randn(B, len(CTX_NAMES), generator=g, dtype=dt),
            "v_hist": torch.tensor([11.0, 10.0], dtype=dt), "lane_pts": lanes,
            "lane_seg": torch.ones(B, 2, 7, dtype=torch.bool), "lane_hw": torch.full((B, 2), 1.8, dtype=dt),
            "nbr_pos": nbr, "nbr_vel": torch.tensor([10.0, 0.0], dtype=dt).expand(B, 1, T, 2).clone(),
            "nbr_size": torch.tensor([[[4.5, 1.8]]], dtype=dt).repeat(B, 1, 1), "nbr_valid": torch.ones(B, 1, dtype=dt),
            "size": torch.tensor([[4.5, 1.8]], dtype=dt).repeat(B, 1), "ref": torch.tensor([2.25, 0.0], dtype=dt)}
    cost = C.TrajectoryCost(history=3, ctx_dim=len(CTX_NAMES), steps=T, hidden=8, knots=3)
    param = C.ControlParam((0.5, 0.01), "whitened", T)
    levels = torch.randn(64, T, 2, generator=g).cumsum(1) * torch.tensor([0.3, 0.004])
    param.fit(levels, shrink=0.5)
    model = C.IOCEnergy(cost, param, sigma_ref=3.0, grad_clip=None).double()
    with torch.no_grad():                       # a non-trivial neural term and weights
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=dt))
    z = 0.5 * torch.randn(B, T, 2, generator=g, dtype=dt)
    return model, cond, z


def test_gradcheck_through_cost_and_rollout():
    model, cond, z = _tiny_case()
    z = z.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda zz: model.energy(zz, cond), (z,), eps=1e-6, atol=1e-5)


def test_gradcheck_with_respect_to_weights():
    model, cond, z = _tiny_case(seed=1)
    theta = model.cost.theta.detach().clone().requires_grad_(True)

    def energy(th):
        return torch.func.functional_call(model, {"cost.theta": th}, (z, cond))

    assert torch.autograd.gradcheck(energy, (theta,), eps=1e-6, atol=1e-5)


def test_gradient_clip_bounds_sampler_drift_only():
    model, cond, z = _tiny_case(seed=2)
    model.grad_clip = 1e-3
    z = z.requires_grad_(True)
    (g,) = torch.autograd.grad(model.energy(z, cond).sum(), z)
    prior = z.detach() / model.sigma_ref ** 2
    assert ((g - prior).flatten(1).norm(dim=1) <= 1e-3 + 1e-9).all()
    (gt,) = torch.autograd.grad(model.energy(z.detach(), cond).sum(), model.cost.theta)
    assert gt.abs().sum() > 0


@pytest.mark.parametrize("basis", ["whitened", "level", "increment"])
def test_control_coordinates_round_trip(basis):
    g = torch.Generator().manual_seed(0)
    param = C.ControlParam((0.7, 0.02), basis, 12)
    if basis == "whitened":
        param.fit(torch.randn(100, 12, 2, generator=g).cumsum(1), shrink=0.5)
    x0 = torch.randn(4, 6, generator=g, dtype=torch.float64)
    z = torch.randn(4, 12, 2, generator=g, dtype=torch.float64)
    u = param.controls(z, x0)
    assert torch.allclose(param.whiten(u, x0), z, atol=1e-8)


def test_nominal_is_constant_velocity():
    model, cond, _ = _tiny_case()
    states, _ = model.rollout(torch.zeros(2, 6, 2, dtype=torch.float64), cond)
    v0, h0 = cond["x0"][:, 2], cond["x0"][:, 3]
    t = torch.arange(1, 7, dtype=torch.float64) * 0.1
    # the first step undoes the initial acceleration / steering, then speed and heading hold
    assert torch.allclose(states[:, 1:, 2], states[:, 1:2, 2].expand(-1, 5), atol=1e-9)
    assert torch.allclose(states[:, 1:, 3], states[:, 1:2, 3].expand(-1, 5), atol=1e-9)
    assert torch.allclose(states[:, -1, 0], (v0 * t[-1] * h0.cos()), atol=0.05)


def test_neighbour_features_react_to_a_close_lead():
    _, cond, _ = _tiny_case()
    T = cond["nbr_pos"].shape[2]
    t = torch.arange(1, T + 1, dtype=torch.float64) * 0.1
    ego = torch.stack([12.0 * t, 0 * t], -1)[None]
    heading, speed = torch.zeros(1, T, dtype=torch.float64), torch.full((1, T), 12.0, dtype=torch.float64)

    def terms(gap):
        nbr = torch.stack([gap + 5.0 * t, 0 * t], -1)[None, None]
        vel = torch.tensor([5.0, 0.0], dtype=torch.float64).expand(1, 1, T, 2)
        return C.neighbour_terms(ego, heading, speed, nbr, vel, cond["nbr_size"][:1], cond["nbr_valid"][:1],
                                 cond["size"][:1])

    near, far = terms(8.0), terms(80.0)
    for a, b in zip(near, far):
        assert a.sum() > b.sum()


def test_bad_history_is_a_clear_error(real):
    sc = dict(real["scenes"])
    raw = sc["positions_raw"].clone()
    raw[3, 0, 2, 1] = math.nan
    sc["positions_raw"] = raw
    with pytest.raises(DataError, match="scene 3, agent 0"):
        build_inputs(sc, real["lanes"], "target")


def test_virtual_leaders_from_recorded_headways(real):
    sc, lanes = real["scenes"], real["lanes"]
    S, A = sc["mask"].shape
    H = int(sc["history"])
    base = build_inputs(sc, lanes, "target")
    # every agent follows a leader 30 m ahead (front to front), closing at 2 m/s
    hw = np.broadcast_to(30.0 + 2.0 * 0.1 * np.arange(H)[::-1], (S, A, H)).copy()
    hw[1, 0, 5] = 45.0                                     # a change of leader: no virtual leader
    inp = build_inputs(sc, lanes, "target", headways=hw)
    M = base["nbr_valid"].shape[1]
    assert inp["nbr_valid"].shape[1] == M + 1 and torch.equal(inp["nbr_pos"][:, :M], base["nbr_pos"])
    lead_ok = inp["nbr_valid"][:, M] > 0
    assert not lead_ok[1] and lead_ok.float().mean() > 0.5
    v0 = inp["x0"][:, 2]
    i = torch.nonzero(lead_ok).flatten()[0]
    ref = float(inp["ref"][i])
    assert float(inp["nbr_pos"][i, M, 0, 0]) == pytest.approx(30.0 - ref + (float(v0[i]) - 2.0) * 0.1, abs=1e-3)
    assert float(inp["nbr_vel"][i, M, 0, 0]) == pytest.approx(float(v0[i]) - 2.0, abs=1e-3)
    assert (inp["nbr_agent"][:, M] == -1).all()
    # without a scene agent that close, the context now sees the leader
    gap = inp["ctx"][:, CTX_NAMES.index("lead_gap")]
    assert (gap[lead_ok] < 31.0).float().mean() > 0.9


def test_us101_headways_match_the_csv_rows(tmp_path):
    import pandas as pd

    from ebmcore.io import load_tensors
    from ebmcore.paths import data_root
    from ebmtraj.data.prepare import prepare

    folder = data_root() / "ngsim-us101-vehicles"
    if not folder.is_dir():
        pytest.skip(f"per-vehicle US-101 data not found under {folder}")
    out = prepare("us101-vehicles", out=tmp_path / "cache", limit=6, seed=0)
    sc = load_tensors(out / "scenes_train.pt")
    hw = sc["headway"].double().numpy()                 # stored by prepare
    H = int(sc["history"])
    assert hw.shape == tuple(sc["mask"].shape) + (H,)
    assert np.isfinite(hw[sc["mask"].numpy()]).mean() > 0.99
    s = 3
    vid = int(sc["vehicle_id"][s, 0])
    df = pd.read_csv(folder / f"{vid}.csv")
    k = np.round(df["Global_Time"].to_numpy() / 100).astype(int)
    k0 = int(round(float(sc["t0"][s]) / 0.1))
    expect = df["Space_Headway(m)"].to_numpy()[np.searchsorted(k, k0 + np.arange(H))]
    assert np.allclose(hw[s, 0], expect)
    # the history positions of that row are the CSV's positions of the same frames
    raw = sc["positions_raw"][s, 0, :H].numpy()
    rows = df.iloc[np.searchsorted(k, k0 + np.arange(H))]
    assert np.allclose(raw[:, 1], rows["local_y(m)"].to_numpy(), atol=1e-3)
