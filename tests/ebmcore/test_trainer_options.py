"""The Trainer's injection points and options: gradient accumulation, chains per batch, the LR
schedule, injected chains and batch transforms."""
import torch

from ebmcore.chains import PersistentChains
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
