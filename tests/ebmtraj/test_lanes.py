"""Lane geometry from the NGSIM lane files, CommonRoad lanelets and inference; Frenet."""

import numpy as np
import pytest
import torch
from shapely.geometry import LineString

from ebmcore.errors import DataError
from ebmtraj.data.lanes import Lane, LaneMap, fit_rigid
from ebmtraj.data.schema import FT

from .ioc_helpers import need


def test_frenet_on_a_straight_lane():
    lanes = LaneMap([Lane(1, LineString([(0, 0), (100, 0)]), 3.5),
                     Lane(2, LineString([(0, -3.5), (100, -3.5)]), 3.5)])
    f = lanes.frenet(np.array([10.0, 50.0, 20.0]), np.array([0.5, -0.3, -3.0]))
    assert f["lane_id"].tolist() == [1, 1, 2]
    np.testing.assert_allclose(f["station"], [10, 50, 20])
    np.testing.assert_allclose(f["offset"], [0.5, -0.3, 0.5])  # + to the left of travel
    np.testing.assert_allclose(f["lane_heading"], 0.0, atol=1e-12)
    np.testing.assert_allclose(f["half_width"], 1.75)
    assert lanes.on_road([50, 50], [1.0, 3.0]).tolist() == [True, False]
    back = LaneMap.from_tensors(lanes.to_tensors())
    np.testing.assert_allclose(back.frenet(np.array([10.0]), np.array([0.5]))["offset"], [0.5])


def test_ngsim_lane_files_in_metres():
    folder = need("ngsim-lanes")
    lanes = LaneMap.from_ngsim_files(folder / "centerlines101.txt", folder / "boundaries101.txt")
    assert sorted(l.lane_id for l in lanes.lanes) == [1, 2, 3, 4, 5, 6]  # 6 = auxiliary
    first = (folder / "centerlines101.txt").read_text().splitlines()[5].split()
    x0 = np.asarray(lanes.lanes[0].centre.coords[0])
    np.testing.assert_allclose(x0, [float(first[0]) * FT, float(first[1]) * FT])
    widths = [l.width for l in lanes.lanes if l.lane_id <= 5]
    assert all(3.2 < w < 3.9 for w in widths)  # lanes of about 11-12 ft
    assert len(lanes.boundaries) == 12
    assert lanes.frame == "global"


def test_i80_lanes_moved_to_local_frame_match_lane_ids():
    from ebmtraj.data.ngsim import read_i80_first_minute

    t = read_i80_first_minute(next(need("ngsim-i80-first-minute").glob("*.csv")))
    folder = need("ngsim-lanes")
    r, tr, rms, kept = fit_rigid(t[["global_x", "global_y"]].to_numpy(), t[["x", "y"]].to_numpy())
    assert rms < 0.1 and kept > 0.8 * len(t)
    assert np.linalg.det(r) == pytest.approx(1.0)  # a rotation: the local frame is not mirrored
    lanes = LaneMap.from_ngsim_files(folder / "centerlines80.txt").transformed(r, tr)
    lanes = lanes.oriented_to_traffic(t["x"].to_numpy(), t["y"].to_numpy(),
                                      t["vehicle_id"].to_numpy())
    f = lanes.frenet(t["x"].to_numpy(), t["y"].to_numpy())
    main = t["lane_id"].astype(float).between(1, 6).to_numpy()
    agree = (f["lane_id"][main] == t["lane_id"].to_numpy(dtype=float)[main]).mean()
    assert agree > 0.97
    assert np.median(np.abs(f["offset"])) < 0.5
    # Travel goes along +Local_Y: lanes oriented with it have heading ~ +pi/2.
    assert abs(np.median(f["lane_heading"]) - np.pi / 2) < 0.05


def test_inferred_lanes_from_us101_lateral_positions():
    from ebmtraj.data.ngsim import read_us101_vehicles

    t = read_us101_vehicles(need("ngsim-us101-vehicles"), vehicles=60)
    lanes = LaneMap.infer_from_lateral(t["x"].to_numpy(), t["y"].to_numpy())
    assert len(lanes) == 5
    assert 3.3 < lanes.lanes[0].width < 3.9
    centres = [l.centre.coords[0][0] for l in lanes.lanes]
    assert np.all(np.diff(centres) > 3.0)
    assert lanes.on_road(t["x"].to_numpy(), t["y"].to_numpy()).mean() > 0.98
    with pytest.raises(DataError, match="too few points"):
        LaneMap.infer_from_lateral([1.0, 2.0], [0.0, 1.0])


def test_commonroad_lanelets_as_lanes():
    from ebmtraj.data.commonroad import read_commonroad

    t, lanes = read_commonroad(need("commonroad-ngsim-us101") / "USA_US101-10_1_T-1.xml")
    assert len(lanes) == 6 and all(3.0 < l.width < 4.0 for l in lanes.lanes)
    assert all(l.centre.length > 150 for l in lanes.lanes)  # successor chains merged
    f = lanes.frenet(t["x"].to_numpy(), t["y"].to_numpy())
    assert np.percentile(np.abs(f["offset"]), 90) < 1.2
    assert lanes.on_road(t["x"].to_numpy(), t["y"].to_numpy()).mean() > 0.99
    d = lanes.to_tensors()
    assert isinstance(d["centres"][0], torch.Tensor) and d["centres"][0].dtype == torch.float64


def test_frenet_matches_shapely_projection_on_real_lanelets():
    """Frenet coordinates come from :class:`Polylines`; station and offset equal shapely's
    ``line_locate_point`` / ``distance`` against the nearest centre line, on real CommonRoad
    lanes, to float rounding."""
    import shapely

    from ebmtraj.data.commonroad import read_commonroad

    t, lanes = read_commonroad(need("commonroad-ngsim-us101") / "USA_US101-10_1_T-1.xml")
    x, y = t["x"].to_numpy()[::5], t["y"].to_numpy()[::5]
    f = lanes.frenet(x, y)
    pts = shapely.points(x, y)
    dist = np.stack([shapely.distance(lane.centre, pts) for lane in lanes.lanes], 1)
    assert (f["lane_index"] == dist.argmin(1)).all()
    np.testing.assert_allclose(np.abs(f["offset"]), dist.min(1), atol=1e-9)
    station = [shapely.line_locate_point(lanes.lanes[j].centre, p) for j, p in zip(f["lane_index"], pts)]
    np.testing.assert_allclose(f["station"], station, atol=1e-6)


def test_polylines_extend_straight_past_the_ends():
    from ebmtraj.geometry import Polylines

    geo = Polylines([LineString([(0, 0), (10, 0), (10, 10)])])
    np.testing.assert_allclose(geo.interpolate(0, np.array([-2.0, 5.0, 25.0]), extend=True),
                               [[-2, 0], [5, 0], [10, 15]])
    np.testing.assert_allclose(geo.interpolate(0, np.array([-2.0, 25.0])), [[0, 0], [10, 10]])  # clipped


def test_malformed_lane_file(tmp_path):
    bad = tmp_path / "centerlines.txt"
    bad.write_text("CENTERLINES\n1\nCENTERLINE\nc1\n5\n1 2\n3 4\n")
    with pytest.raises(DataError, match="malformed lane file"):
        LaneMap.from_ngsim_files(bad)


def test_light_modules_do_not_import_pandas_or_scipy():
    import subprocess
    import sys

    code = ("import sys; import ebmtraj.data.lanes, ebmtraj.dynamics, ebmtraj.metrics; "
            "print(sorted(m for m in ('pandas', 'scipy', 'open3d', 'trimesh') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
