"""Planner checkpoints: load safely (weights only), check version and config, rebuild the cost.

Two layouts are read, both written by :func:`ebmcore.io.save_tensors` and read back with
:func:`ebmcore.io.load_tensors` (``weights_only=True``: no pickled code runs):

* the IOC training output ``model.pt`` (``format: 1``, ``state``, ``config``, ``history``,
  ``steps``; see :func:`ebmtraj.ioc.save_model`);
* a planner checkpoint (:func:`save_planner_checkpoint`): the same plus a ``planner`` section
  with the planner format ``version``. A planner checkpoint of another version is refused.

The cost is rebuilt here from its config (not through :mod:`ebmtraj.ioc`, which imports the
training loop): the same construction as ``ebmtraj.ioc.build_model``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from ebmcore.errors import ConfigError, DataError
from ebmcore.io import load_tensors, save_tensors

from ..cost import ControlParam, IOCEnergy, TrajectoryCost
from ..cost_inputs import CTX_NAMES, InputConfig

PLANNER_VERSION = 1
MODEL_FORMAT = 1
DT = 0.1  # s: the planner's step; a checkpoint trained at another step is refused


@dataclass
class CostConfig:
    """The fields of the IOC model config that build the cost (``ebmtraj.ioc.ModelConfig``)."""

    hidden: int = 64
    knots: int = 9
    init_weight: float = 0.1
    sigma_ref: float = 3.0
    basis: str = "whitened"
    use_features: bool = True
    use_neural: bool = True
    wheelbase: float = 2.7
    dt: float = 0.1
    grad_clip: float | None = 20.0


@dataclass
class SearchDefaults:
    """The prediction settings of the training run (``ebmtraj.ioc.PredictConfig``) the planner
    starts from: where chains start (``init``: 'nominal', 'reference' or 'mincost'), the
    minimum-cost search (``opt_steps`` Adam steps at ``adam_lr``; None in checkpoints that
    predate it: noise-free Langevin then), the sampler (``steps`` Langevin steps of
    ``step_size``, K = ``samples`` chains from the start plus N(0, ``init_std``^2)), and the
    multi-agent interaction weight."""

    steps: int = 30
    step_size: float = 0.1
    init_std: float = 0.1
    samples: int = 5
    interaction_weight: float = 10.0
    init: str = "nominal"
    opt_steps: int | None = None
    adam_lr: float = 0.05


@dataclass
class LoadedModel:
    """A checkpoint's rebuilt energy with what the planner needs to know about it."""

    model: IOCEnergy
    history: int
    steps: int
    cost_config: CostConfig
    inputs: InputConfig
    search: SearchDefaults
    version: int | None
    path: str
    extra: dict
    ignored_keys: list


def _section(cls, raw, name: str, path, strict: bool):
    """Build dataclass ``cls`` from dict ``raw``; unknown keys -> ConfigError if ``strict``."""
    raw = dict(raw or {})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown and strict:
        raise ConfigError(f"{path}: config section {name!r} has keys this planner does not know: "
                          f"{unknown} (a newer cost version?)")
    try:
        return cls(**{k: v for k, v in raw.items() if k in known})
    except TypeError as err:
        raise ConfigError(f"{path}: config section {name!r}: {err}") from err


def build_energy(cfg: CostConfig, history: int, steps: int) -> IOCEnergy:
    """The cost with control coordinates, as the IOC training builds it (weights untrained)."""
    cost = TrajectoryCost(history=history, ctx_dim=len(CTX_NAMES), steps=steps, dt=cfg.dt,
                          hidden=cfg.hidden, knots=cfg.knots, init_weight=cfg.init_weight,
                          use_features=cfg.use_features, use_neural=cfg.use_neural)
    return IOCEnergy(cost, ControlParam((0.5, 0.01), cfg.basis, steps), sigma_ref=cfg.sigma_ref,
                     wheelbase=cfg.wheelbase, grad_clip=cfg.grad_clip)


def load_checkpoint(path: str | Path) -> LoadedModel:
    """Load and check a checkpoint (see module docstring); raise ConfigError / DataError naming
    the file and the mismatch."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such checkpoint")
    try:
        blob = load_tensors(path)
    except Exception as err:  # weights-only unpickler refusals, truncated files
        raise DataError(f"{path}: cannot be read as a weights-only checkpoint: {err}") from err
    if not isinstance(blob, dict):
        raise DataError(f"{path}: not a model checkpoint (top level is {type(blob).__name__})")
    version = None
    if "planner" in blob:
        version = blob["planner"].get("version")
        if version != PLANNER_VERSION:
            raise ConfigError(f"{path}: planner checkpoint version {version}, this planner reads "
                              f"version {PLANNER_VERSION}; re-export it with "
                              f"ebmtraj.planner.save_planner_checkpoint")
    if blob.get("format") != MODEL_FORMAT:
        raise ConfigError(f"{path}: model format {blob.get('format')!r}, expected {MODEL_FORMAT}")
    for key in ("state", "history", "steps"):
        if key not in blob:
            raise DataError(f"{path}: checkpoint lacks {key!r}")
    config = blob.get("config") or {}
    if not config.get("model"):
        raise ConfigError(f"{path}: checkpoint carries no model config; the cost cannot be rebuilt "
                          f"with certainty (save it with its config)")
    # A planner checkpoint must match this planner's config fields exactly; a training output
    # may carry training-only model keys (e.g. how the control basis was fitted), which are
    # listed in ``ignored_keys``; the strict weight load below still catches any change of
    # the model's structure.
    cost_cfg = _section(CostConfig, config["model"], "model", path, strict=version is not None)
    ignored = sorted(set(config["model"]) - {f.name for f in fields(CostConfig)})
    if not math.isclose(cost_cfg.dt, DT):
        raise ConfigError(f"{path}: model.dt = {cost_cfg.dt} s, the planner steps at {DT} s")
    if cost_cfg.basis not in ("whitened", "level", "increment"):
        raise ConfigError(f"{path}: model.basis = {cost_cfg.basis!r} is not a control basis")
    history, steps = int(blob["history"]), int(blob["steps"])
    if history < 2 or steps < 1:
        raise ConfigError(f"{path}: history {history} / steps {steps} frames are not usable")
    model = build_energy(cost_cfg, history, steps)
    state = blob["state"]
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ConfigError(f"{path}: the weights do not fit the model its config describes: "
                          f"{err}") from err
    bad = [k for k, v in state.items() if torch.is_floating_point(v) and not torch.isfinite(v).all()]
    if bad:
        raise DataError(f"{path}: non-finite weights in {bad}")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    inputs = _section(InputConfig, config.get("inputs"), "inputs", path, strict=False)
    search = _section(SearchDefaults, config.get("predict"), "predict", path, strict=False)
    if search.init not in ("nominal", "reference", "mincost"):
        raise ConfigError(f"{path}: predict.init = {search.init!r} is not a chain start")
    return LoadedModel(model, history, steps, cost_cfg, inputs, search, version, str(path),
                       dict(blob.get("extra") or {}), ignored)


def save_planner_checkpoint(loaded: LoadedModel, path: str | Path, *, note: str = "") -> Path:
    """Write ``loaded`` as a planner checkpoint (version :data:`PLANNER_VERSION`), atomically."""
    model = loaded.model
    blob = {"format": MODEL_FORMAT,
            "planner": {"version": PLANNER_VERSION, "dt": DT, "source": loaded.path, "note": note},
            "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "config": {"model": asdict(loaded.cost_config), "inputs": asdict(loaded.inputs),
                       "predict": asdict(loaded.search)},
            "history": loaded.history, "steps": loaded.steps, "extra": loaded.extra}
    return save_tensors(blob, path)
