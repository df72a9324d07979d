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

LAG, MIN_MOVE = 2, 0.3            # frames and metres of the causal heading's displacement
HALF_WIDTH, MAX_GAP = 1.8, 120.0  # metres: the leader's lateral and longitudinal reach


def causal_heading(tracks: pd.DataFrame, lag: int = LAG, min_move: float = MIN_MOVE) -> np.ndarray:
    """Heading [rad] of each row from the raw displacement over the last ``lag`` frames of its
    track; held from the last displacement of at least ``min_move`` m when slower, NaN before the
    first one (and across a gap in the track's frames). ``tracks``: track_id, k, x_raw, y_raw."""
    return _causal_heading(tracks["track_id"].to_numpy(), tracks["k"].to_numpy(),
                           tracks[["x_raw", "y_raw"]].to_numpy(float), lag, min_move)


def derive_headways(tracks: pd.DataFrame, *, half_width: float = HALF_WIDTH, max_gap: float = MAX_GAP) -> np.ndarray:
    """(rows,) headway [m] of every row of ``tracks`` (recording, track_id, k, x_raw, y_raw): the
    distance along the row's :func:`causal_heading` from its recorded point to the nearest other
    vehicle's recorded point ahead (0 < distance <= ``max_gap``) whose lateral offset from that
    heading line is under ``half_width``, at the same frame of the same recording. 0 where there
    is no such vehicle (NGSIM's convention for no leader), NaN where the heading is unknown."""
    frame = tracks.groupby(["recording", "k"], sort=False).ngroup().to_numpy()
    return _headways(frame, tracks["track_id"].to_numpy(), tracks["k"].to_numpy(),
                     tracks[["x_raw", "y_raw"]].to_numpy(float), half_width, max_gap)


def headways_of_positions(xy: np.ndarray, **kwargs) -> np.ndarray:
    """:func:`derive_headways` of V vehicles' raw positions (V, K, 2) [m] over K frames of one
    scene (NaN where a vehicle is absent) -> (V, K) [m] (NaN where absent). No table is built:
    the planner calls this on every ``plan`` of a checkpoint with virtual leaders."""
    v, k = np.nonzero(np.isfinite(xy).all(-1))
    out = np.full(xy.shape[:2], np.nan)
    out[v, k] = _headways(k, v, k, xy[v, k], **kwargs)
    return out


def _causal_heading(track: np.ndarray, k: np.ndarray, xy: np.ndarray, lag: int, min_move: float) -> np.ndarray:
    """:func:`causal_heading` of rows given as arrays: track (n,), frame k (n,), xy (n, 2) [m]."""
    order = np.lexsort((k, track))
    tid, k, x, y = track[order], k[order], xy[order, 0], xy[order, 1]
    same = np.r_[np.zeros(lag, bool), (tid[lag:] == tid[:-lag]) & (k[lag:] - k[:-lag] == lag)]
    dx = np.where(same, x - np.r_[np.full(lag, np.nan), x[:-lag]], np.nan)
    dy = np.where(same, y - np.r_[np.full(lag, np.nan), y[:-lag]], np.nan)
    head = np.where(np.hypot(dx, dy) >= min_move, np.arctan2(dy, dx), np.nan)
    # forward fill within each track: the index of the last heading at or before each row, with
    # a track's first row as the floor (NaN until the track's first heading)
    first = np.r_[True, tid[1:] != tid[:-1]]
    last = np.maximum.accumulate(np.where(np.isfinite(head) | first, np.arange(len(head)), 0))
    out = np.empty(len(order))
    out[order] = head[last]
    return out


def _headways(frame: np.ndarray, track: np.ndarray, k: np.ndarray, xy: np.ndarray,
              half_width: float = HALF_WIDTH, max_gap: float = MAX_GAP) -> np.ndarray:
    """:func:`derive_headways` of rows given as arrays: ``frame`` (n,) the rows seen together
    (one id per recording and frame), track (n,), frame number k (n,), positions xy (n, 2) [m]."""
    heading = _causal_heading(track, k, xy, LAG, MIN_MOVE)
    out = np.zeros(len(frame))
    order = np.argsort(frame, kind="stable")
    for idx in np.split(order, np.flatnonzero(np.diff(frame[order])) + 1):
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
