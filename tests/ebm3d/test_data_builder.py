"""The cached dataset builders: layout, skip manifest, cache reuse, splits, source untouched."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ebm3d.data import (BuildOptions, build_shapes, load_dataset, load_shapenets_chairs,
                        make_furniture)
from ebmcore.errors import ConfigError, DataError
from ebmcore.paths import data_root, dataset_dir

OFF_DIR = dataset_dir("modelnet10-off-sample")
PCD_DIR = dataset_dir("modelnet10-pcd")
MAT_DIR = dataset_dir("shapenets-chair-vox30")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EBM_CACHE", str(tmp_path / "cache"))


def digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def pcd_layout(tmp_path) -> Path:
    """Real PCD files (3 train + 1 test for chair and table) plus broken ones, one folder down."""
    if PCD_DIR is None:
        pytest.skip(f"{data_root()}/modelnet10-pcd absent")
    root = tmp_path / "src" / "ModelNet10"
    for cls in ("chair", "table"):
        for split, names in (("train", [1, 2, 3, 4, 5, 6]), ("test", [890 if cls == "chair" else 393])):
            dest = root / cls / split
            dest.mkdir(parents=True)
            for n in names:
                shutil.copy(PCD_DIR / cls / split / f"{cls}_{n:04d}.pcd", dest)
    good = (root / "chair" / "train" / "chair_0001.pcd").read_bytes()
    (root / "chair" / "train" / "chair_0900.pcd").write_bytes(good[:-500])  # truncated
    head, body = good.split(b"DATA binary\n")
    pts = np.frombuffer(body, "<f4").copy()
    pts[30] = np.nan
    (root / "table" / "train" / "table_0900.pcd").write_bytes(head + b"DATA binary\n" + pts.tobytes())
    (root / "table" / "train" / "notes.txt").write_text("x y\n")  # unreadable as points
    (root / "table" / "train" / "readme.md").write_text("not a shape")
    (tmp_path / "src" / "__MACOSX" / "chair" / "train").mkdir(parents=True)
    return tmp_path / "src"


def test_build_from_pcd_layout_with_skips(pcd_layout):
    before = digest(pcd_layout)
    opts = BuildOptions(resolutions=(32, 16), n_points=256, val_fraction=0.34, seed=3)
    ds = build_shapes(pcd_layout, opts, name="tiny")
    assert ds.classes == ["chair", "table"]
    assert ds.voxels[32].shape == (len(ds), 1, 32, 32, 32) and ds.voxels[32].dtype == torch.uint8
    assert ds.voxels[16].shape == (len(ds), 1, 16, 16, 16)
    assert set(ds.voxels[32].unique().tolist()) == {0, 1}
    assert ds.points.shape == (len(ds), 256, 3) and ds.points.dtype == torch.float32
    np.testing.assert_allclose(ds.points.norm(dim=-1).amax(dim=1), 1.0, rtol=1e-5)
    assert ds.counts() == {"train": {"chair": 4, "table": 4}, "val": {"chair": 2, "table": 2},
                           "test": {"chair": 1, "table": 1}}

    manifest = json.loads((Path(ds.manifest["cache_dir"]) / "manifest.json").read_text())
    skipped = {s["file"]: s["reason"] for s in manifest["skipped"]}
    assert set(skipped) == {"chair/train/chair_0900.pcd", "table/train/table_0900.pcd",
                            "table/train/notes.txt", "table/train/readme.md"}
    assert "truncated" in skipped["chair/train/chair_0900.pcd"]
    assert "chair_0900.pcd" in skipped["chair/train/chair_0900.pcd"]
    assert "non-finite" in skipped["table/train/table_0900.pcd"]
    assert "not a shape file" in skipped["table/train/readme.md"]
    assert manifest["n_skipped"] == 4 and manifest["n_shapes"] == 14
    assert manifest["builder_version"] >= 1 and len(manifest["fingerprint"]) == 64
    assert digest(pcd_layout) == before  # sources untouched


def test_cache_reuse_and_invalidation(pcd_layout):
    opts = BuildOptions(resolutions=(16,), n_points=64)
    first = build_shapes(pcd_layout, opts, name="tiny")
    folder = Path(first.manifest["cache_dir"])
    stamp = (folder / "data.pt").stat().st_mtime_ns
    again = build_shapes(pcd_layout, opts, name="tiny")
    assert (folder / "data.pt").stat().st_mtime_ns == stamp
    assert torch.equal(again.voxels[16], first.voxels[16]) and torch.equal(again.points, first.points)
    loaded = load_dataset(folder)
    assert loaded.files == first.files and torch.equal(loaded.split, first.split)

    shutil.copy(PCD_DIR / "chair" / "train" / "chair_0010.pcd", pcd_layout / "ModelNet10" / "chair" / "train")
    changed = build_shapes(pcd_layout, opts, name="tiny")
    assert changed.manifest["fingerprint"] != first.manifest["fingerprint"]
    assert len(changed) == len(first) + 1
    other_seed = build_shapes(pcd_layout, BuildOptions(resolutions=(16,), n_points=64, seed=1), name="tiny")
    assert other_seed.manifest["fingerprint"] != changed.manifest["fingerprint"]


def test_builder_errors(tmp_path, pcd_layout):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no <class>/train"):
        build_shapes(empty)
    with pytest.raises(ConfigError, match="classes"):
        build_shapes(pcd_layout, BuildOptions(classes=("sofa",)))
    with pytest.raises(ConfigError, match="normalisation"):
        build_shapes(pcd_layout, BuildOptions(normalisation="cube"))
    bad = tmp_path / "allbad" / "chair" / "train"
    bad.mkdir(parents=True)
    (bad / "a.off").write_text("OFF\n0 0 0\n")
    with pytest.raises(DataError, match="no usable shape"):
        build_shapes(tmp_path / "allbad")


@pytest.mark.skipif(OFF_DIR is None, reason=f"{data_root()}/modelnet10-off-sample absent")
def test_build_from_off_meshes_with_a_corrupt_mesh(tmp_path):
    root = tmp_path / "off"
    (root / "bathtub" / "train").mkdir(parents=True)
    for n in (2, 5):
        shutil.copy(OFF_DIR / "ModelNet10" / "bathtub" / "train" / f"bathtub_{n:04d}.off", root / "bathtub" / "train")
    text = (root / "bathtub" / "train" / "bathtub_0002.off").read_text()
    (root / "bathtub" / "train" / "bathtub_0099.off").write_text(text[: len(text) // 2])
    ds = build_shapes(root, BuildOptions(resolutions=(32,), n_points=128, val_fraction=0.0))
    assert len(ds) == 2 and ds.points.shape == (2, 128, 3)
    assert [s["file"] for s in ds.manifest["skipped"]] == ["bathtub/train/bathtub_0099.off"]
    assert "truncated" in ds.manifest["skipped"][0]["reason"]
    occupancy = ds.voxels[32].float().mean(dim=(1, 2, 3, 4))
    assert ((occupancy > 0.01) & (occupancy < 0.5)).all()


@pytest.mark.skipif(MAT_DIR is None, reason=f"{data_root()}/shapenets-chair-vox30 absent")
def test_shapenets_chairs_split_keeps_rotations_together(tmp_path):
    src = tmp_path / "chairs" / "train"
    src.mkdir(parents=True)
    files = sorted((MAT_DIR / "train").glob("*.mat"))[:36]  # 3 shapes x 12 rotations
    for f in files:
        shutil.copy(f, src)
    (src / "chair_999999999_1.mat").write_bytes(b"broken")
    ds = load_shapenets_chairs(tmp_path / "chairs", test_fraction=0.34, val_fraction=0.5, seed=0)
    assert ds.voxels[32].shape == (36, 1, 32, 32, 32) and ds.classes == ["chair"]
    assert [s["file"] for s in ds.manifest["skipped"]] == ["train/chair_999999999_1.mat"]
    groups = {}
    for f, s in zip(ds.files, ds.split.tolist()):
        groups.setdefault(f.rsplit("_", 1)[0], set()).add(s)
    assert all(len(s) == 1 for s in groups.values())  # no shape spans two splits
    assert sorted(next(iter(s)) for s in groups.values()) == [0, 1, 2]
    assert "rotations kept together" in ds.manifest["test_split"]


def test_furniture_set():
    ds = make_furniture(n_per_class=5, resolutions=(32,), n_points=200, test_fraction=0.2,
                        val_fraction=0.2, seed=1, cache=False)
    assert ds.classes == ["chair", "table", "bed", "bench", "shelf"]
    assert ds.voxels[32].shape == (25, 1, 32, 32, 32) and ds.points.shape == (25, 200, 3)
    assert ds.counts()["test"] == {c: 1 for c in ds.classes}
    occupancy = ds.voxels[32].float().mean(dim=(1, 2, 3, 4))
    assert (occupancy > 0.005).all() and (occupancy < 0.6).all()
    again = make_furniture(n_per_class=5, resolutions=(32,), n_points=200, test_fraction=0.2,
                           val_fraction=0.2, seed=1, cache=False)
    assert torch.equal(again.voxels[32], ds.voxels[32]) and torch.equal(again.points, ds.points)
    other = make_furniture(n_per_class=5, resolutions=(32,), n_points=200, seed=2, cache=False)
    assert not torch.equal(other.voxels[32], ds.voxels[32])
    # beds are solids: cells with all six neighbours occupied, and no unfilled cavity
    from scipy import ndimage

    bed = ds.subset(classes="bed").voxels[32][0, 0].numpy().astype(bool)
    assert ndimage.binary_erosion(bed).sum() > 100
    assert (ndimage.binary_fill_holes(bed) == bed).all()
    with pytest.raises(ConfigError):
        make_furniture(classes=("lamp",), cache=False)


def test_worker_processes_give_the_same_dataset(pcd_layout, tmp_path):
    one = build_shapes(pcd_layout, BuildOptions(resolutions=(16,), n_points=64), cache_dir=tmp_path / "w1")
    two = build_shapes(pcd_layout, BuildOptions(resolutions=(16,), n_points=64, workers=2), cache_dir=tmp_path / "w2")
    assert one.manifest["fingerprint"] == two.manifest["fingerprint"]  # workers is not an option of the data
    assert one.files == two.files
    assert torch.equal(one.voxels[16], two.voxels[16]) and torch.equal(one.points, two.points)
