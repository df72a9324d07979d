"""The generative VoxelNet energy network and the reference classifier: shapes, padding, init,
the energy contract, gradients and bad input."""
import pytest
import torch

from ebmcore.errors import ConfigError
from ebm3d.models import CPU_DEFAULT, PAPER, ReferenceClassifier, VoxelNet, VoxelNetSpec
from ebm3d.models.voxelnet import layer_sizes, same_padding


def test_same_padding_matches_tensorflow_rule():
    # out = ceil(in / s); total = (out - 1) * s + k - in, the odd cell after
    assert same_padding(32, 16, 3) == (7, 7)
    assert same_padding(11, 6, 2) == (2, 3)
    assert same_padding(32, 6, 3) == (2, 2)
    assert same_padding(11, 4, 2) == (1, 2)
    assert same_padding(5, 1, 1) == (0, 0)
    assert layer_sizes(32, [3, 2]) == [11, 6]
    assert layer_sizes(64, [3, 2]) == [22, 11]


@torch.no_grad()
def test_paper_network_shapes_init_and_features():
    torch.manual_seed(0)
    model = VoxelNet(VoxelNetSpec(**PAPER))
    conv1 = model.convs[0].conv
    assert tuple(conv1.weight.shape) == (200, 1, 16, 16, 16) and conv1.stride == (3, 3, 3)
    assert tuple(model.convs[1].conv.weight.shape) == (100, 200, 6, 6, 6)
    assert tuple(model.head.weight.shape) == (1, 100, 6, 6, 6)  # the full-volume conv
    assert abs(float(conv1.weight.std()) - 0.001) < 2e-5 and float(conv1.bias.abs().max()) == 0.0
    x = torch.rand(1, 1, 32, 32, 32)
    h1, h2 = model.hidden(x)
    assert h1.shape == (1, 200, 11, 11, 11) and h2.shape == (1, 100, 6, 6, 6)
    assert model.features(x).shape == (1, 8100)  # 3^3 * 200 + 3^3 * 100, as published
    assert model.score(x).shape == (1,)
    # conv1 + conv2 + head multiply-adds, times 2
    expected = 2 * (11**3 * 200 * 16**3 + 6**3 * 100 * 200 * 6**3 + 100 * 6**3)
    assert model.flops_per_forward() == expected


def test_paper_network_at_64_cubed_builds():
    model = VoxelNet(VoxelNetSpec(**PAPER, resolution=64))
    assert model.sizes == [64, 22, 11] and tuple(model.head.weight.shape) == (1, 100, 11, 11, 11)


def test_cpu_default_keeps_the_paper_geometry():
    model = VoxelNet(VoxelNetSpec(**CPU_DEFAULT))
    assert model.sizes == [32, 11, 6]
    assert model.features(torch.zeros(2, 1, 32, 32, 32)).shape == (2, 27 * (32 + 64))
    assert model.flops_per_forward() < VoxelNet(VoxelNetSpec(**PAPER)).flops_per_forward() / 50


def test_energy_is_minus_score_plus_reference_and_mean_buffer():
    torch.manual_seed(1)
    spec = VoxelNetSpec([3, 4], [3, 2], [2, 2], resolution=8, sigma_ref=0.5, init_std=0.1)
    mean = torch.rand(1, 1, 8, 8, 8)
    model = VoxelNet(spec, mean=mean)
    x = torch.randn(5, 1, 8, 8, 8)
    e = model.energy(x)
    assert e.shape == (5,)
    torch.testing.assert_close(e, -model.score(x) + x.pow(2).flatten(1).sum(1) / (2 * 0.25))
    occ = torch.rand(5, 1, 8, 8, 8)
    torch.testing.assert_close(model.uncentre(model.centre(occ)), occ)
    torch.testing.assert_close(model.centre(occ), occ - mean)
    model.set_mean(occ)
    torch.testing.assert_close(model.mean, occ.mean(0, keepdim=True))
    # the mean travels with the checkpoint
    clone = VoxelNet(spec)
    clone.load_state_dict(model.state_dict())
    torch.testing.assert_close(clone.mean, model.mean)


def test_energy_gradcheck_float64():
    torch.manual_seed(2)
    model = VoxelNet(VoxelNetSpec([2, 3], [3, 2], [2, 2], resolution=6, init_std=0.3)).double()
    x = torch.randn(2, 1, 6, 6, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: model.energy(v), (x,), eps=1e-6, atol=1e-5)


def test_bad_input_and_bad_spec():
    model = VoxelNet(VoxelNetSpec([2, 2], [3, 3], [2, 2], resolution=8))
    with pytest.raises(ValueError, match=r"\(B, 1, 8, 8, 8\)"):
        model.energy(torch.zeros(2, 8, 8, 8))
    with pytest.raises(ValueError, match=r"\(B, 1, 8, 8, 8\)"):
        model.energy(torch.zeros(2, 1, 16, 16, 16))
    with pytest.raises(ConfigError, match="one length"):
        VoxelNet(VoxelNetSpec([2, 2], [3], [2, 2]))
    with pytest.raises(ConfigError, match="sigma_ref"):
        VoxelNet(VoxelNetSpec(sigma_ref=-1.0))
    with pytest.raises(ConfigError, match="strides"):
        VoxelNet(VoxelNetSpec([2], [3], [0]))


def test_reference_classifier_logits_and_bad_input():
    net = ReferenceClassifier(10, 32)
    assert net.features(torch.zeros(1, 1, 32, 32, 32)).shape == (1, 32, 4, 4, 4)
    logits = net(torch.rand(3, 1, 32, 32, 32))
    assert logits.shape == (3, 10) and torch.isfinite(logits).all()
    with pytest.raises(ValueError, match="ReferenceClassifier"):
        net(torch.rand(3, 32, 32, 32))
