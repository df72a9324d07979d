"""Readers on real files from data_root() and on corrupted copies of them."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from ebm3d.data.readers import (parse_off, read_mesh, read_npy_points, read_off, read_pcd,
                                read_points, read_ply_points, read_shapenets_mat, read_xyz)
from ebmcore.errors import DataError
from ebmcore.paths import data_root, dataset_dir

OFF_DIR = dataset_dir("modelnet10-off-sample")
PCD_DIR = dataset_dir("modelnet10-pcd")
MAT_DIR = dataset_dir("shapenets-chair-vox30")
need_off = pytest.mark.skipif(OFF_DIR is None, reason=f"{data_root()}/modelnet10-off-sample absent")
need_pcd = pytest.mark.skipif(PCD_DIR is None, reason=f"{data_root()}/modelnet10-pcd absent")
need_mat = pytest.mark.skipif(MAT_DIR is None, reason=f"{data_root()}/shapenets-chair-vox30 absent")


def off_file(i: int = 2) -> Path:
    return OFF_DIR / "ModelNet10" / "bathtub" / "train" / f"bathtub_{i:04d}.off"


def pcd_file() -> Path:
    return PCD_DIR / "chair" / "train" / "chair_0001.pcd"


def mat_file() -> Path:
    return MAT_DIR / "train" / "chair_000000182_1.mat"


def assert_names(err: pytest.ExceptionInfo, path: Path) -> None:
    assert str(path) in str(err.value), f"message does not name the file: {err.value}"


# ---------------------------------------------------------------- OFF


@need_off
@pytest.mark.parametrize("i", [1, 2])
def test_off_real_files(i):
    path = off_file(i)
    mesh = read_off(path)
    header = path.read_text().split("\n")[1].split()
    assert len(mesh.vertices) == int(header[0])
    assert len(mesh.faces) >= int(header[1])  # polygons split into triangles
    assert np.isfinite(mesh.vertices).all() and mesh.area > 0


@need_off
def test_off_quirk_counts_on_keyword_line(tmp_path):
    text = off_file(2).read_text()
    quirky = tmp_path / "quirk.off"
    quirky.write_text(text.replace("OFF\n", "OFF", 1))
    assert quirky.read_text().startswith("OFF700 664 0")
    v1, f1 = parse_off(off_file(2))
    v2, f2 = parse_off(quirky)
    np.testing.assert_array_equal(v1, v2)
    np.testing.assert_array_equal(f1, f2)


def test_off_polygons_fan_triangulated(tmp_path):
    path = tmp_path / "quad.off"
    path.write_text("OFF\n5 2 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n0 0 1\n4 0 1 2 3\n5 0 1 2 3 4\n")
    mesh = read_off(path)
    assert mesh.faces.tolist() == [[0, 1, 2], [0, 2, 3], [0, 1, 2], [0, 2, 3], [0, 3, 4]]


@need_off
@pytest.mark.parametrize("corrupt, message", [
    (lambda t: t[: len(t) // 2], "truncated"),
    (lambda t: t.replace(t.split("\n")[2], "nan 1.0 2.0", 1), "non-finite"),
    (lambda t: "OFF\n0 0 0\n", "empty mesh"),
    (lambda t: "", "empty file"),
    (lambda t: "solid garbage\x01\x02 not a mesh", "does not start with OFF"),
    (lambda t: t.replace("\n3 ", "\n3 x", 1), "non-integer face"),
    (lambda t: "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n", "face index outside"),
])
def test_off_corrupted_copies(tmp_path, corrupt, message):
    src = off_file(2)
    before = src.read_bytes()
    bad = tmp_path / "bad_bathtub.off"
    bad.write_text(corrupt(src.read_text()))
    with pytest.raises(DataError, match=message) as err:
        read_off(bad)
    assert_names(err, bad)
    assert src.read_bytes() == before


def test_off_binary_garbage(tmp_path):
    bad = tmp_path / "noise.off"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 512, dtype=np.uint8).tobytes())
    with pytest.raises(DataError) as err:
        read_mesh(bad)
    assert_names(err, bad)


# ---------------------------------------------------------------- PCD / PLY / XYZ / NPY


@need_pcd
def test_pcd_binary_real_file():
    pts = read_pcd(pcd_file())
    assert pts.shape == (1024, 3) and pts.dtype == np.float32
    assert np.isfinite(pts).all() and np.ptp(pts, axis=0).min() > 0


@need_pcd
def test_pcd_ascii_and_other_formats_agree_with_binary(tmp_path):
    pts = read_pcd(pcd_file())
    header = pcd_file().read_bytes().split(b"DATA binary\n")[0].decode()
    ascii_path = tmp_path / "chair.pcd"
    ascii_path.write_text(header + "DATA ascii\n" + "\n".join(" ".join(f"{v:.9g}" for v in p) for p in pts) + "\n")
    np.testing.assert_allclose(read_pcd(ascii_path), pts, rtol=1e-6)
    import trimesh

    trimesh.PointCloud(pts).export(tmp_path / "chair.ply")
    np.testing.assert_allclose(read_ply_points(tmp_path / "chair.ply"), pts, rtol=1e-6)
    np.savetxt(tmp_path / "chair.xyz", pts)
    np.testing.assert_allclose(read_xyz(tmp_path / "chair.xyz"), pts, rtol=1e-6)
    np.save(tmp_path / "chair.npy", np.hstack([pts, np.ones_like(pts)]))  # with normals
    np.testing.assert_array_equal(read_npy_points(tmp_path / "chair.npy"), pts)
    for name in ("chair.pcd", "chair.ply", "chair.xyz", "chair.npy"):
        assert read_points(tmp_path / name).shape == (1024, 3)


@need_pcd
def test_pcd_corrupted_copies(tmp_path):
    raw = pcd_file().read_bytes()
    truncated = tmp_path / "truncated.pcd"
    truncated.write_bytes(raw[: len(raw) - 100])
    with pytest.raises(DataError, match="truncated") as err:
        read_pcd(truncated)
    assert_names(err, truncated)

    pts = read_pcd(pcd_file()).copy()
    pts[5, 1] = np.nan
    head = raw.split(b"DATA binary\n")[0]
    nan_file = tmp_path / "nan.pcd"
    nan_file.write_bytes(head + b"DATA binary\n" + pts.astype("<f4").tobytes())
    with pytest.raises(DataError, match="non-finite coordinate .* at point 5") as err:
        read_pcd(nan_file)
    assert_names(err, nan_file)

    no_data = tmp_path / "headless.pcd"
    no_data.write_bytes(head)
    with pytest.raises(DataError, match="DATA") as err:
        read_pcd(no_data)
    assert_names(err, no_data)

    empty = tmp_path / "empty.pcd"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty") as err:
        read_pcd(empty)


def test_point_files_bad_rows(tmp_path):
    xyz = tmp_path / "short.xyz"
    xyz.write_text("0 0 0\n1 2\n")
    with pytest.raises(DataError, match="row 2") as err:
        read_xyz(xyz)
    assert_names(err, xyz)
    npy = tmp_path / "flat.npy"
    np.save(npy, np.zeros(10))
    with pytest.raises(DataError, match=r"shape \(N, 3\+\)"):
        read_npy_points(npy)
    ply = tmp_path / "junk.ply"
    ply.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nend_header\n1\n")
    with pytest.raises(DataError) as err:
        read_ply_points(ply)
    assert_names(err, ply)


# ---------------------------------------------------------------- 3D ShapeNets .mat


@need_mat
def test_mat_real_file_padded_to_32():
    grid = read_shapenets_mat(mat_file())
    assert grid.shape == (32, 32, 32) and grid.dtype == np.uint8
    assert set(np.unique(grid)) == {0, 1}
    assert grid[[0, -1]].sum() == 0 and grid[:, [0, -1]].sum() == 0 and grid[:, :, [0, -1]].sum() == 0
    assert 100 < grid.sum() < 32 ** 3 / 2


@need_mat
def test_mat_corrupted_copies(tmp_path):
    from scipy.io import savemat

    raw = mat_file().read_bytes()
    truncated = tmp_path / "truncated.mat"
    truncated.write_bytes(raw[: len(raw) // 3])
    garbage = tmp_path / "garbage.mat"
    garbage.write_bytes(b"this is not a mat file at all" * 10)
    wrong_key = tmp_path / "wrong_key.mat"
    savemat(wrong_key, {"voxels": np.ones((30, 30, 30), np.int8)})
    empty = tmp_path / "empty.mat"
    savemat(empty, {"instance": np.zeros((30, 30, 30), np.int8)})
    flat = tmp_path / "flat.mat"
    savemat(flat, {"instance": np.ones((30, 30), np.int8)})
    for path, message in [(truncated, "cannot read"), (garbage, "cannot read"), (wrong_key, "no key 'instance'"),
                          (empty, "empty grid"), (flat, "not a cubic grid")]:
        with pytest.raises(DataError, match=message) as err:
            read_shapenets_mat(path)
        assert_names(err, path)


@need_mat
def test_mat_copy_reads_like_the_original(tmp_path):
    copy = tmp_path / "copy.mat"
    shutil.copy(mat_file(), copy)
    np.testing.assert_array_equal(read_shapenets_mat(copy), read_shapenets_mat(mat_file()))
