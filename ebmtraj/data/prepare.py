"""Prepare a dataset: read -> clean -> lanes -> Frenet -> splits -> scenes -> cache + manifest.

Datasets (``name``):

=================  ============================================  =========================
name               input (default under ``data_root()``)          lanes / split
=================  ============================================  =========================
us101-vehicles     ``ngsim-us101-vehicles/`` per-vehicle CSVs      inferred from lateral x /
                                                                  by vehicle
commonroad         ``commonroad-ngsim-us101/*.xml``                lanelets / by recording
i80-first-minute   ``ngsim-i80-first-minute/*.csv`` (2 Hz)         ``ngsim-lanes/*80.txt``
                                                                  moved to the local frame /
                                                                  by vehicle
peachtree          ``ngsim-peachtree-sample/*21col.csv``           none (urban) / by vehicle
synthetic          written by ``ebmtraj.data.synthetic``          inferred from Lane_ID /
                   (raw 18-column format, highway-env traffic;   by recording
                   10 seeded recordings of 30 s)
raw                user files: raw ``.txt`` or the CSV export      ``lanes=`` centre-line file
                                                                  (moved to local) else
                                                                  inferred / by vehicle
=================  ============================================  =========================

The cache folder (``cache_root()/ebmtraj/<name>`` unless ``out`` is given) receives
``scenes_{train,val,test}.pt`` (:func:`ebmcore.io.save_tensors`; layout in
:mod:`ebmtraj.data.scenes`), ``lanes.pt`` (recording -> :meth:`LaneMap.to_tensors`) and
``manifest.json``: inputs, settings, counts, and everything skipped (bad rows with file and row,
gaps, short tracks, obstacles without trajectories, duplicated CommonRoad tracks) plus the split
and its leakage check. Source files are only read.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ebmcore.errors import ConfigError, DataError
from ebmcore.io import atomic_write, save_tensors
from ebmcore.paths import cache_root, data_root

from .cleaning import CleanConfig, clean
from .commonroad import read_commonroad
from .headways import derive_headways
from .lanes import LaneMap, fit_rigid
from .ngsim import (read_i80_first_minute, read_ngsim_csv, read_ngsim_raw, read_us101_vehicles,
                    recorded_headways)
from .scenes import SceneConfig, annotate_frenet, assign_splits, build_scenes, check_leakage

DATASETS = ("us101-vehicles", "commonroad", "i80-first-minute", "peachtree", "synthetic", "raw")
# The built-in default: this many highway-env recordings (seeds seed, seed+1, ...) of this length,
# split by recording (highway-env spawns every vehicle at the start, so vehicles of one recording
# are all neighbours of each other and a split by vehicle would leave test scenes empty).
SYNTHETIC_RECORDINGS = 10
SYNTHETIC_DURATION_S = 30.0


def prepare(name: str, *, inputs: list[str | Path] | None = None, out: str | Path | None = None,
            seed: int = 0, clean_config: CleanConfig | None = None,
            scene_config: SceneConfig | None = None, fractions=(0.7, 0.1, 0.2),
            limit: int | None = None, lanes: str | Path | None = None,
            on_bad: str | None = None) -> Path:
    """Prepare dataset ``name`` into its cache folder and return that folder.

    ``inputs``: files or folders overriding the defaults; ``limit``: read only the first N
    vehicles (us101-vehicles) or scenarios (commonroad), or write N synthetic recordings -- for
    quick runs; ``seed``: the split's shuffle and the synthetic traffic; ``lanes``: a
    ``centerlines*.txt`` for ``raw``; ``on_bad``: 'raise' or 'drop' (default 'drop' for
    Peachtree, whose sample holds reused ids and duplicate rows, else 'raise').
    """
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; choose one of {DATASETS}")
    started = time.time()
    ccfg, scfg = clean_config or CleanConfig(), scene_config or SceneConfig()
    if abs(scfg.dt - ccfg.dt) > 1e-9:
        raise ConfigError(f"scene dt ({scfg.dt}) differs from cleaning dt ({ccfg.dt})")
    out = Path(out) if out is not None else cache_root() / "ebmtraj" / name
    manifest = {"dataset": name, "seed": seed, "inputs": [], "clean_config": asdict(ccfg),
                "scene_config": asdict(scfg), "fractions": list(fractions)}
    table, lane_maps, split_by, group_of = _read(name, inputs, limit, lanes, on_bad, seed,
                                                 out, manifest)
    tracks, creport = clean(table, ccfg)
    manifest["cleaning"] = creport
    if tracks.empty:
        raise DataError(f"{name}: no track survived cleaning (see the cleaning report)")
    lane_maps = _finish_lanes(name, tracks, lane_maps, manifest)
    tracks = annotate_frenet(tracks, lane_maps)
    if name != "us101-vehicles":   # complete traffic: each vehicle's leader is among the tracks
        tracks["headway"] = derive_headways(tracks)
        manifest["headways"] = {"derived": True, "rows_with_leader": float((tracks["headway"] > 0).mean())}
    split_of = assign_splits(tracks, split_by, fractions=fractions, seed=seed, group_of=group_of)
    scenes, sreport = build_scenes(tracks, split_of, scfg, ccfg)
    manifest["scenes"] = sreport
    manifest["split"] = {"by": split_by, "vehicles": pd.Series(split_of).value_counts().to_dict()}
    if group_of:
        groups = {}
        for (rec, _), s in split_of.items():
            groups.setdefault(s, set()).add(group_of.get(rec, rec))
        manifest["split"]["groups"] = {s: sorted(g) for s, g in groups.items()}
    manifest["leakage"] = check_leakage(scenes)
    if name == "us101-vehicles":   # recorded headways (the leaders are mostly not among the tracks)
        src = Path(inputs[0]) if inputs else data_root() / "ngsim-us101-vehicles"
        for tensors in scenes.values():
            tensors["headway"] = torch.as_tensor(recorded_headways(tensors, src), dtype=torch.float32)
    for split, tensors in scenes.items():
        save_tensors(tensors, out / f"scenes_{split}.pt")
    save_tensors({rec: lm.to_tensors() for rec, lm in lane_maps.items()}, out / "lanes.pt")
    manifest["elapsed_s"] = round(time.time() - started, 1)
    atomic_write(out / "manifest.json",
                 lambda p: p.write_text(json.dumps(manifest, indent=1, default=_json)))
    return out


def _read(name, inputs, limit, lanes, on_bad, seed, out, manifest):
    """Read the dataset's table; returns (table, lane maps or {}, split_by, group_of)."""
    root = data_root()
    group_of = None
    if name == "us101-vehicles":
        src = Path(inputs[0]) if inputs else root / "ngsim-us101-vehicles"
        table = read_us101_vehicles(src, vehicles=limit, on_bad=on_bad or "raise")
        manifest["inputs"] = [str(src)]
        _collect_reports([table], manifest)
        return table, {}, "vehicle", None
    if name == "commonroad":
        files = _files(inputs, root / "commonroad-ngsim-us101", "*.xml")[:limit]
        table, lane_maps, group_of = _read_commonroad_files(files, on_bad or "raise", manifest)
        return table, lane_maps, "recording", group_of
    if name == "i80-first-minute":
        files = _files(inputs, root / "ngsim-i80-first-minute", "*.csv")
        tables = [read_i80_first_minute(f, on_bad=on_bad or "raise") for f in files]
        manifest["inputs"] = [str(f) for f in files]
        _collect_reports(tables, manifest)
        lanes = lanes or root / "ngsim-lanes" / "centerlines80.txt"
        return pd.concat(tables, ignore_index=True), {"__file__": lanes}, "vehicle", None
    if name == "peachtree":
        files = _files(inputs, root / "ngsim-peachtree-sample", "*21col.csv")
        tables = [read_ngsim_csv(f, on_bad=on_bad or "drop") for f in files]
        manifest["inputs"] = [str(f) for f in files]
        _collect_reports(tables, manifest)
        return pd.concat(tables, ignore_index=True), {}, "vehicle", None
    if name == "synthetic":
        from .synthetic import write_recording

        files = [write_recording(out / "raw" / f"synthetic_seed{seed + i}.txt", seed=seed + i,
                                 duration_s=SYNTHETIC_DURATION_S)
                 for i in range(limit or SYNTHETIC_RECORDINGS)]
        tables = [read_ngsim_raw(f) for f in files]
        manifest["inputs"] = [str(f) for f in files]
        _collect_reports(tables, manifest)
        return pd.concat(tables, ignore_index=True), {}, "recording", None
    files = [Path(f) for f in inputs or []]
    if not files:
        raise ConfigError("dataset 'raw' needs input files (raw .txt or CSV export)")
    tables = [read_ngsim_csv(f, on_bad=on_bad or "raise") if _has_header(f)
              else read_ngsim_raw(f, on_bad=on_bad or "raise") for f in files]
    manifest["inputs"] = [str(f) for f in files]
    _collect_reports(tables, manifest)
    return pd.concat(tables, ignore_index=True), ({"__file__": lanes} if lanes else {}), \
        "vehicle", group_of


def _read_commonroad_files(files, on_bad, manifest):
    """Read scenarios; skip tracks that repeat an earlier scenario of the same recording."""
    tables, lane_maps, group_of, seen = [], {}, {}, {}
    skipped, duplicates = [], []
    for f in files:
        table, lanes = read_commonroad(f, on_bad=on_bad)
        rep = table.attrs["report"]
        skipped += rep.skipped
        manifest.setdefault("reader", {"bad_rows": []})["bad_rows"] += [
            vars(b) for b in rep.bad_rows]
        sid, group = table.attrs["scenario"], table.attrs["group"]
        group_of[sid] = group
        keys = seen.setdefault(group, {})
        keep = []
        for vid, veh in table.groupby("vehicle_id"):
            pts = set(map(tuple, np.round(veh[["x", "y"]].to_numpy(), 2)))
            dup_of = next((s for s, p in keys.items() if len(pts & p) >= 0.5 * len(pts)), None)
            if dup_of is not None:
                duplicates.append({"scenario": sid, "obstacle_id": int(vid),
                                   "duplicate_of": dup_of})
                continue
            keep.append(veh)
        keys.setdefault(sid, set()).update(
            p for veh in keep for p in map(tuple, np.round(veh[["x", "y"]].to_numpy(), 2)))
        if keep:
            tables.append(pd.concat(keep))
            lane_maps[sid] = lanes
    manifest["inputs"] = [str(f) for f in files]
    manifest["skipped_obstacles"] = skipped
    manifest["duplicate_tracks"] = {"count": len(duplicates), "tracks": duplicates}
    if not tables:
        raise DataError("commonroad: no scenario had a usable vehicle")
    return pd.concat(tables, ignore_index=True), lane_maps, group_of


def _finish_lanes(name, tracks, lane_maps, manifest) -> dict[str, LaneMap]:
    """Resolve lane maps per recording: lane file moved to the local frame, or inferred."""
    recs = sorted(tracks["recording"].unique())
    info = {}
    if "__file__" in lane_maps:
        path = Path(lane_maps.pop("__file__"))
        ok = tracks[["global_x", "global_y"]].notna().all(1)
        if ok.sum() >= 3:
            global_map = LaneMap.from_ngsim_files(
                path, path.with_name(path.name.replace("centerlines", "boundaries"))
                if "centerlines" in path.name and
                path.with_name(path.name.replace("centerlines", "boundaries")).is_file()
                else None)
            sel = tracks[ok]
            r, t, rms, kept = fit_rigid(sel[["global_x", "global_y"]].to_numpy(),
                                        sel[["x_raw", "y_raw"]].to_numpy())
            local = global_map.transformed(r, t).oriented_to_traffic(
                tracks["x"].to_numpy(), tracks["y"].to_numpy(), tracks["track_id"].to_numpy())
            lane_maps.update({rec: local for rec in recs})
            info["lanes"] = {"source": global_map.source, "global_to_local_rms_m": rms,
                             "fit_points": kept, "rows_with_global": int(ok.sum())}
        else:
            info["lanes"] = {"source": str(path),
                             "note": "no Global_X/Y in the data: lanes inferred instead"}
    if name == "peachtree":
        info["lanes"] = {"note": "urban intersections, no lane map: Frenet columns are NaN"}
        manifest["lanes"] = info
        return {}
    missing = [r for r in recs if r not in lane_maps]
    if missing:
        sel = tracks[tracks["recording"].isin(missing)]
        inferred = LaneMap.infer_from_lateral(sel["x"].to_numpy(), sel["y"].to_numpy(),
                                              lane_id=sel["lane_id"],
                                              source=f"inferred from lateral x of {name}")
        lane_maps.update({rec: inferred for rec in missing})
        info["inferred"] = {"recordings": missing, "lane_ids": [l.lane_id for l in
                                                                inferred.lanes],
                            "centres_m": [round(l.centre.coords[0][0], 2) for l in inferred.lanes],
            "width_m": round(inferred.lanes[0].width, 2)}
    on = [lane_maps[r].on_road(g["x"].to_numpy(), g["y"].to_numpy()).mean()
          for r, g in tracks.groupby("recording")]
    info["on_road_share"] = float(np.mean(on))  # how well the maps cover the tracks
    manifest["lanes"] = info
    return lane_maps


def _collect_reports(tables, manifest):
    reps = [t.attrs["report"].as_dict() for t in tables]
    manifest["reader"] = {k: [x for r in reps for x in r[k]] for k in ("bad_rows", "skipped",
                                                                         "notes")}


def _files(inputs, default: Path, pattern: str) -> list[Path]:
    if inputs:
        files = []
        for p in map(Path, inputs):
            files += sorted(p.glob(pattern)) if p.is_dir() else [p]
    else:
        if not default.is_dir():
            raise DataError(f"{default}: dataset folder not found (set EBM_DATA)")
        files = sorted(default.glob(pattern))
    if not files:
        raise DataError(f"no input files matching {pattern} in {inputs or default}")
    return files


def _has_header(path: Path) -> bool:
    with open(path, errors="replace") as fh:
        first = fh.readline()
    return any(c.isalpha() for c in first)


def _json(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return str(obj)
