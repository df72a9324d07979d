"""Headways derived from complete traffic: the leader in lane, causality, the scene tensor, and
the real CommonRoad scenes (where a scene's own neighbour slots hold few leaders)."""
import numpy as np
import pandas as pd
import pytest
import torch

from ebmtraj.data.headways import causal_heading, derive_headways, headways_of_positions
from ebmtraj.data.scenes import SceneConfig, build_scenes

from .ioc_helpers import need


def road(angle: float = 0.0, frames: int = 6) -> pd.DataFrame:
    """Four vehicles at 10 m/s along a straight road at ``angle``: 1 at 0 m, 2 at 20 m in its
    lane, 3 at 10 m one lane to the left (3.7 m), 4 at 150 m in lane (beyond 120 m from 1)."""
    rows = []
    c, s = np.cos(angle), np.sin(angle)
    for tid, (lon0, lat) in {1: (0.0, 0.0), 2: (20.0, 0.0), 3: (10.0, 3.7), 4: (150.0, 0.0)}.items():
        for k in range(frames):
            lon = lon0 + 1.0 * k
            rows.append({"recording": "r", "track_id": tid, "vehicle_id": tid, "k": k,
                         "x_raw": 5.0 + c * lon - s * lat, "y_raw": -3.0 + s * lon + c * lat})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("angle", [0.0, 2.0])
def test_the_leader_is_the_nearest_vehicle_ahead_in_lane(angle):
    t = road(angle)
    h = derive_headways(t)
    by = {tid: h[t["track_id"].to_numpy() == tid] for tid in (1, 2, 3, 4)}
    assert np.isnan(by[1][:2]).all()                 # no heading before two frames of motion
    np.testing.assert_allclose(by[1][2:], 20.0, atol=1e-9)   # not 3 (other lane), not 4 (farther)
    np.testing.assert_allclose(by[2][2:], 0.0)       # 4 is 130 m ahead: beyond max_gap
    np.testing.assert_allclose(by[3][2:], 0.0)       # nobody in its lane
    np.testing.assert_allclose(derive_headways(t, max_gap=200.0)[t["track_id"].to_numpy() == 2][2:], 130.0,
                               atol=1e-9)


def test_a_headway_uses_nothing_after_its_frame():
    t = road(0.3, frames=10)
    later = t.copy()
    moved = (later["k"] >= 6) & later["track_id"].isin([1, 2])
    later.loc[moved, "y_raw"] += np.linspace(0.5, 4.0, moved.sum())   # both swerve from frame 6 on
    early = t["k"].to_numpy() < 6
    np.testing.assert_array_equal(derive_headways(t)[early], derive_headways(later)[early])
    np.testing.assert_array_equal(causal_heading(t)[early], causal_heading(later)[early])
    assert not np.array_equal(derive_headways(t)[~early], derive_headways(later)[~early])


def test_scenes_carry_the_history_frames_of_the_headway_column():
    frames = 60
    t = road(0.0, frames)
    for col, val in (("x", t["x_raw"]), ("y", t["y_raw"]), ("speed", 10.0), ("heading", 0.0),
                     ("accel", 0.0), ("steering", 0.0), ("length", 4.5), ("width", 1.8), ("ref_offset", 0.0)):
        t[col] = val
    t["headway"] = derive_headways(t)
    cfg = SceneConfig(history=10, future=40, stride=10)
    scenes, _ = build_scenes(t, {("r", v): "train" for v in (1, 2, 3, 4)}, cfg)
    tr = scenes["train"]
    assert tr["headway"].shape == tr["mask"].shape + (10,)
    first = tr["track_id"][:, 0] == 1
    assert first.any()
    hw = tr["headway"][first][:, 0].numpy()          # (windows of track 1, H)
    np.testing.assert_allclose(hw[:, 2:], 20.0, atol=1e-5)
    assert np.isnan(hw[0, :2]).all()                 # the window at frame 0: no heading yet
    without, _ = build_scenes(t.drop(columns="headway"), {("r", v): "train" for v in (1, 2, 3, 4)}, cfg)
    assert "headway" not in without["train"]


def test_commonroad_scenes_get_their_leaders_back(tmp_path):
    """On a real CommonRoad scenario most targets follow a vehicle, which the scene's neighbour
    slots (present through the whole 5 s window, within 30 m) rarely hold."""
    from ebmtraj.data.prepare import prepare

    out = prepare("commonroad", inputs=[need("commonroad-ngsim-us101") / "USA_US101-10_1_T-1.xml"],
                  out=tmp_path / "cr")
    import json

    from ebmcore.io import load_tensors

    assert json.loads((out / "manifest.json").read_text())["headways"]["rows_with_leader"] > 0.7

    lead_share, slot_share = [], []
    for split in ("train", "val", "test"):
        sc = load_tensors(out / f"scenes_{split}.pt")
        if sc["mask"].shape[0] == 0:
            continue
        hw = sc["headway"][:, 0, -1].numpy()
        lead_share.append(np.nanmean(hw > 0))
        # a scene neighbour in the target's lane ahead at the last history frame
        H = int(sc["history"])
        rel = sc["positions_raw"][:, 1:, H - 1] - sc["positions_raw"][:, :1, H - 1]
        head = sc["states"][:, 0, H - 1, 3]
        lon = rel[..., 0] * head.cos()[:, None] + rel[..., 1] * head.sin()[:, None]
        lat = -rel[..., 0] * head.sin()[:, None] + rel[..., 1] * head.cos()[:, None]
        slot = (sc["mask"][:, 1:] & (lon > 0) & (lat.abs() < 1.8)).any(1)
        slot_share.append(float(slot.float().mean()))
    assert min(lead_share) > 0.8
    assert max(slot_share) < 0.5


def test_headways_of_a_position_array_match_the_table():
    t = road(0.7, frames=8)
    xy = np.full((4, 9, 2), np.nan)                   # one frame more, where nobody is present
    xy[t["track_id"].to_numpy() - 1, t["k"].to_numpy()] = t[["x_raw", "y_raw"]].to_numpy()
    out = headways_of_positions(xy)
    np.testing.assert_array_equal(out[t["track_id"].to_numpy() - 1, t["k"].to_numpy()], derive_headways(t))
    assert np.isnan(out[:, 8]).all()


def test_the_heading_is_not_taken_across_a_gap_in_the_frames():
    """A track absent at frame 4 that reappears 1 m to the side: frames 5 and 6 hold the heading
    from before the gap instead of the direction of the jump (rows 2 apart span 3 frames there)."""
    k = np.array([0, 1, 2, 3, 5, 6, 7])
    t = pd.DataFrame({"recording": "r", "track_id": 1, "k": k, "x_raw": 1.0 * k,
                      "y_raw": np.where(k >= 5, 1.0, 0.0)})
    head = causal_heading(t)
    np.testing.assert_allclose(head[2:6], 0.0, atol=1e-12)   # frames 2, 3 (lag 2), then held at 5, 6
    assert abs(head[6] - np.arctan2(0.0, 2.0)) < 1e-12       # frame 7 from frame 5: along x again


def test_a_cache_without_headways_is_a_one_line_error_naming_it():
    from ebmcore.errors import DataError
    from ebmtraj.experiment import cached_headways
    with pytest.raises(DataError, match=r"^cache/x: .*headways.*ebmtraj prepare"):
        cached_headways({"mask": torch.ones(2, 3, dtype=torch.bool)}, "cache/x")
    hw = torch.full((2, 3, 10), 4.0)
    assert cached_headways({"headway": hw}, "cache/x").dtype == np.float64
