"""Experiment configs of every shape model: typed dataclasses read from YAML.

Each registered model (:mod:`ebm3d.registry`) names its experiment class here:
:class:`VoxelNetExperiment` and :class:`PointNetExperiment`, each a
:class:`~ebm3d.experiment.ShapeExperiment` composing the engine's
:class:`ebmcore.training_config.TrainConfig` with its data, model and task sections and its own
defaults. The ``classify`` section (:class:`ClassifyConfig`) is shared. Load any of them with
:func:`ebm3d.experiment.load_experiment` (a YAML file plus ``key.sub=value`` overrides); unknown
keys and absurd values raise :class:`ebmcore.errors.ConfigError` naming the key.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ebmcore.config import check
from ebmcore.errors import ConfigError
from ebmcore.training_config import ChainConfig, OptimConfig, SamplerConfig, TrainConfig

from ebm3d.data.points import NORMALISATIONS
# load_experiment: the one loader, which tests/test_cli_errors_matrix.py reads from here
from ebm3d.experiment import ShapeExperiment, load_experiment  # noqa: F401
from ebm3d.models.pointnet import NORMS, PAPER, POOLS, PointNetSpec
from ebm3d.models.voxelnet import VoxelNetSpec

DATA_SOURCES = ["shapenets_chair", "modelnet", "furniture"]  # ebm3d.data.sources: one class each


@dataclass
class DataConfig:
    """Which shapes, at which resolution.

    source: ``shapenets_chair`` (3D ShapeNets .mat chairs), ``modelnet`` (a ModelNet-layout
        folder of meshes or point files, default the shared modelnet10-pcd) or ``furniture``
        (the built-in generated set; no download).
    path: the source folder (default: ``data_root()/<the shared folder>``).
    classes: train on these classes only (None: all the source has).
    resolution: grid size R the dataset is prepared at (N, 1, R, R, R); a source stored finer
        (the 32^3 chairs) is pooled down to it by ``pool``.
    pool: 'avg' (block average: fractional occupancy) or 'max' (a coarse voxel is occupied when
        any fine voxel is: binary grids that keep thin legs) when pooling a finer source.
    source_resolution: modelnet and furniture: prepare the grids at this resolution and pool them
        to ``resolution`` (None: prepare at ``resolution``).
    rotations: shapenets_chair only: keep these rotation indices (1-12, 1 = canonical; None: all).
    max_per_class: keep at most this many source shapes per class and official split (tests).
    max_train: train on the first this many shapes of the training split only (CPU budgets); the
        validation and test splits are unchanged.
    point_dilation / point_fill: occupancy from point files (see ebm3d.data.voxelize).
    n_per_class: furniture only: shapes generated per class.
    val_fraction / test_fraction: validation share of train (all sources); test share carved
        for sources without an official test split (shapenets_chair, furniture).
    seed: drives the splits and the generated shapes.
    workers: processes for preparing the dataset.
    """

    source: str = check("shapenets_chair", choices=DATA_SOURCES)
    path: str | None = None
    classes: list[str] | None = None
    resolution: int = check(32, choices=[8, 16, 32, 64])
    pool: str = check("avg", choices=["avg", "max"])
    source_resolution: int | None = check(None, choices=[16, 32, 64])
    rotations: list[int] | None = check(None, min=1, max=12)
    max_per_class: int | None = check(None, min=1)
    max_train: int | None = check(None, min=1)
    point_dilation: int = check(1, min=0, max=4)
    point_fill: bool = True
    n_per_class: int = check(60, min=1, max=100_000)
    val_fraction: float = check(0.1, min=0.0, max=0.9)
    test_fraction: float = check(0.1, min=0.0, max=0.9)
    seed: int = 0
    workers: int = check(1, min=1, max=256)

    def validate(self, prefix=""):
        if self.source_resolution is not None and self.source_resolution % self.resolution:
            raise ConfigError(f"{prefix}source_resolution: {self.source_resolution} must be a multiple of "
                              f"resolution {self.resolution}")
        if self.rotations is not None and self.source != "shapenets_chair":
            raise ConfigError(f"{prefix}rotations: only the shapenets_chair source has rotations")
        if self.source == "shapenets_chair" and self.resolution not in (8, 16, 32):
            raise ConfigError(f"{prefix}resolution: the 3D ShapeNets chairs are 32^3 (30^3 padded), pooled to "
                              f"16^3 or 8^3 at most; got {self.resolution}")


@dataclass
class ModelConfig:
    """The energy network (see :class:`ebm3d.models.voxelnet.VoxelNetSpec`); the input
    resolution comes from the data (or the multigrid level).

    centring: what is subtracted from occupancy: the per-voxel training mean ('voxel') or its
        average over all voxels, one number ('scalar', as in the official code).
    feature_pooling: classification features: 'adaptive' (each hidden layer max-pooled to
        feature_pool^3) or 'official' (conv1 max-pooled with window and stride 4, conv2 with 2,
        TensorFlow "SAME" padding, as in the official code).
    """

    channels: list[int] = check(default_factory=lambda: [32, 64], min=1, max=4096)
    kernels: list[int] = check(default_factory=lambda: [6, 4], min=1, max=64)
    strides: list[int] = check(default_factory=lambda: [3, 2], min=1, max=64)
    sigma_ref: float | None = check(0.5, min=1e-6, max=1e6)
    init_std: float = check(0.001, min=1e-9, max=10.0)
    feature_pool: int = check(3, min=1, max=64)
    centring: str = check("voxel", choices=["voxel", "scalar"])
    feature_pooling: str = check("adaptive", choices=["adaptive", "official"])

    def spec(self, resolution: int) -> VoxelNetSpec:
        return VoxelNetSpec(list(self.channels), list(self.kernels), list(self.strides), resolution,
                            self.sigma_ref, self.init_std, self.feature_pool, self.centring, self.feature_pooling)

    def validate(self, prefix=""):
        self.spec(32).validate(prefix)


@dataclass
class AlgorithmConfig:
    """Switches between algorithm variants of training and sampling.

    clamp: clamp every chain (training, sampling, recovery, super-resolution) to the occupancy
        range [0, 1] after every Langevin step. Without it the input gradient on data grows
        without bound and training diverges within a few hundred updates.
    bookkeeping: 'minibatch' (one optimiser step per minibatch; the configured chains) or
        'official' (the official code's: the gradients of every minibatch of a pass over the data
        averaged into one optimiser step per pass; ``train.chains.per_batch`` persistent chains per
        minibatch, started N(0, 1) in the centred space, so every chain advances at each update;
        needs ``model.centring: scalar``).
    negatives: what the model is trained against: 'synthesis' (the configured chains) or
        'recovery' (a dedicated recovery model, as in the official code: each negative is a
        training shape with ``recovery.ratio`` of its voxels hidden and filled with the mean of the
        observed ones, run freely by the training sampler, observed voxels pasted back at the end).
    """

    clamp: bool = False
    bookkeeping: str = check("minibatch", choices=["minibatch", "official"])
    negatives: str = check("synthesis", choices=["synthesis", "recovery"])


@dataclass
class SynthesisConfig:
    """Sampling after training.

    levels: multigrid resolutions, coarse to fine, ending at data.resolution (e.g. [16, 32]);
        each level has its own model, and a finer level's training chains start from the
        coarser level's samples, upsampled. Empty: one model at data.resolution.
    n_samples: samples saved (from the persistent chains when train.chains.kind is
        persistent or replay, else fresh chains from noise).
    steps / step_size / noise: Langevin of the fresh chains (None: the training sampler's).
    denoise_steps: noise-free Langevin steps (the training step size) run on every sample, persistent
        or fresh, before it is saved: gradient descent on the energy that removes the per-voxel
        noise of chains trained with constant noise.
    """

    levels: list[int] = check(default_factory=list, min=2, max=256)
    n_samples: int = check(36, min=1, max=100_000)
    steps: int | None = check(None, min=0, max=100_000)
    step_size: float | None = check(None, min=0.0, max=100.0)
    noise: str | None = check(None, choices=["constant", "off", "annealed"])
    denoise_steps: int = check(0, min=0, max=100_000)


@dataclass
class RecoveryConfig:
    """Recovery of corrupted shapes by masked Langevin (paper: 70 % random, 90 steps, 0.07).

    split: the data split recovered; n_examples: how many (the first n of that split).
    ratio: share of voxels corrupted (unobserved) in the random mode.
    box: edge of the cubic region removed in the region mode, as a fraction of R.
    protocol: 'official' (the official code's: hidden voxels start at the mean of the shape's
        observed voxels, the chain runs freely, the observed voxels are pasted back at the end) or
        'masked' (hidden voxels start at ``init``, observed voxels reset after every step).
    init: 'masked' protocol: what an unobserved voxel starts at: 0 occupancy ('zero') or the
        training mean ('mean').
    noise: the Langevin noise; off by default (descent on the energy).
    dedicated: an experiment YAML of a dedicated recovery model (``algorithm.negatives: recovery``,
        the official code's way) that ``ebm3d train --record`` trains (resuming) and recovers with;
        None: this run's model recovers.
    """

    split: str = check("test", choices=["train", "val", "test"])
    n_examples: int = check(50, min=1, max=1_000_000)
    ratio: float = check(0.7, min=0.0, max=0.99)
    box: float = check(0.5, min=0.05, max=1.0)
    steps: int = check(90, min=0, max=100_000)
    step_size: float = check(0.07, min=0.0, max=10.0)
    noise: str = check("off", choices=["constant", "off", "annealed"])
    protocol: str = check("official", choices=["official", "masked"])
    dedicated: str | None = None
    init: str = check("zero", choices=["zero", "mean"])
    batch_size: int = check(25, min=1, max=10_000)


@dataclass
class SuperResConfig:
    """Super-resolution by Langevin with the block-average projection (paper: 16^3 -> 64^3, 10
    steps, 0.01). ``factor`` divides data.resolution; the low-resolution input is the block
    average of the ground truth."""

    split: str = check("test", choices=["train", "val", "test"])
    n_examples: int = check(50, min=1, max=1_000_000)
    factor: int = check(2, choices=[2, 4, 8])
    steps: int = check(10, min=0, max=100_000)
    step_size: float = check(0.01, min=0.0, max=10.0)
    noise: str = check("off", choices=["constant", "off", "annealed"])
    batch_size: int = check(25, min=1, max=10_000)


@dataclass
class ClassifyConfig:
    """Linear classification of an unsupervised model's features (every shape model's ``classify``
    section; :mod:`ebm3d.tasks.classification`). Each model's experiment sets its own defaults.

    classifier: 'logistic' (multinomial logistic regression) or 'svm' (linear SVM).
    standardise: scale each feature to zero mean and unit variance on the training rows first
        (the official GPointNet classification script feeds the raw max-pooled features).
    C: the regularisation values tried; the one (and the checkpoint) with the best
        validation accuracy is used for test.
    eval_every: training steps between validation evaluations of the features (model selection
        over checkpoints); the final step is always evaluated.
    untrained_baseline: also score the features of the network as initialised (seeded by
        train.seed, same architecture and data mean, C chosen on val), to show what the unsupervised
        learning adds.
    folds: 0 scores on the val split; k > 1 scores by stratified k-fold cross-validation over
        train and val together (a steadier selection than ~400 validation shapes).
    record: a section of docs/results/ebm3d.json that the classification writes (None: none).
    """

    classifier: str = check("logistic", choices=["logistic", "svm"])
    standardise: bool = True
    C: list[float] = check(default_factory=lambda: [0.01, 0.1, 1.0], min=1e-8, max=1e8)
    eval_every: int = check(500, min=1)
    max_iter: int = check(2000, min=10, max=1_000_000)
    batch_size: int = check(64, min=1, max=100_000)
    untrained_baseline: bool = False
    folds: int = check(0, min=0, max=20)
    record: str | None = None


@dataclass
class ReferenceConfig:
    """The volumetric reference classifier of the inception score (trained on data.source
    'modelnet' train, selected on val, accuracy on test).

    run: where it is stored (trained on first use); channels: its conv widths; input_pool: the
    input is average-pooled by this factor first (32^3 -> 16^3).
    augment: random quarter turns about the up axis and mirror flips during training.
    n_samples: samples drawn from the evaluated model for the score; splits: 10 as in the paper.
    """

    run: str = "runs/reference_modelnet10"
    epochs: int = check(6, min=1, max=10_000)
    batch_size: int = check(32, min=1, max=10_000)
    lr: float = check(1e-3, min=0.0, max=10.0)
    channels: list[int] = check(default_factory=lambda: [16, 32], min=1, max=1024)
    input_pool: int = check(2, min=1, max=8)
    hidden: int = check(128, min=1, max=100_000)
    dropout: float = check(0.4, min=0.0, max=0.99)
    augment: bool = True
    n_samples: int = check(500, min=10, max=1_000_000)
    splits: int = check(10, min=1, max=1000)
    data: DataConfig = field(default_factory=lambda: DataConfig(source="modelnet"))


@dataclass
class VoxelNetExperiment(ShapeExperiment):
    """One generative VoxelNet experiment: what ``ebm3d train`` reads for a VoxelNet config
    (``name``, ``out_dir`` and ``task``: :class:`ebm3d.experiment.ShapeExperiment`)."""

    name: str = "voxelnet"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    synthesis: SynthesisConfig = field(default_factory=SynthesisConfig)
    recovery: RecoveryConfig = field(default_factory=RecoveryConfig)
    superres: SuperResConfig = field(default_factory=SuperResConfig)
    classify: ClassifyConfig = field(default_factory=ClassifyConfig)
    reference: ReferenceConfig = field(default_factory=ReferenceConfig)

    def validate(self, prefix=""):
        super().validate(prefix)
        levels = self.synthesis.levels
        if levels:
            if levels[-1] != self.data.resolution:
                raise ConfigError(f"{prefix}synthesis.levels: the last level must equal data.resolution "
                                  f"{self.data.resolution}, got {levels}")
            for a, b in zip(levels, levels[1:]):
                if b <= a or b % a:
                    raise ConfigError(f"{prefix}synthesis.levels: each level must be a multiple of the one "
                                      f"before and larger, got {levels}")
                if b // a != levels[1] // levels[0]:
                    raise ConfigError(f"{prefix}synthesis.levels: the levels must share one factor, got {levels}")
        if self.data.resolution % self.superres.factor:
            raise ConfigError(f"{prefix}superres.factor: {self.superres.factor} must divide data.resolution "
                              f"{self.data.resolution}")
        if self.algorithm.bookkeeping == "official" and self.model.centring != "scalar":
            raise ConfigError(f"{prefix}algorithm.bookkeeping: 'official' subtracts one scalar training mean; "
                              f"set model.centring: scalar (got {self.model.centring!r})")
        if (self.train.chains.kind in ("persistent", "replay") and self.algorithm.bookkeeping == "minibatch"
                and self.train.chains.num_chains < self.train.batch_size):
            raise ConfigError(f"{prefix}train.chains.num_chains: {self.train.chains.num_chains} is smaller "
                              f"than train.batch_size {self.train.batch_size}")


# ------------------------------------------------------------------ the generative PointNet

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
    pool: str = check("mean", choices=list(POOLS))

    def spec(self, n_points: int | None = None) -> PointNetSpec:
        return PointNetSpec(list(self.widths), list(self.mlp), self.sigma_ref, self.norm, self.residual,
                            n_points if self.norm == "position" else None, pool=self.pool)

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
    select_every: checkpoint selection on validation during training (``ebm3d train``): every this
        many updates the run's evaluated model draws as many clouds as the val split holds, and
        the checkpoint with the lowest 1-NNA-CD against them (measured as above) goes to
        ``best_model.pt``, which ``evaluate``, ``sample`` and the other run commands then load
        (:class:`ebm3d.tasks.generation_metrics.GenerationSelector`). None: the last checkpoint.
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
    # every this many training updates, 1-NNA-CD of fresh samples against the val split; the best
    # checkpoint (best_model.pt) is the one evaluate and sample use (None: the last checkpoint)
    select_every: int | None = check(None, min=1)


@dataclass
class PointClassifyConfig(ClassifyConfig):
    """:class:`ClassifyConfig` with the PointNet defaults (a linear SVM, the untrained baseline on)
    and the layers whose max-pooled per-point features are used: the ``last`` hidden layer
    (published) or ``all`` of them."""

    classifier: str = check("svm", choices=["logistic", "svm"])
    C: list[float] = check(default_factory=lambda: [0.001, 0.01, 0.1, 1.0], min=1e-8, max=1e8)
    eval_every: int = check(100, min=1)
    max_iter: int = check(5000, min=10, max=1_000_000)
    untrained_baseline: bool = True
    features: str = check("last", choices=["last", "all"])


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
    renamed = {"classify.baseline": "classify.untrained_baseline"}
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
