"""Training every shape model with the engine's Trainer.

:func:`fit` is what every model's training shares: the engine's loop, timed, with the training
seconds kept in ``timing.json`` (wall and process CPU, summed over resumes; :func:`train_seconds`,
:func:`train_cpu_seconds`).

The generative PointNet (:func:`train_point_model`) trains one network on clouds (N, P, 3), with
its augmentation (:class:`ebm3d.transforms.PointAugment`) as the Trainer's ``transform`` and
chains at the training point count as its ``chains``.

Generative VoxelNets (:func:`train_models`) train one model per multigrid level. A run folder ``runs/<name>/`` holds the finest level's model (``checkpoint.pt``, ``config.yaml``,
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

from ebmcore.averaging import evaluated_state
from ebmcore.chains import StatelessChains, make_chains, multigrid, upsample
from ebmcore.errors import ConfigError, DataError
from ebmcore.io import atomic_write, load_tensors
from ebmcore.learning import CHECKPOINT, Trainer
from ebmcore.training_config import TrainConfig
from ebmcore.sampling import langevin

from ebm3d.config import PointNetExperiment, VoxelNetExperiment
from ebm3d.experiment import load_experiment
from ebm3d.models.pointnet import GenerativePointNet
from ebm3d.models.voxelnet import VoxelNet
from ebm3d.tasks.data import config_grids
from ebm3d.transforms import PointAugment
from ebm3d.tasks.recovery import observed_mean_fill, random_mask

TIMING = "timing.json"


def levels_of(cfg: VoxelNetExperiment) -> list[int]:
    """Resolutions of the run's models, coarse to fine (one entry without multigrid)."""
    return list(cfg.synthesis.levels) or [cfg.data.resolution]


def level_dir(cfg: VoxelNetExperiment, resolution: int, run_dir: Path | None = None) -> Path:
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


def chain_bounds(cfg: VoxelNetExperiment, model: VoxelNet):
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


def effective_train_config(cfg: VoxelNetExperiment, n_train: int) -> TrainConfig:
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


def build_voxel_model(cfg: VoxelNetExperiment, resolution: int, train: torch.Tensor | None = None) -> VoxelNet:
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


def train_models(cfg: VoxelNetExperiment, train: torch.Tensor, run_dir: Path | None = None,
                 callbacks: list | None = None, resume: bool = True) -> tuple[list[VoxelNet], list[Trainer], dict]:
    """Train every level on the training occupancy grids ``train`` (N, 1, R, R, R), coarse to fine.

    Returns the models, their trainers and the seconds spent (``{"wall", "cpu"}``, all levels). ``callbacks`` are given
    to the finest level's trainer; every level saves its synthesised batch as a PNG every
    ``train.sample_every`` steps (:class:`SnapshotSamples`).
    """
    run_dir = Path(run_dir) if run_dir is not None else cfg.run_dir
    levels = levels_of(cfg)
    models, trainers = [], []
    seconds = {"wall": 0.0, "cpu": 0.0}
    for i, res in enumerate(levels):
        data = torch.nn.functional.avg_pool3d(train, train.shape[-1] // res) if res != train.shape[-1] else train
        model = build_voxel_model(cfg, res, data)
        finest = i == len(levels) - 1
        folder = level_dir(cfg, res, run_dir)
        cbs = [SnapshotSamples(folder, cfg.train.sample_every)] + (list(callbacks or []) if finest else [])
        trainer = Trainer(model, model.centre(data), effective_train_config(cfg, len(data)), folder,
                          resume=resume, callbacks=cbs, full_config=cfg, clamp=chain_bounds(cfg, model),
                          chains=level_chains(cfg, models, model, res))
        for key, value in fit(trainer).items():
            seconds[key] += value
        model.eval()
        models.append(model)
        trainers.append(trainer)
    return models, trainers, seconds


def level_chains(cfg: VoxelNetExperiment, coarser: list[VoxelNet], model: VoxelNet, resolution: int):
    """The training chains of one level: recovery negatives, chains from the coarser levels'
    samples, or None (the configured chains)."""
    if cfg.algorithm.negatives == "recovery":
        return RecoveryChains(model, cfg.recovery.ratio)
    if coarser:
        s = cfg.train.sampler
        return CoarseChains(coarser, model, s.steps, s.step_size, cfg.train.chains.std,
                            resolution // coarser[-1].spec.resolution, s.noise, cfg.algorithm.clamp)
    return None


def fit(trainer: Trainer) -> dict[str, float]:
    """Run ``trainer`` to its last step (resuming where it stands) and add the wall and process CPU
    seconds to its run folder's ``timing.json``; returns this call's ``{"wall": s, "cpu": s}``.
    The model leaves as the one the run is evaluated with (its parameter average, if it keeps one)."""
    started, cpu = time.time(), time.process_time()
    trainer.fit()
    trainer.model.load_state_dict(evaluated_state(trainer.state_dict()))
    seconds = {"wall": time.time() - started, "cpu": time.process_time() - cpu}
    add_train_seconds(trainer.run_dir, seconds)
    return seconds


def add_train_seconds(folder: Path, seconds: dict[str, float]) -> dict[str, float | None]:
    """Add ``{"wall": s, "cpu": s}`` to the training time kept in ``folder/timing.json`` (summed
    over resumes); returns the totals (``cpu`` None when an earlier call did not keep it)."""
    path = Path(folder) / TIMING
    old = json.loads(path.read_text()) if path.is_file() else {"train_seconds": 0.0, "train_cpu_seconds": 0.0}
    cpu = old.get("train_cpu_seconds")
    total = {"train_seconds": round(old["train_seconds"] + seconds["wall"], 1),
             "train_cpu_seconds": None if cpu is None else round(cpu + seconds["cpu"], 1)}
    text = json.dumps(total)
    atomic_write(path, lambda tmp: tmp.write_text(text))
    return {"wall": total["train_seconds"], "cpu": total["train_cpu_seconds"]}


def _timings(run_dir: str | Path) -> list[dict]:
    paths = [Path(run_dir) / TIMING, *sorted(Path(run_dir).glob(f"level*/{TIMING}"))]
    return [json.loads(p.read_text()) for p in paths if p.is_file()]


def train_seconds(run_dir: str | Path) -> float:
    """Training wall seconds of a run folder and its multigrid levels (``level<R>/``), summed over
    resumes (0 for a folder without timing)."""
    return sum(t["train_seconds"] for t in _timings(run_dir))


def train_cpu_seconds(run_dir: str | Path) -> float | None:
    """Process CPU seconds of the same training calls as :func:`train_seconds` (None when a call
    predates their bookkeeping)."""
    cpu = [t.get("train_cpu_seconds") for t in _timings(run_dir)]
    return None if None in cpu else sum(cpu)


def load_voxel_run(run_dir: str | Path, overrides: list[str] | None = None) -> tuple[VoxelNetExperiment, list[VoxelNet]]:
    """The config and trained models (coarse to fine) of a VoxelNet run folder."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise ConfigError(f"{run_dir}: not a run folder (no config.yaml)")
    cfg = load_experiment(cfg_path, overrides, model="voxelnet")
    models = []
    for res in levels_of(cfg):
        ckpt = level_dir(cfg, res, run_dir) / CHECKPOINT
        if not ckpt.is_file():
            raise ConfigError(f"{ckpt}: no checkpoint; train the run first (ebm3d train)")
        model = build_voxel_model(cfg, res)
        model.load_state_dict(evaluated_state(load_tensors(ckpt, map_location=cfg.train.device)))
        model.eval()
        models.append(model)
    return cfg, models


def training_grids(cfg: VoxelNetExperiment, source) -> torch.Tensor:
    """The training split of a data source as occupancy (N, 1, R, R, R)."""
    return config_grids(cfg.data, source, "train")


# ------------------------------------------------------------------ the generative PointNet


def build_point_model(cfg: PointNetExperiment) -> GenerativePointNet:
    """The experiment's energy network (taking ``cfg.train_points`` points with ``norm: position``)."""
    return GenerativePointNet(cfg.energy.spec(cfg.train_points))


def set_threads(cfg: PointNetExperiment) -> None:
    """Torch CPU threads from the experiment's ``threads`` (None: leave them)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)


def point_trainer(cfg: PointNetExperiment, model: GenerativePointNet, data: torch.Tensor, *, resume: bool = True,
                  callbacks=None, run_dir: str | Path | None = None) -> Trainer:
    """The engine's trainer for clouds ``data`` (N, P, 3) with the experiment's augmentation
    (``transform``) and chains of ``cfg.train_points`` points (``chains``)."""
    c = cfg.train.chains
    chains = make_chains(c.kind, (cfg.train_points, 3), std=c.std, mean=c.mean, num_chains=c.num_chains,
                         reinit_prob=c.reinit_prob)
    augment = PointAugment(cfg.train.seed, cfg.data.train_points, cfg.data.jitter)
    return Trainer(model, data, cfg.train, run_dir or cfg.run_dir, resume=resume, callbacks=callbacks,
                   full_config=cfg, chains=chains, transform=augment)


def train_point_model(cfg: PointNetExperiment, data: torch.Tensor, callbacks=None,
                      resume: bool = True) -> tuple[GenerativePointNet, Trainer, dict]:
    """Train (resuming from ``cfg.run_dir``) on clouds (N, P, 3); returns (model in eval mode,
    trainer, ``{"wall": s, "cpu": s}`` of this call's training loop)."""
    if data.dim() != 3 or data.shape[-1] != 3:
        raise DataError(f"training clouds must be (N, P, 3), got {tuple(data.shape)}")
    set_threads(cfg)
    torch.manual_seed(cfg.train.seed)
    trainer = point_trainer(cfg, build_point_model(cfg), data, callbacks=callbacks, resume=resume)
    seconds = fit(trainer)
    return trainer.model.eval(), trainer, seconds


def load_point_run(run_dir: str | Path, overrides: list[str] | None = None,
                   checkpoint: str = CHECKPOINT) -> tuple[PointNetExperiment, list[GenerativePointNet]]:
    """The saved config (with ``overrides``) and the trained model (a list of one) of a PointNet run
    folder."""
    run_dir = Path(run_dir)
    ckpt = run_dir / checkpoint
    if not ckpt.is_file():
        raise DataError(f"{run_dir}: no {checkpoint} (train the run first)")
    cfg = load_experiment(run_dir / "config.yaml", overrides, model="pointnet")
    cfg.out_dir, cfg.name = str(run_dir.parent), run_dir.name
    set_threads(cfg)
    model = build_point_model(cfg)
    model.load_state_dict(evaluated_state(load_tensors(ckpt)))
    model.eval()
    return cfg, [model]
