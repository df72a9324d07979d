"""Cooperative learning: the generator learns to start the energy's chains near its modes."""
import torch
from torch import nn

from ebmcore.cooperative import CooperativeChains
from ebmcore.learning import Trainer
from ebmcore.sampling import langevin

from .test_learning import mmd2
from .toy import MLPEnergy, toy_config


MEAN, STD = torch.tensor([2.0, -1.0]), torch.tensor([0.5, 0.2])


def blob(n: int, seed: int) -> torch.Tensor:
    """(n, 2) points from N(MEAN, diag(STD^2))."""
    return MEAN + STD * torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))


class Generator(nn.Module):
    """g(z) = MLP(z): (n, 2) latents to (n, 2) points."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 32), nn.SiLU(), nn.Linear(32, 2))

    def forward(self, z, cond=None):
        return self.net(z)


def _trainer(tmp_path, steps, ckpt_every=50):
    torch.manual_seed(0)
    chains = CooperativeChains(Generator(), latent_dim=2, lr=3e-3)
    cfg = toy_config(steps=steps, batch_size=128, ckpt_every=ckpt_every,
                     **{"sampler.steps": 10, "sampler.step_size": 0.2, "optim.lr": 3e-3})
    return Trainer(MLPEnergy(32), blob(2000, seed=1), cfg, tmp_path, chains=chains), chains


def _train(tmp_path, steps):
    trainer, chains = _trainer(tmp_path, steps)
    trainer.fit()
    return trainer, chains


def test_generator_learns_the_density_and_shortens_the_chains(tmp_path):
    trainer, chains = _train(tmp_path / "run", 300)
    g = torch.Generator().manual_seed(5)
    _, proposals = chains.propose(2000, generator=g)
    assert (proposals.mean(0) - MEAN).abs().max() < 0.15, proposals.mean(0)
    # fast thinking, then slow thinking: 3 Langevin steps from the proposals end far closer to
    # the data than 3 steps from the noise that plain short-run chains start from
    energy = trainer.model.energy
    noise = torch.randn(2000, 2, generator=g)
    from_gen = langevin(energy, proposals, steps=3, step_size=0.2, generator=g)
    from_noise = langevin(energy, noise, steps=3, step_size=0.2, generator=g)
    held_out = blob(2000, seed=2)
    assert mmd2(from_gen, held_out) < 0.2 * mmd2(from_noise, held_out)


def test_cooperative_resume_is_exact(tmp_path):
    straight, _ = _train(tmp_path / "a", 20)
    _trainer(tmp_path / "b", 10, ckpt_every=10)[0].fit()
    resumed, chains = _trainer(tmp_path / "b", 20)
    assert resumed.step == 10
    resumed.fit()
    for a, b in zip(straight.chains.generator.parameters(), chains.generator.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)
