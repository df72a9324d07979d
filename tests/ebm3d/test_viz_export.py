"""Exports to .ply / .obj / .binvox read back equal."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from ebm3d.data.readers import read_mesh, read_ply_points
from ebm3d.export import (export_obj, export_ply, export_samples, read_binvox, voxels_to_mesh,
                          write_binvox)
from ebm3d.viz.view import load_target
from ebmcore.errors import DataError


def random_grid(shape=(32, 32, 32), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.random(shape) < 0.3


@pytest.mark.parametrize("shape", [(32, 32, 32), (4, 5, 6), (300, 2, 2)])
def test_binvox_round_trip_own_reader(tmp_path, shape):
    grid = random_grid(shape)
    path = write_binvox(grid, tmp_path / "g.binvox")
    np.testing.assert_array_equal(read_binvox(path), grid)


def test_binvox_read_by_trimesh(tmp_path):
    from trimesh.exchange.binvox import load_binvox

    grid = random_grid((16, 16, 16), seed=1)
    grid[:, :, 0] = True  # long runs (> 255) too
    path = write_binvox(grid, tmp_path / "g.binvox", translate=(1, 2, 3), scale=2.0)
    with open(path, "rb") as fh:
        vg = load_binvox(fh)
    np.testing.assert_array_equal(np.asarray(vg.matrix), grid)
    assert read_binvox(path).sum() == grid.sum()


def test_binvox_rejects_broken_files(tmp_path):
    path = write_binvox(random_grid((8, 8, 8)), tmp_path / "g.binvox")
    raw = path.read_bytes()
    (tmp_path / "cut.binvox").write_bytes(raw[:-2])
    with pytest.raises(DataError, match="cut.binvox"):
        read_binvox(tmp_path / "cut.binvox")
    (tmp_path / "junk.binvox").write_bytes(b"hello\n")
    with pytest.raises(DataError, match="junk.binvox"):
        read_binvox(tmp_path / "junk.binvox")


def test_points_to_ply_and_obj(tmp_path):
    pts = np.random.default_rng(0).normal(size=(300, 3)).astype(np.float32)
    np.testing.assert_allclose(read_ply_points(export_ply(pts, tmp_path / "p.ply")), pts, rtol=1e-6)
    lines = (export_obj(torch.from_numpy(pts), tmp_path / "p.obj")).read_text().splitlines()
    back = np.array([[float(v) for v in ln.split()[1:]] for ln in lines if ln.startswith("v ")])
    np.testing.assert_allclose(back, pts, rtol=1e-5, atol=1e-6)


def test_mesh_and_voxel_exports(tmp_path):
    box = trimesh.creation.box(extents=(1.0, 2.0, 3.0))
    for ext, fn in ((".ply", export_ply), (".obj", export_obj)):
        back = read_mesh(fn(box, tmp_path / f"box{ext}"))
        assert len(back.faces) == len(box.faces)
        assert np.isclose(trimesh.Trimesh(back.vertices, back.faces).volume, 6.0)
    grid = np.zeros((1, 12, 12, 12), np.float32)
    grid[0, 2:8, 3:9, 4:11] = 1.0
    mesh = voxels_to_mesh(grid)
    back = read_mesh(export_obj(grid, tmp_path / "vox.obj"))
    np.testing.assert_allclose(back.vertices, mesh.vertices, atol=1e-5)
    np.testing.assert_allclose(mesh.bounds, [[2, 3, 4], [8, 9, 11]], atol=1e-6)  # the occupied cells
    assert mesh.is_watertight and mesh.volume > 0


def test_export_samples_batch_and_view_reads_them(tmp_path):
    batch = torch.from_numpy(np.stack([random_grid((16, 16, 16), s) for s in range(3)])[:, None].astype(np.float32))
    paths = export_samples(batch, tmp_path / "out", fmt="binvox")
    assert [p.name for p in paths] == ["sample_0000.binvox", "sample_0001.binvox", "sample_0002.binvox"]
    for p, g in zip(paths, batch):
        np.testing.assert_array_equal(read_binvox(p), g[0].numpy() >= 0.5)
        rows, _ = load_target(p)
        np.testing.assert_array_equal(rows[0][0], g[0].numpy() >= 0.5)
    assert len(export_samples(torch.randn(2, 50, 3), tmp_path / "pts", fmt="ply")) == 2
    with pytest.raises(DataError, match="voxel grids only"):
        export_samples(torch.randn(2, 50, 3), tmp_path / "pts", fmt="binvox")
    with pytest.raises(DataError, match="unknown export format"):
        export_samples(batch, tmp_path / "x", fmt="stl")
