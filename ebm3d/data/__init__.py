"""3D shape data: readers, voxelisation, point sampling and cached datasets.

- :mod:`.readers`: OFF / PCD / PLY / XYZ / NPY / 3D ShapeNets .mat, each raising DataError.
- :mod:`.voxelize`: occupancy grids from meshes (filled where closed) and from points.
- :mod:`.points`: area-weighted sampling, resampling, unit-sphere / per-category min-max.
- :mod:`.builder`: the cached, versioned ModelNet-layout builder (:func:`build_shapes`).
- :mod:`.shapenets`: the 3D ShapeNets chair set (:func:`load_shapenets_chairs`).
- :mod:`.synthetic`: the built-in generated furniture set (:func:`make_furniture`).
- :mod:`.folders`: where a source's files are (:func:`source_folder`).
- :mod:`.sources`: one class per source (:class:`ModelNetFolder`, :class:`ShapeNetsChairs`,
  :class:`SyntheticFurniture`) with voxels (:class:`Voxelize`) and points (:class:`SamplePoints`)
  as optional pre-transforms, built on the builders above; what the models read.
"""
from .builder import BuildOptions, build_shapes
from .dataset import SPLITS, ShapeDataset, load_dataset, save_dataset
from .folders import source_folder
from .readers import read_mesh, read_off, read_pcd, read_points, read_shapenets_mat
from .shapenets import load_shapenets_chairs
from .sources import ModelNetFolder, SamplePoints, ShapeNetsChairs, ShapeSource, SyntheticFurniture, Voxelize
from .synthetic import FURNITURE, make_furniture
from .voxelize import mesh_to_voxels, points_to_voxels, voxel_iou

__all__ = [
    "BuildOptions", "build_shapes", "SPLITS", "ShapeDataset", "load_dataset", "save_dataset",
    "read_mesh", "read_off", "read_pcd", "read_points", "read_shapenets_mat",
    "load_shapenets_chairs", "FURNITURE", "make_furniture", "mesh_to_voxels", "points_to_voxels",
    "voxel_iou", "source_folder", "ShapeSource", "ModelNetFolder", "ShapeNetsChairs", "SyntheticFurniture",
    "Voxelize", "SamplePoints",
]
