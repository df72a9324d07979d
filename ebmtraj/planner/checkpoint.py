"""Planner checkpoints: the model of :mod:`ebmtraj.model` plus a planner version stamp.

:func:`load_checkpoint` reads the IOC training output ``model.pt`` or a planner checkpoint
(:func:`save_planner_checkpoint`, which adds ``planner.version``) through
:func:`ebmtraj.model.load_model` (weights only, checked) and refuses another planner version.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ebmcore.errors import ConfigError, DataError

from ..cost import IOCEnergy
from ..cost_inputs import InputConfig
from ..model import DT, ModelConfig, ModelSpec, PredictConfig, load_model, save_model

PLANNER_VERSION = 1

__all__ = ["DT", "LoadedModel", "PLANNER_VERSION", "load_checkpoint", "save_planner_checkpoint"]


@dataclass
class LoadedModel:
    """A checkpoint's rebuilt energy with its spec (what the planner needs to know about it)."""

    model: IOCEnergy
    spec: ModelSpec
    version: int | None
    path: str
    extra: dict

    @property
    def history(self) -> int:
        return self.spec.history

    @property
    def steps(self) -> int:
        return self.spec.steps

    @property
    def cost_config(self) -> ModelConfig:
        return self.spec.model

    @property
    def inputs(self) -> InputConfig:
        return self.spec.inputs

    @property
    def search(self) -> PredictConfig:
        return self.spec.predict


def load_checkpoint(path: str | Path) -> LoadedModel:
    """Load and check a checkpoint; raise ConfigError / DataError naming the file."""
    model, spec, blob = load_model(path)
    version = None
    if "planner" in blob:
        version = (blob["planner"] or {}).get("version")
        if version != PLANNER_VERSION:
            raise ConfigError(f"{path}: planner checkpoint version {version}, this planner reads "
                              f"version {PLANNER_VERSION}; re-export it with "
                              f"ebmtraj.planner.save_planner_checkpoint")
    if not isinstance(blob.get("extra") or {}, dict):
        raise DataError(f"{path}: 'extra' is not a dict")
    return LoadedModel(model, spec, version, str(path), dict(blob.get("extra") or {}))


def save_planner_checkpoint(loaded: LoadedModel, path: str | Path, *, note: str = "") -> Path:
    """Write ``loaded`` as a planner checkpoint (version :data:`PLANNER_VERSION`), atomically."""
    meta = {"planner": {"version": PLANNER_VERSION, "dt": DT, "source": loaded.path, "note": note}}
    return save_model(loaded.model, Path(path), loaded.spec.to_dict(), loaded.extra,
                      spec=loaded.spec, meta=meta)
