"""Voxeliser and point-sampling properties against analytic answers."""
from __future__ import annotations

import numpy as np
import pytest
import trimesh

from ebm3d.data.points import (apply_category_minmax, normalise, resample, sample_points,
                               to_unit_sphere)
from ebm3d.data.readers import read_off
from ebm3d.data.voxelize import fit_to_grid, mesh_to_voxels, points_to_voxels, voxel_iou
from ebmcore.errors import ConfigError
from ebmcore.paths import dataset_dir


def ball(resolution: int, pad: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Analytic grids of the inscribed ball: cells whose centre is inside, cells it touches."""
    r, c = (resolution - 2 * pad) / 2, resolution / 2
    lo = np.arange(resolution, dtype=float)
    centre = (lo + 0.5 - c) ** 2
    near = (np.clip(c, lo, lo + 1) - c) ** 2
    inside = centre[:, None, None] + centre[None, :, None] + centre[None, None, :] <= r * r
    touched = near[:, None, None] + near[None, :, None] + near[None, None, :] <= r * r
    return inside, touched


def test_filled_cube_is_filled_and_padded():
    grid = mesh_to_voxels(trimesh.creation.box(extents=(2.0, 2.0, 2.0)), 32, pad=1)
    assert grid[1:31, 1:31, 1:31].all()
    assert grid.sum() == 30 ** 3


def test_open_box_stays_a_surface():
    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    top = box.face_normals[:, 2] > 0.5
    open_box = trimesh.Trimesh(box.vertices, box.faces[~top], process=False)
    filled, surface = mesh_to_voxels(open_box, 32), mesh_to_voxels(open_box, 32, fill=False)
    assert (filled == surface).all()
    assert not filled[10:20, 10:20, 10:20].any()


@pytest.mark.parametrize("resolution", [32, 64])
def test_sphere_matches_analytic_ball(resolution):
    grid = mesh_to_voxels(trimesh.creation.icosphere(subdivisions=4), resolution)
    inside, touched = ball(resolution)
    # the surface shell is conservative: it marks the cells the surface passes through
    assert voxel_iou(grid, touched) > 0.97
    assert voxel_iou(grid, inside) > (0.88 if resolution == 32 else 0.93)
    assert (grid | touched).sum() - touched.sum() < 0.01 * touched.sum()


def test_points_to_voxels_marks_cells_of_points():
    pts = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.5, 0.5, 0.5]])
    grid = points_to_voxels(pts, 8, pad=1)
    assert grid.sum() == 3 and grid[1, 1, 1] and grid[6, 6, 6] and grid[4, 4, 4]
    dilated = points_to_voxels(pts, 8, pad=1, dilate=1)
    assert dilated.sum() == 3 * 7 and dilated[4, 4, 3]


def test_fit_to_grid_keeps_the_pad():
    pts = np.random.default_rng(0).normal(size=(500, 3)) * [3, 1, 0.5]
    g = fit_to_grid(pts, 32, pad=2)
    assert g.min() >= 2 and g.max() < 30
    assert np.isclose(np.ptp(g, axis=0).max(), 28, atol=0.01)


@pytest.mark.skipif(dataset_dir("modelnet10-off-sample") is None, reason="modelnet10-off-sample absent")
def test_lattice_voxeliser_agrees_with_trimesh_on_a_real_mesh():
    from trimesh.voxel.creation import voxelize_subdivide

    path = dataset_dir("modelnet10-off-sample") / "ModelNet10" / "bathtub" / "train" / "bathtub_0002.off"
    mesh = read_off(path)
    ours = mesh_to_voxels(mesh, 32, fill=False)
    v = fit_to_grid(mesh.vertices, 32, 1) - 0.5  # trimesh centres voxels on integers
    ref_vg = voxelize_subdivide(trimesh.Trimesh(v, mesh.faces, process=False), pitch=1.0, max_iter=32)
    idx = np.clip(np.round(ref_vg.points).astype(int), 0, 31)
    ref = np.zeros((32,) * 3, bool)
    ref[tuple(idx.T)] = True
    assert voxel_iou(ours, ref) > 0.97


def test_area_weighted_sampling():
    # a 4 x 1 x 0.01 slab: the two big faces hold ~99.5 % of the area
    slab = trimesh.creation.box(extents=(4.0, 1.0, 0.01))
    pts = sample_points(slab, 4000, seed=0)
    on_big = np.isclose(np.abs(pts[:, 2]), 0.005, atol=1e-6).mean()
    assert on_big > 0.98
    assert abs((pts[:, 0] > 0).mean() - 0.5) < 0.04
    np.testing.assert_array_equal(pts, sample_points(slab, 4000, seed=0))


def test_resample_counts_and_seed():
    pts = np.arange(30, dtype=np.float32).reshape(10, 3)
    assert resample(pts, 4, 0).shape == (4, 3)
    grown = resample(pts, 25, 0)
    assert grown.shape == (25, 3) and {tuple(p) for p in pts} <= {tuple(p) for p in grown}
    np.testing.assert_array_equal(resample(pts, 4, 1), resample(pts, 4, 1))


def test_normalisations():
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(6, 100, 3)) * [5, 2, 1] + 10
    labels = np.array([0, 0, 0, 1, 1, 1])
    sphere = to_unit_sphere(pts)
    np.testing.assert_allclose(np.linalg.norm(sphere, axis=-1).max(axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(sphere.mean(axis=1), 0, atol=1e-6)
    fit = np.array([True, True, False, True, True, False])
    out, stats = normalise(pts, labels, fit, 2, "category_minmax")
    for c in (0, 1):
        sel = out[(labels == c) & fit].reshape(-1, 3)
        np.testing.assert_allclose(sel.min(axis=0), -1, atol=1e-5)
        np.testing.assert_allclose(sel.max(axis=0), 1, atol=1e-5)
    np.testing.assert_allclose(apply_category_minmax(to_unit_sphere(pts), labels, stats), out, atol=1e-6)
    with pytest.raises(ConfigError, match="normalisation"):
        normalise(pts, labels, fit, 2, "unit_cube")
