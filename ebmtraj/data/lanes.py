"""Lanes as shapely geometry, and Frenet coordinates (station, offset) against them
(through :class:`ebmtraj.geometry.Polylines`).

A :class:`LaneMap` holds lanes (centre line oriented along travel, optional left / right
boundaries, a width) and loose boundary lines, all in one frame, in metres. It comes from:

* the NGSIM lane files (``ngsim-lanes``): CA State Plane feet in the raw files' Global_X /
  Global_Y frame; :meth:`LaneMap.from_ngsim_files` returns them in metres in that global frame,
  and :meth:`LaneMap.transformed` with :func:`fit_rigid` (fitted on rows that carry both
  Local_X/Y and Global_X/Y) moves them into the local frame the trajectory tables use;
* CommonRoad lanelets (:meth:`LaneMap.from_lanelet_network`), successor chains merged into lanes;
* inference from lateral positions (:meth:`LaneMap.infer_from_lateral`) where the data has no
  map in its frame (the per-vehicle US-101 CSVs carry only local_x / local_y): lane centres are
  the median x of each Lane_ID where the data has one, else the peaks of the histogram of the
  lateral coordinate x; lanes run straight along +y.

Frenet convention: ``station`` is the arc length [m] along the nearest lane's centre line,
``offset`` the signed distance [m] from it, positive to the left of the travel direction.

Imports torch, numpy and shapely only (scipy lazily, for inference), so planners can use it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
import shapely.affinity
import torch
from shapely.geometry import LineString, Polygon
from shapely.ops import unary_union

from ebmcore.errors import DataError

from ..geometry import Polylines
from .units import FT

_TANGENT_STEP = 0.5  # m; half the chord used for a lane's local direction


@dataclass
class Lane:
    """One lane: centre line (along travel), boundaries where known, width [m]."""

    lane_id: int
    centre: LineString
    width: float
    left: LineString | None = None
    right: LineString | None = None

    @property
    def polygon(self) -> Polygon:
        """The lane's area: between its boundaries, else the centre line buffered by width/2."""
        if self.left is not None and self.right is not None:
            ring = list(self.left.coords) + list(self.right.coords)[::-1]
            poly = Polygon(ring).buffer(0)
            if poly.area > 0:
                return poly
        return self.centre.buffer(self.width / 2.0, cap_style="flat")


class LaneMap:
    """Lanes and boundary lines in one frame (metres); Frenet coordinates and on-road tests."""

    def __init__(self, lanes: list[Lane], boundaries: list[LineString] | None = None,
                 frame: str = "local", source: str = ""):
        if not lanes:
            raise DataError(f"{source or 'lane map'}: no lanes")
        self.lanes = list(lanes)
        self.boundaries = list(boundaries or [])
        self.frame = frame
        self.source = source
        self._drivable = None
        self._buffered = {}
        self._geometry = None

    def __len__(self) -> int:
        return len(self.lanes)

    @property
    def drivable(self):
        """Union of the lane areas (shapely geometry)."""
        if self._drivable is None:
            self._drivable = unary_union([lane.polygon for lane in self.lanes])
            shapely.prepare(self._drivable)
        return self._drivable

    def on_road(self, x, y, tolerance: float = 0.0) -> np.ndarray:
        """Whether each point (x, y) [m] lies within ``tolerance`` of the drivable area."""
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        if tolerance not in self._buffered:
            self._buffered[tolerance] = self.drivable if tolerance == 0 else \
                self.drivable.buffer(tolerance)
            shapely.prepare(self._buffered[tolerance])
        area = self._buffered[tolerance]
        return shapely.contains_xy(area, x, y) | shapely.intersects_xy(area, x, y)

    @property
    def geometry(self) -> Polylines:
        """The lane centre lines as :class:`Polylines` (built on first use)."""
        if self._geometry is None:
            self._geometry = Polylines([lane.centre for lane in self.lanes])
        return self._geometry

    def frenet(self, x, y) -> dict[str, np.ndarray]:
        """Frenet coordinates of points against their nearest lane centre line.

        x, y: arrays of any shape [m]. Returns arrays of that shape: ``lane_index`` (into
        ``self.lanes``), ``lane_id``, ``station`` [m], ``offset`` [m, + left], ``lane_heading``
        [rad] (direction of the lane at the projection) and ``half_width`` [m].
        """
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        shape = x.shape
        xy = np.stack([x.ravel(), y.ravel()], 1)
        dist, arc = self.geometry.project(xy)
        n = len(xy)
        idx = np.argmin(dist, axis=1) if n else np.zeros(0, int)
        station = arc[np.arange(n), idx]
        a, b = np.zeros((n, 2)), np.zeros((n, 2))
        for j in np.unique(idx):
            sel = idx == j
            total = self.geometry.lengths[j]
            a[sel] = self.geometry.interpolate(j, np.clip(station[sel] - _TANGENT_STEP, 0, total))
            b[sel] = self.geometry.interpolate(j, np.clip(station[sel] + _TANGENT_STEP, 0, total))
        tx, ty = b[:, 0] - a[:, 0], b[:, 1] - a[:, 1]
        mid = (a + b) / 2.0
        cross = tx * (xy[:, 1] - mid[:, 1]) - ty * (xy[:, 0] - mid[:, 0])
        offset = np.where(cross >= 0, 1.0, -1.0) * dist[np.arange(n), idx]
        ids = np.array([lane.lane_id for lane in self.lanes])
        widths = np.array([lane.width for lane in self.lanes])
        out = {"lane_index": idx, "lane_id": ids[idx], "station": station, "offset": offset,
               "lane_heading": np.arctan2(ty, tx), "half_width": widths[idx] / 2.0}
        return {k: v.reshape(shape) for k, v in out.items()}

    def transformed(self, rotation: np.ndarray, translation: np.ndarray,
                    frame: str = "local") -> "LaneMap":
        """The map moved by p -> rotation @ p + translation (a rigid transform)."""
        m = [rotation[0, 0], rotation[0, 1], rotation[1, 0], rotation[1, 1],
             translation[0], translation[1]]

        def move(g):
            return None if g is None else shapely.affinity.affine_transform(g, m)

        lanes = [Lane(l.lane_id, move(l.centre), l.width, move(l.left), move(l.right))
                 for l in self.lanes]
        return LaneMap(lanes, [move(b) for b in self.boundaries], frame, self.source)

    def oriented_to_traffic(self, x, y, track) -> "LaneMap":
        """Reverse every centre line along which the observed tracks mostly move backwards.

        x, y, track: 1-D arrays of positions [m] and track ids, each track's rows in time order.
        """
        x, y, track = map(np.asarray, (x, y, track))
        f = self.frenet(x, y)
        same = (track[1:] == track[:-1]) & (f["lane_index"][1:] == f["lane_index"][:-1])
        ds = np.diff(f["station"])
        lanes = []
        for j, lane in enumerate(self.lanes):
            moves = ds[same & (f["lane_index"][:-1] == j)]
            backwards = moves.size and np.sum(moves < 0) > np.sum(moves > 0)
            if backwards:
                lane = Lane(lane.lane_id, LineString(list(lane.centre.coords)[::-1]), lane.width,
                            _reverse(lane.right), _reverse(lane.left))
            lanes.append(lane)
        return LaneMap(lanes, self.boundaries, self.frame, self.source)

    # --- construction -------------------------------------------------------------------

    @classmethod
    def from_ngsim_files(cls, centrelines: str, boundaries: str | None = None) -> "LaneMap":
        """Read ``centerlines*.txt`` (and ``boundaries*.txt``): State Plane feet -> metres.

        The result is in the raw files' global frame (Global_X, Global_Y in metres). A lane's
        width is the median distance to the nearest other centre line; its id follows NGSIM's
        Lane_ID from the line's name (``centerlineK`` -> K, auxiliary -> 6, on-ramp -> 7,
        off-ramp -> 8; other names get 100, 101, ...).
        """
        named = _read_polylines(centrelines)
        lines = [LineString(np.asarray(pts) * FT) for _, pts in named]
        widths = _widths_from_neighbours(lines)
        ids = _ngsim_lane_ids([n for n, _ in named])
        lanes = [Lane(i, line, w) for i, line, w in zip(ids, lines, widths)]
        bounds = []
        if boundaries is not None:
            bounds = [LineString(np.asarray(pts) * FT) for _, pts in _read_polylines(boundaries)
                      if len(pts) >= 2]
        names = ", ".join(f"{i}={n}" for i, (n, _) in zip(ids, named))
        return cls(lanes, bounds, frame="global", source=f"{centrelines} ({names})")

    @classmethod
    def from_lanelet_network(cls, network, source: str = "") -> "LaneMap":
        """Lanes from a CommonRoad LaneletNetwork: each successor chain merged into one lane.

        A lane's id is the id of the lanelet it starts from; its boundaries are the merged
        lanelets' left / right vertices; its width the mean distance between them.
        """
        from commonroad.scenario.lanelet import Lanelet

        lanes, seen = [], set()
        starts = [l for l in network.lanelets if not l.predecessor]
        for start in starts:
            merged, ids = Lanelet.all_lanelets_by_merging_successors_from_lanelet(
                start, network, max_length=1e6)
            for lanelet, chain in zip(merged or [start], ids or [[start.lanelet_id]]):
                key = tuple(chain)
                if key in seen:
                    continue
                seen.add(key)
                lanes.append(_lane_from_lanelet(start.lanelet_id, lanelet))
        for lanelet in network.lanelets:  # lanelets on no chain from a start (loops)
            if not any(lanelet.lanelet_id in chain for chain in seen):
                lanes.append(_lane_from_lanelet(lanelet.lanelet_id, lanelet))
                seen.add((lanelet.lanelet_id,))
        bounds = [LineString(l.left_vertices) for l in network.lanelets] + \
                 [LineString(l.right_vertices) for l in network.lanelets]
        return cls(lanes, bounds, frame="local", source=source)

    @classmethod
    def infer_from_lateral(cls, x, y, *, lane_id=None, bin_m: float = 0.2,
                           min_separation: float = 2.5, min_share: float = 0.05,
                           margin: float = 50.0, source: str = "inferred") -> "LaneMap":
        """Straight lanes along +y at the typical lateral positions x [m] of the traffic.

        With ``lane_id`` (the source's Lane_ID per point, <NA>/NaN where unknown) each lane id
        holding at least ``min_share`` of the most used one's points becomes a lane at the
        median x of its points, keeping the id (most used first; one closer than
        ``min_separation`` to a kept lane is dropped: ramps). Without it, the lanes sit at the
        peaks of the histogram of x (peaks closer than ``min_separation`` merge; peaks below
        ``min_share`` of the highest are dropped) and are numbered 1.. from the smallest x (the
        left, in NGSIM's local frame). Width: the median spacing of neighbouring centres; lanes
        span the data's y range plus ``margin``.
        """
        x, y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
        if x.size < 10:
            raise DataError(f"{source}: too few points ({x.size}) to infer lanes")
        ids = None
        if lane_id is not None:
            lid = _as_float_array(lane_id)
            if np.isfinite(lid).mean() > 0.5:
                ids, centres = _centres_from_ids(x, lid, min_share, min_separation)
        if ids is None:
            centres = _centres_from_histogram(x, bin_m, min_separation, min_share)
            ids = np.arange(1, len(centres) + 1)
        width = float(np.median(np.diff(np.sort(centres)))) if len(centres) > 1 else 3.7
        y0, y1 = y.min() - margin, y.max() + margin
        lanes = [Lane(int(i), LineString([(c, y0), (c, y1)]), width,
                      left=LineString([(c - width / 2, y0), (c - width / 2, y1)]),
                      right=LineString([(c + width / 2, y0), (c + width / 2, y1)]))
                 for i, c in zip(ids, centres)]
        edges_x = sorted({round(c + s * width / 2, 6) for c in centres for s in (-1, 1)})
        bounds = [LineString([(e, y0), (e, y1)]) for e in edges_x]
        return cls(lanes, bounds, frame="local", source=source)

    # --- storage ------------------------------------------------------------------------

    def to_tensors(self) -> dict:
        """Plain tensors (loadable with weights_only=True); inverse of :meth:`from_tensors`."""
        def arr(g):
            return torch.zeros(0, 2, dtype=torch.float64) if g is None else \
                torch.tensor(np.asarray(g.coords), dtype=torch.float64)

        return {
            "lane_ids": torch.tensor([l.lane_id for l in self.lanes], dtype=torch.int64),
            "widths": torch.tensor([l.width for l in self.lanes], dtype=torch.float64),
            "centres": [arr(l.centre) for l in self.lanes],
            "lefts": [arr(l.left) for l in self.lanes],
            "rights": [arr(l.right) for l in self.lanes],
            "boundaries": [arr(b) for b in self.boundaries],
            "frame": self.frame,
            "source": self.source,
        }

    @classmethod
    def from_tensors(cls, d: dict) -> "LaneMap":
        def line(t):
            return None if t.shape[0] < 2 else LineString(t.numpy())

        lanes = [Lane(int(i), line(c), float(w), line(l), line(r)) for i, w, c, l, r in
                 zip(d["lane_ids"], d["widths"], d["centres"], d["lefts"], d["rights"])]
        return cls(lanes, [line(b) for b in d["boundaries"] if b.shape[0] >= 2],
                   d.get("frame", "local"), d.get("source", ""))


def fit_rigid(src, dst, *, passes: int = 3, trim: float = 3.0):
    """Least-squares rotation + translation with dst ~ R @ src + t (Kabsch), outliers trimmed.

    src, dst: (P, 2) matched points [m]. After each pass, points whose residual exceeds
    ``trim`` times the median residual are left out. Returns (R (2,2), t (2,), rms [m] over the
    points kept, number kept). Used to move the NGSIM lane files (global frame) into the local
    frame from rows that carry both coordinates.
    """
    src, dst = np.asarray(src, dtype=float), np.asarray(dst, dtype=float)
    keep = np.isfinite(src).all(1) & np.isfinite(dst).all(1)
    if keep.sum() < 3:
        raise DataError("fit_rigid: fewer than 3 finite point pairs")
    for _ in range(passes):
        r, t = _kabsch(src[keep], dst[keep])
        res = np.linalg.norm(src @ r.T + t - dst, axis=1)
        new = np.isfinite(res) & (res <= trim * max(np.median(res[keep]), 1e-6))
        if new.sum() < 3 or np.array_equal(new, keep):
            break
        keep = new
    r, t = _kabsch(src[keep], dst[keep])
    res = np.linalg.norm(src[keep] @ r.T + t - dst[keep], axis=1)
    return r, t, float(np.sqrt(np.mean(res ** 2))), int(keep.sum())


def _kabsch(src, dst):
    ms, md = src.mean(0), dst.mean(0)
    u, _, vt = np.linalg.svd((src - ms).T @ (dst - md))
    d = np.sign(np.linalg.det(vt.T @ u.T))
    r = vt.T @ np.diag([1.0, d]) @ u.T
    return r, md - r @ ms


def _ngsim_lane_ids(names: list[str]) -> list[int]:
    special = {"auxiliary": 6, "auxilliary": 6, "onramp": 7, "offramp": 8}
    ids, spare = [], 100
    for name in names:
        key = name.strip().lower().replace("-", "").replace("_", "")
        if key.startswith("centerline") and key[10:].isdigit():
            ids.append(int(key[10:]))
        elif key in special:
            ids.append(special[key])
        else:
            ids.append(spare)
            spare += 1
    return ids


def _as_float_array(values) -> np.ndarray:
    """Floats with missing values (None, NaN, pandas' <NA>) as NaN, without importing pandas."""
    if hasattr(values, "to_numpy"):
        return np.asarray(values.to_numpy(dtype=float, na_value=np.nan), dtype=float).ravel()
    return np.array([np.nan if v is None or v != v else float(v) for v in np.ravel(values)])


def _centres_from_histogram(x, bin_m, min_separation, min_share) -> np.ndarray:
    from scipy.ndimage import gaussian_filter1d
    from scipy.signal import find_peaks

    edges = np.arange(x.min() - 2 * bin_m, x.max() + 3 * bin_m, bin_m)
    hist, edges = np.histogram(x, bins=edges)
    smooth = gaussian_filter1d(hist.astype(float), sigma=0.5 / bin_m)
    peaks, _ = find_peaks(smooth, height=min_share * smooth.max(),
                          distance=max(1, int(min_separation / bin_m)))
    return (edges[peaks] + edges[peaks + 1]) / 2.0


def _centres_from_ids(x, lid, min_share, min_separation):
    ok = np.isfinite(lid)
    ids, counts = np.unique(lid[ok].astype(np.int64), return_counts=True)
    order = np.argsort(-counts, kind="stable")
    kept_ids, kept = [], []
    for j in order:
        if counts[j] < min_share * counts.max():
            continue
        c = float(np.median(x[ok][lid[ok] == ids[j]]))
        if all(abs(c - k) >= min_separation for k in kept):
            kept_ids.append(int(ids[j]))
            kept.append(c)
    order = np.argsort(kept)
    return np.asarray(kept_ids)[order], np.asarray(kept)[order]


def _reverse(g):
    return None if g is None else LineString(list(g.coords)[::-1])


def _lane_from_lanelet(lane_id: int, lanelet) -> Lane:
    left, right = np.asarray(lanelet.left_vertices), np.asarray(lanelet.right_vertices)
    width = float(np.mean(np.linalg.norm(left - right, axis=1)))
    return Lane(int(lane_id), LineString(lanelet.center_vertices), width,
                LineString(left), LineString(right))


def _widths_from_neighbours(lines: list[LineString]) -> list[float]:
    """Each line's median distance to its nearest other line (a lane width); 3.66 m alone."""
    widths = []
    for i, line in enumerate(lines):
        pts = shapely.points(np.asarray(line.coords))
        others = [shapely.distance(o, pts) for j, o in enumerate(lines) if j != i]
        if not others:
            widths.append(12 * FT)
            continue
        nearest = np.min(np.stack(others, 1), axis=1)
        plausible = nearest[(nearest > 2.0) & (nearest < 6.0)]
        widths.append(float(np.median(plausible)) if plausible.size else 12 * FT)
    return widths


def _read_polylines(path) -> list[tuple[str, np.ndarray]]:
    """Parse the ngsim-lanes text format: header, count, then (name, count, 'x y' rows)..."""
    try:
        with open(path) as fh:
            lines = [ln.strip() for ln in fh if ln.strip()]
    except OSError as err:
        raise DataError(f"{path}: cannot read: {err}") from err
    try:
        n, i, out = int(lines[1]), 2, []
        for _ in range(n):
            name = lines[i]
            i += 1
            if name.upper() == "CENTERLINE":  # centre line files put the name on its own line
                name = lines[i]
                i += 1
            count = int(lines[i])
            i += 1
            pts = np.array([[float(v) for v in lines[i + k].split()[:2]] for k in range(count)])
            out.append((name, pts))
            i += count
    except (IndexError, ValueError) as err:
        raise DataError(f"{path}, line {i + 1}: malformed lane file ({err})") from err
    if not out:
        raise DataError(f"{path}: no polylines")
    return out
