"""Samplers reproduce energies with known answers (fixed seeds, stated tolerances)."""
import math

import pytest
import torch

from ebmcore.sampling import block_average_projection, hmc, langevin, noise_schedule

MU = torch.tensor([1.0, -2.0])
COV = torch.tensor([[1.0, 0.6], [0.6, 2.0]])
PREC = torch.linalg.inv(COV)


def gaussian_energy(x):
    d = x - MU
    return 0.5 * torch.einsum("bi,ij,bj->b", d, PREC, d)


def _moments(x):
    return x.mean(0), torch.cov(x.T)


def test_langevin_gaussian_mean_and_covariance():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(4000, 2, generator=g) * 3
    x = langevin(gaussian_energy, x0, steps=800, step_size=0.3, generator=g)
    mean, cov = _moments(x)
    # tolerance: Monte Carlo error ~0.03 plus the O(delta^2) bias of unadjusted Langevin
    assert torch.allclose(mean, MU, atol=0.07), mean
    assert torch.allclose(cov, COV, atol=0.12), cov


def test_hmc_gaussian_mean_and_covariance_with_metropolis():
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(4000, 2, generator=g) * 3
    x, rate = hmc(gaussian_energy, x0, steps=150, step_size=0.3, leapfrog_steps=5, generator=g, return_accept=True)
    mean, cov = _moments(x)
    assert 0.5 < rate <= 1.0
    assert torch.allclose(mean, MU, atol=0.06), mean
    assert torch.allclose(cov, COV, atol=0.1), cov


MEANS = torch.tensor([[-1.5, 0.0], [1.5, 0.0], [0.0, 2.0]])
WEIGHTS = torch.tensor([0.5, 0.3, 0.2])
STD = 0.8


def mixture_energy(x):
    d2 = ((x[:, None, :] - MEANS[None]) ** 2).sum(-1)
    log_comp = torch.log(WEIGHTS)[None] - d2 / (2 * STD**2)
    return -torch.logsumexp(log_comp, dim=1)


def _cell_fractions(x):
    nearest = ((x[:, None, :] - MEANS[None]) ** 2).sum(-1).argmin(1)
    return torch.bincount(nearest, minlength=3).float() / len(x)


def _exact_mixture_fractions(n=400_000):
    g = torch.Generator().manual_seed(99)
    comp = torch.multinomial(WEIGHTS, n, replacement=True, generator=g)
    x = MEANS[comp] + STD * torch.randn(n, 2, generator=g)
    return _cell_fractions(x)


@pytest.mark.parametrize("method", ["langevin", "hmc"])
def test_mixture_mode_weights(method):
    """Mass in each mode's Voronoi cell matches exact mixture samples within 0.03."""
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(3000, 2, generator=g)
    if method == "langevin":
        x = langevin(mixture_energy, x0, steps=1500, step_size=0.2, generator=g)
    else:
        x = hmc(mixture_energy, x0, steps=300, step_size=0.3, leapfrog_steps=5, generator=g)
    assert torch.allclose(_cell_fractions(x), _exact_mixture_fractions(), atol=0.03)


def test_langevin_mask_keeps_observed_entries():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2000, 2, generator=g)
    mask = torch.zeros(2000, 2, dtype=torch.bool)
    mask[:, 0] = True
    x = langevin(gaussian_energy, x0, steps=400, step_size=0.3, mask=mask, generator=g)
    assert torch.equal(x[:, 0], x0[:, 0])
    # the free coordinate follows the conditional x2 | x1 of the Gaussian
    cond_mean = MU[1] + COV[1, 0] / COV[0, 0] * (x0[:, 0] - MU[0])
    assert (x[:, 1] - cond_mean).mean().abs() < 0.1
    assert abs((x[:, 1] - cond_mean).var().item() - (COV[1, 1] - COV[0, 1] ** 2 / COV[0, 0]).item()) < 0.15


def test_noise_off_is_gradient_descent_to_the_mode():
    x = langevin(gaussian_energy, torch.zeros(3, 2), steps=2000, step_size=0.3, noise="off")
    assert torch.allclose(x, MU.expand(3, 2), atol=1e-4)


def test_annealed_schedule_and_bad_names():
    s = noise_schedule("annealed")
    assert s(0, 11) == 1.0 and s(10, 11) == 0.0 and abs(s(5, 11) - 0.5) < 1e-9
    with pytest.raises(ValueError, match="unknown noise schedule"):
        noise_schedule("loud")


def test_clamp_and_callback():
    seen = []
    x = langevin(gaussian_energy, torch.zeros(10, 2), steps=5, step_size=1.0, clamp=(-0.5, 0.5),
                 callback=lambda info: seen.append(info["step"]))
    assert seen == list(range(5))
    assert x.abs().max() <= 0.5


def test_block_average_projection_matches_low_resolution():
    g = torch.Generator().manual_seed(0)
    low = torch.rand(2, 1, 4, 4, 4, generator=g)
    y = torch.rand(2, 1, 16, 16, 16, generator=g)
    projected = block_average_projection(low, 4)(y)
    assert torch.allclose(torch.nn.functional.avg_pool3d(projected, 4), low, atol=1e-6)


def test_any_shape_and_bptt_through_a_rollout():
    """Langevin on a control sequence whose energy rolls it out: gradients flow through time."""
    target = torch.linspace(0, 1, 8)

    def energy(u):  # u: (B, T, 1) increments; positions are their cumulative sum
        pos = torch.cumsum(u[..., 0], dim=1)
        return ((pos - target) ** 2).sum(1)

    u = langevin(energy, torch.zeros(4, 8, 1), steps=3000, step_size=0.2, noise="off")
    assert torch.allclose(torch.cumsum(u[..., 0], 1), target.expand(4, 8), atol=1e-3)


def test_differentiable_mode_gradcheck_float64():
    w = torch.tensor([0.7, -0.3], dtype=torch.float64, requires_grad=True)

    def run(x0, w):
        energy = lambda x: ((x - w) ** 2).sum(1) + 0.1 * (x**4).sum(1)
        return langevin(energy, x0, steps=4, step_size=0.3, noise="off", differentiable=True)

    x0 = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(run, (x0, w))


def test_differentiable_mode_optimises_the_start():
    """Reconstruction: optimise x0 so the unrolled chain lands on a target."""
    energy = lambda x: ((x - 1.0) ** 2).sum(1)
    target = torch.tensor([[1.5, 0.2]])
    z = torch.zeros(1, 2, requires_grad=True)
    opt = torch.optim.Adam([z], lr=0.1)
    losses = []
    for _ in range(100):
        out = langevin(energy, z, steps=3, step_size=0.5, noise="off", differentiable=True)
        loss = ((out - target) ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 1e-3 < losses[0]


def test_bad_arguments():
    with pytest.raises(ValueError):
        langevin(gaussian_energy, torch.zeros(1, 2), steps=-1, step_size=0.1)
    with pytest.raises(ValueError):
        hmc(gaussian_energy, torch.zeros(1, 2), steps=1, step_size=0.0)
