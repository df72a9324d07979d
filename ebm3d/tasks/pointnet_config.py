"""Experiment configs of the generative PointNet: typed dataclasses read from YAML.

The defaults are the published settings; the CPU configs under ``configs/`` override them.
A file is a PointNet experiment when it names the model ``pointnet`` (``model: pointnet``; see
:mod:`ebm3d.registry`, through which ``ebm3d train CONFIG`` tells it from a VoxelNet config). The energy network's settings are under
``energy:``, the engine's :class:`ebmcore.learning.TrainConfig` under ``train:``, and each task
has its own section. Unknown keys and absurd values raise :class:`ebmcore.errors.ConfigError`
naming the key.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


from ebmcore.config import check
from ebmcore.errors import ConfigError
from ebmcore.training_config import ChainConfig, OptimConfig, SamplerConfig, TrainConfig

from ebm3d.data.points import NORMALISATIONS
from ebm3d.experiment import ShapeExperiment, load_typed
from ebm3d.models.pointnet import NORMS, PAPER, PointNetSpec

POINT_SOURCES = ["modelnet", "furniture"]


@dataclass
class PointDataConfig:
    """Which point sets, normalised how.

    source: ``modelnet`` (a ModelNet-layout folder of point files or meshes; default the shared
        modelnet10-pcd) or ``furniture`` (the built-in generated set; no download).
    path: the source folder (default: ``data_root()/modelnet10-pcd``).
    classes: these classes only (None: all the source has).
    n_points: points per shape in the prepared set (area-weighted samples from meshes, a seeded
        subset of point files).
    train_points: points per cloud the model trains on: a fresh random subset of the n_points
        every step (None: all n_points, in a fixed order).
    normalisation: ``category_scalar`` (per shape on the unit sphere, then one scalar min/max
        over the class's training array to [-1, 1]: the published setting, aspect ratios kept),
        ``category_minmax`` (the same per axis: aspect ratios change) or ``sphere`` (per shape,
        centroid at 0 and the farthest point at radius 1; used for classification, where a
        per-class map would leak the label; the energy is blind to a uniform scale anyway).
    jitter: std of the Gaussian noise added to the observed clouds at every training step.
    max_per_class: keep at most this many files per class and official split (tests).
    n_per_class: furniture only: shapes generated per class.
    val_fraction / test_fraction: validation share carved from train; furniture's test share.
    seed: drives the splits and the sampled points.
    workers: processes for preparing the dataset.
    """

    source: str = check("modelnet", choices=POINT_SOURCES)
    path: str | None = None
    classes: list[str] | None = None
    n_points: int = check(1024, min=2, max=1_000_000)
    train_points: int | None = check(None, min=2, max=1_000_000)
    normalisation: str = check("category_scalar", choices=list(NORMALISATIONS))
    jitter: float = check(0.01, min=0.0, max=1.0)
    max_per_class: int | None = check(None, min=1)
    n_per_class: int = check(60, min=2, max=100_000)
    val_fraction: float = check(0.1, min=0.0, max=0.9)
    test_fraction: float = check(0.2, min=0.0, max=0.9)
    seed: int = 0
    workers: int = check(1, min=1, max=256)

    def validate(self, prefix=""):
        if self.train_points is not None and self.train_points > self.n_points:
            raise ConfigError(f"{prefix}train_points: {self.train_points} exceeds n_points {self.n_points}")


@dataclass
class EnergyConfig:
    """The energy network (see :class:`ebm3d.models.pointnet.PointNetSpec`); defaults: the
    published one. With ``norm: position`` the network takes the training point count
    (``data.train_points`` or ``data.n_points``) and no other."""

    widths: list[int] = check(default_factory=lambda: list(PAPER["widths"]), min=1, max=65536)
    mlp: list[int] = check(default_factory=lambda: list(PAPER["mlp"]), min=1, max=65536)
    sigma_ref: float | None = check(0.3, min=1e-6, max=1e6)
    norm: str = check("position", choices=list(NORMS))
    residual: bool = True

    def spec(self, n_points: int | None = None) -> PointNetSpec:
        return PointNetSpec(list(self.widths), list(self.mlp), self.sigma_ref, self.norm, self.residual,
                            n_points if self.norm == "position" else None)

    def validate(self, prefix=""):
        self.spec(n_points=2).validate(prefix)


@dataclass
class PointSynthesisConfig:
    """Fresh samples after training: short-run chains from N(0, train.chains.std^2).

    n_samples: clouds drawn; n_points: points per cloud (None: the training count).
    steps / step_size: Langevin (None: the training sampler's).
    noise: 'constant' (as in training) or 'none' (the deterministic generator x = M(z)).
    batch_size: chains run at once.
    """

    n_samples: int = check(36, min=1, max=1_000_000)
    n_points: int | None = check(None, min=2, max=1_000_000)
    steps: int | None = check(None, min=0, max=100_000)
    step_size: float | None = check(None, min=0.0, max=100.0)
    noise: str = check("constant", choices=["constant", "none"])
    batch_size: int = check(50, min=1, max=100_000)


@dataclass
class ReconstructionConfig:
    """Reconstruction: optimise the initial noise z of the noise-free chain so that its output
    matches a held-out cloud point for point; the error is mean squared error x 1000.

    split / n_examples: the clouds reconstructed (the first n of that split).
    iterations: optimiser steps on z (the paper: 64); each back-propagates through the whole
        unrolled chain (ebmcore.sampling.langevin(differentiable=True)).
    lr: Adam's learning rate on z; lr_decay: multiplied into it after every iteration (the
        published code decays its sign-gradient step by 0.9 per iteration too).
    batch_size: clouds optimised together (each has its own z; the loss is a sum over them).
    loss: what is optimised: 'mse' (point i against point i, the paper's) or 'chamfer' (squared
        Chamfer distance, blind to point order). Both are reported either way.
    """

    split: str = check("test", choices=["train", "val", "test"])
    n_examples: int = check(16, min=1, max=1_000_000)
    loss: str = check("mse", choices=["mse", "chamfer"])
    iterations: int = check(64, min=1, max=100_000)
    lr: float = check(0.05, min=0.0, max=10.0)
    lr_decay: float = check(0.9, min=0.0, max=1.0)
    batch_size: int = check(16, min=1, max=100_000)


@dataclass
class InterpolationConfig:
    """Interpolation between two noise vectors z0, z1 through the noise-free chain.

    n_pairs: strips; n_steps: clouds per strip (ends included).
    path: 'spherical' (z_t = cos(pi t / 2) z0 + sin(pi t / 2) z1: every z_t has the noise's
        distribution) or 'linear' ((1 - t) z0 + t z1).
    """

    n_pairs: int = check(3, min=1, max=1000)
    n_steps: int = check(8, min=2, max=1000)
    path: str = check("spherical", choices=["spherical", "linear"])


@dataclass
class PointEvalConfig:
    """Generation metrics (PointFlow protocol) of the samples against a reference split.

    ref_split: the reference shapes (the first n_ref of that split; None: all of it).
    n_samples: generated clouds (None: as many as references).
    n_points: points per cloud measured: samples are drawn with this many points and the
        references are seeded subsets of it (None: the training point count, the only one a
        ``norm: position`` network takes).
    emd: 'exact' (POT's network simplex), 'approxmatch' (APPROXIMATE) or 'none'.
    emd_points: EMD is computed on this many points per cloud (a seeded subset, the same for
        every row of the report), because exact EMD on 1024 points costs about 0.4 s a pair
        here; None: all points.
    normalise: 'sphere' puts every cloud (samples, references, oracle, blob) on the unit sphere
        per shape before measuring, 'none' measures as they are.
    oracle: also report a random subset of the training split (the floor) and Gaussian blobs
        (the ceiling), measured the same way.
    record: a section of docs/results/ebm3d.json that ``ebm3d evaluate`` writes (None: none).
    """

    ref_split: str = check("test", choices=["train", "val", "test"])
    n_ref: int | None = check(100, min=2, max=1_000_000)
    n_samples: int | None = check(None, min=2, max=1_000_000)
    n_points: int | None = check(None, min=2, max=1_000_000)
    emd: str = check("exact", choices=["exact", "approxmatch", "none"])
    emd_points: int | None = check(256, min=2, max=1_000_000)
    normalise: str = check("sphere", choices=["sphere", "none"])
    oracle: bool = True
    workers: int = check(1, min=1, max=64)
    record: str | None = None


@dataclass
class PointClassifyConfig:
    """Linear classification of an unsupervised model's max-pooled per-point features.

    classifier: 'svm' (linear SVM) or 'logistic'; C: values tried; features: the 'last' hidden
    layer (published) or 'all' of them. Every ``eval_every`` training steps (and at the end) each C is fitted on
    train and scored on validation; the best (checkpoint, C) is the one scored on test.
    baseline: also score the untrained network's features (same seed, same selection on
        validation), reported next to the trained ones.
    record: a section of docs/results/ebm3d.json that the classification writes (None: none).
    folds: 0 scores on the val split; k > 1 by stratified k-fold cross-validation over train and
        val together (:func:`ebm3d.tasks.classification.validation_accuracy`).
    """

    classifier: str = check("svm", choices=["svm", "logistic"])
    C: list[float] = check(default_factory=lambda: [0.001, 0.01, 0.1, 1.0], min=1e-8, max=1e8)
    features: str = check("last", choices=["last", "all"])
    eval_every: int = check(100, min=1)
    max_iter: int = check(5000, min=10, max=1_000_000)
    batch_size: int = check(64, min=1, max=100_000)
    baseline: bool = True
    record: str | None = None
    folds: int = check(0, min=0, max=20)


@dataclass
class RobustnessConfig:
    """Robustness curves of the selected classifier on corrupted test clouds.

    missing / outliers / jitter: the grids (None: the published ones in ebm3d.transforms).
    outlier_std: std of the added points. n_test: test clouds used (None: all).
    """

    missing: list[float] | None = check(None, min=0.0, max=0.99)
    outliers: list[float] | None = check(None, min=0.0, max=10.0)
    jitter: list[float] | None = check(None, min=0.0, max=10.0)
    outlier_std: float = check(0.3, min=0.0, max=100.0)
    n_test: int | None = check(None, min=1)


def _default_train() -> TrainConfig:
    """The published training settings (REFERENCE.md section 3 and the official code)."""
    return TrainConfig(
        steps=2000, batch_size=128, log_every=10, ckpt_every=50, sample_every=50,
        sampler=SamplerConfig(steps=64, step_size=0.01, noise_scale=1.0, clamp=[-1.0, 1.0]),
        chains=ChainConfig(kind="short_run", std=0.3),
        optim=OptimConfig(lr=5e-4, beta1=0.9, beta2=0.999, lr_step_every=10, lr_gamma=0.998))


@dataclass
class PointNetExperiment(ShapeExperiment):
    """One generative PointNet experiment: what ``ebm3d train`` reads for a config that names
    the model ``pointnet`` (``name``, ``out_dir`` and ``task``: :class:`ebm3d.experiment.ShapeExperiment`).

    task: 'synthesis' (train on data.classes, then sample, reconstruct, interpolate, evaluate)
    or 'classification' (one model on all classes, then the linear classifier and robustness).
    threads: torch threads (1 is fastest on a busy machine).
    """

    name: str = "pointnet"
    model: str = check("pointnet", choices=["pointnet"])
    threads: int | None = check(1, min=1, max=1024)
    data: PointDataConfig = field(default_factory=PointDataConfig)
    energy: EnergyConfig = field(default_factory=EnergyConfig)
    train: TrainConfig = field(default_factory=_default_train)
    synthesis: PointSynthesisConfig = field(default_factory=PointSynthesisConfig)
    reconstruction: ReconstructionConfig = field(default_factory=ReconstructionConfig)
    interpolation: InterpolationConfig = field(default_factory=InterpolationConfig)
    evaluate: PointEvalConfig = field(default_factory=PointEvalConfig)
    classify: PointClassifyConfig = field(default_factory=PointClassifyConfig)
    robustness: RobustnessConfig = field(default_factory=RobustnessConfig)

    def validate(self, prefix=""):
        super().validate(prefix)
        if self.task == "classification" and self.data.normalisation != "sphere":
            raise ConfigError(f"{prefix}data.normalisation: {self.data.normalisation} uses each shape's class "
                              "to normalise it, which leaks the label into classification; use sphere")
        kind = self.train.chains.kind
        if kind in ("persistent", "replay") and self.train.chains.num_chains < self.train.batch_size:
            raise ConfigError(f"{prefix}train.chains.num_chains: {self.train.chains.num_chains} is smaller "
                              f"than train.batch_size {self.train.batch_size}")

    @property
    def train_points(self) -> int:
        """Points per training cloud: what the chains and a ``norm: position`` network take."""
        return self.data.train_points or self.data.n_points


def load_pointnet_experiment(path: str | Path | None = None, overrides: list[str] | None = None) -> PointNetExperiment:
    """Read a PointNet experiment YAML (or the defaults when ``path`` is None) with overrides
    (:func:`ebm3d.experiment.load_typed`: ``model: {name: pointnet}`` or ``model: pointnet``).

    Keys the file leaves out keep this module's defaults, also inside ``train`` (whose defaults
    here are the PointNet ones: short-run chains from N(0, 0.3^2), clamp to [-1, 1], lr 5e-4),
    not the engine's generic ones.
    """
    return load_typed(PointNetExperiment, "pointnet", path, overrides)
