"""The shape models' data: each model's data config turned into a data source (:mod:`ebm3d.data.sources`).

:func:`voxel_source` makes the source of a :class:`~ebm3d.config.DataConfig` with the voxel
pre-transform only; :func:`config_grids` takes one split of it as float occupancy (N, 1, R, R, R)
in [0, 1] at the config's resolution and pooling. :func:`point_source` makes the source of a
:class:`~ebm3d.config.PointDataConfig` with the point pre-transform only. The sources build (or
load from the cache) on first use.
"""
from __future__ import annotations

import torch

from ebm3d.config import DataConfig, PointDataConfig
from ebm3d.data.sources import (
    ModelNetFolder,
    SamplePoints,
    ShapeNetsChairs,
    ShapeSource,
    SyntheticFurniture,
    Voxelize,
)


def voxel_source(cfg: DataConfig, progress: bool = False) -> ShapeSource:
    """The source a voxel config names, restricted to ``cfg.classes`` (the splits are carved over
    all classes of a folder) and, for the chairs, to ``cfg.rotations``; grids at
    ``cfg.source_resolution`` (or ``cfg.resolution``)."""
    if cfg.source == "shapenets_chair":
        return ShapeNetsChairs(cfg.path, test_fraction=cfg.test_fraction, val_fraction=cfg.val_fraction,
                               seed=cfg.seed, max_shapes=cfg.max_per_class, rotations=cfg.rotations,
                               progress=progress).subset(cfg.classes)
    voxels = Voxelize((cfg.source_resolution or cfg.resolution,), point_dilation=cfg.point_dilation,
                      point_fill=cfg.point_fill)
    if cfg.source == "furniture":
        return SyntheticFurniture(cfg.n_per_class, cfg.classes, voxels=voxels, test_fraction=cfg.test_fraction,
                                  val_fraction=cfg.val_fraction, seed=cfg.seed, progress=progress)
    return ModelNetFolder(cfg.path, voxels=voxels, val_fraction=cfg.val_fraction, seed=cfg.seed,
                          max_per_class=cfg.max_per_class, workers=cfg.workers, progress=progress).subset(cfg.classes)


def config_grids(cfg: DataConfig, source: ShapeSource, split: str | None) -> torch.Tensor:
    """The split's occupancy (N, 1, R, R, R) at ``cfg.resolution`` pooled by ``cfg.pool`` (the
    training split cut to ``cfg.max_train``)."""
    out = source.voxels(split, cfg.resolution, cfg.pool)
    return out[: cfg.max_train] if split == "train" and cfg.max_train else out


def point_source(cfg: PointDataConfig, progress: bool = False) -> ShapeSource:
    """The source a point config names, with ``cfg.n_points`` normalised points per shape.

    Only ``cfg.classes`` are read: with the category normalisations the statistics come from the
    training split of the classes read (the map of one class does not depend on the others
    either way).
    """
    points = SamplePoints(cfg.n_points, cfg.normalisation)
    if cfg.source == "furniture":
        return SyntheticFurniture(cfg.n_per_class, cfg.classes, points=points, test_fraction=cfg.test_fraction,
                                  val_fraction=cfg.val_fraction, seed=cfg.seed, progress=progress)
    return ModelNetFolder(cfg.path, points=points, classes=cfg.classes, val_fraction=cfg.val_fraction,
                          seed=cfg.seed, max_per_class=cfg.max_per_class, workers=cfg.workers, progress=progress)
