"""A small 2-D energy model and ring data shared by the engine tests and their subprocesses."""
from __future__ import annotations

import math
import os
import sys

import torch
from torch import nn

from ebmcore.energy import EnergyModel
from ebmcore.learning import TrainConfig, Trainer


class MLPEnergy(EnergyModel):
    """f_theta(x) = MLP(x) on (B, 2) points."""

    def __init__(self, hidden: int = 64, sigma_ref: float | None = None):
        super().__init__(sigma_ref)
        self.net = nn.Sequential(nn.Linear(2, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, 1))

    def score(self, x, cond=None):
        return self.net(x).squeeze(-1)


def ring(n: int, seed: int, radius: float = 2.0, width: float = 0.1) -> torch.Tensor:
    """(n, 2) points on a noisy ring."""
    g = torch.Generator().manual_seed(seed)
    angle = 2 * math.pi * torch.rand(n, generator=g)
    r = radius + width * torch.randn(n, generator=g)
    return torch.stack([r * angle.cos(), r * angle.sin()], dim=1)


def toy_config(**overrides) -> TrainConfig:
    # EBM_TEST_DEVICE=cuda runs the engine's training tests on a GPU (benchmarks/gpu_check.sh)
    cfg = TrainConfig(steps=20, batch_size=32, seed=3, log_every=1, ckpt_every=5, sample_every=1000,
                      progress=False, tensorboard=False, device=os.environ.get("EBM_TEST_DEVICE", "cpu"))
    cfg.sampler.steps, cfg.sampler.step_size = 10, 0.1
    cfg.chains.kind, cfg.chains.num_chains = "replay", 64
    cfg.optim.lr = 1e-3
    for key, value in overrides.items():
        obj = cfg
        *path, last = key.split(".")
        for part in path:
            obj = getattr(obj, part)
        setattr(obj, last, value)
    return cfg


# Data-initialised chains with the noise off make the update deterministic, and SGD keeps it
# linear in the gradient (Adam's normalisation magnifies float-rounding in near-zero gradients).
DDP_SETTINGS = {"chains.kind": "data", "sampler.noise": "none", "batch_size": 32, "optim.name": "sgd",
                "optim.lr": 0.05}


def make_trainer(run_dir, cfg: TrainConfig, resume: bool = True, n: int = 256,
                 regularised: bool = False) -> Trainer:
    """The toy Trainer; ``regularised``: with a regulariser through the bare model (as
    ``ebmtraj.ioc.nll_anchor`` is), 0.1 x the mean squared energy of the minibatch."""
    torch.manual_seed(0)
    model = MLPEnergy(32)
    reg = (lambda batch: 0.1 * model.energy(batch["x"]).pow(2).mean()) if regularised else None
    return Trainer(model, ring(n, seed=1), cfg, run_dir, resume=resume, regulariser=reg)


if __name__ == "__main__":
    # python toy.py RUN_DIR STEPS [slow|ddp|ddp_reg]: train the toy model (used by the kill and
    # DDP tests; ddp_reg: the DDP settings with the regulariser).
    import time

    run_dir, steps = sys.argv[1], int(sys.argv[2])
    mode = sys.argv[3] if len(sys.argv) > 3 else ""
    extra = DDP_SETTINGS if mode.startswith("ddp") else {}
    trainer = make_trainer(run_dir, toy_config(steps=steps, **extra), regularised=mode == "ddp_reg")
    if mode == "slow":
        trainer.callbacks.append(lambda t, step, m: time.sleep(0.05))
    trainer.fit()
