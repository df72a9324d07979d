"""Trajectory data: readers, cleaning and state estimation, lanes, scenes, preparation.

Flow: a reader (:mod:`.ngsim`, :mod:`.commonroad`) returns the tidy table of :mod:`.schema`;
:func:`.cleaning.clean` turns it into smoothed 10 Hz tracks with full states; :mod:`.lanes`
gives lane geometry and Frenet coordinates; :mod:`.scenes` cuts windows into tensors, splits
them and checks for leakage; :func:`.prepare.prepare` runs the whole chain into a cache.

Names are imported lazily, so ``from ebmtraj.data.lanes import LaneMap`` pulls in neither
pandas nor scipy (the planner API depends on that).
"""
from importlib import import_module

_EXPORTS = {
    "CleanConfig": ".cleaning", "clean": ".cleaning", "read_commonroad": ".commonroad",
    "Lane": ".lanes", "LaneMap": ".lanes", "read_i80_first_minute": ".ngsim",
    "read_ngsim_csv": ".ngsim", "read_ngsim_raw": ".ngsim", "read_us101_vehicles": ".ngsim",
    "SceneConfig": ".scenes", "SceneDataset": ".scenes",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
