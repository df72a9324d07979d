"""Polylines as arrays: vectorised point queries along lane centre lines.

The lane sampler of the cost's inputs, the planner's lane queries and the Frenet coordinates of
data preparation all project points onto lane centre lines; :class:`Polylines` is the one
implementation they share. It imports numpy and shapely only, so the planner can use it without
the data package.
"""
from __future__ import annotations

import numpy as np
import shapely


class Polylines:
    """Lane centre lines as arrays for vectorised point queries (distances, projections,
    points at arc lengths), as shapely's ``distance``, ``line_locate_point`` and
    ``line_interpolate_point`` compute them (to float rounding), without a per-point walk along
    each line. ``lines``: shapely LineStrings (or (V, 2) vertex arrays), each of positive length.
    """

    def __init__(self, lines):
        self.coords = [np.asarray(shapely.get_coordinates(x) if hasattr(x, "geom_type") else x, dtype=float)
                       for x in lines]
        n = [len(c) - 1 for c in self.coords]                              # segments per line
        self.starts = np.concatenate([[0], np.cumsum(n)[:-1]]).astype(int) if n else np.zeros(0, int)
        self.a = np.concatenate([c[:-1] for c in self.coords]) if n else np.zeros((0, 2))     # (S,2)
        self.d = np.concatenate([np.diff(c, axis=0) for c in self.coords]) if n else np.zeros((0, 2))
        self.len2 = (self.d * self.d).sum(-1)
        self.seg_len = np.sqrt(self.len2)
        self.cum = [np.concatenate([[0.0], np.cumsum(self.seg_len[s:s + k])]) for s, k in zip(self.starts, n)]
        self.lengths = np.array([c[-1] for c in self.cum])
        self.line_of = np.repeat(np.arange(len(n)), n)                           # (S,) line per segment
        self.box_lo = np.minimum(self.a, self.a + self.d)                          # (S,2) segment boxes
        self.box_hi = np.maximum(self.a, self.a + self.d)

    def __len__(self) -> int:
        return len(self.coords)

    def _nearest(self, xy: np.ndarray, seg: slice):
        """Squared distances (n, s) from points xy (n, 2) to the segments ``seg`` and the
        fractions (n, s) along them of the nearest points."""
        rx, ry = xy[:, 0, None] - self.a[None, seg, 0], xy[:, 1, None] - self.a[None, seg, 1]
        dx, dy, len2 = self.d[seg, 0], self.d[seg, 1], self.len2[seg]
        t = np.clip((rx * dx + ry * dy) / np.where(len2 > 0, len2, 1.0), 0.0, 1.0)
        fx, fy = rx - t * dx, ry - t * dy
        return fx * fx + fy * fy, t

    def project(self, xy: np.ndarray, chunk: int = 1 << 20, arcs: bool = True):
        """Distances [m] (n, lines) from points xy (n, 2) to each line, and (``arcs``) the arc
        lengths [m] (n, lines) along each line of the nearest points (the first nearest segment
        on ties; else None)."""
        xy = np.asarray(xy, dtype=float).reshape(-1, 2)
        dist = np.zeros((len(xy), len(self)))
        arc = np.zeros((len(xy), len(self))) if arcs else None
        if len(self) == 0 or len(xy) == 0:
            return dist, arc
        step = max(1, chunk // max(len(self.a), 1))
        ends = np.append(self.starts[1:], len(self.a))
        for lo in range(0, len(xy), step):
            d2, t = self._nearest(xy[lo:lo + step], slice(None))
            if not arcs:
                dist[lo:lo + step] = np.sqrt(np.minimum.reduceat(d2, self.starts, axis=1))
                continue
            rows = np.arange(len(d2))
            for j, (s, e) in enumerate(zip(self.starts, ends)):
                k = d2[:, s:e].argmin(1)
                dist[lo:lo + step, j] = np.sqrt(d2[rows, s + k])
                arc[lo:lo + step, j] = self.cum[j][k] + t[rows, s + k] * self.seg_len[s + k]
        return dist, arc

    def distances(self, xy: np.ndarray) -> np.ndarray:
        """(n, lines) distances [m] from points xy (n, 2) to each line."""
        return self.project(xy, arcs=False)[0]

    def within(self, xy: np.ndarray, reach: np.ndarray) -> np.ndarray:
        """(n,) whether each point of xy (n, 2) lies within ``reach[j]`` m (reach (lines,)) of
        some line j, i.e. ``(distances(xy) <= reach).any(1)``, looking only at the segments
        whose bounding boxes, grown by their line's reach, overlap the points' bounding box."""
        xy = np.asarray(xy, dtype=float).reshape(-1, 2)
        if len(self) == 0 or len(xy) == 0:
            return np.zeros(len(xy), bool)
        r = np.asarray(reach, dtype=float)[self.line_of][:, None]                 # (S,1)
        near = np.flatnonzero(((self.box_lo - r <= xy.max(0)) & (self.box_hi + r >= xy.min(0))).all(1))
        if near.size == 0:
            return np.zeros(len(xy), bool)
        d2, _ = self._nearest(xy, near)
        return (d2 <= r[near, 0] ** 2).any(1)

    def interpolate(self, j: int, s: np.ndarray, extend: bool = False) -> np.ndarray:
        """Points (..., 2) at arc lengths s (...) [m] along line j: clipped to the line, or
        (``extend``) continued straight along its first / last segment past either end."""
        c, cum = self.coords[j], self.cum[j]
        s = np.asarray(s, dtype=float)
        out = np.stack([np.interp(s, cum, c[:, 0]), np.interp(s, cum, c[:, 1])], -1)
        if extend:
            first, last = self.d[self.starts[j]], self.d[self.starts[j] + len(c) - 2]
            before, after = np.minimum(s, 0.0), np.maximum(s - self.lengths[j], 0.0)
            out = out + before[..., None] * first / np.hypot(*first) + after[..., None] * last / np.hypot(*last)
        return out
