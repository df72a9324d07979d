"""Shared, cached real-data fixtures of the EBM-IOC tests (one CommonRoad NGSIM scenario).

:func:`real_scenes` prepares one shared scenario once per test process (through
``ebmtraj.data.prepare``) and returns its scenes, lane maps and cost inputs; :func:`small_cache`
splits those scenes into train / val / test files for command-line smoke runs (one recording:
the split there is not leakage-free, which a smoke run does not need).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch

from ebmcore.paths import data_root, dataset_dir

CR_DIR = data_root() / "commonroad-ngsim-us101"
SCENARIO = "USA_US101-10_1_T-1.xml"
_CACHE: dict = {}


def need(name: str) -> Path:
    """The shared data folder ``name`` under EBM_DATA; skips the test, saying so, where absent."""
    path = dataset_dir(name)
    if path is None:
        pytest.skip(f"real data folder {name} is absent under EBM_DATA")
    return path


def require_data():
    if not (CR_DIR / SCENARIO).is_file():
        pytest.skip(f"CommonRoad data not found under {CR_DIR}")


def real_scenes() -> dict:
    """{"root", "scenes", "lanes", "target", "all"} for the scenario's (train) scenes."""
    require_data()
    if _CACHE:
        return _CACHE
    from ebmcore.io import load_tensors
    from ebmtraj.cost_inputs import build_inputs
    from ebmtraj.data.lanes import LaneMap
    from ebmtraj.data.prepare import prepare

    root = Path(tempfile.mkdtemp(prefix="ebmtraj_ioc_test_"))
    out = prepare("commonroad", inputs=[CR_DIR / SCENARIO], out=root / "prepared", seed=0)
    scenes = load_tensors(out / "scenes_train.pt")
    lanes = {r: LaneMap.from_tensors(d) for r, d in load_tensors(out / "lanes.pt").items()}
    _CACHE.update(root=root, prepared=out, scenes=scenes, lanes=lanes,
                  target=build_inputs(scenes, lanes, "target"), all=build_inputs(scenes, lanes, "all"))
    return _CACHE


def small_cache() -> Path:
    """A cache folder with the scenario's scenes cut into train (60 %) / val / test files."""
    from ebmcore.io import load_tensors, save_tensors
    from ebmtraj.experiment import subset_scenes

    data = real_scenes()
    folder = data["root"] / "small_cache"
    if (folder / "scenes_test.pt").is_file():
        return folder
    sc = data["scenes"]
    n = sc["mask"].shape[0]
    idx = torch.arange(n)
    cut1, cut2 = int(0.6 * n), int(0.8 * n)
    for split, sel in (("train", idx[:cut1]), ("val", idx[cut1:cut2]), ("test", idx[cut2:])):
        save_tensors(subset_scenes(sc, sel), folder / f"scenes_{split}.pt")
    save_tensors(load_tensors(data["prepared"] / "lanes.pt"), folder / "lanes.pt")
    return folder


def us101_tracks(vehicles: int, *, lanes: bool = False):
    """Cleaned tracks of the first ``vehicles`` shared US-101 vehicles and their split by vehicle
    (seed 0): ``(tracks, split_of)``, or ``(tracks, split_of, {"us101": lane map})`` with Frenet
    columns when ``lanes``. Skips where the data folder is absent."""
    from ebmcore.paths import dataset_dir
    from ebmtraj.data.cleaning import clean
    from ebmtraj.data.lanes import LaneMap
    from ebmtraj.data.ngsim import read_us101_vehicles
    from ebmtraj.data.scenes import annotate_frenet, assign_splits

    folder = dataset_dir("ngsim-us101-vehicles")
    if folder is None:
        pytest.skip("real data folder ngsim-us101-vehicles is absent under EBM_DATA")
    tracks, _ = clean(read_us101_vehicles(folder, vehicles=vehicles))
    if not lanes:
        return tracks, assign_splits(tracks, "vehicle", seed=0)
    lane_map = LaneMap.infer_from_lateral(tracks["x"], tracks["y"])
    tracks = annotate_frenet(tracks, {"us101": lane_map})
    return tracks, assign_splits(tracks, "vehicle", seed=0), {"us101": lane_map}
