"""One loader for every shape model's experiment config (see :mod:`ebm3d.registry`).

A model's config class is a dataclass tree built on :class:`ShapeExperiment`; :func:`load_typed` reads a YAML file into it, lays
the file (a section given in part included) over that class's own defaults, and takes the
model's name out of the ``model`` key. :func:`load_experiment` picks the model the file names.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from ebmcore.config import apply_overrides, check, from_dict, to_dict, yaml_message
from ebmcore.errors import ConfigError

from ebm3d import registry


@dataclass
class ShapeExperiment:
    """What every shape model's experiment config has (its class adds its own sections).

    name: the run's folder under out_dir. task: 'synthesis' (train on data.classes and sample)
    or 'classification' (one model on all classes, then a linear classifier on its features).
    """

    name: str = "experiment"
    out_dir: str = "runs"
    task: str = check("synthesis", choices=["synthesis", "classification"])

    def validate(self, prefix=""):
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ConfigError(f"{prefix}name: {self.name!r} must be a plain folder name")

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name


def read_tree(path: str | Path) -> dict:
    """The mapping an experiment YAML holds."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        if mark is not None:
            mark.name = str(path)
        raise ConfigError(f"config file {path} is not valid YAML: {yaml_message(err)}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return tree


def merge(base: dict, update: dict) -> dict:
    """``update`` laid over ``base``, section by section (unknown keys are kept, to be reported)."""
    out = dict(base)
    for key, value in update.items():
        out[key] = merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return out


def load_typed(cls, name: str, path: str | Path | None = None, overrides: list[str] | None = None):
    """The ``cls`` experiment (of model ``name``) of ``path`` (defaults when None) with ``overrides``:
    keys the file leaves out, also inside a section, keep ``cls``'s defaults."""
    tree = read_tree(path) if path is not None else {}
    tree = registry.without_name(apply_overrides(tree, overrides), name)
    return from_dict(cls, merge(to_dict(cls()), tree))


def load_experiment(path: str | Path | None = None, overrides: list[str] | None = None, model: str | None = None):
    """The experiment config of ``path`` (defaults when None) with ``overrides``, read by the loader
    of the model the file names (``model: {name: ...}``, ``model: NAME``, else VoxelNet), or of
    ``model`` when given."""
    name = model or (registry.model_name(path) if path is not None else registry.DEFAULT_MODEL)
    return registry.get(name).load_experiment(path, overrides)


def load_run(run_dir: str | Path, overrides: list[str] | None = None):
    """The config and trained model(s) of a run folder, read by its model's run loader."""
    return registry.get(registry.model_name(run_dir)).load_run(run_dir, overrides)
