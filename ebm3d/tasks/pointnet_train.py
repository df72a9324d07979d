"""Training a generative PointNet with the engine's :class:`~ebmcore.learning.Trainer`.

:class:`PointTrainer` adds the two data augmentations of the paper to the engine's loop, both pure
functions of (seed, step) so a resumed run sees the same batches:

- a fresh random subset of ``train_points`` of each cloud's points every step (when set);
- Gaussian jitter of std ``data.jitter`` on the observed clouds.

Everything else (short-run chains from N(0, std^2), Langevin, the contrastive loss, the
divergence guard, checkpoints, metrics) is the engine's.
"""
from __future__ import annotations

import copy
import time
from pathlib import Path

import torch

from ebmcore.chains import make_chains
from ebmcore.errors import DataError
from ebmcore.io import load_tensors, save_tensors
from ebmcore.learning import CHECKPOINT, Trainer

from ebm3d.models.pointnet import GenerativePointNet
from ebm3d.tasks.pointnet_config import PointNetExperiment, load_pointnet_experiment


class PointTrainer(Trainer):
    """The engine's trainer with per-step point subsets and jitter of the observed clouds.

    data: (N, P, 3) clouds. train_points: points per training cloud (None: all P, as stored).
    jitter: std of the noise added to the observed clouds.
    """

    def __init__(self, model, data, cfg, run_dir, *, train_points: int | None = None, jitter: float = 0.0,
                 **kwargs):
        super().__init__(model, data, cfg, run_dir, **kwargs)
        n_points = self.data["x"].shape[1]
        self.train_points = train_points if train_points and train_points < n_points else None
        self.jitter = jitter
        if self.train_points:
            # the chains live at the training point count; keep whatever state a resume loaded
            state = self.chains.state_dict()
            c = cfg.chains
            self.chains = make_chains(c.kind, (self.train_points, 3), std=c.std, mean=c.mean,
                                      num_chains=c.num_chains, reinit_prob=c.reinit_prob)
            if state:
                self.chains.load_state_dict(state)
            self._snapshot = copy.deepcopy(self.state_dict())

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        out = super().batch(step)
        x = out["x"]
        g = torch.Generator().manual_seed(self.cfg.seed * 1_000_033 + 7 * step + self.rank)
        if self.train_points:
            keys = torch.rand(x.shape[:2], generator=g)
            idx = keys.argsort(dim=1)[:, : self.train_points].to(x.device)
            x = torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, 3))
        if self.jitter:
            x = x + self.jitter * torch.randn(x.shape, generator=g).to(x.device)
        out["x"] = x
        return out


def build_model(cfg: PointNetExperiment) -> GenerativePointNet:
    return GenerativePointNet(cfg.energy.spec())


def set_threads(cfg: PointNetExperiment) -> None:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)


class SampleSaver:
    """Trainer callback: every ``train.sample_every`` steps, the step's synthesised clouds go to
    ``run_dir/samples/step_<k>.pt`` (key ``samples``; viewable with ``ebm3d view``)."""

    def __init__(self, run_dir: Path, every: int):
        self.folder, self.every = Path(run_dir) / "samples", every

    def __call__(self, trainer, step, metrics):
        if step % self.every == 0 and trainer.last_samples is not None and trainer.rank == 0:
            save_tensors({"samples": trainer.last_samples[:16].cpu(), "step": step},
                         self.folder / f"step_{step:06d}.pt")


def train_pointnet(cfg: PointNetExperiment, data: torch.Tensor, callbacks=None) -> tuple[GenerativePointNet, PointTrainer, float]:
    """Train (resuming from ``cfg.run_dir``) on clouds (N, P, 3); returns (model, trainer, seconds)."""
    if data.dim() != 3 or data.shape[-1] != 3:
        raise DataError(f"training clouds must be (N, P, 3), got {tuple(data.shape)}")
    set_threads(cfg)
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg)
    cbs = [SampleSaver(cfg.run_dir, cfg.train.sample_every), *(callbacks or [])]
    trainer = PointTrainer(model, data, cfg.train, cfg.run_dir, train_points=cfg.data.train_points,
                           jitter=cfg.data.jitter, callbacks=cbs, full_config=cfg)
    started = time.time()
    trainer.fit()
    trainer.save_checkpoint()
    return trainer.model, trainer, time.time() - started


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
