"""The experiment config of EBM-IOC runs (YAML in ``configs/ioc_*.yaml``).

Sections: ``data`` (which prepared dataset and how much of it), ``inputs`` (how scenes become
the cost's tensors, :class:`ebmtraj.cost_inputs.InputConfig`), ``model`` (the cost,
:class:`ebmtraj.ioc.ModelConfig`), ``pretrain`` (exact maximum likelihood of the neural term),
``train`` (analysis by synthesis, :class:`ebmcore.training_config.TrainConfig`), ``predict``
(:class:`ebmtraj.ioc.PredictConfig`), ``evaluate`` and ``lstm`` (the learned baseline). Load with
:func:`load` (YAML + ``key.sub=value`` overrides; unknown keys and absurd values raise
:class:`ebmcore.errors.ConfigError` naming the key).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ebmcore.config import check, load_config
from ebmcore.errors import ConfigError
from ebmcore.training_config import TrainConfig
from ebmcore.paths import cache_root

from .cost_inputs import InputConfig
from .data.scenes import SceneConfig
from .model import ModelConfig, PredictConfig

DATASETS = ("us101-vehicles", "commonroad", "synthetic", "i80-first-minute", "raw")
DEFAULT_HISTORY = SceneConfig.history   # frames (1 s at 10 Hz)
DEFAULT_STRIDE = SceneConfig.stride     # frames between window starts (1 s at 10 Hz)
MAX_HISTORY = 100        # frames (10 s)


@dataclass
class DataConfig:
    """Which prepared scene cache to use (``python -m data_prep.ngsim prepare <dataset>``)."""

    dataset: str = check("us101-vehicles", choices=list(DATASETS))
    cache: str | None = None                      # folder; default cache_root()/ebmtraj/<dataset>
    max_train: int | None = check(None, min=1)    # subsample training windows (seeded)
    val_rows: int = check(512, min=1)             # validation windows used for model selection
    max_test: int | None = check(None, min=1)     # subsample test scenes (None: all)
    prepare_limit: int | None = check(None, min=1)  # `ebmtraj prepare`: first N vehicles/scenarios
    # a virtual-leader slot per agent from its headway over the history: for us101-vehicles
    # the CSVs' recorded Space_Headway (most leaders are not among the 370 recorded vehicles),
    # elsewhere derived from all vehicles at each frame (ebmtraj.data.headways; a scene keeps
    # only the neighbours present through its whole window)
    headway_leads: bool = False
    # history frames per window at 10 Hz (10: 1 s; 30: 3 s, the CS-LSTM protocol's); the future
    # stays 40 frames (4 s at 10 Hz: the model steps at 0.1 s and the tables report 1-4 s)
    history: int = check(DEFAULT_HISTORY, min=3, max=MAX_HISTORY)
    # frames between training-window starts (validation and test windows start every
    # DEFAULT_STRIDE frames, 1 s, whatever this is): 2 cuts 5x as many overlapping windows
    train_stride: int = check(DEFAULT_STRIDE, min=1, max=DEFAULT_STRIDE)

    def root(self) -> Path:
        """The scene cache: ``data.cache``, else cache_root()/ebmtraj/<dataset>, with
        ``-history<N>`` appended for a history other than the default 10 frames and
        ``-trainstride<N>`` for a training stride other than 10 (so neither ever overwrites the
        default data)."""
        if self.cache:
            return Path(self.cache)
        suffix = "" if self.history == DEFAULT_HISTORY else f"-history{self.history}"
        if self.train_stride != DEFAULT_STRIDE:
            suffix += f"-trainstride{self.train_stride}"
        return cache_root() / "ebmtraj" / f"{self.dataset}{suffix}"

    def scene_config(self):
        """The windowing of ``ebmtraj prepare`` (:class:`ebmtraj.data.scenes.SceneConfig`)."""
        return SceneConfig(history=self.history, stride=DEFAULT_STRIDE,
                           train_stride=self.train_stride)


@dataclass
class PretrainConfig:
    """Exact maximum likelihood of the neural term's translation-invariant factor."""

    steps: int = check(3000, min=0, max=1_000_000)
    batch_size: int = check(256, min=1)
    lr: float = check(3e-3, min=0.0, max=1.0)
    early_stop: bool = True                       # keep the best state on validation RMSE
    eval_every: int = check(250, min=1)


@dataclass
class Stage2Config:
    """Where stage 2's chains start and what it trains (analysis by synthesis)."""

    # 'config': train.chains as configured (kind data: the observed controls); 'cooperative':
    # the model's generator (needs model.start_net), taught by the revisions (MCMC teaching)
    chains: str = check("config", choices=["config", "cooperative"])
    gen_lr: float = check(1e-3, min=0.0, max=1.0)  # the generator's Adam rate
    # 'all', 'features' (feature weights and the neural term's scales; references frozen) or
    # 'weights' (the feature weights only; the neural term stays at stage 1's fit) or
    # 'anchored' (all but the neural term's scales, which stay at stage 1's fit)
    params: str = check("all", choices=["all", "features", "weights", "anchored"])
    # weight of stage 1's exact negative log-likelihood of the neural term (ioc.nll_anchor),
    # added to the contrastive loss (0: off)
    anchor: float = check(0.0, min=0.0)
    # (the parameter average of stage 2 is the engine's train.average)


@dataclass
class EvalConfig:
    """Evaluation and model selection."""

    eval_every: int = check(50, min=1)            # validation RMSE every N training steps
    multi_agent: bool = True                      # also compare joint vs independent sampling
    min_agents: int = check(2, min=2)             # scenes with at least this many agents
    # section of docs/results/ebmtraj.json the test evaluation is recorded in (None: not recorded)
    record: str | None = None


@dataclass
class LSTMConfig:
    """The LSTM encoder-decoder baseline (:mod:`ebmtraj.lstm`)."""

    hidden: int = check(64, min=4, max=4096)
    steps: int = check(3000, min=0, max=1_000_000)
    batch_size: int = check(128, min=1)
    lr: float = check(1e-3, min=0.0, max=1.0)
    eval_every: int = check(250, min=1)


@dataclass
class IOCConfig:
    """One EBM-IOC experiment."""

    name: str = "ioc"
    seed: int = 0
    runs: str = "runs"                            # runs/<name>/ receives everything
    data: DataConfig = field(default_factory=DataConfig)
    inputs: InputConfig = field(default_factory=InputConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    stage2: Stage2Config = field(default_factory=Stage2Config)
    predict: PredictConfig = field(default_factory=PredictConfig)
    evaluate: EvalConfig = field(default_factory=EvalConfig)
    lstm: LSTMConfig = field(default_factory=LSTMConfig)

    def validate(self, prefix=""):
        if not self.name or "/" in self.name:
            raise ConfigError(f"{prefix}name must be a plain folder name, got {self.name!r}")
        if self.stage2.chains == "cooperative" and not self.model.start_net:
            raise ConfigError(f"{prefix}stage2.chains: cooperative needs model.start_net: true")
        if abs(self.model.dt - 0.1) > 1e-9:
            raise ConfigError(f"{prefix}model.dt must be 0.1 s (the scenes' rate), got {self.model.dt}")
        if self.data.history < self.inputs.fit_frames:
            raise ConfigError(f"{prefix}data.history ({self.data.history} frames) is shorter than "
                              f"inputs.fit_frames ({self.inputs.fit_frames}), the state fit's frames")

    def run_dir(self) -> Path:
        return Path(self.runs) / self.name


def load(path: str | Path | None = None, overrides: list[str] | None = None) -> IOCConfig:
    """Read an experiment config (YAML) with ``key.sub=value`` overrides."""
    return load_config(IOCConfig, path, overrides)
