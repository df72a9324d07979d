"""``render_scene`` writes a real, non-blank PNG of a real scene."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ebmtraj.viz import render_scene

from .ioc_helpers import real_scenes


def test_render_scene_writes_a_non_blank_png(tmp_path):
    real = real_scenes()
    sc = real["scenes"]
    H = int(sc["history"])
    raw = sc["positions_raw"][0].numpy()
    lanes = real["lanes"][sc["recordings"][int(sc["recording"][0])]]
    g = np.random.default_rng(0)
    samples = raw[0, H:][None] + g.normal(0, 0.5, (5, raw.shape[1] - H, 2)).cumsum(1) * 0.2
    path = render_scene(tmp_path / "scene.png", lanes=lanes, history=raw[0, :H], future=raw[0, H:],
                        samples=samples, min_cost=samples.mean(0), others=raw[1:3, :H],
                        others_future=raw[1:3, H:], title="test")
    img = np.asarray(Image.open(path).convert("RGB")).astype(float)
    assert img.shape[0] > 200 and img.shape[1] > 400
    assert img.std() > 10                                   # not a blank canvas
    # the predicted samples (orange) and minimum-cost path (red) are drawn
    orange = (img[..., 0] > 200) & (img[..., 1] > 100) & (img[..., 1] < 180) & (img[..., 2] < 80)
    red = (img[..., 0] > 180) & (img[..., 1] < 60) & (img[..., 2] < 60)
    assert orange.sum() > 50 and red.sum() > 50


def test_render_scene_needs_a_trajectory(tmp_path):
    with pytest.raises(ValueError, match="at least one trajectory"):
        render_scene(tmp_path / "x.png")


def test_a_narrow_road_is_framed_without_wasted_range(tmp_path):
    """A 3-lane straight road, 11.1 m wide: the view spans the trajectories along the road and
    only the road (plus 2 m) across it, and the PNG keeps that aspect."""
    from ebmtraj.data.toy import straight_road, traffic_scene
    from ebmtraj.viz import frame_limits

    sc = traffic_scene(3, seed=0)
    raw = sc["positions_raw"][0].numpy().astype(float)
    lanes = straight_road()
    path = render_scene(tmp_path / "road.png", lanes=lanes, history=raw[0, :10], future=raw[0, 10:],
                        others=raw[1:, :10], others_future=raw[1:, 10:], agent_frame=False)
    edges = [np.asarray(side.coords) for lane in lanes.lanes for side in (lane.left, lane.right)]
    lo, hi = frame_limits(raw[0], edges)
    assert hi[1] - lo[1] <= 3 * 3.7 + 2 * 2.0 + 1e-6
    img = Image.open(path)
    assert img.size[0] / img.size[1] > 3.0, img.size          # wide, like the road
