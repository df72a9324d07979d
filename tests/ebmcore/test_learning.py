"""Analysis by synthesis learns a 2-D density; resume is exact; the divergence guard works."""
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ebmcore.errors import DivergenceError
from ebmcore.io import load_tensors
from ebmcore.sampling import langevin

from .toy import DDP_SETTINGS, MLPEnergy, make_trainer, ring, toy_config

TOY = Path(__file__).with_name("toy.py")


def mmd2(x, y, bandwidth=0.5):
    """Unbiased squared MMD with a Gaussian kernel."""
    def k(a, b):
        return torch.exp(-torch.cdist(a, b).pow(2) / (2 * bandwidth**2))
    n, m = len(x), len(y)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return ((kxx.sum() - kxx.diag().sum()) / (n * (n - 1)) + (kyy.sum() - kyy.diag().sum()) / (m * (m - 1))
            - 2 * kxy.mean()).item()


def test_learns_a_ring(tmp_path):
    """Samples of the learned model are close to held-out ring data by MMD, far closer than the
    initial noise, and their radius matches the ring's."""
    cfg = toy_config(steps=300, batch_size=128, log_every=10, **{"sampler.steps": 30, "sampler.step_size": 0.2,
                                                                 "chains.num_chains": 1000, "optim.lr": 3e-3})
    torch.manual_seed(0)
    from ebmcore.learning import Trainer
    trainer = Trainer(MLPEnergy(64), ring(2000, seed=1, width=0.2), cfg, tmp_path)
    trainer.fit()
    held_out = ring(1000, seed=2, width=0.2)
    g = torch.Generator().manual_seed(5)
    noise = torch.randn(1000, 2, generator=g)
    samples = langevin(trainer.model.energy, noise, steps=500, step_size=0.2, generator=g)
    model_mmd, noise_mmd = mmd2(samples, held_out), mmd2(noise, held_out)
    radius = samples.norm(dim=1)
    assert model_mmd < 0.1 * noise_mmd, (model_mmd, noise_mmd)
    assert abs(radius.median().item() - 2.0) < 0.15
    assert abs(radius.std().item() - 0.2) < 0.1
    assert (tmp_path / "curves.png").stat().st_size > 1000
    assert (tmp_path / "metrics.csv").read_text().count("\n") == 31


def _params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_resume_is_exact(tmp_path):
    straight = make_trainer(tmp_path / "a", toy_config(steps=20))
    straight.fit()
    first = make_trainer(tmp_path / "b", toy_config(steps=7, ckpt_every=7))
    first.fit()
    resumed = make_trainer(tmp_path / "b", toy_config(steps=20))
    assert resumed.step == 7
    resumed.fit()
    assert torch.equal(_params(straight.model), _params(resumed.model))
    assert torch.equal(straight.chains.buffer, resumed.chains.buffer)
    rows = (tmp_path / "b" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 21 and rows[1].startswith("1,") and rows[-1].startswith("20,")


def test_resume_after_sigkill(tmp_path):
    """A training process killed with SIGKILL resumes from its last checkpoint and ends
    with exactly the parameters of an uninterrupted run."""
    run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(TOY), str(run), "400", "slow"], cwd=TOY.parents[2])
    ckpt = run / "checkpoint.pt"
    deadline = time.time() + 120
    while time.time() < deadline and not (ckpt.exists() and load_tensors(ckpt)["step"] >= 10):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    step = load_tensors(ckpt)["step"]
    assert 10 <= step < 400
    resumed = make_trainer(run, toy_config(steps=step + 10))
    assert resumed.step == step
    resumed.fit()
    straight = make_trainer(tmp_path / "straight", toy_config(steps=step + 10))
    straight.fit()
    assert torch.equal(_params(straight.model), _params(resumed.model))


def _poison(trainer):
    with torch.no_grad():
        next(trainer.model.parameters()).fill_(float("nan"))


def _poison_once_at(step_to_poison):
    done = []

    def callback(trainer, step, metrics):
        if step == step_to_poison and not done:
            done.append(step)
            _poison(trainer)
    return callback


def _checkpoints_finite(path):
    state = load_tensors(path)
    return all(torch.isfinite(v).all() for v in state["model"].values())


def test_divergence_guard_restores_after_injected_nan(tmp_path):
    trainer = make_trainer(tmp_path, toy_config(steps=20, ckpt_every=1, **{"guard.snapshot_every": 5}))
    trainer.callbacks.append(_poison_once_at(12))
    trainer.fit()
    assert trainer.step == 20
    assert trainer.step_size == pytest.approx(0.05)  # shrunk once
    assert _checkpoints_finite(tmp_path / "checkpoint.pt")
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_divergence_guard_gives_up_and_never_writes_nan(tmp_path):
    trainer = make_trainer(tmp_path, toy_config(steps=30, ckpt_every=1, **{"guard.max_retries": 3}))
    # every step from 5 on poisons the model again
    trainer.callbacks.append(lambda t, step, m: _poison(t) if step >= 5 else None)
    with pytest.raises(DivergenceError, match="gave up after 3 restores"):
        trainer.fit()
    saved = load_tensors(tmp_path / "checkpoint.pt")
    assert saved["step"] <= 5 or _checkpoints_finite(tmp_path / "checkpoint.pt")
    assert _checkpoints_finite(tmp_path / "checkpoint.pt")


def test_exploding_samples_trip_the_guard(tmp_path):
    cfg = toy_config(steps=3, **{"guard.max_sample_abs": 1e-3, "guard.max_retries": 2})
    with pytest.raises(DivergenceError, match="exploding"):
        make_trainer(tmp_path, cfg).fit()
    assert not (tmp_path / "checkpoint.pt").exists()


@pytest.mark.parametrize("mode", ["ddp", "ddp_reg"])
def test_ddp_two_processes_equal_one_process_on_combined_batch(tmp_path, mode):
    """A real 2-process torchrun (gloo) step sequence gives the parameters of one process on
    the combined batch (data-initialised chains, noise off, so the update is deterministic),
    also with a regulariser computed through the bare model rather than the DDP wrapper."""
    torchrun = Path(sys.executable).with_name("torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", str(TOY), str(tmp_path / "ddp"),
                          "3", mode], cwd=TOY.parents[2], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    single = make_trainer(tmp_path / "single", toy_config(steps=3, **DDP_SETTINGS),
                          regularised=mode == "ddp_reg")
    single.fit()
    ddp_params = torch.cat([v.flatten() for v in load_tensors(tmp_path / "ddp" / "checkpoint.pt")["model"].values()])
    assert torch.allclose(ddp_params, _params(single.model), atol=1e-6)
    assert not torch.equal(ddp_params, _params(MLPEnergy(32)))
