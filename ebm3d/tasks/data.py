"""The shape models' data, through the data layer (:mod:`ebm3d.data`).

Voxels: :func:`load_shapes` turns a :class:`~ebm3d.config.DataConfig` into a cached
:class:`~ebm3d.data.ShapeDataset`; :func:`grids` takes one split as float occupancy
(N, 1, R, R, R) in [0, 1], pooled (block average or max) to a coarser resolution when asked;
:func:`config_grids` does so at a data config's resolution and pooling.

Points: :func:`load_point_shapes` turns a :class:`~ebm3d.config.PointDataConfig` into a cached
dataset with normalised points (N, P, 3); :func:`points` takes one split. :func:`labels` gives
the class indices of a split for either.
"""
from __future__ import annotations

import re

import torch
import torch.nn.functional as F

from ebmcore.errors import DataError

from ebm3d.config import DEFAULT_FOLDERS, DataConfig, PointDataConfig
from ebm3d.data import BuildOptions, ShapeDataset, build_shapes, load_shapenets_chairs, make_furniture, source_folder

_ROTATION = re.compile(r"_(\d+)\.mat$")


def load_shapes(cfg: DataConfig, progress: bool = False) -> ShapeDataset:
    """The dataset a config names, restricted to ``cfg.classes`` and ``cfg.rotations``.

    Prepared grids are cached by the data layer (first use builds them).
    """
    if cfg.source == "furniture":
        from ebm3d.data import FURNITURE

        classes = tuple(cfg.classes) if cfg.classes else FURNITURE
        ds = make_furniture(cfg.n_per_class, classes, resolutions=(cfg.source_resolution or cfg.resolution,),
                            n_points=0, test_fraction=cfg.test_fraction, val_fraction=cfg.val_fraction,
                            seed=cfg.seed)
    elif cfg.source == "shapenets_chair":
        ds = load_shapenets_chairs(source_folder(cfg.path, DEFAULT_FOLDERS[cfg.source]), test_fraction=cfg.test_fraction,
                                   val_fraction=cfg.val_fraction, seed=cfg.seed,
                                   max_shapes=cfg.max_per_class, progress=progress)
        if cfg.rotations:
            ds = _keep_rotations(ds, cfg.rotations)
    else:
        options = BuildOptions(resolutions=(cfg.source_resolution or cfg.resolution,), n_points=0,
                               val_fraction=cfg.val_fraction, seed=cfg.seed, point_dilation=cfg.point_dilation, point_fill=cfg.point_fill,
                               max_per_class=cfg.max_per_class, workers=cfg.workers)
        ds = build_shapes(source_folder(cfg.path, DEFAULT_FOLDERS[cfg.source]), options, progress=progress)
    if cfg.classes and cfg.source != "furniture":
        ds = ds.subset(classes=cfg.classes)
    if cfg.resolution not in ds.voxels and max(ds.voxels) % cfg.resolution:
        raise DataError(f"{cfg.source}: no {cfg.resolution}^3 grids prepared (have {sorted(ds.voxels)})")
    return ds


def _keep_rotations(ds: ShapeDataset, rotations: list[int]) -> ShapeDataset:
    keep = []
    for i, name in enumerate(ds.files):
        match = _ROTATION.search(name)
        if match is None:
            raise DataError(f"{name}: cannot read the rotation index from the file name")
        if int(match[1]) in rotations:
            keep.append(i)
    if not keep:
        raise DataError(f"no shape with rotation in {rotations}")
    idx = torch.tensor(keep)
    return ShapeDataset(classes=ds.classes, labels=ds.labels[idx], split=ds.split[idx],
                        files=[ds.files[i] for i in keep], voxels={r: v[idx] for r, v in ds.voxels.items()},
                        points=None if ds.points is None else ds.points[idx], manifest=ds.manifest)


def downsample(occupancy: torch.Tensor, resolution: int, pool: str = "avg") -> torch.Tensor:
    """Pool (N, 1, R, R, R) grids to ``resolution`` (which must divide R): 'avg' block averages
    (fractional occupancy), 'max' marks a coarse voxel occupied when any of its block is."""
    R = occupancy.shape[-1]
    if resolution == R:
        return occupancy
    if R % resolution:
        raise ValueError(f"cannot pool {R}^3 to {resolution}^3")
    if pool not in ("avg", "max"):
        raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
    return (F.avg_pool3d if pool == "avg" else F.max_pool3d)(occupancy, R // resolution)


def grids(ds: ShapeDataset, split: str | None, resolution: int | None = None, pool: str = "avg") -> torch.Tensor:
    """Float occupancy (N, 1, r, r, r) of a split ('train', 'val', 'test', None = all), pooled by
    ``pool`` when the dataset holds no grids at ``resolution``."""
    R = resolution if resolution in ds.voxels else max(ds.voxels)
    vox = ds.voxels[R][ds.mask(split)].float()
    if vox.shape[0] == 0:
        raise DataError(f"the {split} split is empty ({ds.counts()})")
    return downsample(vox, resolution, pool) if resolution and resolution != R else vox


def config_grids(cfg: DataConfig, ds: ShapeDataset, split: str | None) -> torch.Tensor:
    """:func:`grids` at ``cfg.resolution`` with ``cfg.pool`` (the training split cut to
    ``cfg.max_train``)."""
    out = grids(ds, split, cfg.resolution, cfg.pool)
    return out[: cfg.max_train] if split == "train" and cfg.max_train else out


def labels(ds: ShapeDataset, split: str | None, classes: list[str] | None = None) -> torch.Tensor:
    """Class indices (N,) of a split (of ``classes`` only, when given), aligned with :func:`grids`
    and :func:`points`."""
    return ds.split_labels(split, classes)


#: The builder always makes voxel grids too; the smallest it allows keeps that cheap for point sets.
_POINT_SET_VOXELS = 8


def load_point_shapes(cfg: PointDataConfig, progress: bool = False) -> ShapeDataset:
    """The dataset a point config names, with ``cfg.n_points`` normalised points per shape.

    With ``category_minmax`` the statistics come from the training split of the classes read,
    so the chosen ``classes`` are read on their own (the map of one class does not depend on
    the others either way).
    """
    classes = tuple(cfg.classes) if cfg.classes else None
    if cfg.source == "furniture":
        from ebm3d.data import FURNITURE

        ds = make_furniture(cfg.n_per_class, classes or FURNITURE, resolutions=(_POINT_SET_VOXELS,),
                            n_points=cfg.n_points, normalisation=cfg.normalisation,
                            test_fraction=cfg.test_fraction, val_fraction=cfg.val_fraction, seed=cfg.seed)
    else:
        options = BuildOptions(resolutions=(_POINT_SET_VOXELS,), n_points=cfg.n_points,
                               normalisation=cfg.normalisation, val_fraction=cfg.val_fraction,
                               seed=cfg.seed, classes=classes, max_per_class=cfg.max_per_class,
                               workers=cfg.workers)
        ds = build_shapes(source_folder(cfg.path, DEFAULT_FOLDERS["modelnet"]), options, progress=progress)
    if ds.points is None:
        raise DataError(f"{cfg.source}: the prepared dataset holds no point sets")
    return ds


def points(ds: ShapeDataset, split: str | None, classes: list[str] | None = None) -> torch.Tensor:
    """Float32 points (n, P, 3) of a split ('train', 'val', 'test', None = all)."""
    pts = ds.points[ds.mask(split, classes)].float()
    if pts.shape[0] == 0:
        raise DataError(f"the {split} split is empty ({ds.counts()})")
    return pts
