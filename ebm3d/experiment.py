"""One loader for every shape model's experiment config (see :mod:`ebm3d.registry`)."""
from __future__ import annotations

from pathlib import Path

from ebm3d import registry


def load_experiment(path: str | Path | None = None, overrides: list[str] | None = None, model: str | None = None):
    """The experiment config of ``path`` (defaults when None) with ``overrides``, read by the loader
    of the model the file names (``model: {name: ...}``, ``model: NAME``, else VoxelNet), or of
    ``model`` when given."""
    name = model or (registry.model_name(path) if path is not None else registry.DEFAULT_MODEL)
    return registry.get(name).load_experiment(path, overrides)


def load_run(run_dir: str | Path, overrides: list[str] | None = None):
    """The config and trained model(s) of a run folder, read by its model's run loader."""
    return registry.get(registry.model_name(run_dir)).load_run(run_dir, overrides)
