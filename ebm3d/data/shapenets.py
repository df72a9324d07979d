"""The 3D ShapeNets volumetric chair set (``shapenets-chair-vox30``) as a cached ShapeDataset.

Files are ``<folder>/train/chair_<shape id>_<rotation>.mat``: 889 chairs x 12 rotations, each
30^3 padded to 32^3 (:func:`ebm3d.data.readers.read_shapenets_mat`). The shared copy has only
``train/``, so a test split is carved here: ``round(test_fraction * n_shapes)`` shape ids chosen
by a seeded permutation go to test with all their rotations, then the validation split is carved
the same way from the rest. Keeping a shape's 12 rotations together stops a rotated copy of a
test chair from appearing in training. If the folder also has ``test/``, that official split is
used instead and only validation is carved.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ebmcore.errors import ConfigError, DataError
from ebmcore.paths import dataset_dir

from .builder import BuildOptions, Entry, assemble
from .dataset import ShapeDataset
from .readers import read_shapenets_mat

_NAME = re.compile(r"^(?P<group>.+?)_(?P<rot>\d+)\.mat$")


def _entries(folder: Path) -> tuple[list[Entry], list[dict], bool]:
    entries, skipped = [], []
    has_test = (folder / "test").is_dir()
    for split in ("train", "test"):
        sub = folder / split
        if not sub.is_dir():
            continue
        for path in sorted(p for p in sub.iterdir() if p.is_file()):
            rel = path.relative_to(folder).as_posix()
            if path.suffix.lower() != ".mat":
                skipped.append({"file": rel, "reason": "not a .mat file"})
                continue
            match = _NAME.match(path.name)
            group = match["group"] if match else path.stem
            entries.append(Entry(rel, path, "chair", split, group))
    return entries, skipped, has_test


def carve_test(entries: list[Entry], fraction: float, seed: int) -> list[Entry]:
    """Move ``round(fraction * n_groups)`` groups (shape ids) from train to test, seeded."""
    groups = sorted({e.group for e in entries})
    rng = np.random.default_rng(seed + 7919)  # a different stream from the validation carve
    chosen = set(rng.permutation(groups)[: int(round(fraction * len(groups)))].tolist())
    return [Entry(e.rel, e.path, e.cls, "test" if e.group in chosen else e.split, e.group) for e in entries]


def _process_mat(job: tuple[Entry, BuildOptions]) -> tuple[str, dict | None, str | None]:
    entry, options = job
    try:
        grid = read_shapenets_mat(entry.path, pad=options.pad)
        return entry.rel, {"voxels": {grid.shape[0]: grid.astype(bool)}, "points": None}, None
    except DataError as err:
        return entry.rel, None, str(err)


def load_shapenets_chairs(source: str | Path | None = None, *, test_fraction: float = 0.1,
                          val_fraction: float = 0.1, seed: int = 0, max_shapes: int | None = None,
                          cache_dir: str | Path | None = None, force: bool = False,
                          progress: bool = False) -> ShapeDataset:
    """The chair set as voxels[32] (N, 1, 32, 32, 32) uint8, one class 'chair'.

    source: the folder (default ``data_root()/shapenets-chair-vox30``).
    test_fraction: share of shape ids carved as test when the folder has no ``test/``.
    max_shapes: keep only the first this-many shape ids (all their rotations), for quick runs.
    Cached like :func:`ebm3d.data.builder.build_shapes`; skipped files are in the manifest.
    """
    folder = Path(source) if source else dataset_dir("shapenets-chair-vox30")
    if folder is None or not folder.is_dir():
        raise DataError(f"{source or 'data_root()/shapenets-chair-vox30'}: folder not found")
    if not 0 <= test_fraction < 1:
        raise ConfigError(f"test_fraction: must be in [0, 1), got {test_fraction}")
    entries, skipped, has_test = _entries(folder)
    if max_shapes:
        keep = set(sorted({e.group for e in entries})[:max_shapes])
        entries = [e for e in entries if e.group in keep]
    if not entries:
        raise DataError(f"{folder}: no .mat files under train/ or test/")
    if not has_test:
        entries = carve_test(entries, test_fraction, seed)
    options = BuildOptions(resolutions=(32,), n_points=0, val_fraction=val_fraction, seed=seed)
    split_rule = ("official test/ folder" if has_test else
                  f"test = round({test_fraction} * shape ids) by seed {seed}, rotations kept together")
    return assemble("shapenets-chair-vox30", folder, ["chair"], entries, skipped, options, _process_mat,
                    {"test_split": split_rule, "max_shapes": max_shapes,
                     "methods": {"voxels": "3D ShapeNets 30^3 grid padded by 1 -> 32^3"}},
                    Path(cache_dir) if cache_dir else None, force, progress)
