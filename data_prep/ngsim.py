"""Command line: prepare NGSIM / CommonRoad trajectory datasets into cached scene tensors.

Examples::

    python -m data_prep.ngsim prepare us101-vehicles            # shared per-vehicle CSVs
    python -m data_prep.ngsim prepare commonroad                # shared CommonRoad scenarios
    python -m data_prep.ngsim prepare synthetic --seed 0        # built-in highway-env default
    python -m data_prep.ngsim prepare raw --input trajectories-0750am-0805am.txt \\
        --lanes ngsim-lanes/centerlines101.txt                  # a full raw file you downloaded
    python -m data_prep.ngsim info us101-vehicles               # print the cached manifest

Each run writes ``scenes_{train,val,test}.pt``, ``lanes.pt`` and ``manifest.json`` under
``cache_root()/ebmtraj/<dataset>`` (or ``--out``); see :mod:`ebmtraj.data.prepare`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ebmcore.cli_errors import cli_main
from ebmcore.errors import ConfigError, DataError
from ebmcore.paths import cache_root


def build_parser() -> argparse.ArgumentParser:
    from ebmtraj.data.prepare import DATASETS

    ap = argparse.ArgumentParser(prog="python -m data_prep.ngsim",
                                 description="Prepare trajectory datasets into scene tensors.")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="read, clean, window and cache a dataset")
    p.add_argument("dataset", choices=DATASETS)
    p.add_argument("--input", nargs="*", default=None,
                   help="input files or folders (default: the shared data for the dataset)")
    p.add_argument("--out", default=None, help="cache folder (default: cache_root()/ebmtraj/"
                                               "<dataset>)")
    p.add_argument("--seed", type=int, default=0, help="split shuffle (and synthetic traffic)")
    p.add_argument("--limit", type=int, default=None,
                   help="only the first N vehicles / scenarios (quick runs)")
    p.add_argument("--lanes", default=None, help="centerlines*.txt for the 'raw' dataset")
    p.add_argument("--on-bad", choices=("raise", "drop"), default=None,
                   help="bad rows: raise (default) or drop and list them in the manifest")
    p.add_argument("--history", type=int, default=10, help="history frames")
    p.add_argument("--future", type=int, default=40, help="future frames")
    p.add_argument("--stride", type=int, default=10, help="frames between window starts")
    p.add_argument("--train-stride", type=int, default=None,
                   help="frames between training-window starts (default: --stride)")
    p.add_argument("--neighbours", type=int, default=5, help="K nearest neighbours")
    p.add_argument("--radius", type=float, default=30.0, help="neighbour radius [m]")
    p.add_argument("--window", type=int, default=21, help="Savitzky-Golay window [frames]")
    p.add_argument("--polyorder", type=int, default=3, help="Savitzky-Golay order")
    p.add_argument("--wheelbase", type=float, default=2.7, help="for steering [m]")
    i = sub.add_parser("info", help="print a prepared dataset's manifest summary")
    i.add_argument("dataset")
    i.add_argument("--out", default=None)
    return ap


@cli_main("data_prep.ngsim")  # other expected errors: one line too, exit 2; --debug: traceback
def main(argv=None) -> int:
    from ebmtraj.data.cleaning import CleanConfig
    from ebmtraj.data.prepare import prepare
    from ebmtraj.data.scenes import SceneConfig

    args = build_parser().parse_args(argv)
    try:
        if args.command == "info":
            root = Path(args.out) if args.out else cache_root() / "ebmtraj" / args.dataset
            print(json.dumps(summary(json.loads((root / "manifest.json").read_text())),
                             indent=1))
            return 0
        ccfg = CleanConfig(window=args.window, polyorder=args.polyorder,
                           wheelbase=args.wheelbase, min_length=max(25, args.window))
        scfg = SceneConfig(history=args.history, future=args.future, stride=args.stride,
                           train_stride=args.train_stride, neighbours=args.neighbours, radius=args.radius)
        out = prepare(args.dataset, inputs=args.input, out=args.out, seed=args.seed,
                      clean_config=ccfg, scene_config=scfg, limit=args.limit,
                      lanes=args.lanes, on_bad=args.on_bad)
        print(json.dumps(summary(json.loads((out / "manifest.json").read_text())), indent=1))
        print(f"cached in {out}")
        return 0
    except (DataError, ConfigError, FileNotFoundError) as err:
        print(f"data_prep.ngsim: error: {err}", file=sys.stderr)
        return 2


def summary(m: dict) -> dict:
    """The headline numbers of a manifest."""
    c = m.get("cleaning", {})
    return {
        "dataset": m.get("dataset"), "windows": m.get("scenes", {}).get("windows"),
        "mean_neighbours": m.get("scenes", {}).get("mean_neighbours"),
        "split": m.get("split"), "tracks": c.get("tracks"),
        "bad_rows": len(m.get("reader", {}).get("bad_rows", [])),
        "duplicates_dropped": c.get("duplicates_dropped"), "gaps": len(c.get("gaps", [])),
        "short_segments": len(c.get("short_segments", [])),
        "skipped_obstacles": len(m.get("skipped_obstacles", [])),
        "duplicate_tracks": m.get("duplicate_tracks", {}).get("count"),
        "smoothing_dev_m": {"rms": c.get("smoothing_dev_rms"), "max": c.get("smoothing_dev_max")},
        "lanes": m.get("lanes"), "leakage": m.get("leakage"), "elapsed_s": m.get("elapsed_s"),
    }


if __name__ == "__main__":
    sys.exit(main())
