"""Scenes from real tracks: windows, neighbours, causal history, splits, leakage, cache."""
import json

import numpy as np
import pytest
import torch

from ebmcore.errors import DataError
from ebmtraj.data.cleaning import CleanConfig, clean, estimate_states
from ebmtraj.data.lanes import LaneMap
from ebmtraj.data.ngsim import read_us101_vehicles
from ebmtraj.data.scenes import (SPLITS, SceneConfig, SceneDataset, annotate_frenet,
                                 assign_splits, build_scenes, check_leakage)

from .ioc_helpers import need


@pytest.fixture(scope="module")
def us101_scenes():
    table = read_us101_vehicles(need("ngsim-us101-vehicles"), vehicles=40)
    tracks, _ = clean(table)
    lanes = LaneMap.infer_from_lateral(tracks["x"], tracks["y"])
    tracks = annotate_frenet(tracks, {"us101": lanes})
    split_of = assign_splits(tracks, "vehicle", seed=0)
    scenes, report = build_scenes(tracks, split_of, SceneConfig())
    return tracks, split_of, scenes, report


def test_scene_tensors(us101_scenes):
    tracks, split_of, scenes, report = us101_scenes
    s = scenes["train"]
    N = s["states"].shape[0]
    assert N == report["windows"]["train"] > 50
    assert s["states"].shape == (N, 6, 50, 6) and s["positions_raw"].shape == (N, 6, 50, 2)
    assert s["frenet"].shape == (N, 6, 50, 4) and s["lane_index"].shape == (N, 6, 50)
    m = s["mask"]
    assert m[:, 0].all() and (m.sum(1) > 1).any()  # some scenes have neighbours
    assert torch.isfinite(s["states"][m]).all()
    assert (s["states"][~m] == 0).all() and (s["vehicle_id"][~m] == -1).all()
    # Neighbours lie within the radius at the last history frame, nearest first.
    d = torch.linalg.vector_norm(s["positions_raw"][:, :, 9] - s["positions_raw"][:, :1, 9], dim=-1)
    assert (d[m] <= 30.0 + 1e-4).all()
    dn = torch.where(m[:, 1:], d[:, 1:], torch.full_like(d[:, 1:], 1e9))
    assert (dn[:, 1:] >= dn[:, :-1] - 1e-4).all()
    # Every agent is the real track over the whole window (contiguous 0.1 s frames).
    n, a = 3, 0
    tid, t0 = int(s["track_id"][n, a]), float(s["t0"][n])
    tr = tracks[tracks["track_id"] == tid].set_index("k")
    k0 = int(round(t0 / 0.1))
    np.testing.assert_allclose(s["positions_raw"][n, a, :, 0].numpy(),
                               tr.loc[k0:k0 + 49, "x_raw"].to_numpy(), atol=1e-4)
    np.testing.assert_allclose(s["states"][n, a, 10:, 0].numpy(),
                               tr.loc[k0 + 10:k0 + 49, "x"].to_numpy(), atol=1e-4)
    assert (s["lane_index"][m] >= 0).all() and s["size_known"].sum() == 0


def test_history_states_use_the_history_only(us101_scenes):
    _, _, scenes, _ = us101_scenes
    s = scenes["train"]
    raw = s["positions_raw"][:, 0, :10].double().numpy()
    cfg = SceneConfig()
    fast = estimate_states(raw[..., 0], raw[..., 1], CleanConfig(), window=cfg.history_window,
                           polyorder=cfg.history_polyorder)
    slow = estimate_states(raw[..., 0], raw[..., 1], CleanConfig(),
                           window=cfg.history_accel_window, polyorder=cfg.history_accel_polyorder)
    # The history states are functions of the history's raw positions alone (no smoothing
    # window reaching into the future).
    np.testing.assert_allclose(s["states"][:, 0, :10, 0].numpy(), fast["x"], atol=1e-3)
    np.testing.assert_allclose(s["states"][:, 0, :10, 2].numpy(), fast["speed"], atol=1e-3)
    np.testing.assert_allclose(s["states"][:, 0, :10, 4].numpy(), slow["accel"], atol=1e-3)
    # Headings of history and future continue each other (no jump of a whole turn).
    assert (s["states"][:, 0, 10, 3] - s["states"][:, 0, 9, 3]).abs().max() < 1.0


def test_splits_and_leakage(us101_scenes):
    _, split_of, scenes, _ = us101_scenes
    for split in SPLITS:
        s = scenes[split]
        for vid in s["vehicle_id"][s["mask"]].unique().tolist():
            assert split_of[("us101", vid)] == split  # neighbours come from the same split
    report = check_leakage(scenes)
    assert all(v == 0 for v in report["shared_vehicles"].values())
    # A copied trajectory under a new id is caught ...
    bad = {k: dict(v) for k, v in scenes.items()}
    test = bad["test"]
    train = bad["train"]
    for key in ("states", "mask", "vehicle_id", "recording", "t0"):
        test[key] = torch.cat([test[key], train[key][:1]])
    test["vehicle_id"] = test["vehicle_id"].clone()
    test["vehicle_id"][-1] = torch.where(test["mask"][-1], 999999, -1)
    with pytest.raises(DataError, match="repeat a trajectory of (train|test)"):
        check_leakage(bad)
    # ... and so is a vehicle in two splits.
    test["vehicle_id"][-1] = train["vehicle_id"][0]
    with pytest.raises(DataError, match="vehicle\\(s\\) in both"):
        check_leakage(bad)


def test_commonroad_duplicate_scenarios(tmp_path):
    folder = need("commonroad-ngsim-us101")
    files = [folder / "USA_US101-10_1_T-1.xml", folder / "USA_US101-10_3_T-1.xml"]
    from ebmtraj.data.commonroad import read_commonroad
    import pandas as pd

    tables = [read_commonroad(f)[0] for f in files]
    tracks, _ = clean(pd.concat(tables, ignore_index=True))
    naive = {(r, v): ("train" if r.endswith("10_1_T-1") else "test")
             for r, v in tracks.groupby(["recording", "vehicle_id"]).groups}
    scenes, _ = build_scenes(tracks, naive)
    with pytest.raises(DataError, match="repeat a trajectory"):
        check_leakage(scenes)  # the two scenarios hold the same traffic
    from ebmtraj.data.prepare import prepare

    out = prepare("commonroad", inputs=files, out=tmp_path / "cr")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["duplicate_tracks"]["count"] == 44
    assert manifest["split"]["by"] == "recording"


def test_prepare_cache_and_dataset(tmp_path):
    need("ngsim-us101-vehicles")
    from data_prep.ngsim import main

    out = tmp_path / "us101"
    assert main(["prepare", "us101-vehicles", "--limit", "30", "--out", str(out),
                 "--seed", "1"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["cleaning"]["tracks"] == 30
    assert manifest["lanes"]["inferred"]["recordings"] == ["us101"]
    assert set(manifest["leakage"]) == {"shared_vehicles", "duplicated_windows"}
    ds = SceneDataset(out, "train")
    item = ds[0]
    assert item["states"].shape == (6, 50, 6) and item["mask"][0]
    assert len(ds.lane_map(0)) == 5
    with pytest.raises(DataError, match="no prepared scenes"):
        SceneDataset(tmp_path / "nothing", "train")
    assert main(["prepare", "raw", "--out", str(tmp_path / "x")]) == 2  # no input: clear error
