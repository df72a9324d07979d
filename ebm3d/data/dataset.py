"""The prepared form of a 3D shape dataset, and how it is stored in the cache.

A :class:`ShapeDataset` holds, for N shapes:

- ``voxels[R]``: uint8 {0, 1} tensors (N, 1, R, R, R), one per prepared resolution R;
- ``points``: float32 (N, P, 3) or None;
- ``labels``: int64 (N,) indices into ``classes``;
- ``split``: int8 (N,) with 0 = train, 1 = validation (carved from the official train split),
  2 = test;
- ``files``: the source of each shape, relative to the source root;
- ``manifest``: the build record (parameters, fingerprint, counts, skipped files).

On disk (``data.pt`` via :func:`ebmcore.io.save_tensors`) voxel grids are bit-packed
(``numpy.packbits``, 8 cells a byte), so ModelNet10 at 32^3 takes about 20 MB.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ebmcore.errors import DataError
from ebmcore.io import atomic_write, load_tensors, save_tensors

SPLITS = {"train": 0, "val": 1, "test": 2}


@dataclass
class ShapeDataset:
    classes: list[str]
    labels: torch.Tensor
    split: torch.Tensor
    files: list[str]
    voxels: dict[int, torch.Tensor] = field(default_factory=dict)
    points: torch.Tensor | None = None
    manifest: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    def mask(self, split: str | None = None, classes: str | list[str] | None = None) -> torch.Tensor:
        """Boolean (N,) selecting a split ('train', 'val', 'test' or None = all) and classes."""
        keep = torch.ones(len(self), dtype=torch.bool)
        if split is not None:
            if split not in SPLITS:
                raise KeyError(f"split {split!r} is not one of {list(SPLITS)}")
            keep &= self.split == SPLITS[split]
        if classes is not None:
            names = [classes] if isinstance(classes, str) else list(classes)
            unknown = set(names) - set(self.classes)
            if unknown:
                raise KeyError(f"unknown classes {sorted(unknown)}; have {self.classes}")
            ids = torch.tensor([self.classes.index(c) for c in names])
            keep &= torch.isin(self.labels, ids)
        return keep

    def split_labels(self, split: str | None = None, classes: str | list[str] | None = None) -> torch.Tensor:
        """Class indices (n,) of a split and classes (see :meth:`mask`)."""
        return self.labels[self.mask(split, classes)]

    def subset(self, split: str | None = None, classes: str | list[str] | None = None) -> "ShapeDataset":
        """The shapes of one split and/or some classes (labels keep their original indices)."""
        keep = self.mask(split, classes)
        idx = keep.nonzero().flatten()
        return ShapeDataset(
            classes=list(self.classes), labels=self.labels[idx], split=self.split[idx],
            files=[self.files[i] for i in idx.tolist()],
            voxels={r: v[idx] for r, v in self.voxels.items()},
            points=None if self.points is None else self.points[idx],
            manifest=self.manifest)

    def counts(self) -> dict[str, dict[str, int]]:
        """{split: {class: count}} for the manifest and reports."""
        out: dict[str, dict[str, int]] = {}
        for name, code in SPLITS.items():
            labels = self.labels[self.split == code].tolist()
            out[name] = {c: labels.count(i) for i, c in enumerate(self.classes) if labels.count(i)}
        return out


def _pack(vox: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.packbits(vox.numpy().astype(bool).reshape(-1)))


def _unpack(packed: torch.Tensor, shape: list[int]) -> torch.Tensor:
    count = int(np.prod(shape))
    bits = np.unpackbits(packed.numpy(), count=count)
    return torch.from_numpy(bits.reshape(shape))


def save_dataset(ds: ShapeDataset, folder: str | Path) -> Path:
    """Write ``data.pt`` then ``manifest.json`` (the manifest last: its presence marks a complete build)."""
    folder = Path(folder)
    payload = {
        "classes": ds.classes, "labels": ds.labels, "split": ds.split, "files": ds.files,
        "voxels": {str(r): {"packed": _pack(v), "shape": list(v.shape)} for r, v in ds.voxels.items()},
        "points": ds.points,
    }
    save_tensors(payload, folder / "data.pt")
    text = json.dumps(ds.manifest, indent=2, sort_keys=True)
    atomic_write(folder / "manifest.json", lambda tmp: tmp.write_text(text))
    return folder


def load_dataset(folder: str | Path) -> ShapeDataset:
    """Read a dataset written by :func:`save_dataset`; DataError if it is missing or incomplete."""
    folder = Path(folder)
    manifest_path, data_path = folder / "manifest.json", folder / "data.pt"
    if not manifest_path.is_file() or not data_path.is_file():
        raise DataError(f"{folder}: no prepared dataset (data.pt and manifest.json expected)")
    manifest = json.loads(manifest_path.read_text())
    try:
        payload = load_tensors(data_path)
    except Exception as err:
        raise DataError(f"{data_path}: cannot load ({type(err).__name__}: {err})") from None
    voxels = {int(r): _unpack(v["packed"], v["shape"]) for r, v in payload["voxels"].items()}
    return ShapeDataset(classes=list(payload["classes"]), labels=payload["labels"],
                        split=payload["split"], files=list(payload["files"]), voxels=voxels,
                        points=payload["points"], manifest=manifest)
