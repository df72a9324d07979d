"""Cleaning and state estimation on real tracks: alignment, gaps, smoothing tolerance."""

import numpy as np
import pandas as pd
import pytest

from ebmcore.errors import ConfigError
from ebmtraj.data.cleaning import CleanConfig, clean, estimate_states
from ebmtraj.data.ngsim import read_i80_first_minute, read_us101_vehicles

from .ioc_helpers import need

# Smoothing tolerance on real US-101 tracks (Savitzky-Golay, 21 frames, order 3): deviation of
# the smoothed from the raw positions. Above 1 m only at glitches of the raw track (speed
# jumping by >10 m/s within a second).
TOL_RMS, TOL_P99, TOL_MAX = 0.10, 0.30, 2.5


@pytest.fixture(scope="module")
def us101():
    return read_us101_vehicles(need("ngsim-us101-vehicles"), vehicles=12)


def test_smoothing_stays_within_tolerance(us101):
    tracks, report = clean(us101)
    dev = np.hypot(tracks["x"] - tracks["x_raw"], tracks["y"] - tracks["y_raw"]).to_numpy()
    assert report["smoothing_dev_rms"] < TOL_RMS
    assert np.percentile(dev, 99) < TOL_P99
    assert dev.max() < TOL_MAX
    assert report["tracks"] == 12 and report["duplicates_dropped"] == 0


def test_derived_states_are_consistent(us101):
    tracks, _ = clean(us101)
    for _, tr in tracks.groupby("track_id"):
        dt = 0.1
        step = np.hypot(np.diff(tr["x"]), np.diff(tr["y"])) / dt
        mid = (tr["speed"].to_numpy()[1:] + tr["speed"].to_numpy()[:-1]) / 2
        assert np.sqrt(np.mean((step - mid) ** 2)) < 0.2  # speed matches the smoothed path
        moving = tr["speed"].to_numpy() > 3
        # Heading: NGSIM's local frame has travel along +Local_Y, so about +pi/2.
        assert np.all(np.abs(tr["heading"].to_numpy()[moving] - np.pi / 2) < 0.3)
        assert np.abs(tr["steering"]).max() <= 0.5
        # Smoothed accelerations are plausible (raw v_Acc saturates at +-3.4 m/s^2 with noise).
        assert np.percentile(np.abs(tr["accel"]), 99) < 4.0
    # The raw speed column agrees with the derived speed to within its noise.
    merged = tracks.merge(us101, on=["vehicle_id", "row"], suffixes=("", "_r"))
    assert np.sqrt(np.mean((merged["speed"] - merged["speed_raw"]) ** 2)) < 0.5


def test_gap_splits_and_short_holes_fill(us101):
    veh = us101[us101["vehicle_id"] == us101["vehicle_id"].iloc[0]]
    # A 2-frame hole is filled; a 3 s hole splits the track and is reported.
    holes = veh.drop(veh.index[[100, 101]]).drop(veh.index[200:230])
    table = pd.concat([holes, holes.iloc[[5]]])  # plus an exact duplicate row
    tracks, report = clean(table)
    assert report["duplicates_dropped"] == 1
    assert report["filled_frames"] == 2
    assert len(report["gaps"]) == 1
    gap = report["gaps"][0]
    assert gap["missing_s"] == pytest.approx(3.0, abs=1e-6) and gap["source"].endswith(".csv")
    assert tracks["track_id"].nunique() == 2
    for _, tr in tracks.groupby("track_id"):
        assert np.all(np.diff(tr["k"]) == 1)  # contiguous on the 0.1 s grid


def test_i80_resampled_on_global_time():
    raw = read_i80_first_minute(next(need("ngsim-i80-first-minute").glob("*.csv")))
    tracks, report = clean(raw)
    steps = tracks.groupby("track_id")["t"].diff().dropna().round(6).unique()
    assert steps.tolist() == [0.1]
    # Original 0.5 s samples are kept exactly; the frames between are interpolated.
    orig = tracks[~tracks["interpolated"]]
    raw = raw.assign(k=np.round(raw["t"] / 0.1).astype("int64"))
    m = orig.merge(raw, on=["vehicle_id", "k"], suffixes=("", "_r"))
    assert len(m) > 0.95 * len(raw)
    np.testing.assert_allclose(m["x_raw"], m["x_r"], atol=1e-9)
    assert tracks["interpolated"].mean() == pytest.approx(0.8, abs=0.02)
    # Vehicles of one time share the grid: the same k means the same Global_Time.
    assert np.allclose(tracks["t"], tracks["k"] * 0.1)


def test_window_estimate_is_causal():
    rng = np.random.default_rng(0)
    t = np.arange(10) * 0.1
    x = np.stack([5 + 0.01 * rng.standard_normal(10), 20 * t + 0.01 * rng.standard_normal(10)])
    e = estimate_states(x[0], x[1], CleanConfig(), window=9, polyorder=2)
    assert e["speed"][-1] == pytest.approx(20.0, abs=0.5)
    assert e["heading"][-1] == pytest.approx(np.pi / 2, abs=0.01)


def test_bad_config():
    with pytest.raises(ConfigError, match="window must be odd"):
        CleanConfig(window=20)
    with pytest.raises(ConfigError, match="min_length"):
        CleanConfig(window=31, min_length=25)
