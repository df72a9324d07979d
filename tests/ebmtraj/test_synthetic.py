"""The built-in synthetic recording: highway-env traffic written as raw NGSIM, read back."""
import numpy as np
import pytest

pytest.importorskip("highway_env", reason="highway-env is not installed")

from ebmtraj.data.synthetic import write_recording  # noqa: E402
from ebmtraj.data.cleaning import clean  # noqa: E402
from ebmtraj.data.lanes import LaneMap  # noqa: E402
from ebmtraj.data.ngsim import RAW_COLUMNS, read_ngsim_raw  # noqa: E402


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    return write_recording(tmp_path_factory.mktemp("syn") / "syn.txt", seed=3, duration_s=6.0,
                           vehicles=10, lanes=4)


def test_raw_format_and_units(recording):
    first = recording.read_text().splitlines()[0].split()
    assert len(first) == len(RAW_COLUMNS)
    t = read_ngsim_raw(recording)
    assert t["vehicle_id"].nunique() == 11  # 10 vehicles + the ego, all IDM/MOBIL
    assert t.groupby("vehicle_id").size().eq(60).all()
    assert np.allclose(np.diff(np.sort(t["t"].unique())), 0.1)
    # highway-env lanes are 4 m wide: in metres lane k sits at x = 4 k - 2 (left edge at 0).
    lanes = LaneMap.infer_from_lateral(t["x"], t["y"], lane_id=t["lane_id"])
    ids = np.array([l.lane_id for l in lanes.lanes])
    centres = np.array([l.centre.coords[0][0] for l in lanes.lanes])
    assert len(ids) >= 3 and np.all(np.abs(centres - (4 * ids - 2)) < 0.3)
    assert lanes.lanes[0].width == pytest.approx(4.0, abs=0.1)
    peaks = LaneMap.infer_from_lateral(t["x"], t["y"], min_share=0.01)  # without Lane_ID
    c = np.array([l.centre.coords[0][0] for l in peaks.lanes])
    assert np.all(np.min(np.abs(c[:, None] - np.array([2, 6, 10, 14])), axis=1) < 0.3)
    assert set(t["lane_id"].dropna().unique()) <= {1, 2, 3, 4}
    assert np.allclose(t["length"], 5.0, atol=0.02) and np.allclose(t["width"], 2.0, atol=0.02)
    speed = t.groupby("vehicle_id")["speed_raw"].median()
    assert speed.between(15, 40).all()  # highway speeds in m/s, not ft/s


def test_cleaned_like_real_data(recording):
    tracks, report = clean(read_ngsim_raw(recording))
    assert report["tracks"] == 11 and not report["gaps"]
    moving = tracks["speed"] > 5
    assert np.all(np.abs(tracks["heading"][moving] - np.pi / 2) < 0.3)  # along +Local_Y


def test_seeded(tmp_path):
    a = write_recording(tmp_path / "a.txt", seed=5, duration_s=1.0, vehicles=5)
    b = write_recording(tmp_path / "b.txt", seed=5, duration_s=1.0, vehicles=5)
    c = write_recording(tmp_path / "c.txt", seed=6, duration_s=1.0, vehicles=5)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
