"""Open3D geometry for voxel grids, meshes and point sets.

Inputs follow the suite's shapes: a voxel grid (R, R, R) or (1, R, R, R) indexed [x, y, z] (z up),
points (N, 3), or a :class:`trimesh.Trimesh`. Voxels render either as a marching-cubes mesh
(``voxel_mode="mesh"``, smooth and light) or as an Open3D ``VoxelGrid`` of cubes
(``voxel_mode="cubes"``).
"""
from __future__ import annotations

import numpy as np
import open3d as o3d
import trimesh

from ebm3d.export import _array, as_grid, kind_of, voxels_to_mesh

VOXEL_MODES = ("mesh", "cubes")
DEFAULT_COLOR = (0.25, 0.45, 0.75)


def mesh_geometry(mesh: trimesh.Trimesh, color=DEFAULT_COLOR) -> o3d.geometry.TriangleMesh:
    """An Open3D triangle mesh with vertex normals, painted one colour."""
    geom = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(np.asarray(mesh.vertices, np.float64)),
                                     o3d.utility.Vector3iVector(np.asarray(mesh.faces, np.int32)))
    geom.compute_vertex_normals()
    geom.paint_uniform_color(color)
    return geom


def voxel_geometry(grid, mode: str = "mesh", threshold: float = 0.5, color=DEFAULT_COLOR,
                   scale: float = 1.0, offset=(0.0, 0.0, 0.0)):
    """A grid's occupied cells (``>= threshold``) as a marching-cubes mesh or an Open3D VoxelGrid.

    Cell [i, j, k] spans [i, i+1) x [j, j+1) x [k, k+1) in grid units, then ``* scale + offset``
    (a VoxelGrid cannot be scaled after it is made, so the placement is applied here).
    """
    offset = np.asarray(offset, dtype=np.float64)
    if mode == "mesh":
        geom = mesh_geometry(voxels_to_mesh(grid, threshold), color)
        return geom.scale(scale, center=np.zeros(3)).translate(offset)
    if mode != "cubes":
        raise ValueError(f"voxel mode {mode!r} is not one of {VOXEL_MODES}")
    g = as_grid(grid)
    occ = g >= threshold
    idx = np.argwhere(occ)
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector((idx + 0.5) * scale + offset))
    cloud.colors = o3d.utility.Vector3dVector(_cube_shades(occ, idx, color))
    return o3d.geometry.VoxelGrid.create_from_point_cloud_within_bounds(
        cloud, voxel_size=scale, min_bound=offset, max_bound=offset + np.array(g.shape) * scale)


def _cube_shades(occ: np.ndarray, idx: np.ndarray, color) -> np.ndarray:
    """Per-voxel colours: a VoxelGrid is drawn unlit, so shade by height (lower is darker) and
    lighten voxels with more empty neighbours, which makes edges and parts readable."""
    padded = np.pad(occ, 1)
    i, j, k = (idx + 1).T
    empty = sum(~padded[i + di, j + dj, k + dk] for di, dj, dk in
                ((1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)))
    height = idx[:, 2] / max(occ.shape[2] - 1, 1)
    shade = 0.45 + 0.35 * height + 0.2 * empty / 6
    return np.clip(np.asarray(color)[None, :] * shade[:, None] * 1.4, 0, 1)


def point_geometry(points, color=DEFAULT_COLOR) -> o3d.geometry.PointCloud:
    """An Open3D point cloud of (N, 3) points, painted one colour."""
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(_array(points).astype(np.float64)))
    cloud.paint_uniform_color(color)
    return cloud


def to_geometry(item, voxel_mode: str = "mesh", threshold: float = 0.5, color=DEFAULT_COLOR,
                scale: float = 1.0, offset=(0.0, 0.0, 0.0)):
    """Open3D geometry for a mesh, a voxel grid or a point set, placed at ``x * scale + offset``.

    Open3D geometry passes through unplaced.
    """
    if isinstance(item, o3d.geometry.Geometry3D):
        return item
    kind = kind_of(item)
    if kind == "voxels":
        return voxel_geometry(item, voxel_mode, threshold, color, scale, offset)
    geom = mesh_geometry(item, color) if kind == "mesh" else point_geometry(item, color)
    return geom.scale(scale, center=np.zeros(3)).translate(np.asarray(offset, dtype=np.float64))


def bounds(item) -> tuple[np.ndarray, np.ndarray]:
    """(min, max) corners of what an item draws, in its own units (grid extent for voxels)."""
    if isinstance(item, o3d.geometry.Geometry3D):
        return np.asarray(item.get_min_bound()), np.asarray(item.get_max_bound())
    kind = kind_of(item)
    if kind == "voxels":
        return np.zeros(3), np.array(as_grid(item).shape, float)
    verts = np.asarray(item.vertices) if kind == "mesh" else _array(item)
    return verts.min(axis=0), verts.max(axis=0)
