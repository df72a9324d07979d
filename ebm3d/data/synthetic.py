"""A built-in set of simple furniture shapes made from boxes and cylinders (no download).

Five classes, z up, sizes in metres with seeded random proportions:

- chair: seat on four legs (square or round) with a back rest;
- table: a top on four legs or on a pedestal with a round foot;
- bed: a frame, an inset mattress, a headboard and sometimes a footboard;
- bench: a long low seat on two slab or four post legs, no back;
- shelf: two sides, top, bottom, 2-5 shelves and a back panel.

Voxels come from the general mesh voxeliser (the union of closed primitives fills as a solid).
Points are area-weighted samples on the primitives' surfaces with the samples that fall strictly
inside another primitive dropped, so they lie on the outer surface of the union.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
import torch
import trimesh

from ebmcore.errors import ConfigError, DataError
from ebmcore.paths import cache_root

from . import points as P
from .dataset import SPLITS, ShapeDataset, load_dataset, save_dataset
from .voxelize import mesh_to_voxels

FURNITURE = ("chair", "table", "bed", "bench", "shelf")
GENERATOR_VERSION = 1


@dataclass(frozen=True)
class Box:
    center: tuple[float, float, float]
    size: tuple[float, float, float]

    def mesh(self) -> trimesh.Trimesh:
        return trimesh.creation.box(extents=self.size, transform=trimesh.transformations.translation_matrix(self.center))

    def strictly_inside(self, p: np.ndarray, eps: float = 1e-6) -> np.ndarray:
        return (np.abs(p - np.array(self.center)) < np.array(self.size) / 2 - eps).all(axis=1)


@dataclass(frozen=True)
class Cylinder:
    """Vertical (z-axis) cylinder."""

    center: tuple[float, float, float]
    radius: float
    height: float

    def mesh(self) -> trimesh.Trimesh:
        return trimesh.creation.cylinder(radius=self.radius, height=self.height, sections=24,
                                         transform=trimesh.transformations.translation_matrix(self.center))

    def strictly_inside(self, p: np.ndarray, eps: float = 1e-6) -> np.ndarray:
        d = p - np.array(self.center)
        # the 24-gon's inscribed radius, so points on the flat facets are not "inside"
        r_in = self.radius * np.cos(np.pi / 24)
        return (np.hypot(d[:, 0], d[:, 1]) < r_in - eps) & (np.abs(d[:, 2]) < self.height / 2 - eps)


def _legs(rng, w, d, h, thick, inset, round_legs) -> list:
    out = []
    for sx in (-1, 1):
        for sy in (-1, 1):
            c = (sx * (w / 2 - inset - thick / 2), sy * (d / 2 - inset - thick / 2), h / 2)
            out.append(Cylinder(c, thick / 2, h) if round_legs else Box(c, (thick, thick, h)))
    return out


def _chair(rng) -> list:
    w, d, h = rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.5)
    t, leg, back_h, back_t = rng.uniform(0.04, 0.08), rng.uniform(0.03, 0.06), rng.uniform(0.35, 0.6), rng.uniform(0.04, 0.07)
    parts = _legs(rng, w, d, h - t, leg, 0.0, rng.random() < 0.5)
    parts.append(Box((0, 0, h - t / 2), (w, d, t)))
    parts.append(Box((0, d / 2 - back_t / 2, h + back_h / 2), (w, back_t, back_h)))
    return parts


def _table(rng) -> list:
    w, d, h, t = rng.uniform(0.8, 1.6), rng.uniform(0.6, 1.0), rng.uniform(0.65, 0.8), rng.uniform(0.03, 0.07)
    parts = [Box((0, 0, h - t / 2), (w, d, t))]
    if rng.random() < 0.3:
        col, foot_r = rng.uniform(0.04, 0.08), rng.uniform(0.2, min(w, d) / 2)
        parts += [Cylinder((0, 0, (h - t) / 2), col, h - t), Cylinder((0, 0, 0.02), foot_r, 0.04)]
    else:
        parts += _legs(rng, w, d, h - t, rng.uniform(0.04, 0.08), rng.uniform(0.0, 0.08), rng.random() < 0.5)
    return parts


def _bed(rng) -> list:
    length, width, frame = rng.uniform(1.8, 2.2), rng.uniform(0.9, 1.8), rng.uniform(0.2, 0.35)
    mat_t, board_t, head_h = rng.uniform(0.15, 0.25), rng.uniform(0.04, 0.08), rng.uniform(0.7, 1.1)
    parts = [Box((0, 0, frame / 2), (width, length, frame)),
             Box((0, 0, frame + mat_t / 2), (width - 0.06, length - 0.06, mat_t)),
             Box((0, length / 2 + board_t / 2, head_h / 2), (width, board_t, head_h))]
    if rng.random() < 0.5:
        foot_h = rng.uniform(frame + mat_t, head_h * 0.8)
        parts.append(Box((0, -length / 2 - board_t / 2, foot_h / 2), (width, board_t, foot_h)))
    return parts


def _bench(rng) -> list:
    w, d, h, t = rng.uniform(1.0, 1.8), rng.uniform(0.3, 0.45), rng.uniform(0.4, 0.5), rng.uniform(0.04, 0.08)
    parts = [Box((0, 0, h - t / 2), (w, d, t))]
    if rng.random() < 0.5:
        slab = rng.uniform(0.04, 0.08)
        for sx in (-1, 1):
            parts.append(Box((sx * (w / 2 - 0.1), 0, (h - t) / 2), (slab, d * 0.9, h - t)))
    else:
        parts += _legs(rng, w, d, h - t, rng.uniform(0.04, 0.07), 0.05, rng.random() < 0.5)
    return parts


def _shelf(rng) -> list:
    w, d, h, t = rng.uniform(0.6, 1.2), rng.uniform(0.25, 0.4), rng.uniform(1.0, 2.0), rng.uniform(0.02, 0.04)
    parts = [Box((sx * (w / 2 - t / 2), 0, h / 2), (t, d, h)) for sx in (-1, 1)]
    parts.append(Box((0, d / 2 - t / 4, h / 2), (w, t / 2, h)))  # back panel
    n_shelves = int(rng.integers(2, 6))
    for z in np.linspace(t / 2, h - t / 2, n_shelves + 2):
        parts.append(Box((0, 0, float(z)), (w - 2 * t, d, t)))
    return parts


_MAKERS = {"chair": _chair, "table": _table, "bed": _bed, "bench": _bench, "shelf": _shelf}


def furniture_parts(cls: str, seed: int, index: int) -> list:
    """The primitives of shape ``index`` of class ``cls`` (same seed, same shape)."""
    if cls not in _MAKERS:
        raise ConfigError(f"classes: {cls!r} is not one of {FURNITURE}")
    rng = np.random.default_rng([seed, FURNITURE.index(cls), index])
    return _MAKERS[cls](rng)


def parts_mesh(parts: list) -> trimesh.Trimesh:
    """All primitives in one mesh (overlapping closed parts; not a boolean union)."""
    return trimesh.util.concatenate([p.mesh() for p in parts])


def parts_points(parts: list, n: int, seed: int) -> np.ndarray:
    """``n`` area-weighted surface samples (n, 3) of the union, dropping hidden samples."""
    mesh = parts_mesh(parts)
    pts = P.sample_points(mesh, 3 * n, seed).astype(np.float64)
    hidden = np.zeros(len(pts), dtype=bool)
    for part in parts:
        hidden |= part.strictly_inside(pts)
    visible = pts[~hidden]
    if len(visible) == 0:
        raise DataError(f"synthetic shape (seed {seed}): no visible surface sample")
    return P.resample(visible, n, seed).astype(np.float32)


def make_furniture(n_per_class: int = 40, classes: tuple[str, ...] = FURNITURE, *,
                   resolutions: tuple[int, ...] = (32,), n_points: int = 1024,
                   normalisation: str = "sphere", test_fraction: float = 0.2,
                   val_fraction: float = 0.1, seed: int = 0, pad: int = 1,
                   cache: bool = True) -> ShapeDataset:
    """The generated furniture set as a :class:`ShapeDataset`.

    Per class, the last ``round(test_fraction * n)`` shapes are test and the
    ``round(val_fraction * n)`` before them validation (all shapes are independent draws).
    voxels[R]: (N, 1, R, R, R) uint8 for each R in ``resolutions``; points (N, n_points, 3) float32
    (none when n_points is 0). Cached under ``cache_root()/shapes/furniture-<hash>`` when
    ``cache`` is true.
    """
    unknown = set(classes) - set(FURNITURE)
    if unknown:
        raise ConfigError(f"classes: {sorted(unknown)} not in {FURNITURE}")
    if n_per_class < 1:
        raise ConfigError(f"n_per_class: must be >= 1, got {n_per_class}")
    params = {"generator_version": GENERATOR_VERSION, "n_per_class": n_per_class, "classes": list(classes),
              "resolutions": list(resolutions), "n_points": n_points, "normalisation": normalisation,
              "test_fraction": test_fraction, "val_fraction": val_fraction, "seed": seed, "pad": pad}
    fp = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()
    folder = cache_root() / "shapes" / f"furniture-{fp[:12]}"
    if cache and (folder / "manifest.json").is_file():
        try:
            ds = load_dataset(folder)
            if ds.manifest.get("fingerprint") == fp:
                return ds
        except DataError:
            pass
    n_test, n_val = int(round(test_fraction * n_per_class)), int(round(val_fraction * n_per_class))
    labels, split, files, vox, pts = [], [], [], {r: [] for r in resolutions}, []
    for c, cls in enumerate(classes):
        for i in range(n_per_class):
            parts = furniture_parts(cls, seed, i)
            mesh = parts_mesh(parts)
            for r in resolutions:
                vox[r].append(mesh_to_voxels(mesh, r, pad, fill=True))
            if n_points:
                pts.append(parts_points(parts, n_points, seed * 100_003 + c * 10_007 + i))
            s = "test" if i >= n_per_class - n_test else "val" if i >= n_per_class - n_test - n_val else "train"
            labels.append(c)
            split.append(SPLITS[s])
            files.append(f"{cls}/{'test' if s == 'test' else 'train'}/{cls}_{i:04d}")
    labels_np, split_np = np.array(labels), np.array(split, dtype=np.int8)
    points, stats = None, None
    if n_points:
        pn, stats = P.normalise(np.stack(pts), labels_np, split_np == SPLITS["train"], len(classes), normalisation)
        points = torch.from_numpy(pn)
    ds = ShapeDataset(classes=list(classes), labels=torch.from_numpy(labels_np), split=torch.from_numpy(split_np),
                      files=files, points=points,
                      voxels={r: torch.from_numpy(np.stack(v)[:, None].astype(np.uint8)) for r, v in vox.items()})
    ds.manifest = {"builder": "furniture", "fingerprint": fp, "options": params, "n_shapes": len(ds),
                   "counts": ds.counts(), "skipped": [], "n_skipped": 0, "classes": list(classes),
                   "category_minmax": None if stats is None else stats.tolist()}
    if cache:
        save_dataset(ds, folder)
        ds.manifest["cache_dir"] = str(folder)
    return ds
