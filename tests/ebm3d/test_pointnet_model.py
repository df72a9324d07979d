"""The generative PointNet energy: permutation invariance, gradient equivariance, shapes, gradients."""
import pytest
import torch

from ebmcore.errors import ConfigError
from ebmcore.sampling import energy_and_grad

from ebm3d.models.pointnet import CPU_DEFAULT, PAPER, GenerativePointNet, PointNetSpec


def _model(**kw):
    torch.manual_seed(0)
    spec = dict(widths=[16, 32], mlp=[16], sigma_ref=0.3)
    spec.update(kw)
    return GenerativePointNet(PointNetSpec(**spec)).double()


def _clouds(b=3, n=40, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, n, 3, generator=g, dtype=torch.float64) * 0.4


def test_energy_is_invariant_to_point_order():
    model, x = _model(), _clouds()
    perm = torch.randperm(x.shape[1], generator=torch.Generator().manual_seed(2))
    e, e_perm = model.energy(x), model.energy(x[:, perm])
    assert e.shape == (3,)
    torch.testing.assert_close(e_perm, e, rtol=1e-10, atol=1e-10)
    # and the energy is not constant: moving one point changes it
    y = x.clone()
    y[:, 0] += 0.5
    assert (model.energy(y) - e).abs().min() > 1e-6


def test_input_gradient_is_permutation_equivariant():
    model, x = _model(), _clouds()
    perm = torch.randperm(x.shape[1], generator=torch.Generator().manual_seed(3))
    _, g = energy_and_grad(model.energy, x)
    _, g_perm = energy_and_grad(model.energy, x[:, perm])
    torch.testing.assert_close(g_perm, g[:, perm], rtol=1e-9, atol=1e-12)
    assert g.abs().max() > 0


def test_score_is_blind_to_translation_and_uniform_scale():
    """The point normalisation after the first (affine) layer removes position and size."""
    model, x = _model(), _clouds()
    moved = 1.7 * x + torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64)
    torch.testing.assert_close(model.score(moved), model.score(x), rtol=1e-4, atol=1e-4)  # eps in the norm
    stretched = x * torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64)  # not uniform: seen
    assert (model.score(stretched) - model.score(x)).abs().max() > 1e-3


def test_any_point_count_and_bad_shapes():
    model = _model()
    for n in (2, 7, 300):
        assert model.energy(_clouds(2, n)).shape == (2,)
    for bad in (torch.zeros(2, 10, 2), torch.zeros(10, 3), torch.zeros(2, 1, 3)):
        with pytest.raises(ValueError, match=r"\(B, N, 3\)"):
            model.energy(bad.double())


def test_energy_gradcheck_and_second_order():
    """First and second derivatives (the reconstruction differentiates through grad E)."""
    model, x = _model(widths=[4, 5], mlp=[3]), _clouds(2, 6).requires_grad_(True)
    assert torch.autograd.gradcheck(model.energy, (x,), eps=1e-6, atol=1e-5)
    assert torch.autograd.gradgradcheck(model.energy, (x,), eps=1e-6, atol=1e-4)


def test_features_max_pool_the_per_point_layers():
    model, x = _model(), _clouds()
    f_all, f_last = model.features(x, "all"), model.features(x)
    assert f_all.shape == (3, 16 + 32) and f_last.shape == (3, 32)
    perm = torch.randperm(x.shape[1])
    torch.testing.assert_close(model.features(x[:, perm], "all"), f_all)
    torch.testing.assert_close(f_all[:, 16:], f_last)
    assert (f_all >= 0).all()  # ReLU outputs
    with pytest.raises(ValueError, match="all"):
        model.features(x, "first")


def test_published_network_layout():
    model = GenerativePointNet(PointNetSpec(**PAPER, n_points=64))
    convs = [getattr(c, "layer", c) for c in model.convs]  # the 64 -> 64 layer is residual
    assert [c.out_channels for c in convs] == [64, 64, 128, 256, 1024]
    assert all(c.kernel_size == (1,) for c in convs)
    linears = [m for m in model.head if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(1024, 512), (512, 256), (256, 128), (128, 64), (64, 1)]
    assert model.sigma_ref == 0.3
    assert PointNetSpec(**PAPER, n_points=64).macs_per_point() > 20 * PointNetSpec(**CPU_DEFAULT, n_points=64).macs_per_point()


def test_point_norm_normalises_each_channel_over_the_points_then_scales_per_channel():
    from ebm3d.models.pointnet import PointNorm

    norm = PointNorm(5).double()
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 2.0, 5).view(5, 1))
        norm.bias.copy_(torch.linspace(-1.0, 1.0, 5).view(5, 1))
    h = torch.randn(3, 5, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) * 3 + 1
    mean, var = h.mean(2, keepdim=True), h.var(2, unbiased=False, keepdim=True)
    expected = (h - mean) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias
    torch.testing.assert_close(norm(h), expected)


@pytest.mark.parametrize("kw, key", [({"widths": []}, "widths"), ({"mlp": [0]}, "mlp"),
                                     ({"sigma_ref": -1.0}, "sigma_ref"), ({"norm": "batch"}, "norm")])
def test_bad_spec_names_the_field(kw, key):
    with pytest.raises(ConfigError, match=key):
        PointNetSpec(**kw).validate()


def test_reference_term_matches_the_engine_formula():
    model, x = _model(sigma_ref=0.5), _clouds()
    torch.testing.assert_close(model.energy(x), -model.score(x) + x.pow(2).sum((1, 2)) / (2 * 0.25))
    assert GenerativePointNet(PointNetSpec(sigma_ref=None)).sigma_ref is None
