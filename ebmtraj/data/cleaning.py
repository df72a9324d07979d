"""Cleaning and state estimation: a reader's table -> smoothed 10 Hz tracks with full states.

:func:`clean` does, per vehicle (in its recording):

1. drop exact duplicate samples (reported);
2. align on time: each sample's grid index ``k = round(t / dt)``; NGSIM's Frame_ID restarts per
   file, so time (from Global_Time) is the key, never the frame;
3. split where samples are missing for longer than ``max_fill`` frames (a reported gap; NGSIM
   also reuses ids, which shows up the same way); shorter holes are interpolated;
4. resample each segment onto the ``dt`` grid by cubic interpolation in time (the identity for
   10 Hz data without holes; it interpolates the 2 Hz I-80 sample with its per-vehicle phase);
5. drop segments shorter than ``min_length`` frames (reported);
6. smooth x, y with a Savitzky-Golay filter (``window`` frames, ``polyorder``) and derive from
   the same local polynomials the velocity and acceleration vectors;
7. derive the state: speed = |v|; heading = atan2(v_y, v_x), held where speed is below
   ``min_speed_heading`` and unwrapped along the track (continuous, radians); acceleration =
   d speed / dt (tangential, from the fitted polynomials); steering = atan(wheelbase *
   curvature) of the kinematic bicycle, with curvature = (v_x a_y - v_y a_x) / speed^3, held
   below ``min_speed_steering`` and clipped to +-``max_steering``.

Output columns: recording, vehicle_id, track_id (unique per segment), k, t (= k * dt), x, y
(smoothed) [m], x_raw, y_raw (before smoothing) [m], speed [m/s], heading [rad], accel [m/s^2],
steering [rad], interpolated (bool), and the reader's length, width, ref_offset, v_class,
lane_id, global_x, global_y, source, row (of the nearest original sample).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy.interpolate import CubicSpline
from scipy.signal import savgol_filter

from ebmcore.errors import ConfigError

STATE_COLUMNS = ("x", "y", "speed", "heading", "accel", "steering")
_CARRIED = ("length", "width", "ref_offset", "v_class", "lane_id", "source", "row")


@dataclass
class CleanConfig:
    """Settings of :func:`clean`; lengths in frames of ``dt`` seconds."""

    dt: float = 0.1
    window: int = 21
    polyorder: int = 3
    max_fill: int = 3
    min_length: int = 25
    wheelbase: float = 2.7
    min_speed_heading: float = 1.0
    min_speed_steering: float = 2.0
    max_steering: float = 0.5

    def __post_init__(self):
        if self.dt <= 0:
            raise ConfigError(f"dt must be positive, got {self.dt}")
        if self.window % 2 == 0 or self.window <= self.polyorder + 1:
            raise ConfigError(f"window must be odd and > polyorder + 1, got window="
                              f"{self.window}, polyorder={self.polyorder}")
        if self.min_length < self.window:
            raise ConfigError(f"min_length ({self.min_length}) must be >= window "
                              f"({self.window})")


def clean(table: pd.DataFrame, config: CleanConfig | None = None) -> tuple[pd.DataFrame, dict]:
    """Clean a reader's tidy table into smoothed tracks on the ``dt`` grid.

    Returns (tracks, report): the tracks table described in the module docstring, sorted by
    (track_id, k); the report lists dropped duplicates, gaps, filled frames, short segments
    dropped, and the smoothing's deviation from the raw positions (rms and max, metres).
    """
    cfg = config or CleanConfig()
    report = {"config": asdict(cfg), "duplicates_dropped": 0, "gaps": [], "filled_frames": 0,
              "short_segments": [], "tracks": 0, "rows_in": int(len(table))}
    df = table.sort_values(["recording", "vehicle_id", "t"], kind="stable")
    dup = df.duplicated(["recording", "vehicle_id", "t", "x", "y"])
    report["duplicates_dropped"] = int(dup.sum())
    df = df[~dup].reset_index(drop=True)
    pieces, next_id = [], 0
    for (rec, vid), veh in df.groupby(["recording", "vehicle_id"], sort=True):
        for seg in _segments(veh, cfg, report):
            if len(seg["k"]) < cfg.min_length:
                report["short_segments"].append({
                    "recording": rec, "vehicle_id": int(vid), "t0": float(seg["k"][0] * cfg.dt),
                    "frames": int(len(seg["k"])), "source": seg["source"][0]})
                continue
            seg.update(_estimate_states(seg["x_raw"], seg["y_raw"], cfg))
            seg.update(recording=rec, vehicle_id=int(vid), track_id=next_id)
            next_id += 1
            pieces.append(pd.DataFrame(seg))
    out = pd.concat(pieces, ignore_index=True) if pieces else _empty_tracks()
    out = _fill_headings(out, cfg)
    out["t"] = out["k"] * cfg.dt
    dev = np.hypot(out["x"] - out["x_raw"], out["y"] - out["y_raw"]).to_numpy()
    orig = ~out["interpolated"].to_numpy(dtype=bool)
    report.update(tracks=next_id, rows_out=int(len(out)),
                  smoothing_dev_rms=float(np.sqrt(np.mean(dev[orig] ** 2))) if orig.any() else 0.0,
                  smoothing_dev_max=float(dev[orig].max()) if orig.any() else 0.0)
    cols = ["recording", "vehicle_id", "track_id", "k", "t", *STATE_COLUMNS, "x_raw", "y_raw",
            "global_x", "global_y", "interpolated", *_CARRIED]
    return out[cols], report


def _segments(veh: pd.DataFrame, cfg: CleanConfig, report: dict):
    """Split one vehicle at long holes; yield each piece resampled on the dt grid."""
    t = veh["t"].to_numpy()
    native = np.median(np.diff(t)) if len(t) > 1 else cfg.dt
    # Split where more than max_fill frames are missing (at the native sampling, a hole is
    # one native step more than usual).
    max_step = max(native * 1.5, (cfg.max_fill + 1) * cfg.dt + 1e-6)
    cuts = np.flatnonzero(np.diff(t) > max_step) + 1
    for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(t)]):
        if b < len(t):
            report["gaps"].append({
                "recording": str(veh["recording"].iat[0]),
                "vehicle_id": int(veh["vehicle_id"].iat[0]), "from_t": float(t[b - 1]),
                "to_t": float(t[b]), "missing_s": float(t[b] - t[b - 1] - native),
                "source": str(veh["source"].iat[b]), "row": int(veh["row"].iat[b])})
        yield _resample(veh.iloc[a:b], cfg, report)


def _resample(part: pd.DataFrame, cfg: CleanConfig, report: dict) -> dict:
    t = part["t"].to_numpy()
    k = np.arange(int(np.ceil(t[0] / cfg.dt - 1e-6)), int(np.floor(t[-1] / cfg.dt + 1e-6)) + 1)
    tk = k * cfg.dt
    exact = np.isclose(t / cfg.dt, np.round(t / cfg.dt), atol=1e-4)
    on_grid = exact.all() and len(t) == len(k)
    nearest = np.clip(np.searchsorted(t, tk - 1e-9), 0, len(t) - 1)
    prev = np.clip(nearest - 1, 0, len(t) - 1)
    nearest = np.where(np.abs(t[prev] - tk) < np.abs(t[nearest] - tk), prev, nearest)
    seg = {"k": k}
    for col in ("x", "y", "global_x", "global_y"):
        v = part[col].to_numpy(dtype=float)
        seg[col + "_raw" if col in ("x", "y") else col] = v if on_grid else _interp(t, v, tk)
    interpolated = np.abs(t[nearest] - tk) > 1e-4
    native = np.median(np.diff(t)) if len(t) > 1 else cfg.dt
    if native <= 1.5 * cfg.dt:  # holes in 10 Hz data; 2 Hz data is resampled, not "filled"
        report["filled_frames"] += int(interpolated.sum())
    seg["interpolated"] = interpolated
    for col in _CARRIED:
        seg[col] = part[col].to_numpy()[nearest]
    return seg


def _interp(t, v, tk):
    if not np.isfinite(v).all():
        return np.interp(tk, t, v) if np.isfinite(v).any() else np.full(len(tk), np.nan)
    if len(t) >= 4:
        return CubicSpline(t, v)(tk)
    return np.interp(tk, t, v)


def _estimate_states(x, y, cfg: CleanConfig) -> dict:
    return estimate_states(x, y, cfg)


def estimate_states(x: np.ndarray, y: np.ndarray, cfg: CleanConfig, *,
                    window: int | None = None, polyorder: int | None = None) -> dict:
    """Savitzky-Golay state estimate along the last axis of positions x, y (..., T) [m].

    Returns arrays (..., T): x, y (smoothed), speed, heading, accel, steering (see the module
    docstring). Headings below ``min_speed_heading`` are held from the nearest reliable frame
    (forward, then backward); a trajectory without any stays NaN for the caller to fill.
    ``window`` / ``polyorder`` default to the config's; ``window`` is capped to the largest odd
    length that fits T.
    """
    T = x.shape[-1]
    w = min(window or cfg.window, T if T % 2 else T - 1)
    p = min(cfg.polyorder if polyorder is None else polyorder, w - 1)
    dt = cfg.dt

    def sg(v, d):
        return savgol_filter(v, w, p, deriv=d, delta=dt, axis=-1, mode="interp")

    xs, ys = sg(x, 0), sg(y, 0)
    vx, vy = sg(x, 1), sg(y, 1)
    ax, ay = (sg(x, 2), sg(y, 2)) if p >= 2 else (np.gradient(vx, dt, axis=-1),
                                                   np.gradient(vy, dt, axis=-1))
    speed = np.hypot(vx, vy)
    heading = np.where(speed >= cfg.min_speed_heading, np.arctan2(vy, vx), np.nan)
    heading = np.unwrap(_hold_last_axis(heading), axis=-1) if T else heading
    heading = np.where(np.isfinite(heading), heading, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        curv = (vx * ay - vy * ax) / speed ** 3
    steer = np.where(speed >= cfg.min_speed_steering, np.arctan(cfg.wheelbase * curv), np.nan)
    steer = np.nan_to_num(_hold_last_axis(steer), nan=0.0)
    steer = np.clip(steer, -cfg.max_steering, cfg.max_steering)
    # Tangential acceleration from the fitted polynomials (d|v|/dt), finite differences of the
    # speed where the speed is too low for a direction.
    with np.errstate(divide="ignore", invalid="ignore"):
        tangential = (vx * ax + vy * ay) / speed
    diff = np.gradient(speed, dt, axis=-1) if T > 1 else np.zeros_like(speed)
    accel = np.where(speed >= cfg.min_speed_heading, tangential, diff)
    return {"x": xs, "y": ys, "speed": speed, "heading": heading, "accel": accel,
            "steering": steer}


def _hold_last_axis(v: np.ndarray) -> np.ndarray:
    """Fill NaN along the last axis from the previous finite value, then from the next."""
    def ffill(a):
        idx = np.where(np.isfinite(a), np.arange(a.shape[-1]), 0)
        idx = np.maximum.accumulate(idx, axis=-1)
        out = np.take_along_axis(a, idx, axis=-1)
        return out

    out = ffill(v)
    return ffill(out[..., ::-1])[..., ::-1]


def _fill_headings(out: pd.DataFrame, cfg: CleanConfig) -> pd.DataFrame:
    """Hold headings through slow stretches, unwrap along each track.

    A track that never reaches ``min_speed_heading`` takes the direction of its net
    displacement, else the circular mean of all reliable headings.
    """
    if out.empty:
        return out
    h = out["heading"].to_numpy()
    ok = np.isfinite(h)
    fallback = float(np.arctan2(np.sin(h[ok]).mean(), np.cos(h[ok]).mean())) if ok.any() else 0.0
    result = np.empty_like(h)
    starts = np.flatnonzero(np.r_[True, np.diff(out["track_id"].to_numpy()) != 0])
    ends = np.r_[starts[1:], len(h)]
    x, y = out["x"].to_numpy(), out["y"].to_numpy()
    for a, b in zip(starts, ends):
        seg = h[a:b]
        if not np.isfinite(seg).any():
            dx, dy = x[b - 1] - x[a], y[b - 1] - y[a]
            seg = np.full(b - a, np.arctan2(dy, dx) if np.hypot(dx, dy) > 1.0 else fallback)
        result[a:b] = np.unwrap(seg)
    out["heading"] = result
    return out


def _empty_tracks() -> pd.DataFrame:
    cols = {"recording": [], "vehicle_id": [], "track_id": [], "k": [], "x_raw": [], "y_raw": [],
            "global_x": [], "global_y": [], "interpolated": [],
            **{c: [] for c in STATE_COLUMNS}, **{c: [] for c in _CARRIED}}
    return pd.DataFrame(cols)
