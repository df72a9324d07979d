"""Chain initialisers keep and restore their state; multigrid runs coarse to fine."""
import pytest
import torch

from ebmcore.chains import DataChains, NoiseChains, PersistentChains, ReplayBuffer, make_chains, multigrid
from ebmcore.sampling import block_average_projection, langevin


def test_noise_and_data_chains():
    g = torch.Generator().manual_seed(0)
    x = NoiseChains((3, 4), std=0.3, mean=1.0).init(5000, None, g)
    assert x.shape == (5000, 3, 4)
    assert abs(x.mean().item() - 1.0) < 0.01 and abs(x.std().item() - 0.3) < 0.01
    data = torch.randn(4, 2)
    assert torch.equal(DataChains((2,)).init(4, data), data)
    with pytest.raises(ValueError, match="observed batch"):
        DataChains((2,)).init(4, None)


def test_persistent_chains_continue_and_restore():
    chains = PersistentChains((2,), num_chains=6)
    g = torch.Generator().manual_seed(0)
    first = chains.init(3, None, g)
    chains.update(first + 10)
    second = chains.init(3, None, g)  # the other three chains
    chains.update(second + 20)
    again = chains.init(3, None, g)  # wraps round: the first three, continued
    assert torch.equal(again, first + 10)
    saved = chains.state_dict()
    other = PersistentChains((2,), num_chains=6)
    other.load_state_dict(saved)
    assert torch.equal(other.init(3, None, g), second + 20)
    with pytest.raises(ValueError, match="exceeds"):
        chains.init(7)


def test_replay_buffer_reinitialises_a_fraction():
    buf = ReplayBuffer((1,), capacity=1000, reinit_prob=0.2, std=1.0)
    g = torch.Generator().manual_seed(0)
    buf.init(1, None, g)
    buf.buffer.fill_(100.0)
    x = buf.init(5000, None, g)
    fresh = (x != 100.0).float().mean().item()
    assert abs(fresh - 0.2) < 0.02
    with pytest.raises(ValueError):
        ReplayBuffer((1,), 10, reinit_prob=1.5)
    with pytest.raises(ValueError, match="unknown chain kind"):
        make_chains("teleport", (1,))


def test_multigrid_coarse_to_fine_keeps_block_averages():
    """Coarse samples, upsampled, start the finer chain; with the block-average projection the
    fine result still averages to the coarse one."""
    target_coarse, target_fine = 0.5, 0.5
    coarse_energy = lambda x: ((x - target_coarse) ** 2).flatten(1).sum(1)
    levels = multigrid([
        lambda x0: langevin(coarse_energy, x0, 200, 0.3, noise="off"),
        lambda x0: langevin(lambda x: ((x - target_fine) ** 2).flatten(1).sum(1), x0, 5, 0.3,
                            project=block_average_projection(x0[:, :, ::2, ::2], 2)),
    ], torch.zeros(2, 1, 4, 4))
    assert [lv.shape for lv in levels] == [(2, 1, 4, 4), (2, 1, 8, 8)]
    assert torch.allclose(levels[0], torch.full_like(levels[0], 0.5), atol=1e-4)
    assert torch.allclose(torch.nn.functional.avg_pool2d(levels[1], 2), levels[0], atol=1e-5)
