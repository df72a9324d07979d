"""Training a generative PointNet with the engine's :class:`~ebmcore.learning.Trainer`.

Two data augmentations of the published code go in through the engine's ``transform`` hook
(:class:`PointAugment`), both pure functions of (seed, minibatch index) so a resumed run sees the
same batches:

- a fresh random subset of ``data.train_points`` of each cloud's points every step (when set);
- Gaussian jitter of std ``data.jitter`` on the observed clouds.

The chains live at the training point count (the engine's ``chains`` hook). Everything else
(short-run chains from N(0, std^2), Langevin, the contrastive loss, StepLR, the divergence guard,
checkpoints, sample snapshots, metrics) is the engine's.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from ebmcore.chains import make_chains
from ebmcore.errors import DataError
from ebmcore.io import load_tensors
from ebmcore.learning import CHECKPOINT, Trainer

from ebm3d.models.pointnet import GenerativePointNet
from ebm3d.tasks.pointnet_config import PointNetExperiment, load_pointnet_experiment


class PointAugment:
    """``transform(batch, index) -> batch`` for the engine: a random subset of ``train_points``
    points of each observed cloud (B, P, 3) -> (B, train_points, 3) (None: all P, as stored),
    then jitter of std ``jitter``. Seeded by (seed, minibatch index)."""

    def __init__(self, seed: int, train_points: int | None, jitter: float):
        self.seed, self.train_points, self.jitter = seed, train_points, jitter

    def __call__(self, batch: dict[str, torch.Tensor], index: int) -> dict[str, torch.Tensor]:
        x = batch["x"]
        g = torch.Generator().manual_seed(self.seed * 1_000_033 + 7 * index)
        if self.train_points and self.train_points < x.shape[1]:
            idx = torch.rand(x.shape[:2], generator=g).argsort(dim=1)[:, : self.train_points].to(x.device)
            x = torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, 3))
        if self.jitter:
            x = x + self.jitter * torch.randn(x.shape, generator=g).to(x.device)
        return {**batch, "x": x}


def make_trainer(cfg: PointNetExperiment, model: GenerativePointNet, data: torch.Tensor, *, resume: bool = True,
                 callbacks=None, run_dir: str | Path | None = None) -> Trainer:
    """The engine's trainer for clouds ``data`` (N, P, 3) with the experiment's augmentation and
    chains of ``cfg.train_points`` points."""
    c = cfg.train.chains
    chains = make_chains(c.kind, (cfg.train_points, 3), std=c.std, mean=c.mean, num_chains=c.num_chains,
                         reinit_prob=c.reinit_prob)
    augment = PointAugment(cfg.train.seed, cfg.data.train_points, cfg.data.jitter)
    return Trainer(model, data, cfg.train, run_dir or cfg.run_dir, resume=resume, callbacks=callbacks,
                   full_config=cfg, chains=chains, transform=augment)


def build_model(cfg: PointNetExperiment) -> GenerativePointNet:
    """The experiment's energy network (taking ``cfg.train_points`` points with ``norm: position``)."""
    return GenerativePointNet(cfg.energy.spec(cfg.train_points))


def set_threads(cfg: PointNetExperiment) -> None:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)


def train_pointnet(cfg: PointNetExperiment, data: torch.Tensor, callbacks=None) -> tuple[GenerativePointNet, Trainer, dict]:
    """Train (resuming from ``cfg.run_dir``) on clouds (N, P, 3); returns (model, trainer,
    ``{"wall": s, "cpu": s}``: the wall and process CPU seconds of this call's training loop)."""
    if data.dim() != 3 or data.shape[-1] != 3:
        raise DataError(f"training clouds must be (N, P, 3), got {tuple(data.shape)}")
    set_threads(cfg)
    torch.manual_seed(cfg.train.seed)
    trainer = make_trainer(cfg, build_model(cfg), data, callbacks=callbacks)
    started, cpu = time.time(), time.process_time()
    trainer.fit()
    trainer.save_checkpoint()
    return trainer.model, trainer, {"wall": time.time() - started, "cpu": time.process_time() - cpu}


def load_pointnet_run(run_dir: str | Path, overrides: list[str] | None = None,
                      checkpoint: str = CHECKPOINT) -> tuple[PointNetExperiment, GenerativePointNet]:
    """The saved config (with ``overrides``) and the trained model of a run folder."""
    run_dir = Path(run_dir)
    ckpt = run_dir / checkpoint
    if not ckpt.is_file():
        raise DataError(f"{run_dir}: no {checkpoint} (train the run first)")
    cfg = load_pointnet_experiment(run_dir / "config.yaml", overrides)
    cfg.out_dir, cfg.name = str(run_dir.parent), run_dir.name
    set_threads(cfg)
    model = build_model(cfg)
    state = load_tensors(ckpt)
    model.load_state_dict(state["model"])
    model.eval()
    return cfg, model
