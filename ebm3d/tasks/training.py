"""Training generative VoxelNets with the engine's Trainer, one model per multigrid level.

A run folder ``runs/<name>/`` holds the finest level's model (``checkpoint.pt``, ``config.yaml``,
``metrics.csv``/``.jsonl``, ``curves.png``, ``tb/``); coarser multigrid levels live in
``runs/<name>/level<R>/``. A finer level's training chains start from the coarser level's
samples, upsampled (:class:`CoarseChains`), as in multigrid learning; the coarsest level uses
the configured chains (persistent, short-run, ...).

Each level trains with the engine's Trainer and the switches of ``cfg.algorithm`` go in through
its injection points: chains clamped to the occupancy range after every Langevin step
(``Trainer(clamp=...)``, :func:`chain_bounds`), recovery negatives (:class:`RecoveryChains`,
``Trainer(chains=...)``) whose ``finish`` hook pastes the observed voxels back, and the official
bookkeeping (:func:`effective_train_config`). Each level's weights are drawn from ``train.seed`` (and the
level), so one seed and config give one run, bit for bit, on the CPU.
"""
from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path
from typing import Callable

import torch

from ebmcore.chains import StatelessChains, multigrid, upsample
from ebmcore.errors import ConfigError
from ebmcore.io import atomic_write, load_tensors
from ebmcore.learning import CHECKPOINT, Trainer
from ebmcore.training_config import TrainConfig
from ebmcore.sampling import langevin

from ebm3d.config import ExperimentConfig, load_experiment
from ebm3d.models.voxelnet import VoxelNet
from ebm3d.tasks.data import config_grids
from ebm3d.tasks.recovery import observed_mean_fill, random_mask

TIMING = "timing.json"


def levels_of(cfg: ExperimentConfig) -> list[int]:
    """Resolutions of the run's models, coarse to fine (one entry without multigrid)."""
    return list(cfg.synthesis.levels) or [cfg.data.resolution]


def level_dir(cfg: ExperimentConfig, resolution: int, run_dir: Path | None = None) -> Path:
    run_dir = Path(run_dir) if run_dir is not None else cfg.run_dir
    return run_dir if resolution == levels_of(cfg)[-1] else run_dir / f"level{resolution}"


def occupancy_sampler(model: VoxelNet, steps: int, step_size: float, noise: str = "constant",
                      generator: torch.Generator | None = None,
                      clamp: bool = False) -> Callable[[torch.Tensor], torch.Tensor]:
    """A Langevin sampler on ``model`` that takes and returns occupancy grids (centring inside);
    ``clamp`` keeps the chain in the occupancy range after every step."""
    # a CPU generator cannot drive noise on another device (torch.randn refuses the pair)
    gen = generator if model.mean.device.type == "cpu" else None

    def run(occupancy: torch.Tensor) -> torch.Tensor:
        x = langevin(model.energy, model.centre(occupancy), steps, step_size, noise=noise, generator=gen,
                     clamp=model.occupancy_bounds() if clamp else None)
        return model.uncentre(x)
    return run


def chain_bounds(cfg: ExperimentConfig, model: VoxelNet):
    """The trainer's clamp: the occupancy range [0, 1] in the model's centred space
    (:meth:`VoxelNet.occupancy_bounds`, each (1, 1, R, R, R)) with ``algorithm.clamp``, else None."""
    return model.occupancy_bounds() if cfg.algorithm.clamp else None


class RecoveryChains(StatelessChains):
    """Negatives of a dedicated recovery model (the official recovery training).

    ``init(n, data)`` hides each voxel of the centred batch ``data`` (n, 1, R, R, R) with
    probability ``ratio`` and fills the hidden ones with the mean of the shape's observed voxels;
    the trainer's sampler then runs freely, and :meth:`finish` (the engine's hook, called on the
    sampler's output) puts the observed voxels back. Nothing persists between updates.
    """

    def __init__(self, model: VoxelNet, ratio: float):
        self.model, self.ratio = model, ratio
        self._mask = self._observed = None

    def init(self, n, data=None, generator=None, cond=None):
        if data is None or len(data) != n:
            raise ValueError("recovery negatives need the observed batch, one chain per example")
        occupancy = self.model.uncentre(data).cpu()
        self._mask = random_mask(occupancy.shape, self.ratio, generator).to(data.device)
        self._observed = data.detach()
        return self.model.centre(observed_mean_fill(occupancy, self._mask.cpu()).to(data.device))

    def finish(self, samples: torch.Tensor) -> torch.Tensor:
        """The samples (n, 1, R, R, R), centred, with the observed voxels of the last ``init`` restored."""
        return torch.where(self._mask, self._observed, samples)


def effective_train_config(cfg: ExperimentConfig, n_train: int) -> TrainConfig:
    """``cfg.train`` with ``cfg.algorithm.bookkeeping`` applied for ``n_train`` training shapes.

    'official': one optimiser step per pass over the data (``optim.accumulate = 0``), persistent
    chains started N(0, 1), ``chains.per_batch`` (default: the batch size) of them per minibatch and
    ceil(n_train / batch_size) minibatches, so every chain advances once per update.
    """
    train = copy.deepcopy(cfg.train)
    if cfg.algorithm.bookkeeping == "official":
        per_batch = train.chains.per_batch or train.batch_size
        train.optim.accumulate = 0
        train.chains.kind, train.chains.std, train.chains.mean = "persistent", 1.0, 0.0
        train.chains.per_batch = per_batch
        train.chains.num_chains = math.ceil(n_train / train.batch_size) * per_batch
    return train


class CoarseChains(StatelessChains):
    """Training chains of a finer multigrid level: every batch starts from fresh samples of the
    coarser levels (coarse to fine from noise), upsampled to this level and centred."""

    def __init__(self, coarse: list[VoxelNet], model: VoxelNet, steps: int, step_size: float,
                 noise_std: float, factor: int, noise: str = "constant", clamp: bool = False):
        self.coarse, self.model, self.factor = coarse, model, factor
        self.steps, self.step_size, self.noise_std, self.noise = steps, step_size, noise_std, noise
        self.clamp = clamp

    def init(self, n, data=None, generator=None, cond=None):
        occupancy = coarse_samples(self.coarse, n, self.steps, self.step_size, self.noise_std, self.factor,
                                   generator, self.noise, self.clamp)
        return self.model.centre(upsample(occupancy, self.factor))


def coarse_samples(models: list[VoxelNet], n: int, steps: int, step_size: float, noise_std: float,
                   factor: int, generator: torch.Generator | None = None, noise: str = "constant",
                   clamp: bool = False) -> torch.Tensor:
    """Multigrid samples (n, 1, R, R, R) in occupancy of the finest of ``models`` (coarse to fine),
    starting from the coarsest model's mean plus N(0, noise_std^2) noise."""
    first = models[0]
    start = noise_std * torch.randn((n, *first.mean.shape[1:]), generator=generator)
    x0 = first.uncentre(start.to(first.mean.device))
    samplers = [occupancy_sampler(m, steps, step_size, noise, generator, clamp) for m in models]
    with torch.no_grad():
        return multigrid(samplers, x0, factor)[-1].detach()


def build_model(cfg: ExperimentConfig, resolution: int, train: torch.Tensor | None = None) -> VoxelNet:
    """A VoxelNet for one level, its weights drawn from (train.seed, resolution); with ``train``
    occupancy grids its mean buffer is set."""
    torch.manual_seed(cfg.train.seed * 1009 + resolution)
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
        trainer = Trainer(model, model.centre(data), effective_train_config(cfg, len(data)), folder,
                          resume=resume, callbacks=cbs, full_config=cfg, clamp=chain_bounds(cfg, model),
                          chains=level_chains(cfg, models, model, res))
        level_started = time.time()
        trainer.fit()
        add_train_seconds(folder, time.time() - level_started)
        model.eval()
        models.append(model)
        trainers.append(trainer)
    return models, trainers, time.time() - started


def level_chains(cfg: ExperimentConfig, coarser: list[VoxelNet], model: VoxelNet, resolution: int):
    """The training chains of one level: recovery negatives, chains from the coarser levels'
    samples, or None (the configured chains)."""
    if cfg.algorithm.negatives == "recovery":
        return RecoveryChains(model, cfg.recovery.ratio)
    if coarser:
        s = cfg.train.sampler
        return CoarseChains(coarser, model, s.steps, s.step_size, cfg.train.chains.std,
                            resolution // coarser[-1].spec.resolution, s.noise, cfg.algorithm.clamp)
    return None


def add_train_seconds(folder: Path, seconds: float) -> float:
    """Add ``seconds`` to the training time kept in ``folder/timing.json`` (summed over resumes);
    returns the total."""
    path = Path(folder) / TIMING
    total = (json.loads(path.read_text())["train_seconds"] if path.is_file() else 0.0) + seconds
    text = json.dumps({"train_seconds": round(total, 1)})
    atomic_write(path, lambda tmp: tmp.write_text(text))
    return total


def train_seconds(cfg: ExperimentConfig, run_dir: Path | None = None) -> float:
    """Training seconds of every level of a run, summed over resumes (0 for a level without timing)."""
    total = 0.0
    for res in levels_of(cfg):
        path = level_dir(cfg, res, run_dir) / TIMING
        total += json.loads(path.read_text())["train_seconds"] if path.is_file() else 0.0
    return total


def load_run(run_dir: str | Path, overrides: list[str] | None = None) -> tuple[ExperimentConfig, list[VoxelNet]]:
    """The config and trained models (coarse to fine) of a run folder."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise ConfigError(f"{run_dir}: not a run folder (no config.yaml)")
    cfg = load_experiment(cfg_path, overrides)
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
    return config_grids(cfg.data, ds, "train")
