"""Bad 3D data: each case is refused naming the file (and row), or skipped, named and reported."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.io import savemat

from data_prep.modelnet import main as modelnet_main
from ebm3d.data import BuildOptions, build_shapes, load_shapenets_chairs
from ebm3d.data.readers import read_pcd, read_points
from ebmcore.errors import DataError

CUBE = ("OFF\n8 6 0\n" + "".join(f"{x} {y} {z}\n" for x in (0, 1) for y in (0, 1) for z in (0, 1))
        + "4 0 1 3 2\n4 4 6 7 5\n4 0 4 5 1\n4 2 3 7 6\n4 0 2 6 4\n4 1 5 7 3\n")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EBM_CACHE", str(tmp_path / "cache"))


def _chair(edge: int) -> np.ndarray:
    grid = np.zeros((edge,) * 3, np.uint8)
    grid[edge // 4: 3 * edge // 4, edge // 4: 3 * edge // 4, : edge // 2] = 1
    return grid


def test_mat_cube_of_another_size_is_skipped_and_named(tmp_path, capsys):
    train = tmp_path / "chairs" / "train"
    train.mkdir(parents=True)
    for shape in range(3):
        savemat(train / f"chair_{shape}_1.mat", {"instance": _chair(30)})
    savemat(train / "chair_9_1.mat", {"instance": _chair(20)})  # a cube, but 20^3
    ds = load_shapenets_chairs(tmp_path / "chairs", test_fraction=0.34, val_fraction=0.0)
    assert ds.voxels[32].shape == (3, 1, 32, 32, 32)
    (skip,) = ds.manifest["skipped"]
    assert skip["file"] == "train/chair_9_1.mat" and "20^3" in skip["reason"] and "chair_9_1.mat" in skip["reason"]
    note = capsys.readouterr().err
    assert "1 source file(s) skipped" in note and str(ds.manifest["cache_dir"]) + "/manifest.json" in note


def test_class_folder_with_only_bad_files_is_reported(tmp_path, capsys):
    root = tmp_path / "src"
    for split in ("train", "test"):
        (root / "box" / split).mkdir(parents=True)
        (root / "box" / split / "box_1.off").write_text(CUBE)
        (root / "junk" / split).mkdir(parents=True)
        (root / "junk" / split / "junk_1.off").write_text("OFF\n8 6 0\n0 0 0\n")  # truncated
    ds = build_shapes(root, BuildOptions(resolutions=(8,), n_points=0, val_fraction=0.0))
    assert ds.classes == ["box", "junk"] and set(ds.labels.tolist()) == {0}
    assert ds.manifest["empty_classes"] == {"junk": 2}
    note = capsys.readouterr().err
    assert "class folders with no usable file: junk (2 bad)" in note and "manifest.json" in note


def _pcd(tmp_path, mode: str, declared: int, rows: np.ndarray):
    head = (f"VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH {declared}\nHEIGHT 1\n"
            f"POINTS {declared}\nDATA {mode}\n").encode()
    body = rows.astype("<f4").tobytes() if mode == "binary" else \
        "".join(" ".join(map(str, r)) + "\n" for r in rows.tolist()).encode()
    path = tmp_path / f"cloud_{mode}.pcd"
    path.write_bytes(head + body)
    return path


@pytest.mark.parametrize("mode, expect", [("binary", "12 data bytes after the 4 points the header declares"),
                                          ("ascii", "data row 4 is beyond the 4 points the header declares")])
def test_pcd_holding_more_data_than_its_header_declares(tmp_path, mode, expect):
    rows = np.random.default_rng(0).normal(size=(5, 3))
    with pytest.raises(DataError, match=expect) as info:
        read_pcd(_pcd(tmp_path, mode, 4, rows))
    assert f"cloud_{mode}.pcd" in str(info.value)
    assert read_pcd(_pcd(tmp_path, mode, 5, rows)).shape == (5, 3)


def test_degenerate_point_set_is_refused(tmp_path):
    path = tmp_path / "same.xyz"
    path.write_text("1 2 3\n" * 50)
    with pytest.raises(DataError, match=r"same.xyz: degenerate point set: all 50 points are identical"):
        read_points(path)


def test_modelnet_out_refuses_other_settings_unless_forced(tmp_path):
    root = tmp_path / "src"
    for cls in ("box", "crate"):
        for split in ("train", "test"):
            (root / cls / split).mkdir(parents=True)
            (root / cls / split / f"{cls}_1.off").write_text(CUBE)
    args = ["--source", str(root), "--out", str(tmp_path / "out"), "--resolution", "8", "--quiet"]
    assert modelnet_main(args + ["--points", "0"]) == 0
    first = json.loads((tmp_path / "out" / "manifest.json").read_text())["fingerprint"]
    assert modelnet_main(args + ["--points", "0"]) == 0  # same settings: the prepared data are reused
    assert modelnet_main(args + ["--points", "16"]) == 2  # other settings: refused
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["fingerprint"] == first
    assert modelnet_main(args + ["--points", "16", "--force"]) == 0
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["fingerprint"] != first
