"""PNG grids of voxel grids with matplotlib (no display needed), and Open3D renders when available.

:func:`save_grid_png` draws each grid as a shaded marching-cubes surface (z up), or, with
``mode="projection"``, as its three orthographic max-projections. :func:`save_open3d_png`
hands the same grids to the Open3D viewer (:mod:`ebm3d.viz`) and returns None if it cannot
render here.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import torch

from ebmcore.io import atomic_write


def _surface(ax, grid: np.ndarray, threshold: float) -> None:
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection
    from skimage.measure import marching_cubes

    R = grid.shape[0]
    ax.set_xlim(0, R)
    ax.set_ylim(0, R)
    ax.set_zlim(0, R)
    ax.set_box_aspect((1, 1, 1), zoom=1.35)
    ax.view_init(elev=20, azim=-60)
    ax.set_axis_off()
    if not (grid.max() > threshold > grid.min()):
        return
    padded = np.pad(grid, 1)
    verts, faces, normals, _ = marching_cubes(padded, threshold)
    verts -= 1
    light = np.array([-0.4, -0.6, 0.7]) / np.linalg.norm([-0.4, -0.6, 0.7])
    # marching_cubes normals point from high to low values, i.e. into the empty side
    shade = 0.45 + 0.55 * np.clip(normals[faces].mean(1) @ light, 0, 1)
    colors = np.stack([0.35 * shade + 0.1, 0.6 * shade + 0.1, 0.95 * shade, np.ones_like(shade)], 1)
    ax.add_collection3d(Poly3DCollection(verts[faces], facecolors=colors, linewidths=0))


def save_grid_png(grids, path: str | Path, *, titles: list[str] | None = None, n_cols: int | None = None,
                  threshold: float = 0.5, mode: str = "surface", cell: float = 2.0) -> Path:
    """Write a PNG of voxel grids (B, 1, R, R, R) or (B, R, R, R) with values in [0, 1].

    mode: 'surface' (marching cubes at ``threshold``) or 'projection' (max over each axis).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arr = grids.detach().cpu().float().numpy() if isinstance(grids, torch.Tensor) else np.asarray(grids, float)
    arr = arr.reshape(arr.shape[0], *arr.shape[-3:])
    n = arr.shape[0]
    if mode == "projection":
        fig, axes = plt.subplots(n, 3, figsize=(3 * cell * 0.8, n * cell * 0.8), squeeze=False)
        for i in range(n):
            for a, name in enumerate(("x", "y", "z")):
                axes[i, a].imshow(arr[i].max(axis=a).T, origin="lower", cmap="viridis", vmin=0, vmax=1)
                axes[i, a].set_axis_off()
                if i == 0:
                    axes[i, a].set_title(f"max over {name}", fontsize=7)
            if titles:
                axes[i, 0].set_ylabel(titles[i], fontsize=7)
    elif mode == "surface":
        n_cols = n_cols or math.ceil(math.sqrt(n))
        n_rows = math.ceil(n / n_cols)
        fig = plt.figure(figsize=(n_cols * cell, n_rows * cell))
        for i in range(n):
            ax = fig.add_subplot(n_rows, n_cols, i + 1, projection="3d")
            _surface(ax, arr[i], threshold)
            if titles:
                ax.text2D(0.5, 0.95, titles[i], transform=ax.transAxes, ha="center", va="top", fontsize=8)
        fig.subplots_adjust(0, 0, 1, 1, 0, 0)
    else:
        raise ValueError(f"mode {mode!r} is not 'surface' or 'projection'")
    out = atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=80))
    plt.close(fig)
    return out


def save_open3d_png(data, path: str | Path, **kwargs) -> Path | None:
    """Render ``data`` (what the viewer takes: a batch, or a dict saved by a task) with Open3D.

    Returns the path, or None with a warning when Open3D or a display cannot be had here.
    """
    try:
        from ebm3d.viz import render_png
        from ebm3d.viz.view import table_from_dict
    except Exception as err:  # viewer missing or Open3D not importable
        warnings.warn(f"no Open3D render ({type(err).__name__}: {err})")
        return None
    try:
        obj = table_from_dict(data, kwargs.pop("max_items", 16))[0] if isinstance(data, dict) else data
        return render_png(obj, path, **kwargs)
    except Exception as err:
        warnings.warn(f"no Open3D render ({type(err).__name__}: {err})")
        return None
