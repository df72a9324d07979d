"""Occupancy grids from meshes and from point sets.

Grid convention: a grid ``g`` of shape (R, R, R) is indexed ``g[i, j, k]`` with i, j, k along the
shape's own x, y, z axes (ModelNet meshes are z-up, so axis 2 is up). Cell i covers
[i, i + 1) in grid units. Every shape is normalised on its own: its bounding box is centred in
the grid and scaled uniformly so its longest side spans ``R - 2 * pad`` cells, leaving ``pad``
empty cells at the border (as the 3D ShapeNets grids do).
"""
from __future__ import annotations

import numpy as np
import trimesh
from scipy import ndimage

# Shapes are scaled to span (R - 2*pad - _INSET) cells so that faces lying exactly on the
# outermost planes fall inside the last interior cell instead of on a cell boundary.
_INSET = 1e-3


def fit_to_grid(coords: np.ndarray, resolution: int, pad: int = 1) -> np.ndarray:
    """Map (N, 3) coordinates into grid units: bbox centred, longest side = ``resolution - 2*pad``.

    A degenerate (zero-extent) shape is only centred.
    """
    if resolution - 2 * pad < 1:
        raise ValueError(f"resolution {resolution} leaves no room inside pad {pad}")
    lo, hi = coords.min(axis=0), coords.max(axis=0)
    extent = float((hi - lo).max())
    scale = (resolution - 2 * pad - _INSET) / extent if extent > 0 else 1.0
    return (coords - (lo + hi) / 2) * scale + resolution / 2


def surface_lattice(vertices: np.ndarray, faces: np.ndarray, spacing: float = 0.5) -> np.ndarray:
    """Points (M, 3) covering every triangle with a barycentric lattice finer than ``spacing``.

    A triangle whose longest edge is L gets ``n = ceil(L / spacing)`` steps per edge, i.e. the
    points ``v0 + (a/n)(v1 - v0) + (b/n)(v2 - v0)`` for integers a, b >= 0, a + b <= n. Neighbouring
    lattice points are then closer than ``spacing``, so with spacing 0.5 in grid units every cell
    the surface crosses by more than a sliver receives a point.
    """
    tri = vertices[faces]  # (F, 3, 3)
    edges = np.linalg.norm(tri - np.roll(tri, 1, axis=1), axis=2).max(axis=1)
    steps = np.maximum(1, np.ceil(edges / spacing)).astype(np.int64)
    out = []
    for n in np.unique(steps):
        group = tri[steps == n]
        a, b = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
        keep = a + b <= n
        wa, wb = a[keep] / n, b[keep] / n  # (K,)
        v0 = group[:, None, 0]
        pts = v0 + wa[None, :, None] * (group[:, None, 1] - v0) + wb[None, :, None] * (group[:, None, 2] - v0)
        out.append(pts.reshape(-1, 3))
    return np.concatenate(out)


def mesh_to_voxels(mesh: trimesh.Trimesh, resolution: int = 32, pad: int = 1,
                   fill: bool = True) -> np.ndarray:
    """Occupancy grid (R, R, R) bool of a mesh, normalised as in the module docstring.

    Surface cells: every cell that holds a point of :func:`surface_lattice` (the same idea as
    trimesh's subdivision voxeliser -- split triangles until edges are under half a cell, mark
    the cells holding vertices -- done in numpy without building the subdivided mesh, which is
    5-20x faster on ModelNet meshes). With ``fill`` the enclosed cavities of that surface shell
    are filled (``scipy.ndimage.binary_fill_holes``, 6-connected background): a mesh whose
    surface closes at grid resolution becomes a solid, an open one (a lone plane, a bathtub's
    open top) stays a surface.
    """
    vertices = fit_to_grid(np.asarray(mesh.vertices, dtype=np.float64), resolution, pad)
    pts = surface_lattice(vertices, np.asarray(mesh.faces))
    idx = np.clip(np.floor(pts).astype(np.int64), 0, resolution - 1)
    grid = np.zeros((resolution,) * 3, dtype=bool)
    grid[idx[:, 0], idx[:, 1], idx[:, 2]] = True
    return ndimage.binary_fill_holes(grid) if fill else grid


def points_to_voxels(points: np.ndarray, resolution: int = 32, pad: int = 1, dilate: int = 0,
                     fill: bool = False) -> np.ndarray:
    """Occupancy grid (R, R, R) bool of a point set.

    Method: the points are normalised like a mesh (bbox centred, longest side spanning
    ``R - 2*pad`` cells), every cell containing at least one point is marked, then the marks
    are optionally dilated ``dilate`` times with the 6-neighbour cross and (``fill``) the
    enclosed cavities filled. With 1024 points at 32^3 this gives a sparse surface shell;
    ``dilate=1`` closes most gaps.
    """
    coords = fit_to_grid(np.asarray(points, dtype=np.float64), resolution, pad)
    idx = np.clip(np.floor(coords).astype(np.int64), 0, resolution - 1)
    grid = np.zeros((resolution,) * 3, dtype=bool)
    grid[idx[:, 0], idx[:, 1], idx[:, 2]] = True
    if dilate > 0:
        grid = ndimage.binary_dilation(grid, iterations=dilate)
    return ndimage.binary_fill_holes(grid) if fill else grid


def voxel_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean grids of the same shape (1.0 if both are empty)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0
