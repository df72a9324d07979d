"""The differentiable kinematic bicycle: oracle comparison, gradients, bounds, inverse."""
import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from ebmtraj.dynamics import (BicycleParams, KinematicBicycle, inverse_dynamics, rollout,
                              softclip, softclip_inverse)

from .ioc_helpers import need

vm = pytest.importorskip("vehiclemodels", reason="commonroad-vehicle-models is not installed")
from vehiclemodels.parameters_vehicle2 import parameters_vehicle2  # noqa: E402
from vehiclemodels.vehicle_dynamics_ks import vehicle_dynamics_ks  # noqa: E402

# Agreement with CommonRoad's kinematic single-track model integrated by RK45 (rtol 1e-10)
# on the same inputs, over 4 s: position [m], speed [m/s], heading and steering [rad].
ORACLE_TOL = {"pos": 1e-3, "speed": 1e-6, "heading": 1e-4, "steer": 1e-6}


def _random_inputs(rng, B, T):
    x0 = np.c_[rng.uniform(-50, 50, B), rng.uniform(-50, 50, B), rng.uniform(5, 25, B),
               rng.uniform(-np.pi, np.pi, B), rng.uniform(-1, 1, B), rng.uniform(-.1, .1, B)]
    # Within both models' limits: |steering rate| <= 0.4 rad/s (KS), |delta| <= 0.4 and
    # a in [-7, 3] (the identity zone of this model's soft bounds).
    u = np.stack([rng.normal(0, 0.08, (B, T)), rng.uniform(-0.03, 0.03, (B, T))], -1)
    return torch.tensor(x0), torch.tensor(u)


def test_matches_commonroad_kinematic_single_track():
    p = parameters_vehicle2()
    params = BicycleParams(wheelbase=p.a + p.b)
    x0, u = _random_inputs(np.random.default_rng(0), 6, 40)
    states = rollout(x0, u, params).numpy()
    dt = params.dt
    for b in range(x0.shape[0]):
        seq = np.vstack([x0[b].numpy(), states[b]])
        a, d = seq[:, 4], seq[:, 5]
        assert np.all(np.abs(a) < 3.0) and np.all(np.abs(d) < 0.4)  # identity zone

        def rhs(t, s):
            i = min(int(t / dt), len(a) - 2)
            acc = a[i] + (a[i + 1] - a[i]) * (t - i * dt) / dt  # same linear a in the step
            return vehicle_dynamics_ks(s, [(d[i + 1] - d[i]) / dt, acc], p)

        s0 = [seq[0, 0], seq[0, 1], seq[0, 5], seq[0, 2], seq[0, 3]]  # x, y, delta, v, psi
        sol = solve_ivp(rhs, (0, len(a) * dt - dt), s0, t_eval=np.arange(1, len(a)) * dt,
                        rtol=1e-10, atol=1e-10, max_step=dt / 4)
        ks = sol.y.T
        assert np.abs(ks[:, :2] - seq[1:, :2]).max() < ORACLE_TOL["pos"]
        assert np.abs(ks[:, 3] - seq[1:, 2]).max() < ORACLE_TOL["speed"]
        assert np.abs(ks[:, 4] - seq[1:, 3]).max() < ORACLE_TOL["heading"]
        assert np.abs(ks[:, 2] - seq[1:, 5]).max() < ORACLE_TOL["steer"]


def test_gradcheck_through_rollout():
    x0, u = _random_inputs(np.random.default_rng(1), 2, 4)
    x0.requires_grad_(True)
    u.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: rollout(a, b), (x0, u), eps=1e-6, atol=1e-5)


def test_gradcheck_in_the_saturated_zone():
    x0 = torch.tensor([[0.0, 0.0, 0.3, 0.2, 3.5, 0.45]], dtype=torch.float64,
                      requires_grad=True)
    u = torch.full((1, 5, 2), 0.2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: rollout(a, b), (x0, u), eps=1e-6, atol=1e-5)


def test_bounds_hold_and_gradients_survive():
    p = BicycleParams()
    x0 = torch.tensor([[0.0, 0.0, 10.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    far = torch.tensor([[[5.0, 1.0]] * 20], dtype=torch.float64)
    s = rollout(x0, far)
    assert s[..., 4].max() <= p.accel_max and s[..., 5].max() <= p.steer_max
    down = rollout(x0, -far * 3)
    assert down[..., 4].min() >= p.accel_min and down[..., 5].min() >= -p.steer_max
    assert down[..., 2].min() >= 0.0  # the speed never goes negative
    # Moderately past the bounds the soft clip still passes gradient (a hard clamp would not).
    u = torch.tensor([[[0.4, 0.03]] * 20], dtype=torch.float64, requires_grad=True)
    s = rollout(x0, u)
    assert s[0, -1, 4] > p.accel_max - p.accel_margin and s[0, -1, 5] > p.steer_max - 0.1
    s[..., 1].sum().backward()
    assert torch.all(u.grad.abs().sum(-1) > 0)
    z = torch.linspace(-20, 20, 401, dtype=torch.float64)
    y = softclip(z, -8, 4, 1)
    invertible = (z > -9.5) & (z < 5.5)  # within 1e-3 of saturation the inverse is clamped
    assert torch.allclose(softclip_inverse(y, -8, 4, 1)[invertible], z[invertible], atol=1e-9)
    assert y.max() <= 4 and y.min() >= -8
    inner = (z > -7) & (z < 3)
    assert torch.equal(y[inner], z[inner])


def test_batched_over_agents_matches_flat():
    x0, u = _random_inputs(np.random.default_rng(2), 6, 10)
    flat = rollout(x0, u)
    nested = rollout(x0.reshape(2, 3, 6), u.reshape(2, 3, 10, 2))
    assert nested.shape == (2, 3, 10, 6)
    assert torch.allclose(nested.reshape(6, 10, 6), flat)
    with pytest.raises(ValueError):
        rollout(x0, u[..., :1])


def test_closed_form_controls_reproduce_accel_and_steering():
    x0, u = _random_inputs(np.random.default_rng(3), 4, 15)
    s = rollout(x0, u)
    u2 = KinematicBicycle().controls_from_states(x0, s)
    assert torch.allclose(u2, u, atol=1e-9)
    assert torch.allclose(rollout(x0, u2), s, atol=1e-8)


def _real_windows(name, n):
    """n 4.1 s windows (x0 + 40 states) of smoothed real tracks, moving faster than 2 m/s."""
    from ebmtraj.data.cleaning import clean

    folder = need(name)
    if name == "ngsim-us101-vehicles":
        from ebmtraj.data.ngsim import read_us101_vehicles
        table = read_us101_vehicles(folder, vehicles=[1002, 1003, 1007, 1017])
    else:
        from ebmtraj.data.commonroad import read_commonroad
        table, _ = read_commonroad(folder / "USA_US101-12_1_T-1.xml")
    tracks, _ = clean(table)
    cols = ["x", "y", "speed", "heading", "accel", "steering"]
    wins = []
    for _, tr in tracks.groupby("track_id"):
        arr = tr[cols].to_numpy()
        for start in range(0, len(arr) - 41, 60):
            w = arr[start:start + 41]
            if w[:, 2].min() > 2.0:
                wins.append(w)
    rng = np.random.default_rng(0)
    pick = rng.choice(len(wins), size=min(n, len(wins)), replace=False)
    return torch.tensor(np.stack([wins[i] for i in pick]))


@pytest.mark.parametrize("name", ["ngsim-us101-vehicles", "commonroad-ngsim-us101"])
def test_inverse_dynamics_on_real_tracks(name):
    torch.manual_seed(0)
    w = _real_windows(name, 8)
    u, info = inverse_dynamics(w[:, 0], w[:, 1:], iters=30, steps=2)
    # The observed (smoothed) positions are reproduced to a few centimetres (bound: 6 cm;
    # measured 3.3 cm on US-101 and 1.1 cm on CommonRoad with this short refinement).
    assert info["rmse"] < 0.06, info
    assert info["rmse"] < info["rmse_closed_form"]
    assert torch.allclose(rollout(w[:, 0], u)[..., :2], w[:, 1:, :2], atol=0.5)
