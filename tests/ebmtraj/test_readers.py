"""Readers on the real NGSIM / CommonRoad samples and on broken copies of them."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ebmcore.errors import DataError
from ebmtraj.data.commonroad import read_commonroad, recording_of
from ebmtraj.data.ngsim import (RAW_COLUMNS, read_i80_first_minute, read_ngsim_csv,
                                read_ngsim_raw, read_us101_vehicles)
from ebmtraj.data.schema import COLUMNS, FT

from .ioc_helpers import need


@pytest.fixture(scope="module")
def i80_file() -> Path:
    return next(need("ngsim-i80-first-minute").glob("*.csv"))


@pytest.fixture(scope="module")
def us101_file() -> Path:
    return need("ngsim-us101-vehicles") / "1002.csv"


# --- real samples ------------------------------------------------------------------------

def test_us101_vehicles_slice(us101_file):
    folder = us101_file.parent
    t = read_us101_vehicles(folder, vehicles=[1002, 1003])
    assert list(t.columns) == list(COLUMNS)
    assert sorted(t["vehicle_id"].unique()) == [1002, 1003]
    raw = pd.read_csv(us101_file)
    mine = t[t.vehicle_id == 1002]
    assert len(mine) == len(raw)
    # Already metres: copied as is; time from Global_Time in seconds.
    np.testing.assert_allclose(mine["x"].to_numpy(), raw["local_x(m)"].to_numpy())
    np.testing.assert_allclose(mine["t"].to_numpy(), raw["Global_Time"].to_numpy() / 1000)
    assert np.all(np.diff(mine["t"].to_numpy()) > 0)
    assert mine["lane_id"].isna().all() and mine["length"].isna().all()
    assert read_us101_vehicles(folder, vehicles=3)["vehicle_id"].nunique() == 3


def test_i80_raw_feet_to_metres(i80_file):
    t = read_i80_first_minute(i80_file)
    raw = pd.read_csv(i80_file, header=None, names=RAW_COLUMNS)
    first = raw.sort_values(["Vehicle_ID", "Global_Time"]).iloc[0]
    row = t.iloc[0]
    assert row["vehicle_id"] == first["Vehicle_ID"]
    assert row["x"] == pytest.approx(first["Local_X"] * FT)
    assert row["y"] == pytest.approx(first["Local_Y"] * FT)
    assert row["global_x"] == pytest.approx(first["Global_X"] * 0.3048)
    assert row["length"] == pytest.approx(first["v_Length"] * FT)
    assert row["ref_offset"] == pytest.approx(row["length"] / 2)
    assert row["speed_raw"] == pytest.approx(first["v_Vel"] * FT)
    assert row["lane_id"] == first["Lane_ID"]
    # 0.5 s sampling with a per-vehicle phase, all on the 0.1 s grid of Global_Time.
    steps = t.groupby("vehicle_id")["t"].diff().dropna().round(3)
    assert steps.mode().iloc[0] == 0.5
    assert np.allclose(np.round(t["t"].to_numpy() * 10), t["t"].to_numpy() * 10, atol=1e-4)
    assert t["vehicle_id"].nunique() == 77
    assert (t["x"] < 30).all()  # I-80 is ~ 25 m wide: metres, not feet


def test_peachtree_samples_report_their_defects():
    folder = need("ngsim-peachtree-sample")
    f21 = folder / "peachtree_first27s_21col.csv"
    with pytest.raises(DataError, match=r"peachtree_first27s_21col\.csv, row \d+"):
        read_ngsim_csv(f21)  # the real sample reuses ids: impossible jumps / clashes
    t = read_ngsim_csv(f21, on_bad="drop")
    report = t.attrs["report"]
    assert report.bad_rows and all(b.row >= 2 for b in report.bad_rows)
    assert not t["vehicle_id"].isna().any()
    assert any("Lane_ID" in n for n in report.notes)  # 0 / 9999 placeholders -> <NA>
    assert t["lane_id"].isna().any() and not t["lane_id"].isin([0, 9999]).any()
    t25 = read_ngsim_csv(folder / "peachtree_random5000rows_25col.csv", on_bad="drop")
    assert len(t25) + len(t25.attrs["report"].bad_rows) >= 4900
    assert t25.groupby("vehicle_id")["t"].apply(lambda s: s.is_monotonic_increasing).all()


def test_commonroad_scenario():
    folder = need("commonroad-ngsim-us101")
    t, lanes = read_commonroad(folder / "USA_US101-10_1_T-1.xml")
    assert t["recording"].iloc[0] == "USA_US101-10_1_T-1"
    assert t.attrs["group"] == "USA_US101-10"
    assert t["vehicle_id"].nunique() == 44
    assert (t["length"] > 3).all() and (t["width"] > 1).all() and (t["ref_offset"] == 0).all()
    assert len(lanes) == 6
    # Obstacles with a SetBasedPrediction (no trajectory) are skipped and reported.
    s, _ = read_commonroad(folder / "USA_US101-1_2_S-1.xml")
    assert s.empty
    reasons = {r["reason"] for r in s.attrs["report"].skipped}
    assert reasons == {"no trajectory (SetBasedPrediction)"}


def test_recording_groups():
    assert recording_of("USA_US101-10_3_T-1") == "USA_US101-10"
    assert recording_of("USA_US101-1_2_S-1") == "USA_US101-1"
    assert recording_of("oddname") == "oddname"


# --- broken copies -----------------------------------------------------------------------

def _raw_lines(i80_file, n=40):
    return i80_file.read_text().splitlines()[:n]


def _write_ws(tmp_path, lines, name="broken.txt"):
    """The I-80 sample as a whitespace .txt, like the published raw files."""
    path = tmp_path / name
    path.write_text("\n".join(" ".join(l.split(",")) for l in lines) + "\n")
    return path


def test_raw_whitespace_copy_reads(tmp_path, i80_file):
    lines = _raw_lines(i80_file)
    t = read_ngsim_raw(_write_ws(tmp_path, lines))
    assert len(t) == len(lines)


def test_truncated_raw(tmp_path, i80_file):
    lines = _raw_lines(i80_file)
    path = tmp_path / "cut.txt"
    text = "\n".join(" ".join(l.split(",")) for l in lines)
    path.write_text(text[: len(text) - 60])  # cut mid-line, no final newline
    with pytest.raises(DataError, match=r"cut\.txt, row 40.*truncated"):
        read_ngsim_raw(path)


def test_nan_in_raw(tmp_path, i80_file):
    lines = _raw_lines(i80_file)
    fields = lines[7].split(",")
    fields[4] = "NaN"
    lines[7] = ",".join(fields)
    with pytest.raises(DataError, match=r"row 8, column 'x'"):
        read_ngsim_raw(_write_ws(tmp_path, lines))


def test_wrong_column_count(tmp_path, i80_file):
    lines = [",".join(l.split(",")[:17]) for l in _raw_lines(i80_file)]
    with pytest.raises(DataError, match="row 1: expected the 18 raw NGSIM columns"):
        read_ngsim_raw(_write_ws(tmp_path, lines))


@pytest.mark.parametrize("fields", [10, 17, 19])
@pytest.mark.parametrize("commas", [False, True])
def test_a_later_row_with_the_wrong_field_count_names_file_and_row(tmp_path, i80_file, fields, commas):
    lines = _raw_lines(i80_file)
    parts = lines[11].split(",")
    lines[11] = ",".join((parts + ["1.0"])[:fields])
    path = tmp_path / "short.csv"
    if commas:
        path.write_text("\n".join(lines) + "\n")
    else:
        path = _write_ws(tmp_path, lines, "short.txt")
    with pytest.raises(DataError, match=rf"short\.(csv|txt), row 12: expected the 18 raw NGSIM "
                                        rf"columns .* found {fields} fields"):
        read_ngsim_raw(path)


def test_time_out_of_order_with_frames(tmp_path, i80_file):
    lines = _raw_lines(i80_file)
    fields = lines[10].split(",")
    fields[3] = str(int(fields[3]) - 5000)  # 5 s earlier than its Frame_ID says
    lines[10] = ",".join(fields)
    with pytest.raises(DataError, match=r"row 11, column 'Global_Time'.*not monotonic"):
        read_ngsim_raw(_write_ws(tmp_path, lines))


def test_impossible_jump(tmp_path, i80_file):
    lines = _raw_lines(i80_file)
    fields = lines[12].split(",")
    fields[5] = str(float(fields[5]) + 300.0)  # 300 ft in 0.5 s
    lines[12] = ",".join(fields)
    path = _write_ws(tmp_path, lines)
    with pytest.raises(DataError, match=r"row 13, column 'x/y': impossible jump"):
        read_ngsim_raw(path)
    t = read_ngsim_raw(path, on_bad="drop")
    assert [b.row for b in t.attrs["report"].bad_rows] == [13]
    assert len(t) == len(lines) - 1


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        read_ngsim_raw(empty)
    with pytest.raises(DataError, match="no such file"):
        read_ngsim_raw(tmp_path / "nope.txt")


def test_csv_export_missing_column(tmp_path):
    f = need("ngsim-peachtree-sample") / "peachtree_random5000rows_25col.csv"
    df = pd.read_csv(f, nrows=50).drop(columns=["Local_Y"])
    path = tmp_path / "export.csv"
    df.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"export\.csv: missing column\(s\) \['Local_Y'\]"):
        read_ngsim_csv(path)


def test_us101_vehicle_csv_broken(tmp_path, us101_file):
    text = us101_file.read_text().splitlines()
    trunc = tmp_path / "trunc" / "1002.csv"
    trunc.parent.mkdir()
    trunc.write_text("\n".join(text[:30]) + "\n" + text[30][:20])
    with pytest.raises(DataError, match=r"1002\.csv, row 31"):
        read_us101_vehicles(trunc.parent)
    nan = tmp_path / "nan" / "1002.csv"
    nan.parent.mkdir()
    fields = text[5].split(",")
    fields[5] = ""
    nan.write_text("\n".join(text[:5] + [",".join(fields)] + text[6:40]) + "\n")
    with pytest.raises(DataError, match=r"1002\.csv, row 6, column 'y'"):
        read_us101_vehicles(nan.parent)
    miss = tmp_path / "miss" / "1002.csv"
    miss.parent.mkdir()
    pd.read_csv(us101_file, nrows=20).drop(columns=["Global_Time"]).to_csv(miss, index=False)
    with pytest.raises(DataError, match=r"missing column\(s\) \['Global_Time'\]"):
        read_us101_vehicles(miss.parent)
    with pytest.raises(DataError, match="no file for vehicle"):
        read_us101_vehicles(us101_file.parent, vehicles=[999999])


def test_commonroad_broken(tmp_path):
    f = need("commonroad-ngsim-us101") / "USA_US101-10_1_T-1.xml"
    cut = tmp_path / "cut.xml"
    cut.write_bytes(f.read_bytes()[:5000])
    with pytest.raises(DataError, match="cut.xml: cannot read the CommonRoad scenario"):
        read_commonroad(cut)
