"""Scenes of many shapes laid side by side: sample grids and comparison rows.

A scene is a table of items (meshes, voxel grids, point sets). Each item is scaled so its extent
(the whole grid for voxels, the bounding box otherwise) fits a unit cell, centred in its cell;
column j sits at x = j * spacing and row i at z = -i * spacing (z is up), so cells are separated
by ``spacing - 1`` of empty space.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .geometry import bounds, to_geometry

PALETTE = {
    "default": (0.25, 0.45, 0.75),
    "original": (0.35, 0.35, 0.40),
    "corrupted": (0.85, 0.45, 0.15),
    "recovered": (0.20, 0.60, 0.30),
    "low": (0.85, 0.45, 0.15),
    "high": (0.20, 0.60, 0.30),
    "truth": (0.35, 0.35, 0.40),
}


@dataclass
class Scene:
    """Placed Open3D geometries plus where each cell is (row, col, min corner, max corner)."""

    geometries: list = field(default_factory=list)
    cells: list = field(default_factory=list)
    columns: list[str] = field(default_factory=list)


def layout(rows: list[list], spacing: float = 1.25, voxel_mode: str = "mesh", threshold: float = 0.5,
           colors: list | None = None, columns: list[str] | None = None, yaw_deg: float = 0.0) -> Scene:
    """Place a table of items (rows of meshes / voxel grids / point sets); ``None`` leaves a gap.

    colors: one RGB per column (default: the palette's colour for each column name, else blue).
    yaw_deg: turn every item about the vertical axis through its cell centre (a three-quarter
        view of each shape while rows and columns stay aligned with the image). Open3D cannot
        rotate a VoxelGrid, so voxels drawn as cubes are not turned.
    """
    import open3d as o3d

    turn = o3d.geometry.get_rotation_matrix_from_axis_angle([0.0, 0.0, np.radians(yaw_deg)])
    scene = Scene(columns=list(columns or []))
    for i, row in enumerate(rows):
        for j, item in enumerate(row):
            if item is None:
                continue
            lo, hi = bounds(item)
            extent = float((hi - lo).max()) or 1.0
            scale = 1.0 / extent
            centre = np.array([j * spacing, 0.0, -i * spacing])
            offset = centre - (lo + hi) / 2 * scale
            name = scene.columns[j] if j < len(scene.columns) else "default"
            color = colors[j] if colors else PALETTE.get(name, PALETTE["default"])
            geom = to_geometry(item, voxel_mode, threshold, color, scale, offset)
            half = (hi - lo) * scale / 2
            if yaw_deg and not isinstance(geom, o3d.geometry.VoxelGrid):
                geom.rotate(turn, center=centre)
                half = np.abs(turn) @ half  # the turned box's axis-aligned half extents
            scene.geometries.append(geom)
            scene.cells.append((i, j, centre - half, centre + half))
    if not scene.geometries:
        raise ValueError("nothing to draw: every item is None")
    return scene


def sample_rows(batch, n_cols: int | None = None) -> list[list]:
    """Split a batch (B, 1, R, R, R) / (B, N, 3) / list into rows of ``n_cols`` (about square)."""
    items = list(batch)
    n_cols = n_cols or int(np.ceil(np.sqrt(len(items))))
    return [items[k:k + n_cols] for k in range(0, len(items), n_cols)]


def recovery_rows(original, corrupted, recovered) -> tuple[list[list], list[str]]:
    """Rows of (original, corrupted, recovered) for each example, and the column names."""
    return [list(t) for t in zip(original, corrupted, recovered)], ["original", "corrupted", "recovered"]


def superres_rows(low, high, truth=None) -> tuple[list[list], list[str]]:
    """Rows of (low-res, super-resolved[, ground truth]) for each example, and the column names."""
    if truth is None:
        return [list(t) for t in zip(low, high)], ["low", "high"]
    return [list(t) for t in zip(low, high, truth)], ["low", "high", "truth"]
