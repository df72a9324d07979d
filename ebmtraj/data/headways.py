"""Headways derived from complete traffic: for every sample of a track, the distance to the
vehicle it follows, as NGSIM records it in ``Space_Headway``.

The per-vehicle US-101 files carry that column (:func:`ebmtraj.data.ngsim.recorded_headways`),
but most of those vehicles' leaders are not among the recorded tracks. Data with every vehicle
of a road section (the CommonRoad scenarios) have the leaders themselves, yet a scene keeps only
the neighbours present through its whole window (4 s of future included) and within its radius,
which leaves most targets without their leader. :func:`derive_headways` recovers the
leader from all vehicles present at each frame, for the same virtual-leader inputs
(``data.headway_leads``, :func:`ebmtraj.cost_inputs.build_inputs`).

Causal: a sample's headway uses positions of its own frame and the heading of the raw track over
the frames before it, never smoothed states (whose centred window reaches into the future).
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def causal_heading(tracks: pd.DataFrame, lag: int = 2, min_move: float = 0.3) -> np.ndarray:
    """Heading [rad] of each row from the raw displacement over the last ``lag`` frames of its
    track; held from the last displacement of at least ``min_move`` m when slower, NaN before the
    first one (and across a gap in the track's frames). ``tracks``: track_id, k, x_raw, y_raw."""
    order = np.lexsort((tracks["k"].to_numpy(), tracks["track_id"].to_numpy()))
    tid, k = tracks["track_id"].to_numpy()[order], tracks["k"].to_numpy()[order]
    x, y = tracks["x_raw"].to_numpy(float)[order], tracks["y_raw"].to_numpy(float)[order]
    same = np.r_[np.zeros(lag, bool), (tid[lag:] == tid[:-lag]) & (k[lag:] - k[:-lag] == lag)]
    dx = np.where(same, x - np.r_[np.full(lag, np.nan), x[:-lag]], np.nan)
    dy = np.where(same, y - np.r_[np.full(lag, np.nan), y[:-lag]], np.nan)
    head = pd.Series(np.where(np.hypot(dx, dy) >= min_move, np.arctan2(dy, dx), np.nan))
    head = head.groupby(tid).ffill().to_numpy()
    out = np.empty(len(order))
    out[order] = head
    return out


def derive_headways(tracks: pd.DataFrame, *, half_width: float = 1.8, max_gap: float = 120.0) -> np.ndarray:
    """(rows,) headway [m] of every row of ``tracks`` (recording, track_id, k, x_raw, y_raw): the
    distance along the row's :func:`causal_heading` from its recorded point to the nearest other
    vehicle's recorded point ahead (0 < distance <= ``max_gap``) whose lateral offset from that
    heading line is under ``half_width``, at the same frame of the same recording. 0 where there
    is no such vehicle (NGSIM's convention for no leader), NaN where the heading is unknown."""
    heading = causal_heading(tracks)
    out = np.zeros(len(tracks))
    xy = tracks[["x_raw", "y_raw"]].to_numpy(float)
    for idx in tracks.groupby(["recording", "k"], sort=False).indices.values():
        if len(idx) < 2:
            continue
        d = xy[idx][None, :, :] - xy[idx][:, None, :]                  # (n, n, 2): row -> other
        c, s = np.cos(heading[idx])[:, None], np.sin(heading[idx])[:, None]
        lon = c * d[..., 0] + s * d[..., 1]
        lat = -s * d[..., 0] + c * d[..., 1]
        ahead = (lon > 0) & (lon <= max_gap) & (np.abs(lat) < half_width)
        out[idx] = np.where(ahead, lon, np.inf).min(1)
    out[~np.isfinite(out)] = 0.0
    out[np.isnan(heading)] = np.nan
    return out


def headways_of_positions(xy: np.ndarray, **kwargs) -> np.ndarray:
    """:func:`derive_headways` of V vehicles' raw positions (V, K, 2) [m] over K frames of one
    scene (NaN where a vehicle is absent) -> (V, K) [m] (NaN where absent)."""
    v, k = np.nonzero(np.isfinite(xy).all(-1))
    table = pd.DataFrame({"recording": 0, "track_id": v, "k": k, "x_raw": xy[v, k, 0], "y_raw": xy[v, k, 1]})
    out = np.full(xy.shape[:2], np.nan)
    out[v, k] = derive_headways(table, **kwargs)
    return out
