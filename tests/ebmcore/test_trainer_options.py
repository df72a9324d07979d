"""The Trainer's injection points and options: gradient accumulation, chains per batch, the LR
schedule, injected chains and batch transforms, clamp bounds and the chains' finish hook."""
import torch

import pytest

from ebmcore.chains import NoiseChains, PersistentChains
from ebmcore.learning import Trainer

from .toy import MLPEnergy, ring, toy_config


def _params(model):
    return torch.cat([p.detach().cpu().flatten() for p in model.parameters()])


def _cd_config(**overrides):
    # data-initialised chains and a noise-free sampler: every synthesised batch is a deterministic
    # function of the observed one, so two bookkeepings can be compared exactly
    return toy_config(steps=1, **{"chains.kind": "data", "sampler.noise": "none", "sampler.steps": 3,
                                  "sampler.step_size": 1.0,
                                  "optim.name": "sgd", "optim.beta1": 0.0, "optim.lr": 0.1,
                                  "guard.enabled": False, **overrides})


def _one_step(tmp_path, data, **overrides):
    torch.manual_seed(0)
    trainer = Trainer(MLPEnergy(16), data, _cd_config(**overrides), tmp_path, resume=False)
    trainer.fit()
    return trainer


def test_accumulated_minibatches_equal_one_large_batch(tmp_path):
    data = ring(8, seed=1)
    big = _one_step(tmp_path / "big", data, batch_size=8)
    acc = _one_step(tmp_path / "acc", data, batch_size=4, **{"optim.accumulate": 2})
    epoch = _one_step(tmp_path / "epoch", data, batch_size=4, **{"optim.accumulate": 0})
    small = _one_step(tmp_path / "small", data, batch_size=4)
    torch.manual_seed(0)
    start = _params(MLPEnergy(16))
    moved = {name: _params(t.model) - start for name, t in
             {"big": big, "acc": acc, "epoch": epoch, "small": small}.items()}
    assert acc.micro_batches == 2 and epoch.micro_batches == 2
    assert moved["big"].abs().max() > 1e-4
    assert torch.allclose(moved["big"], moved["acc"], rtol=1e-4, atol=1e-7)
    assert torch.allclose(moved["big"], moved["epoch"], rtol=1e-4, atol=1e-7)
    assert not torch.allclose(moved["big"], moved["small"], rtol=1e-2, atol=1e-5)


def test_chains_per_batch_and_every_persistent_chain_advances(tmp_path):
    cfg = toy_config(steps=1, batch_size=4, **{"chains.kind": "persistent", "chains.num_chains": 10,
                                               "chains.per_batch": 5, "optim.accumulate": 2})
    trainer = Trainer(MLPEnergy(16), ring(8, seed=1), cfg, tmp_path, resume=False)
    trainer.fit()
    assert trainer.last_samples.shape == (5, 2)
    buffer = trainer.chains.state_dict()["buffer"]
    assert buffer.shape == (10, 2)
    fresh = PersistentChains((2,), 10, std=cfg.chains.std).noise(10, torch.Generator().manual_seed(cfg.seed + 7919))
    assert not torch.isclose(buffer, fresh).all(dim=1).any()  # all 10 chains moved in one update


def test_step_lr_schedule_and_its_resume(tmp_path):
    overrides = {"optim.lr": 1e-2, "optim.lr_step_every": 3, "optim.lr_gamma": 0.5}
    straight = Trainer(MLPEnergy(16), ring(64, seed=1), toy_config(steps=7, **overrides), tmp_path / "a")
    straight.fit()
    assert abs(straight.optimizer.param_groups[0]["lr"] - 1e-2 * 0.25) < 1e-12
    part = Trainer(MLPEnergy(16), ring(64, seed=1), toy_config(steps=4, ckpt_every=4, **overrides), tmp_path / "b")
    part.fit()
    resumed = Trainer(MLPEnergy(16), ring(64, seed=1), toy_config(steps=7, **overrides), tmp_path / "b")
    assert resumed.step == 4
    resumed.fit()
    assert resumed.optimizer.param_groups[0]["lr"] == straight.optimizer.param_groups[0]["lr"]


def test_injected_chains_and_transform(tmp_path):
    seen = []

    def shift(batch, index):
        seen.append(index)
        return {**batch, "x": batch["x"] + 100.0}

    chains = PersistentChains((2,), 16, std=0.0, mean=100.0)
    cfg = toy_config(steps=3, batch_size=4, **{"optim.accumulate": 2, "sampler.steps": 1})
    trainer = Trainer(MLPEnergy(16), ring(32, seed=1), cfg, tmp_path, chains=chains, transform=shift)
    trainer.fit()
    assert trainer.chains is chains and chains.buffer.shape == (16, 2)
    assert seen == [0, 1, 2, 3, 4, 5]
    assert (trainer.batch(0)["x"] > 90).all()


def _wide_chains_trainer(tmp_path, **kwargs):
    """Chains from N(0, 3^2) with large noisy steps: unclamped, they leave [-1, 1]^2."""
    cfg = toy_config(steps=1, batch_size=8, **{"chains.kind": "short_run", "chains.std": 3.0, "sampler.steps": 3,
                                               "sampler.step_size": 1.0})
    return Trainer(MLPEnergy(16), ring(16, seed=1), cfg, tmp_path, resume=False, **kwargs)


@pytest.mark.parametrize("bounds", ["none", "scalar", "tensor"])
def test_clamp_bounds_reach_the_sampler(tmp_path, bounds):
    """Trainer(clamp=...) clamps every chain after every step: scalar bounds, or tensor bounds
    broadcast over the batch (a different range per coordinate)."""
    low, high = {"none": (None, None), "scalar": (-1.0, 1.0),
                 "tensor": (torch.tensor([[-1.0, 0.0]]), torch.tensor([[1.0, 0.5]]))}[bounds]
    trainer = _wide_chains_trainer(tmp_path, clamp=None if low is None else (low, high))
    x = trainer.synthesise(trainer.batch(0))
    if low is None:
        assert x.abs().max() > 1.0
        return
    assert (x >= low).all() and (x <= high).all()
    assert bool((x == high).any())  # the bounds were reached, so the clamp did the work


class _Pasting(NoiseChains):
    """Noise chains whose finish hook puts the observed batch back into the first coordinate."""

    def init(self, n, data=None, generator=None, cond=None):
        self.observed = data
        return super().init(n, data, generator)

    def finish(self, samples):
        return torch.cat([self.observed[:, :1], samples[:, 1:]], dim=1)


def test_chains_finish_hook_post_processes_the_synthesised_batch(tmp_path):
    """The chains' finish(samples) runs on the sampler's output: what the energy learns from,
    what the chains keep and what the trainer reports; the base class's hook is the identity."""
    chains = _Pasting((2,), std=3.0)
    trainer = _wide_chains_trainer(tmp_path, chains=chains)
    batch = trainer.batch(0)
    x = trainer.synthesise(batch)
    assert torch.equal(x[:, 0], batch["x"][:, 0]) and not torch.allclose(x[:, 1], batch["x"][:, 1])
    trainer.fit()
    assert torch.equal(trainer.last_samples[:, 0], trainer.batch(0)["x"][:, 0])
    samples = torch.randn(4, 2)
    assert NoiseChains((2,)).finish(samples) is samples


def test_regulariser_adds_its_gradient_to_the_contrastive_one(tmp_path):
    """Trainer(regulariser=...) adds a term of the minibatch to the loss: with SGD the update
    differs from the plain one by exactly lr x the regulariser's gradient, and it is logged."""
    seen = []

    def reg(model):
        def term(batch):
            seen.append(batch["x"].shape)
            return 0.5 * sum((p ** 2).sum() for p in model.parameters())
        return term

    data = ring(8, seed=1)
    torch.manual_seed(0)
    plain = Trainer(MLPEnergy(16), data, _cd_config(), tmp_path / "a", resume=False)
    before = _params(plain.model)
    plain.fit()
    torch.manual_seed(0)
    model = MLPEnergy(16)
    regd = Trainer(model, data, _cd_config(), tmp_path / "b", resume=False, regulariser=reg(model))
    last = regd.fit()
    # the gradient of 0.5 |theta|^2 is theta: one SGD step of lr 0.1 subtracts 0.1 theta more
    torch.testing.assert_close(_params(regd.model), _params(plain.model) - 0.1 * before)
    assert seen and seen[0][1:] == (2,) and last["regulariser"] == pytest.approx(0.5 * float((before ** 2).sum()))
