"""The cached, versioned dataset builder for shape folders in the ModelNet layout.

Layout (the one ``torch_geometric.datasets.ModelNet`` reads under ``raw/``)::

    <root>/<class>/train/<file>     <root>/<class>/test/<file>

``<root>`` may also sit one or more single folders down (``ModelNet10/`` inside an extracted
archive); ``__MACOSX`` and dot-folders are ignored. Files may be meshes (.off .obj .stl, .ply
with faces) or point files (.pcd .xyz .npy, .ply without faces).

Each file becomes voxel grids (filled from meshes, point occupancy from points; see
:mod:`ebm3d.data.voxelize`) and a fixed-size point set (area-weighted samples from meshes, a
seeded subset of point files; see :mod:`ebm3d.data.points`). Files that fail to read are skipped
and listed with the reason in the manifest. The validation split is carved from the official
train split: per class, ``round(val_fraction * n)`` shapes chosen by a seeded permutation.

The result is cached under ``cache_root()/shapes/<name>-<fingerprint[:12]>/`` as ``data.pt`` plus
``manifest.json``. The fingerprint hashes the builder version, the options and every source
file's relative path and content, so a change to any of them builds a new cache entry. Source
files are only read.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
import trimesh

from ebmcore.errors import ConfigError, DataError
from ebmcore.paths import cache_root

from . import points as P
from .dataset import SPLITS, ShapeDataset, load_dataset, save_dataset
from .readers import read_mesh, read_points
from .voxelize import mesh_to_voxels, points_to_voxels

BUILDER_VERSION = 1
MESH_FILES = (".off", ".obj", ".stl")
POINT_FILES = (".pcd", ".xyz", ".pts", ".npy")
SHAPE_FILES = MESH_FILES + POINT_FILES + (".ply",)
IGNORED_DIRS = ("__MACOSX",)


@dataclass(frozen=True)
class BuildOptions:
    """What the builder produces. Every field except ``workers`` enters the fingerprint.

    resolutions: voxel grid sizes R to build, each (N, 1, R, R, R) (none: no grids).
    n_points: points per shape P (0: no point sets).
    normalisation: 'sphere' or 'category_minmax' for the point sets (see points.py).
    val_fraction: share of each class's train shapes moved to the validation split.
    seed: drives the validation split and all sampling.
    classes: keep only these class folders (None: all).
    fill: fill enclosed cavities of mesh voxelisations.
    point_dilation, point_fill: for point files, dilate the marked cells this many times
        and/or fill enclosed cavities.
    pad: empty cells left at each border of the grid.
    max_per_class: keep at most this many files per class and official split (sorted by name).
    workers: processes to use (1: in this process).
    """

    resolutions: tuple[int, ...] = (32,)
    n_points: int = 1024
    normalisation: str = "sphere"
    val_fraction: float = 0.1
    seed: int = 0
    classes: tuple[str, ...] | None = None
    fill: bool = True
    point_dilation: int = 0
    point_fill: bool = False
    pad: int = 1
    max_per_class: int | None = None
    workers: int = 1

    def validate(self) -> "BuildOptions":
        if any(r < 2 * self.pad + 2 for r in self.resolutions):
            raise ConfigError(f"resolutions: each must be at least 2*pad+2, got {self.resolutions}")
        if self.n_points < 0:
            raise ConfigError(f"n_points: must be >= 0, got {self.n_points}")
        if not self.resolutions and not self.n_points:
            raise ConfigError("resolutions and n_points: nothing to build; ask for voxel grids, points or both")
        if self.normalisation not in P.NORMALISATIONS:
            raise ConfigError(f"normalisation: {self.normalisation!r} not in {P.NORMALISATIONS}")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction: must be in [0, 1), got {self.val_fraction}")
        if self.workers < 1:
            raise ConfigError(f"workers: must be >= 1, got {self.workers}")
        return self

    def fingerprint_fields(self) -> dict:
        fields = dataclasses.asdict(self)
        fields.pop("workers")
        return fields


@dataclass(frozen=True)
class Entry:
    """One source file: path relative to the root, class, official split, split group."""

    rel: str
    path: Path
    cls: str
    split: str  # 'train' or 'test'
    group: str  # shapes of one group always land in the same split


# ---------------------------------------------------------------- finding files


def _is_class_dir(path: Path) -> bool:
    return path.is_dir() and any((path / s).is_dir() for s in ("train", "test"))


def _visible_dirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and p.name not in IGNORED_DIRS)


def find_root(source: str | Path, max_depth: int = 3) -> Path:
    """The folder whose sub-folders are classes holding train/ and/or test/ folders."""
    source = Path(source)
    if not source.is_dir():
        raise DataError(f"{source}: not a folder")
    frontier = [source]
    for _ in range(max_depth + 1):
        for folder in frontier:
            if any(_is_class_dir(d) for d in _visible_dirs(folder)):
                return folder
        frontier = [d for f in frontier for d in _visible_dirs(f)]
    raise DataError(f"{source}: no <class>/train or <class>/test folders found "
                    f"within {max_depth} levels")


def find_entries(root: Path, options: BuildOptions) -> tuple[list[str], list[Entry], list[dict]]:
    """(class names, usable entries, skipped [{file, reason}]) of a layout root."""
    classes = [d.name for d in _visible_dirs(root) if _is_class_dir(d)]
    if options.classes is not None:
        missing = set(options.classes) - set(classes)
        if missing:
            raise ConfigError(f"classes: {sorted(missing)} not found under {root} (have {classes})")
        classes = [c for c in classes if c in options.classes]
    entries, skipped = [], []
    for cls in classes:
        for split in ("train", "test"):
            folder = root / cls / split
            if not folder.is_dir():
                continue
            files = sorted(p for p in folder.iterdir() if p.is_file())
            usable = []
            for path in files:
                rel = path.relative_to(root).as_posix()
                if path.suffix.lower() in SHAPE_FILES and not path.name.startswith("."):
                    usable.append(Entry(rel, path, cls, split, rel))
                else:
                    skipped.append({"file": rel, "reason": f"not a shape file ({path.suffix or 'no suffix'})"})
            entries += usable[: options.max_per_class] if options.max_per_class else usable
    return classes, entries, skipped


def fingerprint(entries: Iterable[Entry], fields: dict, builder: str) -> str:
    """SHA-256 over the builder name/version, the options and every file's path and content."""
    h = hashlib.sha256(json.dumps({"builder": builder, "version": BUILDER_VERSION, **fields},
                                  sort_keys=True, default=list).encode())
    for e in sorted(entries, key=lambda e: e.rel):
        h.update(e.rel.encode() + b"\0" + e.split.encode() + b"\0")
        h.update(hashlib.sha256(e.path.read_bytes()).digest())
    return h.hexdigest()


# ---------------------------------------------------------------- per-file processing


def file_seed(seed: int, rel: str) -> int:
    """A per-file seed independent of processing order and worker count."""
    return (seed * 1_000_003 + zlib.crc32(rel.encode())) % (2**32)


def read_shape(path: Path) -> trimesh.Trimesh | np.ndarray:
    """A mesh (trimesh) for mesh files and PLY with faces, else points (N, 3)."""
    suffix = path.suffix.lower()
    if suffix in MESH_FILES:
        return read_mesh(path)
    if suffix == ".ply":
        try:
            loaded = trimesh.load(path, file_type="ply", process=False)
        except Exception as err:
            raise DataError(f"{path}: cannot read PLY ({type(err).__name__}: {err})") from None
        if len(getattr(loaded, "faces", [])):
            return read_mesh(path)
    return read_points(path)


def process_shape(path: Path, options: BuildOptions, seed: int) -> dict:
    """{'voxels': {R: bool (R,R,R)}, 'points': float32 (P, 3) or None} for one file."""
    shape = read_shape(path)
    out: dict = {"voxels": {}, "points": None}
    if isinstance(shape, trimesh.Trimesh):
        for r in options.resolutions:
            out["voxels"][r] = mesh_to_voxels(shape, r, options.pad, options.fill)
        if options.n_points:
            out["points"] = P.sample_points(shape, options.n_points, seed)
    else:
        for r in options.resolutions:
            out["voxels"][r] = points_to_voxels(shape, r, options.pad, options.point_dilation,
                                                options.point_fill)
        if options.n_points:
            out["points"] = P.resample(shape, options.n_points, seed)
    for r, grid in out["voxels"].items():
        if not grid.any():
            raise DataError(f"{path}: empty {r}^3 voxel grid")
    return out


def _process_entry(job: tuple[Entry, BuildOptions]) -> tuple[str, dict | None, str | None]:
    entry, options = job
    try:
        return entry.rel, process_shape(entry.path, options, file_seed(options.seed, entry.rel)), None
    except DataError as err:
        return entry.rel, None, str(err)
    except Exception as err:  # a file that breaks a library is reported, not fatal to the build
        return entry.rel, None, f"{entry.path}: unexpected {type(err).__name__}: {err}"


def _map(fn: Callable, jobs: list, workers: int, progress: bool, desc: str) -> list:
    from ebmcore.progress import progress_bar as tqdm

    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            it = pool.map(fn, jobs, chunksize=8)
            return list(tqdm(it, total=len(jobs), desc=desc, disable=not progress))
    return [fn(j) for j in tqdm(jobs, desc=desc, disable=not progress)]


# ---------------------------------------------------------------- splits and assembly


def carve_validation(labels: np.ndarray, split: np.ndarray, groups: list[str], fraction: float,
                     seed: int) -> np.ndarray:
    """Move ``round(fraction * n_groups)`` train groups of each class to validation (seeded)."""
    split = split.copy()
    rng = np.random.default_rng(seed)
    for c in np.unique(labels):
        idx = np.nonzero((labels == c) & (split == SPLITS["train"]))[0]
        names = sorted({groups[i] for i in idx})
        chosen = set(rng.permutation(names)[: int(round(fraction * len(names)))].tolist())
        for i in idx:
            if groups[i] in chosen:
                split[i] = SPLITS["val"]
    return split


def assemble(name: str, root: Path, classes: list[str], entries: list[Entry], skipped: list[dict],
             options: BuildOptions, process: Callable, extra_manifest: dict,
             cache_dir: Path | None = None, force: bool = False, progress: bool = False) -> ShapeDataset:
    """Process entries (or load the cached result), carve validation, normalise, save.

    A ``cache_dir`` given by the caller that already holds a dataset of other settings is
    refused (DataError) unless ``force``; the default cache folders carry the fingerprint.
    """
    fp = fingerprint(entries, {**options.fingerprint_fields(), **extra_manifest}, name)
    folder = Path(cache_dir) if cache_dir else cache_root() / "shapes" / f"{name}-{fp[:12]}"
    if not force and (folder / "manifest.json").is_file():
        try:
            cached = load_dataset(folder)
            if cached.manifest.get("fingerprint") == fp:
                cached.manifest["cache_dir"] = str(folder)
                report_skipped(cached)
                return cached
            other = f"a dataset built with other settings or files (fingerprint {cached.manifest.get('fingerprint', '?')[:12]})"
        except DataError as err:
            other = f"an unreadable dataset ({err})"
        if cache_dir is not None:  # a folder the user named: never overwritten silently
            raise DataError(f"{folder} already holds {other}; refusing to overwrite its data.pt and "
                            "manifest.json: pass --force (force=True) to replace it, or choose another --out")
    started = time.time()
    results = _map(process, [(e, options) for e in entries], options.workers, progress, name)
    kept, skipped = _sort_results(entries, results, skipped, options)
    if not kept:
        raise DataError(f"{root}: no usable shape among {len(entries)} files "
                        f"({len(skipped)} skipped; first: {skipped[:1]})")
    empty = {c: sum(s["file"].startswith(f"{c}/") for s in skipped) for c in classes
             if not any(e.cls == c for e, _ in kept)}
    # the class list stays that of the folders, so labels agree with torch_geometric's ModelNet
    labels = np.array([classes.index(e.cls) for e, _ in kept], dtype=np.int64)
    split = np.array([SPLITS[e.split] for e, _ in kept], dtype=np.int8)
    split = carve_validation(labels, split, [e.group for e, _ in kept], options.val_fraction, options.seed)
    voxels = {r: torch.from_numpy(np.stack([o["voxels"][r] for _, o in kept])[:, None].astype(np.uint8))
              for r in kept[0][1]["voxels"]}
    points, stats = None, None
    if kept[0][1]["points"] is not None:
        raw = np.stack([o["points"] for _, o in kept])
        pts, stats = P.normalise(raw, labels, split == SPLITS["train"], len(classes), options.normalisation)
        points = torch.from_numpy(pts)
    ds = ShapeDataset(classes=classes, labels=torch.from_numpy(labels), split=torch.from_numpy(split),
                      files=[e.rel for e, _ in kept], voxels=voxels, points=points)
    ds.manifest = {
        "builder": name, "builder_version": BUILDER_VERSION, "fingerprint": fp,
        "source": str(root), "options": options.fingerprint_fields(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "build_seconds": round(time.time() - started, 1),
        "n_shapes": len(ds), "n_skipped": len(skipped), "counts": ds.counts(),
        "classes": classes, "skipped": sorted(skipped, key=lambda s: s["file"]),
        "category_minmax": None if stats is None else stats.tolist(), **extra_manifest,
        "empty_classes": empty,
    }
    save_dataset(ds, folder)
    ds.manifest["cache_dir"] = str(folder)
    report_skipped(ds)
    return ds


def _sort_results(entries: list[Entry], results: list, skipped: list[dict],
                  options: BuildOptions) -> tuple[list, list[dict]]:
    """(kept (entry, output) pairs, skipped records): a file whose grids are not the sizes
    asked for is skipped with its name, never allowed to break the stacking of the others."""
    by_rel = {e.rel: e for e in entries}
    kept, skipped = [], list(skipped)
    for rel, out, reason in results:
        if out is not None and set(out["voxels"]) != set(options.resolutions):
            out, reason = None, (f"{by_rel[rel].path}: {'/'.join(map(str, sorted(out['voxels'])))}^3 "
                                 f"grid, expected {'/'.join(map(str, options.resolutions))}^3")
        if out is None:
            skipped.append({"file": rel, "reason": reason})
        else:
            kept.append((by_rel[rel], out))
    return kept, skipped


def report_skipped(ds: ShapeDataset) -> str | None:
    """Print (to stderr) and return one line on skipped files and all-bad class folders."""
    m = ds.manifest
    n_skipped, empty = m.get("n_skipped", 0), m.get("empty_classes") or {}
    if not n_skipped and not empty:
        return None
    where = Path(m.get("cache_dir", ".")) / "manifest.json"
    line = f"note: {m.get('builder', 'dataset')}: {n_skipped} source file(s) skipped, reasons in {where}"
    if empty:
        line += "; class folders with no usable file: " + ", ".join(f"{c} ({n} bad)" for c, n in empty.items())
    print(line, file=sys.stderr, flush=True)
    return line


METHODS = {
    "voxels_from_meshes": "per-shape bbox centred, longest side scaled to R-2*pad cells; surface "
                          "cells from a half-cell barycentric lattice on every triangle; enclosed "
                          "cavities filled (scipy binary_fill_holes) when fill is true",
    "voxels_from_points": "same per-shape normalisation; cells containing >= 1 point marked, then "
                          "point_dilation 6-neighbour dilations and optional cavity fill",
    "points": "meshes: area-weighted surface samples (trimesh); point files: seeded subset "
              "(or repeats when a file has fewer); then the stated normalisation",
    "validation_split": "per class, round(val_fraction * n_train) shapes by a seeded permutation",
}


def build_shapes(source: str | Path, options: BuildOptions | None = None, *, name: str | None = None,
                 cache_dir: str | Path | None = None, force: bool = False,
                 progress: bool = False) -> ShapeDataset:
    """Build (or load from the cache) a :class:`ShapeDataset` from a ModelNet-layout folder.

    source: a folder holding the layout (possibly a few single folders down).
    name: the cache entry's name (default: the source folder's name).
    Returns the dataset; ``ds.manifest['skipped']`` lists every skipped file with its reason and
    ``ds.manifest['cache_dir']`` where it is stored.
    """
    options = (options or BuildOptions()).validate()
    root = find_root(source)
    classes, entries, skipped = find_entries(root, options)
    if not entries:
        raise DataError(f"{root}: no shape files ({len(skipped)} other files)")
    return assemble(name or Path(source).resolve().name, root, classes, entries, skipped, options,
                    _process_entry, {"methods": METHODS}, Path(cache_dir) if cache_dir else None,
                    force, progress)
