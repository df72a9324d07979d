"""Readers for the NGSIM formats; each returns the tidy table of :mod:`ebmtraj.data.schema`.

Feet become metres here, at the reader's edge, and nowhere else.

* :func:`read_ngsim_raw` -- the raw 18-column files (whitespace ``.txt`` as published; also the
  comma-separated, headerless I-80 first-minute sample, which :func:`read_i80_first_minute`
  names for clarity).
* :func:`read_ngsim_csv` -- the public CSV export with a header (25 columns; the 21-column
  Peachtree sample reads the same way).
* :func:`read_us101_vehicles` -- the per-vehicle metric CSVs (``<Vehicle_ID>.csv``, metres).

Every reader checks its rows (:func:`ebmtraj.data.schema.check_rows`): truncated lines, NaN,
missing columns, time out of order with Frame_ID and impossible jumps raise
:class:`ebmcore.errors.DataError` naming the file, row and column (or, with ``on_bad='drop'``,
are dropped and listed in ``table.attrs['report']``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from ebmcore.errors import DataError

from .schema import FT, REQUIRED_FINITE, ReadReport, check_rows, finalize, require_columns

RAW_COLUMNS = (
    "Vehicle_ID", "Frame_ID", "Total_Frames", "Global_Time", "Local_X", "Local_Y",
    "Global_X", "Global_Y", "v_Length", "v_Width", "v_Class", "v_Vel", "v_Acc", "Lane_ID",
    "Preceding", "Following", "Space_Headway", "Time_Headway",
)
# Columns the header-based export must carry; the rest are optional.
CSV_REQUIRED = ("Vehicle_ID", "Global_Time", "Local_X", "Local_Y")
US101_VEHICLE_COLUMNS = (
    "Vehicle_ID", "Frame_ID", "Total_Frames", "Global_Time", "local_x(m)", "local_y(m)",
    "v_Vel(m)", "v_Acc(m)",
)
# Lane ids that mean "no lane" in the exports (Peachtree uses 0 inside intersections, 9999 ...).
_NO_LANE = (0, 9999)


def read_ngsim_raw(path: str | Path, *, on_bad: str = "raise",
                   max_speed: float | None = None, recording: str | None = None) -> pd.DataFrame:
    """Read a raw 18-column NGSIM file (feet) into the tidy table (metres).

    The separator is whitespace unless the first line holds commas. ``recording`` defaults to
    the file's stem. Raises DataError on an empty or truncated file, a wrong column count,
    NaN, time out of order with Frame_ID, or an impossible jump (see module docstring).
    """
    path = Path(path)
    sep = "," if "," in _first_line(path) else r"\s+"
    _check_field_counts(path, sep == ",")
    raw = _read_table(path, sep=sep, header=None, names=list(RAW_COLUMNS))
    raw["row"] = np.arange(1, len(raw) + 1)
    return _from_ngsim_columns(raw, path, on_bad, max_speed, recording)


def read_i80_first_minute(path: str | Path, **kw) -> pd.DataFrame:
    """Read the I-80 first-minute sample: raw 18 columns, commas, no header, feet.

    Its positions are sampled every 0.5 s with a per-vehicle phase; call
    :func:`ebmtraj.data.cleaning.resample` (which interpolates on Global_Time) before use.
    Frame_ID is renumbered per vehicle there, so it is still ordered with time.
    """
    return read_ngsim_raw(path, **kw)


def read_ngsim_csv(path: str | Path, *, on_bad: str = "raise", max_speed: float | None = None,
                   recording: str | None = None) -> pd.DataFrame:
    """Read the public NGSIM CSV export (header, feet) into the tidy table (metres).

    Column names match case-insensitively (``v_length`` / ``v_Length``). Required:
    Vehicle_ID, Global_Time, Local_X, Local_Y; Frame_ID, Global_X/Y, v_Length, v_Width, v_Class,
    v_Vel, v_Acc and Lane_ID are used when present. Rows may come in any order (the random-row
    sample is shuffled); they are sorted by vehicle and time. ``recording`` defaults to the
    file's stem.
    """
    path = Path(path)
    raw = _read_table(path, sep=",", header=0)
    canon = {c.lower(): c for c in RAW_COLUMNS + ("Location",)}
    raw = raw.rename(columns={c: canon.get(c.strip().lower(), c.strip()) for c in raw.columns})
    require_columns(raw.columns, CSV_REQUIRED, path)
    raw["row"] = np.arange(2, len(raw) + 2)  # line 1 is the header
    return _from_ngsim_columns(raw, path, on_bad, max_speed, recording,
                               frames_meaningful="Frame_ID" in raw)


def read_us101_vehicles(folder_or_files: str | Path | Iterable[str | Path], *,
                        vehicles: int | Sequence[int] | None = None, on_bad: str = "raise",
                        max_speed: float | None = None,
                        recording: str = "us101") -> pd.DataFrame:
    """Read the per-vehicle US-101 metric CSVs (``<Vehicle_ID>.csv``, already metres).

    ``vehicles``: None for every file, an int for the first N files in sorted order, or a list
    of vehicle ids. All vehicles share time through Global_Time, so they form one recording.
    The files have no size, class or lane: those columns are NaN / <NA>.
    """
    files = _vehicle_files(folder_or_files, vehicles)
    tables, report = [], ReadReport()
    for f in files:
        raw = _read_table(f, sep=",", header=0)
        require_columns(raw.columns, US101_VEHICLE_COLUMNS, f)
        raw["row"] = np.arange(2, len(raw) + 2)
        table = pd.DataFrame({
            "recording": recording,
            "vehicle_id": _as_numeric(raw["Vehicle_ID"]),
            "t": _as_numeric(raw["Global_Time"]) / 1000.0,
            "frame": _as_numeric(raw["Frame_ID"]),
            "x": _as_numeric(raw["local_x(m)"]),
            "y": _as_numeric(raw["local_y(m)"]),
            "speed_raw": _as_numeric(raw["v_Vel(m)"]),
            "accel_raw": _as_numeric(raw["v_Acc(m)"]),
            "source": str(f),
            "row": raw["row"],
        })
        sub = ReadReport()
        table = check_rows(table, f, on_bad=on_bad, numeric=REQUIRED_FINITE + ("frame",),
                           max_speed=_max_speed(max_speed), n_lines=len(raw) + 1, report=sub)
        report.bad_rows += sub.bad_rows
        tables.append(table)
    if not tables:
        raise DataError(f"{folder_or_files}: no per-vehicle CSV files found")
    out = finalize(pd.concat(tables, ignore_index=True))
    out.attrs.update(report=report, reference_point="front_centre", frame="local",
                     sampling_s=0.1)
    return out


def _from_ngsim_columns(raw: pd.DataFrame, path: Path, on_bad: str, max_speed, recording,
                        frames_meaningful: bool = True) -> pd.DataFrame:
    """Convert NGSIM-named columns (feet) to the tidy table (metres) and check the rows."""
    def col(name, scale=1.0):
        return _as_numeric(raw[name]) * scale if name in raw else np.nan

    length = col("v_Length", FT)
    lane = _as_numeric(raw["Lane_ID"]) if "Lane_ID" in raw else pd.Series(np.nan, index=raw.index)
    report = ReadReport()
    placeholder = lane.isin(_NO_LANE)
    if placeholder.any():
        report.notes.append(f"{path}: {int(placeholder.sum())} row(s) with Lane_ID in "
                            f"{_NO_LANE} read as unknown lane")
    table = pd.DataFrame({
        "recording": recording or path.stem,
        "vehicle_id": _as_numeric(raw["Vehicle_ID"]),
        "t": _as_numeric(raw["Global_Time"]) / 1000.0,
        "frame": col("Frame_ID") if "Frame_ID" in raw else -1,
        "x": col("Local_X", FT), "y": col("Local_Y", FT),
        "global_x": col("Global_X", FT), "global_y": col("Global_Y", FT),
        "length": length, "width": col("v_Width", FT), "ref_offset": length / 2.0,
        "v_class": col("v_Class"),
        "lane_id": lane.where(~placeholder),
        "speed_raw": col("v_Vel", FT), "accel_raw": col("v_Acc", FT),
        "source": str(path), "row": raw["row"],
    })
    numeric = REQUIRED_FINITE + (("frame",) if frames_meaningful else ())
    table = check_rows(table, path, on_bad=on_bad, numeric=numeric,
                       max_speed=_max_speed(max_speed), n_lines=int(raw["row"].max()),
                       frames_meaningful=frames_meaningful, report=report)
    table["lane_id"] = table["lane_id"].round()
    out = finalize(table)
    out.attrs.update(report=report, reference_point="front_centre", frame="local")
    return out


def _max_speed(value: float | None) -> float:
    from .schema import DEFAULT_MAX_SPEED
    return DEFAULT_MAX_SPEED if value is None else float(value)


def _as_numeric(series: pd.Series) -> pd.Series:
    """Numbers, with anything unparsable as NaN (the row check then names it)."""
    return pd.to_numeric(series, errors="coerce").astype("float64")


def _first_line(path: Path) -> str:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    with open(path, "r", errors="replace") as fh:
        for line in fh:
            if line.strip():
                return line.strip()
    raise DataError(f"{path}: the file is empty")


def _check_field_counts(path: Path, commas: bool) -> None:
    """Every non-blank line of a raw file must hold the 18 raw columns; else DataError naming
    the file and the row (line number), or the truncation of an unfinished last line."""
    want = len(RAW_COLUMNS)
    with open(path, "r", errors="replace") as fh:
        for row, line in enumerate(fh, 1):
            if not line.strip():
                continue
            n = line.count(",") + 1 if commas else len(line.split())
            if n == want:
                continue
            if not line.endswith(("\n", "\r")) and n < want:
                raise DataError(f"{path}, row {row}: the last line is incomplete; the file looks truncated")
            raise DataError(f"{path}, row {row}: expected the {want} raw NGSIM columns "
                            f"{list(RAW_COLUMNS)}, found {n} fields")


def _read_table(path: Path, **kw) -> pd.DataFrame:
    """pandas.read_csv with its parser errors turned into DataError naming the file.

    ``kw['header']`` is 0 (one header line) or None (none); blank lines must not occur
    inside the data, so that data row i (0-based) is line ``i + 1 + header lines``.
    """
    if not Path(path).is_file():
        raise DataError(f"{path}: no such file")
    try:
        df = pd.read_csv(path, skip_blank_lines=True, **kw)
    except pd.errors.EmptyDataError as err:
        raise DataError(f"{path}: the file is empty") from err
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        raise DataError(f"{path}: cannot parse: {err}") from err
    if df.empty:
        raise DataError(f"{path}: the file has no data rows")
    _check_truncated_tail(path, df, header_lines=0 if kw.get("header") is None else 1)
    return df


def _check_truncated_tail(path: Path, df: pd.DataFrame, header_lines: int) -> None:
    """A file cut mid-line ends without a newline and with a short last row."""
    with open(path, "rb") as fh:
        fh.seek(0, 2)
        if fh.tell() == 0:
            return
        fh.seek(-1, 2)
        ends_cleanly = fh.read(1) in (b"\n", b"\r")
    if not ends_cleanly and df.iloc[-1].isna().any():
        line = len(df) + header_lines
        raise DataError(f"{path}, row {line}: the last line is incomplete; the file looks "
                        f"truncated")


def _vehicle_files(folder_or_files, vehicles) -> list[Path]:
    if isinstance(folder_or_files, (str, Path)):
        folder = Path(folder_or_files)
        if not folder.is_dir():
            raise DataError(f"{folder}: no such folder")
        files = sorted(folder.glob("*.csv"), key=lambda p: (len(p.stem), p.stem))
    else:
        files = [Path(f) for f in folder_or_files]
    if vehicles is None:
        return files
    if isinstance(vehicles, int):
        return files[:vehicles]
    wanted = {str(int(v)) for v in vehicles}
    picked = [f for f in files if f.stem in wanted]
    missing = wanted - {f.stem for f in picked}
    if missing:
        raise DataError(f"{folder_or_files}: no file for vehicle(s) {sorted(missing)}")
    return picked


def recorded_headways(scenes: dict, folder: Path) -> np.ndarray:
    """Recorded ``Space_Headway(m)`` (S, A, H) of every scene agent over the history frames, from
    the per-vehicle US-101 CSVs (``<Vehicle_ID>.csv``; the data readers keep no headway). Rows
    are matched on vehicle id and time (``round(Global_Time / (1000 dt))`` = the scene's frame).
    NaN where a vehicle or frame is not found; 0 in the data means no leader."""
    dt, H = float(scenes["dt"]), int(scenes["history"])
    vids = scenes["vehicle_id"].numpy()
    mask = scenes["mask"].numpy()
    k0 = np.round(scenes["t0"].numpy() / dt).astype(np.int64)
    table = {}
    for vid in np.unique(vids[mask]):
        path = folder / f"{int(vid)}.csv"
        if not path.is_file():
            continue
        df = pd.read_csv(path, usecols=["Global_Time", "Space_Headway(m)"])
        k = np.round(df["Global_Time"].to_numpy() / (1000 * dt)).astype(np.int64)
        table[int(vid)] = dict(zip(k.tolist(), df["Space_Headway(m)"].to_numpy(dtype=float).tolist()))
    out = np.full(mask.shape + (H,), np.nan)
    for s, a in zip(*np.nonzero(mask)):
        rows = table.get(int(vids[s, a]))
        if rows is not None:
            out[s, a] = [rows.get(int(k0[s]) + i, np.nan) for i in range(H)]
    return out
