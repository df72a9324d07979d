"""Headless Open3D screenshots: not blank, and the silhouettes sit where the layout puts them."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from ebm3d.viz import layout, load_target, recovery_rows, render_image, render_png, view_main
from ebm3d.viz import render as render_mod
from ebmcore.paths import data_root, dataset_dir

pytestmark = pytest.mark.skipif(not os.environ.get("DISPLAY") and shutil.which("Xvfb") is None,
                                reason="no DISPLAY and no Xvfb (Debian package xvfb) to render with")


def foreground(img: np.ndarray) -> np.ndarray:
    """Pixels that differ from the white background."""
    return np.abs(img.astype(int) - 255).max(axis=-1) > 20


def runs(mask_1d: np.ndarray) -> list[tuple[int, int]]:
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask_1d.astype(int), [0]])))
    return list(zip(edges[0::2], edges[1::2]))


def test_box_renders_as_a_centred_rectangle():
    box = trimesh.creation.box(extents=(1.0, 0.2, 0.5))
    img = render_image(box, width=400, height=300, view="front")
    assert os.environ.get("DISPLAY")  # set by us (Xvfb) or by the caller
    fg = foreground(img)
    assert 0.05 < fg.mean() < 0.6
    ys, xs = np.nonzero(fg)
    assert abs((xs.min() + xs.max()) / 2 - 200) < 6 and abs((ys.min() + ys.max()) / 2 - 150) < 6
    rect = fg[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    assert rect.mean() > 0.97  # a filled rectangle, not an outline or noise
    aspect = (xs.max() - xs.min()) / (ys.max() - ys.min())
    assert 1.8 < aspect < 2.3  # the box is twice as wide as high


def test_side_by_side_shapes_leave_a_gap_in_column_order():
    tall = trimesh.creation.box(extents=(0.4, 0.4, 1.0))
    flat = trimesh.creation.box(extents=(1.0, 0.4, 0.3))
    img = render_image([[tall, flat]], width=600, height=300, view="front")
    fg = foreground(img)
    blobs = runs(fg.any(axis=0))
    assert len(blobs) == 2, blobs
    (a0, a1), (b0, b1) = blobs
    assert b0 - a1 > 20 and a1 < 300 < b1  # a gap; the scene is centred on the pair
    heights = [np.ptp(np.nonzero(fg[:, s:e].any(axis=1))[0]) for s, e in blobs]
    assert heights[0] > 2 * heights[1]  # the tall box is on the left (column 0)
    assert (b1 - b0) > 1.5 * (a1 - a0)


def test_rows_stack_top_to_bottom_and_voxels_render():
    cube = np.zeros((16, 16, 16), np.uint8)
    cube[4:12, 4:12, 4:12] = 1
    pts = np.random.default_rng(0).uniform(-1, 1, size=(1500, 3))
    pts[:, 1] = 0  # a square sheet facing the camera
    for mode in ("mesh", "cubes"):
        img = render_image([[cube], [pts]], width=300, height=500, view="front", voxel_mode=mode)
        fg = foreground(img)
        blobs = runs(fg.any(axis=1))
        assert len(blobs) == 2, (mode, blobs)
        top = fg[blobs[0][0]:blobs[0][1]]
        ys, xs = np.nonzero(top)
        assert top[:, xs.min():xs.max() + 1].mean() > 0.95  # the solid cube: a filled square
        assert abs(np.ptp(xs) - np.ptp(ys)) <= 0.1 * np.ptp(xs)


def test_recovery_layout_colours_columns():
    g = np.zeros((16, 16, 16), np.float32)
    g[3:13, 3:13, 3:13] = 1
    rows, cols = recovery_rows([g], [g], [g])
    img = render_image(layout(rows, columns=cols), width=720, height=260, view="front")
    fg = foreground(img)
    blobs = runs(fg.any(axis=0))
    assert len(blobs) == 3
    means = [img[:, s:e][fg[:, s:e]].mean(axis=0) for s, e in blobs]
    assert np.ptp(means[0]) < 30  # original: grey
    assert means[1][0] > means[1][2] + 40  # corrupted: orange
    assert means[2][1] > means[2][0] + 20 and means[2][1] > means[2][2] + 20  # recovered: green


def test_render_png_and_view_main(tmp_path, capsys):
    batch = torch.zeros(4, 1, 16, 16, 16)
    batch[:, :, 2:14, 2:14, 2:8] = 1
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"samples": batch}, run / "samples.pt")
    out = tmp_path / "grid.png"
    assert view_main([str(run), "--png", str(out), "--view", "front"]) == 0
    assert "wrote" in capsys.readouterr().out
    img = np.asarray(Image.open(out).convert("RGB"))
    fg = foreground(img)
    assert len(runs(fg.any(axis=0))) == 2 and len(runs(fg.any(axis=1))) == 2  # a 2 x 2 grid

    torch.save({"original": batch[:2], "corrupted": batch[:2] * 0.5 + 0.1, "recovered": batch[:2]},
               tmp_path / "recovery.pt")
    rows, cols = load_target(tmp_path / "recovery.pt")
    assert cols == ["original", "corrupted", "recovered"] and len(rows) == 2
    path = render_png(layout(rows, columns=cols), tmp_path / "rec.png", view="front")
    assert len(runs(foreground(np.asarray(Image.open(path).convert("RGB"))).any(axis=0))) == 3

    assert view_main([str(tmp_path / "nothing_here.pt"), "--png", str(tmp_path / "x.png")]) == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.skipif(dataset_dir("modelnet10-off-sample") is None, reason=f"{data_root()}/modelnet10-off-sample absent")
def test_view_main_on_a_real_off_file(tmp_path):
    off = dataset_dir("modelnet10-off-sample") / "ModelNet10" / "bathtub" / "train" / "bathtub_0002.off"
    out = tmp_path / "bathtub.png"
    assert view_main([str(off), "--png", str(out), "--width", "320", "--height", "240"]) == 0
    img = np.asarray(Image.open(out).convert("RGB"))
    assert img.shape == (240, 320, 3)
    fg = foreground(img)
    assert 0.03 < fg.mean() < 0.7
    ys, xs = np.nonzero(fg)
    assert abs(xs.mean() - 160) < 40 and abs(ys.mean() - 120) < 40


def test_started_xvfb_is_reused():
    if render_mod._xvfb is None:
        pytest.skip("rendering used an existing DISPLAY, no Xvfb was started here")
    display = os.environ["DISPLAY"]
    os.environ.pop("DISPLAY")
    try:
        assert render_mod.ensure_display() == display
        assert render_mod._xvfb.poll() is None
    finally:
        os.environ["DISPLAY"] = display
