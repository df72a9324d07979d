"""The data sources (one class per source): splits, labels and classes; voxels and points built only
when asked for; the builders' cache reused; sources never written."""
import hashlib
import shutil
import stat

import pytest
import torch

from ebmcore.errors import ConfigError, DataError
from ebmcore.paths import data_root

from ebm3d.data import BuildOptions
from ebm3d.data.sources import ModelNetFolder, SamplePoints, ShapeNetsChairs, SyntheticFurniture, Voxelize

PCD = data_root() / "modelnet10-pcd"
CHAIRS = data_root() / "shapenets-chair-vox30"
needs_pcd = pytest.mark.skipif(not (PCD / "chair").is_dir(), reason=f"shared modelnet10-pcd not found at {PCD}")
needs_chairs = pytest.mark.skipif(not CHAIRS.is_dir(), reason=f"shared 3D ShapeNets chairs not found at {CHAIRS}")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EBM_CACHE", str(tmp_path / "cache"))


def furniture(**kwargs):
    return SyntheticFurniture(5, ["chair", "table"], test_fraction=0.2, val_fraction=0.2, **kwargs)


def test_pre_transforms_are_built_only_when_asked_for():
    points_only = furniture(points=SamplePoints(64))
    assert points_only.dataset.voxels == {} and points_only.points("train").shape == (6, 64, 3)
    with pytest.raises(DataError, match="no voxel grids"):
        points_only.voxels("train")
    voxels_only = furniture(voxels=Voxelize((8,)))
    assert voxels_only.dataset.points is None and voxels_only.voxels("test").shape == (2, 1, 8, 8, 8)
    with pytest.raises(DataError, match="no point sets"):
        voxels_only.points("train")
    both = furniture(voxels=Voxelize((8,)), points=SamplePoints(64))
    assert torch.equal(both.points("val"), points_only.points("val"))  # the points do not depend on the grids
    assert torch.equal(both.voxels("val"), voxels_only.voxels("val"))
    with pytest.raises(ConfigError, match="pre-transform"):
        furniture()
    with pytest.raises(ConfigError, match="nothing to build"):
        BuildOptions(resolutions=(), n_points=0).validate()


def test_splits_labels_classes_pooling_and_subset():
    source = furniture(voxels=Voxelize((8,)))
    assert source.classes == ["chair", "table"]
    assert source.counts() == {"train": {"chair": 3, "table": 3}, "val": {"chair": 1, "table": 1},
                               "test": {"chair": 1, "table": 1}}
    assert source.labels("train").tolist() == [0, 0, 0, 1, 1, 1]
    grids = source.voxels("train")
    assert torch.equal(source.voxels("train", 4, "max"), torch.nn.functional.max_pool3d(grids, 2))
    assert torch.allclose(source.voxels("train", 4), torch.nn.functional.avg_pool3d(grids, 2))
    tables = source.subset(["table"])
    assert tables.labels("train").tolist() == [1, 1, 1] and torch.equal(tables.voxels("train"), grids[3:])
    assert len(source.labels("train")) == 6  # the whole source is unchanged
    with pytest.raises(DataError, match="no 3"):
        source.voxels("train", 3)


@needs_pcd
def test_modelnet_folder_is_read_only_and_cached(tmp_path):
    """A folder of point files: points without grids, the source files untouched (read-only here),
    a second source of the same settings loads the first one's cache."""
    root = tmp_path / "mn"
    for cls in ("chair", "table"):
        for split, n in (("train", 3), ("test", 1)):
            (root / cls / split).mkdir(parents=True)
            for f in sorted((PCD / cls / split).glob("*.pcd"))[:n]:
                shutil.copy(f, root / cls / split / f.name)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    for p in sorted(root.rglob("*"), reverse=True):
        p.chmod(stat.S_IREAD | (stat.S_IEXEC if p.is_dir() else 0))
    root.chmod(stat.S_IREAD | stat.S_IEXEC)
    try:
        first = ModelNetFolder(root, points=SamplePoints(128), val_fraction=0.34)
        assert first.points("train").shape == (4, 128, 3) and first.dataset.voxels == {}
        assert first.labels("val").tolist() == [0, 1] and first.classes == ["chair", "table"]
        again = ModelNetFolder(root, points=SamplePoints(128), val_fraction=0.34)
        assert again.dataset.manifest["cache_dir"] == first.dataset.manifest["cache_dir"]
        assert torch.equal(again.points("test"), first.points("test"))
        grids = ModelNetFolder(root, voxels=Voxelize((8,), point_dilation=1), val_fraction=0.34)
        assert grids.voxels("test").shape == (2, 1, 8, 8, 8) and grids.dataset.points is None
        assert grids.dataset.manifest["cache_dir"] != first.dataset.manifest["cache_dir"]
    finally:
        for p in root.rglob("*"):
            p.chmod(stat.S_IRWXU)
        root.chmod(stat.S_IRWXU)
    assert sorted(p for p in root.rglob("*") if p.is_file()) == files
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in files} == before


@needs_chairs
def test_shapenets_chairs_keep_the_asked_rotations():
    every = ShapeNetsChairs(max_shapes=3)
    canonical = ShapeNetsChairs(max_shapes=3, rotations=[1])
    assert len(every.dataset) == 36 and len(canonical.dataset) == 3
    assert all(name.endswith("_1.mat") for name in canonical.dataset.files)
    assert canonical.voxels(None, 16, "max").shape == (3, 1, 16, 16, 16)
    with pytest.raises(DataError, match="no point sets"):
        canonical.points(None)
