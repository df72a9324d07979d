"""Scenes: fixed windows of a target vehicle and its neighbours, as tensors; splits; leakage.

A scene is ``history + future`` consecutive frames (default 10 + 40 at 10 Hz: 1 s + 4 s; the
experiment config's ``data.history`` sets the first, e.g. 30 for 3 s) of a target track and up
to K neighbours: the tracks of the same recording and split that are present in every frame of
the window and whose raw position lies within ``radius`` of the target's at the last history
frame, nearest first. Windows start on frames ``k`` with ``k % stride == 0``,
so the windows of different targets at one time line up; the training split may use a shorter
``train_stride`` (denser, overlapping windows: more training data from the same tracks, as in
the published NGSIM protocols), while validation and test keep ``stride``.

Tensors of one split (N scenes, A = 1 + K agents, agent 0 the target, T frames):

==================  ================  =========================================================
key                 shape, dtype      meaning
==================  ================  =========================================================
states              (N,A,T,6) f32     x, y [m], speed [m/s], heading [rad], accel [m/s^2],
                                      steering [rad] in the recording's frame. History frames:
                                      estimated from the history's raw positions alone, so they
                                      carry no information from the future (Savitzky-Golay:
                                      position, speed, heading with ``history_window`` /
                                      ``history_polyorder``, acceleration and steering with
                                      ``history_accel_*``); future frames: the whole track's
                                      smoothed states (the training targets)
positions_raw       (N,A,T,2) f32     x, y before smoothing [m] (the observed ground truth)
mask                (N,A) bool        agent slot filled (padding slots are all zero)
frenet              (N,A,T,4) f32     station, offset (+ left), lane heading, lane half width
lane_index          (N,A,T) i16       index into the recording's lane map (-1: no map)
size                (N,A,2) f32       length, width [m] (defaults where unknown)
size_known          (N,A) bool        size came from the data
ref_offset          (N,A) f32         recorded point -> footprint centre, along heading [m]
track_id            (N,A) i64         cleaning's track id (-1: padding)
vehicle_id          (N,A) i64         source vehicle id (-1: padding)
recording           (N,) i64          index into ``recordings`` (list of names)
t0                  (N,) f64          time of the first frame [s]
headway             (N,A,H) f32       distance to the vehicle followed over the history frames
                                      [m] (0: none, NaN: unknown), where the tracks carry a
                                      ``headway`` column (:mod:`ebmtraj.data.headways`)
==================  ================  =========================================================

Splits (:func:`assign_splits`): by vehicle (per-vehicle data: every vehicle in one split;
vehicles are grouped by the time block in which they appear, so neighbours mostly share the
split) or by recording (CommonRoad: scenarios of one recording group share traffic).
:func:`check_leakage` verifies that no vehicle, and no trajectory, appears in two splits.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ebmcore.errors import ConfigError, DataError

from .cleaning import STATE_COLUMNS, CleanConfig, estimate_states
from .lanes import LaneMap

SPLITS = ("train", "val", "test")
MIN_BLOCKS = 10  # fewer time blocks than this: split vehicle by vehicle instead


@dataclass
class SceneConfig:
    """Windowing settings (frames at the cleaning's dt)."""

    history: int = 10
    future: int = 40
    stride: int = 10
    train_stride: int | None = None   # frames between training-window starts (None: stride)
    neighbours: int = 5
    radius: float = 30.0
    default_length: float = 4.5
    default_width: float = 1.8
    dt: float = 0.1
    history_window: int = 3
    history_polyorder: int = 1
    history_accel_window: int = 9
    history_accel_polyorder: int = 2

    def __post_init__(self):
        for name, least in (("history", 2), ("future", 1), ("stride", 1), ("train_stride", 1),
                            ("neighbours", 0)):
            value = getattr(self, name)
            if value is None and name == "train_stride":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
                raise ConfigError(f"scene {name} must be a whole number of frames >= {least}, got {value!r}")

    def stride_of(self, split: str) -> int:
        """Frames between window starts in ``split``."""
        return self.train_stride if split == "train" and self.train_stride else self.stride

    @property
    def frames(self) -> int:
        return self.history + self.future


def annotate_frenet(tracks: pd.DataFrame, lane_maps: dict[str, LaneMap]) -> pd.DataFrame:
    """Add station, offset, lane_heading, half_width, lane_index from each recording's map.

    Recordings without a map get NaN and lane_index -1.
    """
    out = tracks.copy()
    for col in ("station", "offset", "lane_heading", "half_width"):
        out[col] = np.nan
    out["lane_index"] = -1
    for rec, idx in out.groupby("recording").groups.items():
        lanes = lane_maps.get(rec)
        if lanes is None:
            continue
        f = lanes.frenet(out.loc[idx, "x"].to_numpy(), out.loc[idx, "y"].to_numpy())
        for col in ("station", "offset", "lane_heading", "half_width", "lane_index"):
            out.loc[idx, col] = f[col]
    return out


def assign_splits(tracks: pd.DataFrame, by: str, *, fractions=(0.7, 0.1, 0.2), seed: int = 0,
                  block_s: float | None = None,
                  group_of: dict[str, str] | None = None) -> dict[tuple[str, int], str]:
    """Split name for every (recording, vehicle_id).

    ``by='vehicle'``: vehicles grouped by (recording, the ``block_s`` block of their first
    time; default: a twentieth of the recordings' mean duration, at most 120 s; with fewer than
    ``MIN_BLOCKS`` blocks every vehicle is its own group);
    ``by='recording'``: grouped by recording, or by ``group_of[recording]`` where given
    (CommonRoad scenarios of one NGSIM recording). Groups are shuffled with ``seed`` and filled
    into train / val / test until each reaches its share of vehicles.
    """
    if by not in ("vehicle", "recording"):
        raise ConfigError(f"split 'by' must be 'vehicle' or 'recording', got {by!r}")
    if len(fractions) != 3 or abs(sum(fractions) - 1) > 1e-6 or min(fractions) < 0:
        raise ConfigError(f"split fractions must be three shares summing to 1, got {fractions}")
    first = tracks.groupby(["recording", "vehicle_id"])["t"].min()
    if block_s is None:
        span = tracks.groupby("recording")["t"].agg(lambda t: t.max() - t.min()).mean()
        block_s = float(np.clip(span / 20.0, 1.0, 120.0))
    if by == "vehicle":
        group = [(rec, int(t // block_s)) for (rec, _), t in first.items()]
        if len(set(group)) < MIN_BLOCKS:  # everyone starts together (e.g. the synthetic
            group = [(rec, int(v)) for rec, v in first.index]  # default): one group each
    else:
        group = [((group_of or {}).get(rec, rec), 0) for rec, _ in first.index]
    keys = sorted(set(group))
    order = np.random.default_rng(seed).permutation(len(keys))
    sizes = pd.Series(group).value_counts()
    total, done, split_of_group = len(group), 0, {}
    bounds = np.cumsum(fractions)
    for i in order:
        key = keys[i]
        share = done / total
        split_of_group[key] = SPLITS[min(int(np.searchsorted(bounds, share, side="right")), 2)]
        done += int(sizes[key])
    return {(rec, int(vid)): split_of_group[g] for (rec, vid), g in zip(first.index, group)}


def build_scenes(tracks: pd.DataFrame, split_of: dict[tuple[str, int], str],
                 config: SceneConfig | None = None, clean_config: CleanConfig | None = None
                 ) -> tuple[dict[str, dict], dict]:
    """Cut every split's windows into tensors (see module docstring).

    ``tracks``: cleaned tracks (optionally with Frenet columns); ``clean_config``: the settings
    the history states are estimated with (wheelbase, speed thresholds). Returns
    ({split: tensors}, report) with the number of windows and mean neighbours per split.
    """
    cfg = config or SceneConfig()
    ccfg = clean_config or CleanConfig(dt=cfg.dt)
    recs = sorted(tracks["recording"].unique())
    rec_index = {r: i for i, r in enumerate(recs)}
    per_split = {s: [] for s in SPLITS}
    report = {"config": asdict(cfg), "windows": {}, "mean_neighbours": {}, "recordings": recs}
    for rec, rt in tracks.groupby("recording", sort=True):
        for split in SPLITS:
            vids = {v for (r, v), s in split_of.items() if r == rec and s == split}
            part = rt[rt["vehicle_id"].isin(vids)]
            if len(part):
                per_split[split] += _recording_windows(part, cfg, rec_index[rec],
                                                       cfg.stride_of(split))
    out = {}
    for split, items in per_split.items():
        out[split] = _stack(items, cfg, recs, ccfg)
        n = len(items)
        report["windows"][split] = n
        report["mean_neighbours"][split] = float(out[split]["mask"][:, 1:].sum(1).float().mean()
                                                 ) if n else 0.0
    return out, report


def _recording_windows(rt: pd.DataFrame, cfg: SceneConfig, rec_idx: int,
                       stride: int) -> list[dict]:
    rt = rt.sort_values(["track_id", "k"])
    tid = rt["track_id"].to_numpy()
    k = rt["k"].to_numpy()
    starts = np.flatnonzero(np.r_[True, tid[1:] != tid[:-1]])
    ends = np.r_[starts[1:], len(tid)]
    kmin, kmax = k[starts], k[ends - 1]
    if not np.all(kmax - kmin + 1 == ends - starts):
        raise DataError("tracks must be contiguous on the frame grid (run cleaning first)")
    cols = _columns(rt)
    x, y = cols["raw"][:, 0], cols["raw"][:, 1]
    T, H = cfg.frames, cfg.history
    items = []
    for i in range(len(starts)):
        first = -(-kmin[i] // stride) * stride
        for k0 in range(int(first), int(kmax[i]) - T + 2, stride):
            present = (kmin <= k0) & (kmax >= k0 + T - 1)
            present[i] = False
            cand = np.flatnonzero(present)
            klast = k0 + H - 1
            ri = starts[i] + (klast - kmin[i])
            rows_c = starts[cand] + (klast - kmin[cand])
            d = np.hypot(x[rows_c] - x[ri], y[rows_c] - y[ri])
            near = cand[d <= cfg.radius][np.argsort(d[d <= cfg.radius], kind="stable")]
            agents = [i] + list(near[: cfg.neighbours])
            rows = np.stack([starts[a] + (k0 - kmin[a]) + np.arange(T) for a in agents])
            items.append({"rows": rows, "cols": cols, "rec": rec_idx, "t0": float(k0)})
    return items


def _columns(rt: pd.DataFrame) -> dict[str, np.ndarray]:
    n = len(rt)

    def get(col, fill=np.nan):
        return rt[col].to_numpy(dtype=float) if col in rt else np.full(n, fill)

    frenet = np.stack([get(c) for c in ("station", "offset", "lane_heading", "half_width")], 1)
    extra = {"headway": get("headway")} if "headway" in rt else {}
    return {
        **extra,
        "states": rt[list(STATE_COLUMNS)].to_numpy(dtype=float),
        "raw": rt[["x_raw", "y_raw"]].to_numpy(dtype=float),
        "frenet": frenet,
        "lane_index": get("lane_index", -1).astype(np.int64),
        "length": get("length"), "width": get("width"), "ref_offset": get("ref_offset"),
        "track_id": rt["track_id"].to_numpy(dtype=np.int64),
        "vehicle_id": rt["vehicle_id"].to_numpy(dtype=np.int64),
        "k": rt["k"].to_numpy(dtype=np.int64),
    }


def _stack(items: list[dict], cfg: SceneConfig, recs: list[str], ccfg: CleanConfig) -> dict:
    N, A, T = len(items), cfg.neighbours + 1, cfg.frames
    states = np.zeros((N, A, T, 6), np.float32)
    raw = np.zeros((N, A, T, 2), np.float32)
    frenet = np.zeros((N, A, T, 4), np.float32)
    lane = np.full((N, A, T), -1, np.int16)
    mask = np.zeros((N, A), bool)
    size = np.zeros((N, A, 2), np.float32)
    known = np.zeros((N, A), bool)
    ref = np.zeros((N, A), np.float32)
    tid = np.full((N, A), -1, np.int64)
    vid = np.full((N, A), -1, np.int64)
    rec = np.zeros(N, np.int64)
    t0 = np.zeros(N, np.float64)
    with_headway = bool(items) and all("headway" in it["cols"] for it in items)
    headway = np.full((N, A, cfg.history), np.nan, np.float32) if with_headway else None
    for n, it in enumerate(items):
        c, rows = it["cols"], it["rows"]
        a = len(rows)
        states[n, :a] = c["states"][rows]
        raw[n, :a] = c["raw"][rows]
        frenet[n, :a] = np.nan_to_num(c["frenet"][rows], nan=0.0)
        lane[n, :a] = c["lane_index"][rows]
        mask[n, :a] = True
        r0 = rows[:, 0]
        length, width = c["length"][r0], c["width"][r0]
        known[n, :a] = np.isfinite(length) & np.isfinite(width)
        length = np.where(np.isfinite(length), length, cfg.default_length)
        width = np.where(np.isfinite(width), width, cfg.default_width)
        size[n, :a, 0], size[n, :a, 1] = length, width
        # Unknown reference offset: NGSIM's front-bumper point with the default length.
        ref[n, :a] = np.where(np.isfinite(c["ref_offset"][r0]), c["ref_offset"][r0], length / 2)
        tid[n, :a], vid[n, :a] = c["track_id"][r0], c["vehicle_id"][r0]
        rec[n] = it["rec"]
        t0[n] = c["k"][r0[0]] * cfg.dt
        if headway is not None:
            headway[n, :a] = c["headway"][rows[:, :cfg.history]]
    _history_states(states, raw, frenet, lane, mask, cfg, ccfg)
    t = torch.from_numpy
    return {"states": t(states), "positions_raw": t(raw), "mask": t(mask), "frenet": t(frenet),
            "lane_index": t(lane), "size": t(size), "size_known": t(known),
            "ref_offset": t(ref), "track_id": t(tid), "vehicle_id": t(vid), "recording": t(rec),
            "t0": t(t0), "recordings": list(recs), "history": cfg.history,
            "future": cfg.future, "dt": cfg.dt, **({"headway": t(headway)} if headway is not None else {})}


def _history_states(states, raw, frenet, lane, mask, cfg: SceneConfig, ccfg: CleanConfig):
    """Overwrite the history frames' states (in place) with a history-only estimate.

    A heading that stays undefined (slow through the whole history) takes the lane's direction,
    else the track's smoothed heading. Future headings shift by whole turns to continue the
    history's.
    """
    H = cfg.history
    if states.shape[0] == 0:
        return
    hx, hy = raw[..., :H, 0].astype(np.float64), raw[..., :H, 1].astype(np.float64)
    est = estimate_states(hx, hy, ccfg, window=cfg.history_window,
                          polyorder=cfg.history_polyorder)
    slow = estimate_states(hx, hy, ccfg, window=cfg.history_accel_window,
                           polyorder=cfg.history_accel_polyorder)
    est["accel"], est["steering"] = slow["accel"], slow["steering"]
    fallback = np.where(lane[..., H - 1] >= 0, frenet[..., H - 1, 2], states[..., H - 1, 3])
    est["heading"] = np.where(np.isfinite(est["heading"]), est["heading"],
                              fallback[..., None])
    for j, col in enumerate(STATE_COLUMNS):
        states[..., :H, j] = est[col]
    turns = np.round((states[..., H, 3] - states[..., H - 1, 3]) / (2 * np.pi))
    states[..., H:, 3] -= (2 * np.pi * turns)[..., None]
    states[~mask] = 0.0


PER_FRAME = ("states", "positions_raw", "frenet", "lane_index")   # (N, A, T, ...) tensors


def trim_history(scenes: dict, history: int) -> dict:
    """The scenes with only their last ``history`` history frames (the future untouched).

    A cache prepared with a longer history serves a config with a shorter one: the windows keep
    their present time and future, so a 1 s model can be evaluated on exactly the windows of a
    3 s cache. The history states are per-frame estimates from the raw history positions; at
    the frames kept they can differ from a shorter preparation's only where the smoothing
    window reaches the cut (the last frame, which the baselines start from, is the same). The
    neighbours stay those of the longer windows (present over all of them). Raises DataError
    when the scenes hold fewer history frames than asked for.
    """
    have = int(scenes["history"])
    if history == have:
        return scenes
    if not 1 <= history < have:
        raise DataError(f"the scenes hold {have} history frames; {history} cannot be cut from them "
                        f"(prepare the data with that history)")
    cut = have - history
    out = dict(scenes)
    for key in PER_FRAME:
        if key in out:
            out[key] = out[key][:, :, cut:]
    if "headway" in out:                       # (N, A, H): history frames only
        out["headway"] = out["headway"][..., cut:]
    out["t0"] = out["t0"] + cut * float(scenes.get("dt", 0.1))
    out["history"] = history
    return out


def check_leakage(scenes: dict[str, dict], *, share: float = 0.5,
                  decimals: int = 2) -> dict:
    """Verify that the splits share no vehicle and no trajectory; raise DataError if they do.

    Two checks: (1) the sets of (recording, vehicle_id) over every agent of every scene are
    disjoint between splits; (2) no agent's window in one split has ``share`` or more of its
    (frame, position) samples -- positions rounded to ``decimals`` -- among another split's: the
    same trajectory under another id or recording name (as in CommonRoad scenarios cut from one
    recording, which repeat vehicles at the same time steps). Time is part of the key because
    distinct NGSIM vehicles do pass through identical coordinates at different times.
    """
    ids, keys = {}, {}
    for split, s in scenes.items():
        m = s["mask"].numpy()
        recs = np.asarray(s["recordings"], dtype=object)
        rec = np.broadcast_to(s["recording"].numpy()[:, None], m.shape)[m]
        ids[split] = set(zip(recs[rec].tolist(), s["vehicle_id"].numpy()[m].tolist()))
        T = s["states"].shape[2]
        dt = float(s.get("dt", 0.1))
        k = np.round(s["t0"].numpy() / dt).astype(np.int64)[:, None] + np.arange(T)  # (N, T)
        k = np.broadcast_to(k[:, None, :], m.shape + (T,))[m]
        keys[split] = _sample_keys(s["states"][..., :2].numpy()[m], k, decimals)  # (M, T)
    report = {"shared_vehicles": {}, "duplicated_windows": {}}
    names = list(scenes)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared = ids[a] & ids[b]
            report["shared_vehicles"][f"{a}/{b}"] = len(shared)
            if shared:
                raise DataError(f"split leakage: {len(shared)} vehicle(s) in both {a} and {b}, "
                                f"e.g. {sorted(shared)[:3]}")
    for a in names:
        for b in names:
            if a == b or keys[a].size == 0 or keys[b].size == 0:
                continue
            hit = np.isin(keys[a], np.unique(keys[b])).mean(axis=1)
            dup = int((hit >= share).sum())
            report["duplicated_windows"][f"{a}->{b}"] = dup
            if dup:
                raise DataError(f"split leakage: {dup} agent window(s) of {a} repeat a "
                                f"trajectory of {b}")
    return report


def _sample_keys(xy: np.ndarray, k: np.ndarray, decimals: int) -> np.ndarray:
    """(M, T, 2) positions and (M, T) frame indices -> (M, T) uint64 hash keys."""
    q = np.round(xy.astype(np.float64) * 10 ** decimals).astype(np.int64).view(np.uint64)
    with np.errstate(over="ignore"):
        h = k.astype(np.int64).view(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        h ^= q[..., 0] * np.uint64(0xC2B2AE3D27D4EB4F)
        h = (h ^ (h >> np.uint64(29))) * np.uint64(0x165667B19E3779F9)
        h ^= q[..., 1] * np.uint64(0xD6E8FEB86659FD93)
        h ^= h >> np.uint64(32)
    return h


class SceneDataset(torch.utils.data.Dataset):
    """One split of a prepared scene cache (see :mod:`ebmtraj.data.prepare`).

    ``root``: the dataset's cache folder (``cache_root()/ebmtraj/<name>``). Items are dicts of
    one scene's tensors (the keys of the module docstring, without the leading N);
    ``self.tensors`` holds the whole split and ``self.lanes`` the LaneMap of each recording.
    """

    def __init__(self, root: str | Path, split: str = "train"):
        from ebmcore.io import load_tensors

        root = Path(root)
        if split not in SPLITS:
            raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
        path = root / f"scenes_{split}.pt"
        if not path.is_file():
            raise DataError(f"{path}: no prepared scenes; run `python -m data_prep.ngsim "
                            f"prepare` first")
        self.tensors = load_tensors(path)
        lanes = load_tensors(root / "lanes.pt") if (root / "lanes.pt").is_file() else {}
        self.lanes = {rec: LaneMap.from_tensors(d) for rec, d in lanes.items()}
        self.recordings = self.tensors["recordings"]

    def __len__(self) -> int:
        return int(self.tensors["states"].shape[0])

    def __getitem__(self, i: int) -> dict:
        return {k: v[i] for k, v in self.tensors.items()
                if isinstance(v, torch.Tensor) and v.dim() > 0}

    def lane_map(self, i: int) -> LaneMap | None:
        """The lane map of scene i's recording (None if the recording has none)."""
        return self.lanes.get(self.recordings[int(self.tensors["recording"][i])])
