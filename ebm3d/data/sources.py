"""Shape data sources, one class per source (PyG style): where the shapes come from and how they split.

A source exposes its ``classes``, its splits ('train', 'val', 'test') and each shape's label. What
a shape becomes is a pre-transform given when the source is made, and only the ones asked for are
computed:

- :class:`Voxelize`: occupancy grids (N, 1, R, R, R) uint8 at the given resolutions;
- :class:`SamplePoints`: point sets (N, P, 3) float32, normalised.

The first access builds the dataset, or loads it from the cache of this package's builders
(``cache_root()/shapes/<name>-<fingerprint[:12]>/``, fingerprinted by the builder version, the
options and every source file's path and content); sources are only ever read.

- :class:`ModelNetFolder`: a ModelNet-layout folder of OFF meshes or point files
  (:func:`ebm3d.data.builder.build_shapes`; default the shared ``modelnet10-pcd``);
- :class:`ShapeNetsChairs`: the 3D ShapeNets voxel chairs (:func:`ebm3d.data.shapenets.load_shapenets_chairs`;
  voxels only, 32^3, with an optional rotation filter);
- :class:`SyntheticFurniture`: the built-in generated furniture (:func:`ebm3d.data.synthetic.make_furniture`).

``source.subset(classes)`` keeps some classes of a source built on all of them (labels keep their
indices; the splits are those of the whole source).
"""
from __future__ import annotations

import copy
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ebmcore.errors import ConfigError, DataError

from .builder import BuildOptions, build_shapes
from .dataset import ShapeDataset
from .folders import source_folder
from .shapenets import load_shapenets_chairs
from .synthetic import FURNITURE, make_furniture

_ROTATION = re.compile(r"_(\d+)\.mat$")


@dataclass(frozen=True)
class Voxelize:
    """Pre-transform: occupancy grids at each of ``resolutions`` (see :mod:`ebm3d.data.voxelize`).

    fill: meshes closed at grid resolution become filled solids. point_dilation / point_fill:
    point files mark the cells holding a point, dilated (6-neighbour) this many times, cavities
    filled. pad: empty cells at each border.
    """

    resolutions: tuple[int, ...] = (32,)
    fill: bool = True
    point_dilation: int = 0
    point_fill: bool = False
    pad: int = 1


@dataclass(frozen=True)
class SamplePoints:
    """Pre-transform: ``n_points`` points per shape (area-weighted samples of meshes, a seeded
    subset of point files), normalised by ``normalisation`` ('sphere', 'category_minmax' or
    'category_scalar'; see :mod:`ebm3d.data.points`)."""

    n_points: int = 1024
    normalisation: str = "sphere"


class ShapeSource(ABC):
    """Base of the sources: the dataset, built on first use, and its splits in each representation.

    Subclasses implement :meth:`build` (-> :class:`~ebm3d.data.ShapeDataset`).
    """

    def __init__(self, voxels: Voxelize | None = None, points: SamplePoints | None = None,
                 progress: bool = False):
        if voxels is None and points is None:
            raise ConfigError("a shape source needs a pre-transform: voxels=Voxelize(...) and/or "
                              "points=SamplePoints(...)")
        self.voxelize, self.sample_points, self.progress = voxels, points, progress
        self._dataset: ShapeDataset | None = None
        self._classes: list[str] | None = None

    @abstractmethod
    def build(self) -> ShapeDataset:
        """The prepared shapes with the asked-for pre-transforms (from the cache when built before)."""

    @property
    def dataset(self) -> ShapeDataset:
        """The prepared shapes (built, or loaded from the cache, on first use)."""
        if self._dataset is None:
            ds = self.build()
            self._dataset = ds if self._classes is None else ds.subset(classes=self._classes)
        return self._dataset

    def subset(self, classes: list[str] | None) -> "ShapeSource":
        """A view of this source with only ``classes`` kept (None: all of them); labels keep their
        indices and the splits are those of the whole source."""
        if not classes:
            return self
        view = copy.copy(self)
        view._classes = list(classes)
        view._dataset = None if self._dataset is None else self._dataset.subset(classes=view._classes)
        return view

    @property
    def classes(self) -> list[str]:
        """The class names; a label indexes this list."""
        return self.dataset.classes

    def counts(self) -> dict[str, dict[str, int]]:
        """{split: {class: count}}."""
        return self.dataset.counts()

    def labels(self, split: str | None, classes: list[str] | None = None) -> torch.Tensor:
        """Class indices (n,) of a split ('train', 'val', 'test', None = all), of ``classes`` only
        when given, aligned with :meth:`voxels` and :meth:`points`."""
        return self.dataset.split_labels(split, classes)

    def voxels(self, split: str | None, resolution: int | None = None, pool: str = "avg") -> torch.Tensor:
        """Float occupancy (n, 1, r, r, r) in [0, 1] of a split, pooled by ``pool`` ('avg': block
        average; 'max': a coarse voxel is occupied when any of its block is) from the finest grids
        when none were built at ``resolution`` (None: the finest)."""
        ds = self.dataset
        if not ds.voxels:
            raise DataError(f"{type(self).__name__}: no voxel grids (make the source with voxels=Voxelize(...))")
        R = resolution if resolution in ds.voxels else max(ds.voxels)
        if resolution is not None and R % resolution:
            raise DataError(f"{type(self).__name__}: no {resolution}^3 grids prepared (have {sorted(ds.voxels)})")
        vox = ds.voxels[R][ds.mask(split)].float()
        if vox.shape[0] == 0:
            raise DataError(f"the {split} split is empty ({ds.counts()})")
        return downsample(vox, resolution, pool) if resolution and resolution != R else vox

    def points(self, split: str | None, classes: list[str] | None = None) -> torch.Tensor:
        """Float32 points (n, P, 3) of a split, of ``classes`` only when given."""
        ds = self.dataset
        if ds.points is None:
            raise DataError(f"{type(self).__name__}: no point sets (make the source with points=SamplePoints(...))")
        pts = ds.points[ds.mask(split, classes)].float()
        if pts.shape[0] == 0:
            raise DataError(f"the {split} split is empty ({ds.counts()})")
        return pts

    def _grid_options(self) -> dict:
        """The builder options of the pre-transforms (no grids and no points where not asked for)."""
        v, p = self.voxelize, self.sample_points
        out = {"resolutions": v.resolutions if v else (), "n_points": p.n_points if p else 0}
        if p:
            out["normalisation"] = p.normalisation
        return out


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


class ModelNetFolder(ShapeSource):
    """A ModelNet-layout folder (``<class>/{train,test}/<file>``) of OFF meshes or point files.

    root: the folder (default ``data_root()/modelnet10-pcd``). classes: build these class folders
    only (None: all; a per-class normalisation and the validation carve then see only them).
    val_fraction / seed: the validation share carved per class from train, and the seed of the
    carve and of all sampling. max_per_class: at most this many files per class and official
    split. workers: processes for the first build.
    """

    DEFAULT_FOLDER = "modelnet10-pcd"

    def __init__(self, root: str | Path | None = None, *, voxels: Voxelize | None = None,
                 points: SamplePoints | None = None, classes: list[str] | None = None, val_fraction: float = 0.1,
                 seed: int = 0, max_per_class: int | None = None, workers: int = 1, progress: bool = False):
        super().__init__(voxels, points, progress)
        self.root = root
        v = voxels or Voxelize()
        self.options = BuildOptions(**self._grid_options(), val_fraction=val_fraction, seed=seed,
                                    classes=tuple(classes) if classes else None, fill=v.fill,
                                    point_dilation=v.point_dilation, point_fill=v.point_fill, pad=v.pad,
                                    max_per_class=max_per_class, workers=workers)

    def build(self) -> ShapeDataset:
        return build_shapes(source_folder(self.root, self.DEFAULT_FOLDER), self.options, progress=self.progress)


class ShapeNetsChairs(ShapeSource):
    """The 3D ShapeNets chairs: the source's own 32^3 grids (30^3 padded by 1), one class, 12
    rotations per shape id; no pre-transform to choose (coarser resolutions are pooled from the
    32^3 grids by :meth:`voxels`).

    root: the folder (default ``data_root()/shapenets-chair-vox30``). test_fraction /
    val_fraction / seed: the test and validation shape ids carved (all rotations of an id stay in
    one split). max_shapes: the first this many shape ids only. rotations: keep these rotation
    indices (1-12, 1 = canonical; None: all).
    """

    DEFAULT_FOLDER = "shapenets-chair-vox30"

    def __init__(self, root: str | Path | None = None, *, test_fraction: float = 0.1, val_fraction: float = 0.1,
                 seed: int = 0, max_shapes: int | None = None, rotations: list[int] | None = None,
                 progress: bool = False):
        super().__init__(Voxelize((32,)), None, progress)
        self.root, self.rotations = root, rotations
        self.kwargs = {"test_fraction": test_fraction, "val_fraction": val_fraction, "seed": seed,
                       "max_shapes": max_shapes}

    def build(self) -> ShapeDataset:
        ds = load_shapenets_chairs(source_folder(self.root, self.DEFAULT_FOLDER), progress=self.progress,
                                   **self.kwargs)
        return keep_rotations(ds, self.rotations) if self.rotations else ds


def keep_rotations(ds: ShapeDataset, rotations: list[int]) -> ShapeDataset:
    """The shapes of ``ds`` whose file name ends in ``_<rotation>.mat`` with a rotation in ``rotations``."""
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


class SyntheticFurniture(ShapeSource):
    """The built-in generated furniture (no download): ``n_per_class`` shapes of each of
    ``classes`` (default all five), the last ``test_fraction`` of each class test and the
    ``val_fraction`` before them validation; drawn from ``seed``."""

    def __init__(self, n_per_class: int = 40, classes: list[str] | None = None, *, voxels: Voxelize | None = None,
                 points: SamplePoints | None = None, test_fraction: float = 0.2, val_fraction: float = 0.1,
                 seed: int = 0, progress: bool = False):
        super().__init__(voxels, points, progress)
        self.n_per_class, self.furniture = n_per_class, tuple(classes) if classes else FURNITURE
        self.kwargs = {"test_fraction": test_fraction, "val_fraction": val_fraction, "seed": seed,
                       "pad": (voxels or Voxelize()).pad}

    def build(self) -> ShapeDataset:
        return make_furniture(self.n_per_class, self.furniture, **self._grid_options(), **self.kwargs)
