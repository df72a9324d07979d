"""The tidy trajectory table every reader returns, and the row checks they share.

One row per vehicle per sample. Columns (units inside the suite: metres, seconds, radians):

==============  =========  ==================================================================
column          dtype      meaning
==============  =========  ==================================================================
recording       str        the recording the row belongs to (vehicles of one recording share
                           time); NGSIM: the file stem, CommonRoad: the scenario's map group
vehicle_id      int64      the source's vehicle / obstacle id (unique within a recording)
t               float64    time [s]; NGSIM: ``Global_Time / 1000``, CommonRoad:
                           ``time_step * dt``
frame           int64      the source's frame number (NGSIM ``Frame_ID``, CommonRoad time step);
                           informational only, Frame_ID restarts per NGSIM file
x, y            float64    position [m] in the recording's local frame. NGSIM: ``Local_X``
                           (lateral, to the right of travel, from the left road edge) and
                           ``Local_Y`` (longitudinal), so forward travel has heading ~ +pi/2;
                           CommonRoad: the scenario's map frame
global_x,       float64    NGSIM ``Global_X`` / ``Global_Y`` (CA State Plane) in metres; NaN
global_y                   where the source has none
length, width   float64    vehicle footprint [m]; NaN where unknown
ref_offset      float64    distance [m] from the recorded point back to the footprint centre,
                           along the heading: NGSIM records the front-bumper centre
                           (``length / 2``), CommonRoad the centre (0)
v_class         Int64      1 motorcycle, 2 car, 3 truck; <NA> where unknown
lane_id         Int64      the source's lane id; <NA> where unknown (also for Peachtree's
                           0 / 9999 placeholders)
speed_raw,      float64    the source's own speed [m/s] and acceleration [m/s^2] (noisy in
accel_raw                  NGSIM); NaN where absent. Cleaning re-derives both from positions.
source          str        the file the row came from
row             int64      1-based line number of the row in ``source`` (CommonRoad: the
                           state's index in the obstacle's trajectory, 0 = initial state)
==============  =========  ==================================================================
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ebmcore.errors import DataError

from .units import FT  # noqa: F401  (re-exported: readers import it from here)

COLUMNS = (
    "recording", "vehicle_id", "t", "frame", "x", "y", "global_x", "global_y",
    "length", "width", "ref_offset", "v_class", "lane_id", "speed_raw", "accel_raw",
    "source", "row",
)
# Columns that must be finite in every row a reader returns.
REQUIRED_FINITE = ("vehicle_id", "t", "x", "y")

DEFAULT_MAX_SPEED = 60.0  # m/s; a step implying more than this is an impossible jump
JUMP_CHECK_MAX_DT = 1.0  # s; steps over longer gaps are gaps (reported by cleaning), not jumps


@dataclass
class BadRow:
    """One row a check rejected: where it is and why."""

    source: str
    row: int
    column: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}, row {self.row}, column {self.column!r}: {self.reason}"


@dataclass
class ReadReport:
    """What a reader dropped or could not use; kept in ``table.attrs['report']``."""

    bad_rows: list[BadRow] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "bad_rows": [vars(b) for b in self.bad_rows],
            "skipped": list(self.skipped),
            "notes": list(self.notes),
        }


def empty_table() -> pd.DataFrame:
    """A zero-row table with the schema's columns and dtypes."""
    return finalize(pd.DataFrame({c: [] for c in COLUMNS}))


def finalize(df: pd.DataFrame) -> pd.DataFrame:
    """Fill absent optional columns, cast to the schema's dtypes, order the columns."""
    n = len(df)
    defaults = {
        "frame": -1, "global_x": np.nan, "global_y": np.nan, "length": np.nan,
        "width": np.nan, "ref_offset": 0.0, "v_class": pd.NA, "lane_id": pd.NA,
        "speed_raw": np.nan, "accel_raw": np.nan,
    }
    for col, val in defaults.items():
        if col not in df:
            df[col] = [val] * n
    out = pd.DataFrame({
        "recording": df["recording"].astype(str),
        "vehicle_id": df["vehicle_id"].astype("int64"),
        "t": df["t"].astype("float64"),
        "frame": df["frame"].astype("int64"),
        **{c: df[c].astype("float64") for c in ("x", "y", "global_x", "global_y", "length",
                                                "width", "ref_offset")},
        "v_class": df["v_class"].astype("Int64"),
        "lane_id": df["lane_id"].astype("Int64"),
        "speed_raw": df["speed_raw"].astype("float64"),
        "accel_raw": df["accel_raw"].astype("float64"),
        "source": df["source"].astype(str),
        "row": df["row"].astype("int64"),
    })
    out.attrs.update(df.attrs)
    return out.reset_index(drop=True)


def require_columns(found, expected, path: str | Path) -> None:
    """Raise DataError naming the file and every expected column it lacks."""
    missing = [c for c in expected if c not in set(found)]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; found {list(found)}")


def check_rows(df: pd.DataFrame, path: str | Path, *, on_bad: str = "raise",
               numeric: tuple[str, ...] = (), max_speed: float = DEFAULT_MAX_SPEED,
               n_lines: int | None = None, frames_meaningful: bool = True,
               report: ReadReport | None = None) -> pd.DataFrame:
    """Check a reader's table row by row; sort it by (vehicle_id, t).

    Checks, each naming the file, row and column:

    * NaN / non-numeric values in ``numeric`` columns (a short last line means a truncated file);
    * time that disagrees with the frame order within a vehicle (``frames_meaningful``): after
      sorting by time, ``frame`` must increase too;
    * two rows of one vehicle at the same time with different positions (identical duplicates
      are left for cleaning, which drops and reports them);
    * impossible jumps: a step of at most ``JUMP_CHECK_MAX_DT`` seconds whose displacement over
      its time step exceeds ``max_speed`` m/s.

    ``on_bad='raise'`` raises DataError at the first bad row (and says how many there are);
    ``on_bad='drop'`` drops them and records each in ``report.bad_rows``.
    """
    if on_bad not in ("raise", "drop"):
        raise ValueError(f"on_bad must be 'raise' or 'drop', got {on_bad!r}")
    bad: list[BadRow] = []
    for col in numeric:
        idx = np.flatnonzero(~np.isfinite(df[col].to_numpy(dtype="float64", na_value=np.nan)))
        for i in idx:
            row = int(df["row"].iat[i])
            why = "missing or not a number"
            if n_lines is not None and row == n_lines:
                why += " in the last line: the file looks truncated"
            bad.append(BadRow(str(path), row, col, why))
    if bad:
        drop = {b.row for b in bad}
        df = df[~df["row"].isin(drop)]
    df = df.sort_values(["vehicle_id", "t", "row"], kind="stable").reset_index(drop=True)
    bad += _time_and_jump_checks(df, path, max_speed, frames_meaningful)
    if bad:
        if on_bad == "raise":
            first = min(bad, key=lambda b: b.row)
            more = f" ({len(bad) - 1} more bad row(s))" if len(bad) > 1 else ""
            raise DataError(f"{first}{more}")
        drop = {b.row for b in bad}
        df = df[~df["row"].isin(drop)].reset_index(drop=True)
        if report is not None:
            report.bad_rows.extend(sorted(bad, key=lambda b: b.row))
    return df


def _time_and_jump_checks(df: pd.DataFrame, path, max_speed: float,
                          frames_meaningful: bool) -> list[BadRow]:
    if len(df) < 2:
        return []
    vid = df["vehicle_id"].to_numpy().astype("int64")
    same = vid[1:] == vid[:-1]
    t = df["t"].to_numpy()
    dt = np.diff(t)
    rows = df["row"].to_numpy()
    x, y = df["x"].to_numpy(), df["y"].to_numpy()
    step = np.hypot(np.diff(x), np.diff(y))
    bad: list[BadRow] = []
    if frames_meaningful:
        fr = df["frame"].to_numpy()
        back = same & (dt > 0) & (np.diff(fr) <= 0)
        for i in np.flatnonzero(back):
            later = max(rows[i], rows[i + 1])
            bad.append(BadRow(str(path), int(later), "Global_Time",
                              f"time is not monotonic with Frame_ID for vehicle {vid[i]} "
                              f"(rows {rows[i]} and {rows[i + 1]})"))
    clash = same & (dt == 0) & (step > 1e-6)
    for i in np.flatnonzero(clash):
        bad.append(BadRow(str(path), int(rows[i + 1]), "Global_Time",
                          f"vehicle {vid[i]} has two different positions at t={t[i]:.3f} s "
                          f"(rows {rows[i]} and {rows[i + 1]})"))
    with np.errstate(divide="ignore", invalid="ignore"):
        speed = np.where(dt > 0, step / np.where(dt > 0, dt, 1.0), 0.0)
    # Across a longer time gap a new track segment starts (cleaning splits there, and NGSIM
    # reuses ids), so only consecutive samples are checked for jumps.
    jump = same & (dt <= JUMP_CHECK_MAX_DT) & (speed > max_speed)
    # A lone outlier jumps in and back out: blame only the row in the middle.
    jump[1:] &= ~jump[:-1]
    for i in np.flatnonzero(jump):
        bad.append(BadRow(str(path), int(rows[i + 1]), "x/y",
                          f"impossible jump of {step[i]:.1f} m in {dt[i]:.2f} s "
                          f"({speed[i]:.0f} m/s > {max_speed:g}) for vehicle {vid[i]}"))
    return bad
