"""torch_geometric's ModelNet reads the same OFF folder as our reader, with the same counts."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from ebm3d.data.builder import BuildOptions, build_shapes
from ebm3d.data.readers import read_off
from ebmcore.paths import data_root, dataset_dir

OFF_DIR = dataset_dir("modelnet10-off-sample")
pytestmark = pytest.mark.skipif(OFF_DIR is None, reason=f"{data_root()}/modelnet10-off-sample absent")
CLASSES = ["bathtub", "bed", "chair", "desk", "dresser", "monitor", "night_stand", "sofa", "table", "toilet"]


@pytest.fixture()
def pyg_root(tmp_path):
    """<tmp>/raw/<class>/{train,test} as ModelNet('10') expects: the 5 real bathtubs in train,
    one of them again as a test file, the other nine classes present but empty."""
    raw = tmp_path / "raw"
    src = OFF_DIR / "ModelNet10" / "bathtub" / "train"
    for cls in CLASSES:
        for split in ("train", "test"):
            (raw / cls / split).mkdir(parents=True)
    for path in sorted(src.glob("*.off")):
        shutil.copy(path, raw / "bathtub" / "train" / path.name)
    shutil.copy(src / "bathtub_0002.off", raw / "bathtub" / "test" / "bathtub_0107.off")
    return tmp_path


def test_pyg_modelnet_agrees_with_our_reader(pyg_root, monkeypatch):
    from torch_geometric.datasets import ModelNet

    monkeypatch.setenv("EBM_CACHE", str(pyg_root / "cache"))
    train = ModelNet(str(pyg_root), name="10", train=True)
    test = ModelNet(str(pyg_root), name="10", train=False)
    assert len(train) == 5 and len(test) == 1
    paths = sorted((pyg_root / "raw" / "bathtub" / "train").glob("*.off"))
    ours = {len(read_off(p).vertices): read_off(p) for p in paths}
    assert len(ours) == 5  # vertex counts tell the five meshes apart
    for data in train:
        mesh = ours[data.pos.shape[0]]
        assert data.face.shape[1] == len(mesh.faces)
        np.testing.assert_allclose(data.pos.numpy(), mesh.vertices, rtol=1e-6)
        np.testing.assert_array_equal(data.face.t().numpy(), mesh.faces)
        assert int(data.y) == CLASSES.index("bathtub")

    # our builder reads the same folder (found under raw/) with the same class list and split
    ds = build_shapes(pyg_root / "raw", BuildOptions(resolutions=(16,), n_points=64, val_fraction=0.0),
                      cache_dir=pyg_root / "built")
    assert ds.classes == CLASSES
    assert ds.counts() == {"train": {"bathtub": 5}, "val": {}, "test": {"bathtub": 1}}
