"""The EBM-IOC model: its configs, construction, and self-describing checkpoints.

Training (:mod:`ebmtraj.ioc`), evaluation and the planner (:mod:`ebmtraj.planner`) build and
load the model here; nothing in this module imports training code.

A checkpoint (:func:`save_model`, read with :func:`load_model`) is written with
:func:`ebmcore.io.save_tensors` and read back weights-only. Besides the weights it records
everything needed to rebuild the training-time inputs and search (:class:`ModelSpec`): the
model config, the input config (state estimate, lane sampling, virtual leaders), the
prediction config, whether the model was trained with virtual leaders from recorded headways,
and the history / future frame counts.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from ebmcore.errors import ConfigError, DataError
from ebmcore.io import load_tensors, save_tensors

from .cost import ControlParam, IOCEnergy, StartNet, TrajectoryCost
from .cost_inputs import CTX_NAMES, InputConfig

MODEL_FILE = "model.pt"
MODEL_FORMATS = (1, 2)   # 1: before the spec section (read; the spec is derived from the config)
MODEL_FORMAT = 2
DT = 0.1                 # s: the step every consumer of a checkpoint assumes


@dataclass
class ModelConfig:
    """The cost and its control coordinates."""

    hidden: int = 64
    knots: int = 9
    init_weight: float = 0.1
    sigma_ref: float = 3.0
    basis: str = "whitened"
    use_features: bool = True
    use_neural: bool = True
    wheelbase: float = 2.7
    dt: float = 0.1
    grad_clip: float | None = 50.0   # per-example bound on |dC/dz| seen by the sampler
    whiten_shrink: float = 0.33      # z = 1 is this fraction of the demonstrations' control spread
    start_net: bool = False          # a cooperative generator (StartNet) that starts the search
    start_latent: int = 8            # its latent size

    def validate(self, prefix=""):
        if self.basis not in ("whitened", "level", "increment"):
            raise ConfigError(f"{prefix}basis must be whitened, level or increment, got {self.basis!r}")
        if not (self.use_features or self.use_neural):
            raise ConfigError(f"{prefix}use_features and use_neural cannot both be false")
        if not 0 < self.whiten_shrink <= 10:
            raise ConfigError(f"{prefix}whiten_shrink must be in (0, 10], got {self.whiten_shrink}")
        if self.start_latent < 1:
            raise ConfigError(f"{prefix}start_latent must be >= 1, got {self.start_latent}")


@dataclass
class PredictConfig:
    """How predictions are drawn from the learned energy (training, evaluation and planner).

    ``init``: where search starts: 'nominal' (z = 0, constant velocity), 'reference' (the
    closed-form start of :func:`ebmtraj.search.reference_start`), 'mincost' (the reference
    start, then ``opt_steps`` Adam steps: the minimum-cost z) or 'generator' (the cooperative
    generator's proposal, :func:`ebmtraj.search.generator_start`, then ``opt_steps`` Adam steps;
    the reference start on a model without one).
    ``mode``: 'adam' (the minimum-cost trajectory: Adam on z for ``opt_steps`` from the start),
    'descent' (Langevin with the noise off for ``steps``: gradient descent at the sampler's step)
    or 'sample' (``samples`` Langevin chains of ``steps`` steps from the start plus
    N(0, init_std^2)). ``interaction_weight``: the joint energy's pair penalties; ``pair_gap``,
    ``joint_start`` and ``joint_steps``: see :func:`ebmtraj.prediction.predict`.
    ``sample_starts``: how the K sampling chains' start offsets are drawn
    (:func:`ebmtraj.prediction.start_noise`: 'iid', 'antithetic' or 'mode').
    ``repair_round_steps``, ``repair_growth``, ``repair_margin`` [m], ``repair_contact``: the
    joint repair's rounds, pair-weight factor per round, footprint growth of its overlap term
    and contact test ('box' or 'disc'; :func:`ebmtraj.prediction.repair_contacts`).
    """

    mode: str = "sample"
    samples: int = 5
    steps: int = 20
    step_size: float = 0.15
    init: str = "mincost"
    init_std: float = 0.1
    opt_steps: int = 20
    adam_lr: float = 0.05
    chunk: int = 4096           # rows x samples per batch
    interaction_weight: float = 10.0
    pair_gap: float = 2.0       # m: the joint order penalty's bumper gap
    joint_start: str = "reference"   # 'reference' (as independent search) or 'independent' (its result)
    joint_steps: int | None = None   # joint Adam steps from the independent result (None: opt_steps)
    sample_starts: str = "mode"      # chain 0 at the start, the others antithetic pairs around it
    repair_round_steps: int = 10
    repair_growth: float = 2.0
    repair_margin: float = 0.4       # m: the three covering discs reach a car's corners
    repair_contact: str = "box"
    seed: int = 0

    def validate(self, prefix=""):
        if self.mode not in ("sample", "descent", "adam"):
            raise ConfigError(f"{prefix}mode must be sample, descent or adam, got {self.mode!r}")
        if self.init not in ("mincost", "reference", "nominal", "generator"):
            raise ConfigError(f"{prefix}init must be mincost, reference, nominal or generator, got {self.init!r}")
        if self.joint_start not in ("reference", "independent"):
            raise ConfigError(f"{prefix}joint_start must be reference or independent, got {self.joint_start!r}")
        if self.sample_starts not in ("iid", "antithetic", "mode"):
            raise ConfigError(f"{prefix}sample_starts must be iid, antithetic or mode, got {self.sample_starts!r}")
        if self.repair_contact not in ("box", "disc"):
            raise ConfigError(f"{prefix}repair_contact must be box or disc, got {self.repair_contact!r}")
        if self.repair_round_steps < 0 or self.repair_growth < 1 or self.repair_margin < 0:
            raise ConfigError(f"{prefix}repair_round_steps >= 0, repair_growth >= 1 and repair_margin >= 0 are required")
        if self.pair_gap < 0 or (self.joint_steps is not None and self.joint_steps < 0):
            raise ConfigError(f"{prefix}pair_gap and joint_steps must be >= 0")
        if self.samples < 1 or self.steps < 0 or self.step_size < 0 or self.opt_steps < 0:
            raise ConfigError(f"{prefix}samples >= 1, steps, opt_steps and step_size >= 0 are required")


@dataclass
class ModelSpec:
    """What a checkpoint says about its model: configs, frame counts, virtual leaders."""

    model: ModelConfig
    inputs: InputConfig = field(default_factory=InputConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    history: int = 10
    steps: int = 40
    virtual_leaders: bool = False    # trained with a virtual leader slot from recorded headways

    def to_dict(self) -> dict:
        return {"model": asdict(self.model), "inputs": asdict(self.inputs),
                "predict": asdict(self.predict), "history": self.history, "steps": self.steps,
                "virtual_leaders": self.virtual_leaders}


def build_model(cfg: ModelConfig, history: int, steps: int, scale=(0.5, 0.01)) -> IOCEnergy:
    """The energy with untrained weights (``history`` frames in, ``steps`` controls out)."""
    cost = TrajectoryCost(history=history, ctx_dim=len(CTX_NAMES), steps=steps, dt=cfg.dt,
                          hidden=cfg.hidden, knots=cfg.knots, init_weight=cfg.init_weight,
                          use_features=cfg.use_features, use_neural=cfg.use_neural)
    model = IOCEnergy(cost, ControlParam(scale, cfg.basis, steps), sigma_ref=cfg.sigma_ref,
                      wheelbase=cfg.wheelbase, grad_clip=cfg.grad_clip)
    if cfg.start_net:
        model.start_net = StartNet(history, len(CTX_NAMES), steps, cfg.hidden, cfg.knots, cfg.start_latent)
    return model


def spec_from_config(config: dict, history: int, steps: int, path="config") -> ModelSpec:
    """The :class:`ModelSpec` of a run's full config dict (sections model, inputs, predict and
    ``data.headway_leads``)."""
    return ModelSpec(_section(ModelConfig, config.get("model"), "model", path),
                     _section(InputConfig, config.get("inputs"), "inputs", path),
                     _section(PredictConfig, config.get("predict"), "predict", path),
                     int(history), int(steps),
                     bool((config.get("data") or {}).get("headway_leads", False)))


def save_model(model: IOCEnergy, path: Path, config: dict | None, extra: dict | None = None, *,
               spec: ModelSpec | None = None, meta: dict | None = None) -> Path:
    """The model's weights and buffers with the config that rebuilds it (safe to load).

    ``config``: the run's full config dict (kept as is); ``spec``: what the model needs at
    prediction time (default: derived from ``config``); ``meta``: more top-level sections
    (the planner's version stamp)."""
    history, steps = int(model.cost.history), int(model.cost.steps)
    config = config or {}
    spec = spec or spec_from_config(config, history, steps)
    blob = {"format": MODEL_FORMAT, "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "config": config, "spec": spec.to_dict(), "extra": extra or {}, "history": history,
            "steps": steps, **(meta or {})}
    return save_tensors(blob, path)


def load_model(path: str | Path) -> tuple[IOCEnergy, ModelSpec, dict]:
    """Rebuild a saved model, weights only, checked. Returns (model in eval mode with frozen
    parameters, its spec, the raw blob).

    Raises DataError / ConfigError naming the file for a missing or unreadable file, an unknown
    format, a missing model config, a step other than :data:`DT`, weights that do not fit the
    config (strict load) and non-finite weights."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such checkpoint (train first)")
    try:
        blob = load_tensors(path)
    except Exception as err:  # weights-only unpickler refusals, truncated files
        raise DataError(f"{path}: cannot be read as a weights-only checkpoint: {err}") from err
    if not isinstance(blob, dict):
        raise DataError(f"{path}: not a model checkpoint (top level is {type(blob).__name__})")
    if blob.get("format") not in MODEL_FORMATS:
        raise ConfigError(f"{path}: model format {blob.get('format')!r}, expected one of {MODEL_FORMATS}")
    for key in ("state", "history", "steps"):
        if key not in blob:
            raise DataError(f"{path}: checkpoint lacks {key!r}")
    spec = _spec_of(blob, path)
    if not math.isclose(spec.model.dt, DT):
        raise ConfigError(f"{path}: model.dt = {spec.model.dt} s, the model steps at {DT} s")
    spec.model.validate(f"{path}: model.")
    spec.predict.validate(f"{path}: predict.")
    if spec.history < 2 or spec.steps < 1:
        raise ConfigError(f"{path}: history {spec.history} / steps {spec.steps} frames are not usable")
    model = build_model(spec.model, spec.history, spec.steps)
    try:
        model.load_state_dict(blob["state"], strict=True)
    except RuntimeError as err:
        raise ConfigError(f"{path}: the weights do not fit the model its config describes: {err}") from err
    bad = [k for k, v in blob["state"].items() if torch.is_floating_point(v) and not torch.isfinite(v).all()]
    if bad:
        raise DataError(f"{path}: non-finite weights in {bad}")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, spec, blob


def _spec_of(blob: dict, path) -> ModelSpec:
    raw = blob.get("spec")
    if raw is None:
        config = blob.get("config") or {}
        if not config.get("model"):
            raise ConfigError(f"{path}: checkpoint carries no model config; the cost cannot be "
                              f"rebuilt with certainty (save it with its config)")
        return spec_from_config(config, blob["history"], blob["steps"], path)
    return ModelSpec(_section(ModelConfig, raw.get("model"), "model", path),
                     _section(InputConfig, raw.get("inputs"), "inputs", path),
                     _section(PredictConfig, raw.get("predict"), "predict", path),
                     int(raw.get("history", blob["history"])), int(raw.get("steps", blob["steps"])),
                     bool(raw.get("virtual_leaders", False)))


def _section(cls, raw, name: str, path):
    """Dataclass ``cls`` from dict ``raw``; unknown keys -> ConfigError naming them."""
    raw = dict(raw or {})
    unknown = sorted(set(raw) - {f.name for f in fields(cls)})
    if unknown:
        raise ConfigError(f"{path}: config section {name!r} has keys this version does not know: "
                          f"{unknown}")
    try:
        return cls(**raw)
    except TypeError as err:
        raise ConfigError(f"{path}: config section {name!r}: {err}") from err
