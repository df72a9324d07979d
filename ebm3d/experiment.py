"""One loader for every shape model's experiment config (see :mod:`ebm3d.registry`).

A model's config class (its registry entry's ``config``, in :mod:`ebm3d.config`) is a dataclass
tree built on :class:`ShapeExperiment`. :func:`load_experiment` picks the model the file names,
reads the YAML, takes the model's name out of the ``model`` key, moves keys the class has renamed
(its ``renamed`` map, so the saved configs of older runs keep loading), and lays the file (a
section given in part included) over that class's own defaults.
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
    renamed = {}  # {old dotted key: new dotted key} of keys this experiment has moved
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


def move_renamed(tree: dict, renamed: dict[str, str]) -> dict:
    """``tree`` with each old dotted key of ``renamed`` moved to its new one; giving both is an
    error naming them."""
    for old, new in renamed.items():
        *path, last = old.split(".")
        node = tree
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or last not in node:
            continue
        value = node.pop(last)
        *path, last = new.split(".")
        node = tree
        for part in path:
            node = node.setdefault(part, {})
        if last in node:
            raise ConfigError(f"{old}: renamed to {new}; give only {new}")
        node[last] = value
    return tree


def load_experiment(path: str | Path | None = None, overrides: list[str] | None = None, model: str | None = None):
    """The experiment config of ``path`` (defaults when None) with ``overrides``, of the model the
    file names (``model: {name: ...}``, ``model: NAME``, else VoxelNet) or of ``model`` when given.

    Keys the file leaves out, also inside a section, keep the model's experiment class's defaults.
    """
    name = model or (registry.model_name(path) if path is not None else registry.DEFAULT_MODEL)
    cls = registry.get(name).config
    tree = read_tree(path) if path is not None else {}
    tree = move_renamed(registry.without_name(apply_overrides(tree, overrides), name), cls.renamed)
    return from_dict(cls, merge(to_dict(cls()), tree))


def load_run(run_dir: str | Path, overrides: list[str] | None = None):
    """The config and trained model(s) of a run folder, read by its model's run loader."""
    return registry.get(registry.model_name(run_dir)).load_run(run_dir, overrides)
