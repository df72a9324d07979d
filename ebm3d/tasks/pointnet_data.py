"""Point sets for the generative PointNet, through the data layer (:mod:`ebm3d.data`).

:func:`load_point_shapes` turns a :class:`~ebm3d.tasks.pointnet_config.PointDataConfig` into a
cached :class:`~ebm3d.data.ShapeDataset` with normalised points (N, P, 3); :func:`points` takes
one split, :func:`labels` its class indices.
"""
from __future__ import annotations


import torch

from ebmcore.errors import DataError

from ebm3d.data import BuildOptions, ShapeDataset, build_shapes, make_furniture, source_folder
from ebm3d.tasks.pointnet_config import PointDataConfig

DEFAULT_FOLDER = "modelnet10-pcd"
#: The builder always makes voxel grids too; the smallest it allows keeps that cheap.
_VOXEL_RESOLUTION = 8


def load_point_shapes(cfg: PointDataConfig, progress: bool = False) -> ShapeDataset:
    """The dataset a config names, with ``cfg.n_points`` normalised points per shape.

    With ``category_minmax`` the statistics come from the training split of the classes read,
    so the chosen ``classes`` are read on their own (the map of one class does not depend on
    the others either way).
    """
    classes = tuple(cfg.classes) if cfg.classes else None
    if cfg.source == "furniture":
        from ebm3d.data import FURNITURE

        ds = make_furniture(cfg.n_per_class, classes or FURNITURE, resolutions=(_VOXEL_RESOLUTION,),
                            n_points=cfg.n_points, normalisation=cfg.normalisation,
                            test_fraction=cfg.test_fraction, val_fraction=cfg.val_fraction, seed=cfg.seed)
    else:
        options = BuildOptions(resolutions=(_VOXEL_RESOLUTION,), n_points=cfg.n_points,
                               normalisation=cfg.normalisation, val_fraction=cfg.val_fraction,
                               seed=cfg.seed, classes=classes, max_per_class=cfg.max_per_class,
                               workers=cfg.workers)
        ds = build_shapes(source_folder(cfg.path, DEFAULT_FOLDER), options, progress=progress)
    if ds.points is None:
        raise DataError(f"{cfg.source}: the prepared dataset holds no point sets")
    return ds


def points(ds: ShapeDataset, split: str | None, classes: list[str] | None = None) -> torch.Tensor:
    """Float32 points (n, P, 3) of a split ('train', 'val', 'test', None = all)."""
    pts = ds.points[ds.mask(split, classes)].float()
    if pts.shape[0] == 0:
        raise DataError(f"the {split} split is empty ({ds.counts()})")
    return pts


def labels(ds: ShapeDataset, split: str | None, classes: list[str] | None = None) -> torch.Tensor:
    """Class indices (n,) of a split, aligned with :func:`points`."""
    return ds.split_labels(split, classes)
