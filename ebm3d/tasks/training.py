"""Training generative VoxelNets with the engine's Trainer, one model per multigrid level.

A run folder ``runs/<name>/`` holds the finest level's model (``checkpoint.pt``, ``config.yaml``,
``metrics.csv``/``.jsonl``, ``curves.png``, ``tb/``); coarser multigrid levels live in
``runs/<name>/level<R>/``. A finer level's training chains start from the coarser level's
samples, upsampled (:class:`CoarseChains`), as in multigrid learning; the coarsest level uses
the configured chains (persistent, short-run, ...).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch

from ebmcore.chains import multigrid, upsample
from ebmcore.config import from_dict
from ebmcore.errors import ConfigError
from ebmcore.io import load_tensors
from ebmcore.learning import CHECKPOINT, Trainer
from ebmcore.sampling import langevin

from ebm3d.config import ExperimentConfig
from ebm3d.models.voxelnet import VoxelNet
from ebm3d.tasks.data import grids


def levels_of(cfg: ExperimentConfig) -> list[int]:
    """Resolutions of the run's models, coarse to fine (one entry without multigrid)."""
    return list(cfg.synthesis.levels) or [cfg.data.resolution]


def level_dir(cfg: ExperimentConfig, resolution: int, run_dir: Path | None = None) -> Path:
    run_dir = Path(run_dir) if run_dir is not None else cfg.run_dir
    return run_dir if resolution == levels_of(cfg)[-1] else run_dir / f"level{resolution}"


def occupancy_sampler(model: VoxelNet, steps: int, step_size: float, noise: str = "constant",
                      generator: torch.Generator | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """A Langevin sampler on ``model`` that takes and returns occupancy grids (centring inside)."""
    # a CPU generator cannot drive noise on another device (torch.randn refuses the pair)
    gen = generator if model.mean.device.type == "cpu" else None

    def run(occupancy: torch.Tensor) -> torch.Tensor:
        x = langevin(model.energy, model.centre(occupancy), steps, step_size, noise=noise, generator=gen)
        return model.uncentre(x)
    return run


class CoarseChains:
    """Training chains of a finer multigrid level: every batch starts from fresh samples of the
    coarser levels (coarse to fine from noise), upsampled to this level and centred."""

    def __init__(self, coarse: list[VoxelNet], model: VoxelNet, steps: int, step_size: float,
                 noise_std: float, factor: int, noise: str = "constant"):
        self.coarse, self.model, self.factor = coarse, model, factor
        self.steps, self.step_size, self.noise_std, self.noise = steps, step_size, noise_std, noise

    def init(self, n, data=None, generator=None):
        occupancy = coarse_samples(self.coarse, n, self.steps, self.step_size, self.noise_std, self.factor,
                                   generator, self.noise)
        return self.model.centre(upsample(occupancy, self.factor))

    def update(self, samples):
        pass

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def coarse_samples(models: list[VoxelNet], n: int, steps: int, step_size: float, noise_std: float,
                   factor: int, generator: torch.Generator | None = None, noise: str = "constant") -> torch.Tensor:
    """Multigrid samples (n, 1, R, R, R) in occupancy of the finest of ``models`` (coarse to fine),
    starting from the coarsest model's mean plus N(0, noise_std^2) noise."""
    first = models[0]
    start = noise_std * torch.randn((n, *first.mean.shape[1:]), generator=generator)
    x0 = first.uncentre(start.to(first.mean.device))
    samplers = [occupancy_sampler(m, steps, step_size, noise, generator) for m in models]
    with torch.no_grad():
        return multigrid(samplers, x0, factor)[-1].detach()


def build_model(cfg: ExperimentConfig, resolution: int, train: torch.Tensor | None = None) -> VoxelNet:
    """A VoxelNet for one level; with ``train`` occupancy grids its mean buffer is set."""
    model = VoxelNet(cfg.model.spec(resolution))
    if train is not None:
        model.set_mean(train)
    return model.to(cfg.train.device)


class SnapshotSamples:
    """Trainer callback: every ``train.sample_every`` steps, the batch's synthesised samples
    (occupancy, clipped to [0, 1]) to ``<level dir>/samples/step_<n>.png``."""

    def __init__(self, folder: Path, every: int, n: int = 16):
        self.folder, self.every, self.n = Path(folder), every, n

    def __call__(self, trainer, step, metrics):
        if step % self.every or trainer.last_samples is None or trainer.rank != 0:
            return
        from ebm3d.tasks.render import save_grid_png

        occ = trainer.model.uncentre(trainer.last_samples[: self.n]).clamp(0, 1).cpu()
        save_grid_png(occ, self.folder / "samples" / f"step_{step:07d}.png")


def train_models(cfg: ExperimentConfig, train: torch.Tensor, run_dir: Path | None = None,
                 callbacks: list | None = None, resume: bool = True) -> tuple[list[VoxelNet], list[Trainer], float]:
    """Train every level on the training occupancy grids ``train`` (N, 1, R, R, R), coarse to fine.

    Returns the models, their trainers and the wall-clock seconds spent. ``callbacks`` are given
    to the finest level's trainer; every level saves its synthesised batch as a PNG every
    ``train.sample_every`` steps (:class:`SnapshotSamples`).
    """
    run_dir = Path(run_dir) if run_dir is not None else cfg.run_dir
    levels = levels_of(cfg)
    models, trainers = [], []
    started = time.time()
    for i, res in enumerate(levels):
        data = torch.nn.functional.avg_pool3d(train, train.shape[-1] // res) if res != train.shape[-1] else train
        model = build_model(cfg, res, data)
        finest = i == len(levels) - 1
        folder = level_dir(cfg, res, run_dir)
        cbs = [SnapshotSamples(folder, cfg.train.sample_every)] + (list(callbacks or []) if finest else [])
        trainer = Trainer(model, model.centre(data), cfg.train, folder, resume=resume, callbacks=cbs,
                          full_config=cfg)
        if i:
            s = cfg.train.sampler
            trainer.chains = CoarseChains(models, model, s.steps, s.step_size, cfg.train.chains.std,
                                          res // levels[i - 1], s.noise)
        trainer.fit()
        model.eval()
        models.append(model)
        trainers.append(trainer)
    return models, trainers, time.time() - started


def load_run(run_dir: str | Path, overrides: list[str] | None = None) -> tuple[ExperimentConfig, list[VoxelNet]]:
    """The config and trained models (coarse to fine) of a run folder."""
    from ebmcore.config import apply_overrides
    import yaml

    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise ConfigError(f"{run_dir}: not a run folder (no config.yaml)")
    tree = yaml.safe_load(cfg_path.read_text()) or {}
    cfg = from_dict(ExperimentConfig, apply_overrides(tree, overrides))
    models = []
    for res in levels_of(cfg):
        ckpt = level_dir(cfg, res, run_dir) / CHECKPOINT
        if not ckpt.is_file():
            raise ConfigError(f"{ckpt}: no checkpoint; train the run first (ebm3d train)")
        model = build_model(cfg, res)
        model.load_state_dict(load_tensors(ckpt, map_location=cfg.train.device)["model"])
        model.eval()
        models.append(model)
    return cfg, models


def training_grids(cfg: ExperimentConfig, ds) -> torch.Tensor:
    """The training split of a dataset as occupancy (N, 1, R, R, R)."""
    return grids(ds, "train", cfg.data.resolution)
