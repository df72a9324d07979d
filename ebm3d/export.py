"""Export of shapes and samples to .ply, .obj and .binvox.

- Voxel grids (R, R, R) (or (1, R, R, R)) become a surface mesh by marching cubes at
  ``threshold`` (skimage), in grid units with cell i centred at i + 0.5, for .ply/.obj; .binvox
  stores the binarised grid itself.
- Point sets (N, 3) are written as vertex-only .ply / .obj files.
- Meshes (trimesh) are written as they are.

The .binvox writer follows the published format (a text header ``#binvox 1``, ``dim``,
``translate``, ``scale``, ``data``, then (value, run length <= 255) byte pairs with y running
fastest, then z, then x); :func:`read_binvox` reads it back, and trimesh's binvox loader reads it.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import trimesh

from ebmcore.errors import DataError
from ebmcore.io import atomic_write


def _array(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def kind_of(item) -> str:
    """'mesh', 'voxels' or 'points' for a trimesh, an (R,R,R)/(1,R,R,R) grid or an (N,3) array."""
    if isinstance(item, trimesh.Trimesh):
        return "mesh"
    arr = _array(item)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3 and min(arr.shape) > 1 and (arr.shape[2] != 3 or len(set(arr.shape)) == 1):
        return "voxels"  # a (B, N, 3) batch of point sets is not a grid
    if arr.ndim == 2 and arr.shape[1] == 3:
        return "points"
    raise DataError(f"cannot tell what an array of shape {arr.shape} holds "
                    "(expected voxels (R,R,R) / (1,R,R,R) or points (N,3))")


def as_grid(item) -> np.ndarray:
    """A voxel item as a float (R, R, R) array."""
    arr = _array(item).astype(np.float32)
    return arr[0] if arr.ndim == 4 else arr


def voxels_to_mesh(grid, threshold: float = 0.5) -> trimesh.Trimesh:
    """Marching-cubes surface of ``grid >= threshold`` (padded so borders close), grid units."""
    from skimage.measure import marching_cubes

    g = np.pad(as_grid(grid), 1)
    if not (g >= threshold).any():
        raise DataError(f"voxel grid has no cell >= {threshold}: nothing to mesh")
    verts, faces, _, _ = marching_cubes(g, level=threshold)
    # padded index p has its centre at (p - 1) + 0.5
    return trimesh.Trimesh(vertices=verts - 0.5, faces=faces[:, ::-1], process=False)


def to_trimesh(item, threshold: float = 0.5) -> trimesh.Trimesh | trimesh.PointCloud:
    """A mesh for meshes and voxels, a point cloud for points."""
    kind = kind_of(item)
    if kind == "mesh":
        return item
    if kind == "voxels":
        return voxels_to_mesh(item, threshold)
    return trimesh.PointCloud(_array(item).astype(np.float64))


def export_ply(item, path: str | os.PathLike, threshold: float = 0.5) -> Path:
    """Write a mesh, a voxel grid (as its marching-cubes mesh) or points to binary PLY."""
    data = to_trimesh(item, threshold).export(file_type="ply")
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def export_obj(item, path: str | os.PathLike, threshold: float = 0.5) -> Path:
    """Write a mesh or voxel grid (marching cubes) to OBJ; points as ``v x y z`` lines only."""
    geom = to_trimesh(item, threshold)
    if isinstance(geom, trimesh.PointCloud):
        text = "".join(f"v {x:.6g} {y:.6g} {z:.6g}\n" for x, y, z in geom.vertices)
    else:
        text = trimesh.exchange.obj.export_obj(geom, include_normals=False, include_texture=False)
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def binvox_bytes(grid, threshold: float = 0.5, translate=(0.0, 0.0, 0.0), scale: float = 1.0) -> bytes:
    """The .binvox encoding of ``grid >= threshold`` (grid indexed [x, y, z])."""
    occ = as_grid(grid) >= threshold
    dims = occ.shape
    flat = occ.transpose(0, 2, 1).reshape(-1).astype(np.uint8)  # x slowest, then z, y fastest
    change = np.flatnonzero(np.diff(flat)) + 1
    starts = np.concatenate([[0], change])
    lengths = np.diff(np.concatenate([starts, [len(flat)]]))
    out = bytearray()
    for value, length in zip(flat[starts], lengths):
        full, rest = divmod(int(length), 255)
        out += bytes([value, 255]) * full
        if rest:
            out += bytes([value, rest])
    header = (f"#binvox 1\ndim {dims[0]} {dims[1]} {dims[2]}\n"
              f"translate {translate[0]:g} {translate[1]:g} {translate[2]:g}\nscale {scale:g}\ndata\n")
    return header.encode("ascii") + bytes(out)


def write_binvox(grid, path: str | os.PathLike, threshold: float = 0.5, translate=(0.0, 0.0, 0.0),
                 scale: float = 1.0) -> Path:
    """Write a voxel grid to ``path`` in the .binvox format."""
    data = binvox_bytes(grid, threshold, translate, scale)
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def read_binvox(path: str | os.PathLike) -> np.ndarray:
    """Read a .binvox file as a bool grid indexed [x, y, z]; DataError if malformed."""
    path = Path(path)
    raw = path.read_bytes()
    lines, pos = [], 0
    while len(lines) < 5:
        end = raw.find(b"\n", pos)
        if end < 0:
            raise DataError(f"{path}: truncated binvox header")
        lines.append(raw[pos:end].decode("ascii", errors="replace").strip())
        pos = end + 1
        if lines[-1] == "data":
            break
    if not lines[0].startswith("#binvox") or lines[-1] != "data":
        raise DataError(f"{path}: not a binvox file")
    dims = next((ln.split()[1:] for ln in lines if ln.startswith("dim")), None)
    if not dims or len(dims) != 3:
        raise DataError(f"{path}: binvox header has no 'dim' line")
    d, h, w = (int(v) for v in dims)
    pairs = np.frombuffer(raw[pos:], dtype=np.uint8)
    if len(pairs) % 2:
        raise DataError(f"{path}: odd number of run-length bytes")
    flat = np.repeat(pairs[0::2], pairs[1::2])
    if len(flat) != d * h * w:
        raise DataError(f"{path}: runs cover {len(flat)} cells, dim says {d * h * w}")
    return flat.reshape(d, w, h).transpose(0, 2, 1).astype(bool)


EXPORTERS = {".ply": export_ply, ".obj": export_obj, ".binvox": write_binvox}


def export_samples(samples, folder: str | os.PathLike, fmt: str = "ply", prefix: str = "sample",
                   threshold: float = 0.5) -> list[Path]:
    """Write each sample of a batch (B, 1, R, R, R) voxels or (B, N, 3) points to
    ``folder/<prefix>_<i>.<fmt>``; returns the paths."""
    ext = "." + fmt.lstrip(".").lower()
    if ext not in EXPORTERS:
        raise DataError(f"unknown export format {fmt!r}; use one of {sorted(EXPORTERS)}")
    batch = _array(samples)
    if ext == ".binvox" and kind_of(batch[0]) != "voxels":
        raise DataError(".binvox holds voxel grids only")
    folder = Path(folder)
    return [EXPORTERS[ext](item, folder / f"{prefix}_{i:04d}{ext}", threshold=threshold)
            for i, item in enumerate(batch)]
