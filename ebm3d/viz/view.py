"""``ebm3d view <file-or-run> [--png out.png]``: open (or render) shapes, samples and comparisons.

Accepted targets:

- mesh files: .off, .obj, .stl, .ply with faces;
- point files: .pcd, .xyz, .ply without faces, .npy of shape (N, 3);
- .binvox voxel grids and 3D ShapeNets .mat grids (key ``instance``);
- .npy / .pt arrays: voxels (R,R,R), (1,R,R,R), (B,1,R,R,R), (B,R,R,R) or points (N,3), (B,N,3);
- .pt dicts (read with weights_only): ``samples`` (a batch), ``original``/``corrupted``/
  ``recovered`` (recovery rows), ``low``/``high`` [+ ``truth``] (super-resolution rows),
  ``target``/``reconstruction`` (reconstruction pairs), or ``interpolation`` (B, N, 3) (one strip);
- a run folder: the first of samples.pt, recovery.pt, superres.pt, reconstruction.pt,
  interpolation.pt found in it or in its ``samples/`` sub-folder.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from ebmcore.errors import DataError

RUN_FILES = ("samples.pt", "recovery.pt", "superres.pt", "reconstruction.pt", "interpolation.pt")
TABLE_KEYS = (("original", "corrupted", "recovered"), ("low", "high", "truth"), ("low", "high"),
              ("target", "reconstruction"))


def _batch(x) -> list:
    """A batch as a list of items; a single voxel grid or point set as a list of one."""
    from ebm3d.export import kind_of

    arr = x.detach().cpu() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    try:
        kind_of(arr)
        return [arr]
    except DataError:
        if arr.ndim in (3, 4, 5):
            return list(arr)
        raise


def table_from_dict(data: dict, max_items: int) -> tuple[list[list], list[str]]:
    """Rows and column names for a dict of tensors (see the module docstring)."""
    for keys in TABLE_KEYS:
        if all(k in data for k in keys):
            cols = [_batch(data[k])[:max_items] for k in keys]
            return [list(r) for r in zip(*cols)], list(keys)
    from .layout import sample_rows

    for key in ("samples", "interpolation"):
        if key in data:
            items = _batch(data[key])[:max_items]
            return (sample_rows(items) if key == "samples" else [items]), []
    raise DataError(f"no viewable key in {sorted(data)} (expected 'samples', 'original'/'corrupted'/"
                    "'recovered', 'low'/'high', 'target'/'reconstruction' or 'interpolation')")


def load_target(target: str | Path, max_items: int = 16) -> tuple[list[list], list[str]]:
    """Rows of items and column names for a file or run folder."""
    from ebm3d.data.builder import read_shape
    from ebm3d.data.readers import read_shapenets_mat
    from ebm3d.export import read_binvox
    from ebmcore.io import load_tensors

    from .layout import sample_rows

    path = Path(target)
    if path.is_dir():
        found = [p for name in RUN_FILES for p in (path / name, path / "samples" / name) if p.is_file()]
        if not found:
            raise DataError(f"{path}: no {' / '.join(RUN_FILES)} in the folder or its samples/")
        path = found[0]
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".binvox":
        return [[read_binvox(path)]], []
    if suffix == ".mat":
        return [[read_shapenets_mat(path)]], []
    if suffix == ".pt":
        data = load_tensors(path)
        if isinstance(data, dict):
            return table_from_dict(data, max_items)
        return sample_rows(_batch(data)[:max_items]), []
    if suffix == ".npy":
        arr = np.load(path, allow_pickle=False)
        if not (arr.ndim == 2 and arr.shape[1] >= 3):
            return sample_rows(_batch(arr)[:max_items]), []
    return [[read_shape(path)]], []


def view_main(argv: list[str] | None = None) -> int:
    """Entry point of ``ebm3d view``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="ebm3d view", description=__doc__.split("\n\n")[0])
    parser.add_argument("target", help="a shape file, an array/.pt file or a run folder")
    parser.add_argument("--png", help="render headless to this PNG instead of opening a window")
    parser.add_argument("--voxels", choices=("mesh", "cubes"), default="mesh",
                        help="draw voxels as a marching-cubes mesh or as cubes (default: mesh)")
    parser.add_argument("--view", choices=("iso", "front", "top"), default="iso")
    parser.add_argument("--max", type=int, default=16, help="most items per column (default 16)")
    parser.add_argument("--threshold", type=float, default=0.5, help="voxel occupancy threshold")
    parser.add_argument("--width", type=int)
    parser.add_argument("--height", type=int)
    args = parser.parse_args(argv)
    from .layout import layout
    from .render import VIEWS, render_png, show

    try:
        rows, columns = load_target(args.target, args.max)
        scene = layout(rows, voxel_mode=args.voxels, threshold=args.threshold, columns=columns,
                       yaw_deg=VIEWS[args.view][2])
    except DataError as err:
        print(f"ebm3d view: {err}", file=sys.stderr)
        return 2
    opts = dict(width=args.width, height=args.height, view=args.view, voxel_mode=args.voxels,
                threshold=args.threshold)
    if args.png:
        out = render_png(scene, args.png, **opts)
        print(f"wrote {out}")
    else:
        show(scene, **opts)
    return 0
