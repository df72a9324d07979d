"""The registry of shape models: what ``ebm3d`` knows about each generative model.

Each entry (:class:`ShapeModel`) owns what is particular to its model: its experiment config
class, network, data representation, training, features and command-line commands; the shared
task modules (:mod:`ebm3d.tasks.classification`, :mod:`ebm3d.tasks.training`, ...) reach them
through it. A model lives in one module under :mod:`ebm3d.commands` that defines ``MODEL``;
adding a model is that module plus its line in :data:`ENTRIES`.

A config file or run folder says which model it is for through its ``model`` key:
``model: {name: pointnet, ...}``, the short ``model: pointnet``, or no name at all (VoxelNet,
whose ``model:`` section holds its network settings).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import yaml

from ebmcore.errors import ConfigError

DEFAULT_MODEL = "voxelnet"
ENTRIES = {"voxelnet": "ebm3d.commands.voxelnet", "pointnet": "ebm3d.commands.pointnet"}


@dataclass(frozen=True)
class Option:
    """One optional argument of a command: ``argparse.add_argument(*flags, **kwargs)``."""

    flags: tuple[str, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def dest(self) -> str:
        return self.kwargs.get("dest") or self.flags[0].lstrip("-").replace("-", "_")


def option(*flags: str, **kwargs) -> Option:
    """Shorthand for :class:`Option`."""
    return Option(tuple(flags), kwargs)


@dataclass(frozen=True)
class Command:
    """One command of a model: its one-line help, whether it takes a CONFIG file or a RUN folder,
    its optional arguments (besides the common ones) and its handler ``run(args) -> exit code``."""

    help: str
    target: str  # "config" or "run"
    run: Callable[[Any], int]
    options: tuple[Option, ...] = ()


@dataclass(frozen=True)
class ShapeModel:
    """A registered shape model.

    config: its experiment config class (an :class:`ebm3d.experiment.ShapeExperiment`, read by
        :func:`ebm3d.experiment.load_experiment`).
    load_run(run_dir, overrides) -> (config, trained models, coarse to fine).
    load_data(cfg, progress) -> the data source the config names (:mod:`ebm3d.data.sources`,
        with the model's pre-transform).
    inputs(cfg, source, split) -> the split in the model's representation (occupancy grids
        (N, 1, R, R, R) or point clouds (N, P, 3)), aligned with ``source.labels(split)``.
    train(cfg, inputs, callbacks, resume) -> (finest model, its trainer, {"wall", "cpu"} seconds):
        trains (resuming) on the training inputs, ``callbacks`` going to the finest model's trainer.
    untrained(cfg, trained) -> the network as initialised by ``train.seed`` (no update).
    features(cfg, model, batch) -> (b, D) descriptors of a batch of inputs (the model in eval mode).
    commands: the command-line commands it answers.
    """

    name: str
    description: str
    config: type
    load_run: Callable
    load_data: Callable
    inputs: Callable
    train: Callable
    untrained: Callable
    features: Callable
    commands: dict[str, Command]


@lru_cache(maxsize=None)
def get(name: str) -> ShapeModel:
    """The registered model called ``name``."""
    if name not in ENTRIES:
        raise ConfigError(f"model: unknown model {name!r} (registered: {', '.join(ENTRIES)})")
    return importlib.import_module(ENTRIES[name]).MODEL


def entry_for(cfg) -> ShapeModel:
    """The registered model whose experiment config ``cfg`` is."""
    for model in models():
        if isinstance(cfg, model.config):
            return model
    raise ConfigError(f"{type(cfg).__name__} is no registered model's experiment config")


def models() -> list[ShapeModel]:
    """Every registered model, in registry order."""
    return [get(name) for name in ENTRIES]


def name_in_tree(tree) -> str:
    """The model name a parsed experiment YAML declares (:data:`DEFAULT_MODEL` when none)."""
    model = tree.get("model") if isinstance(tree, dict) else None
    if isinstance(model, dict):
        model = model.get("name")
    if model is None:
        return DEFAULT_MODEL
    if not isinstance(model, str) or model not in ENTRIES:
        raise ConfigError(f"model: unknown model {model!r} (registered: {', '.join(ENTRIES)})")
    return model


def without_name(tree: dict, name: str) -> dict:
    """``tree`` with the model's name taken out of its ``model`` key (which the typed configs do
    not hold): ``model: NAME`` or ``model: {name: NAME}`` go, ``model: {name: NAME, ...}`` keeps
    the other keys. A tree naming another model raises :class:`ConfigError`."""
    model = tree.get("model")
    named = name_in_tree(tree)
    if (isinstance(model, str) or (isinstance(model, dict) and "name" in model)) and named != name:
        raise ConfigError(f"model: this is a {named} experiment, not a {name} one")
    if isinstance(model, str) or (isinstance(model, dict) and set(model) == {"name"}):
        return {k: v for k, v in tree.items() if k != "model"}
    if isinstance(model, dict) and "name" in model:
        return {**tree, "model": {k: v for k, v in model.items() if k != "name"}}
    return tree


def declared_name(path: str | Path) -> str | None:
    """The model an experiment YAML, or a run folder's saved ``config.yaml``, is for; None when
    ``path`` is not a readable YAML file or run folder (the model's loader then reports it)."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.yaml"
    if not path.is_file() or path.suffix.lower() not in (".yaml", ".yml"):
        return None
    try:
        tree = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, OSError, UnicodeDecodeError):
        return None
    return name_in_tree(tree)


def model_name(path: str | Path) -> str:
    """:func:`declared_name`, or :data:`DEFAULT_MODEL` when the path declares nothing readable."""
    return declared_name(path) or DEFAULT_MODEL


def models_with(command: str) -> list[ShapeModel]:
    """The registered models that answer ``command``."""
    return [m for m in models() if command in m.commands]
