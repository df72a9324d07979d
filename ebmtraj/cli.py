"""``ebmtraj prepare|train|predict|evaluate|view``: the command line of EBM-IOC experiments.

Each command but ``prepare`` takes an experiment YAML (``configs/ioc_*.yaml``) and overrides
``key.sub=value``; runs write to ``runs/<name>/``. Examples::

    ebmtraj prepare configs/ioc_demo.yaml              # the built-in synthetic recording
    ebmtraj train configs/ioc_demo.yaml                # EBM-IOC and the LSTM baseline
    ebmtraj evaluate configs/ioc_demo.yaml             # every method on the test split
    ebmtraj predict configs/ioc_demo.yaml --index 0    # one scene's predictions (JSON)
    ebmtraj view configs/ioc_demo.yaml --index 0       # runs/ioc_demo/view_test_0.png
"""
from __future__ import annotations

import argparse
import json
import sys

import torch

from ebmcore.cli_errors import cli_main, parse_with_overrides
from ebmcore.errors import ConfigError, DataError


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="ebmtraj", description="Energy-based continuous inverse optimal "
                                 "control of vehicle trajectories.")
    sub = ap.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("config", help="experiment YAML (configs/ioc_*.yaml)")
        p.add_argument("overrides", nargs="*", help="config overrides key.sub=value")
        p.add_argument("--seed", type=int, default=None, help="random seed (overrides the config)")
        p.add_argument("--threads", type=int, default=1,
                       help="torch CPU threads (default 1: the small batched ops here gain nothing "
                            "from more, and oversubscribed threads slow a shared machine down)")

    p = sub.add_parser("prepare", help="prepare the config's dataset into its scene cache")
    common(p)
    p.add_argument("--limit", type=int, default=None, help="only the first N vehicles / scenarios")
    p = sub.add_parser("train", help="train EBM-IOC (and/or the LSTM baseline)")
    common(p)
    p.add_argument("--model", choices=("ioc", "lstm", "all"), default="all")
    p.add_argument("--fresh", action="store_true",
                   help="start over: an existing run folder is set aside (renamed "
                        "<run>.previous-<UTC time>), nothing is deleted")
    p = sub.add_parser("predict", help="predict one split (or one scene) and save the predictions")
    common(p)
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--index", type=int, default=None, help="one scene of the split (prints JSON)")
    p.add_argument("--methods", nargs="*", default=["ebm_opt", "ebm_sample"])
    p.add_argument("--out", default=None, help="where to save (default runs/<name>/pred_<split>.pt)")
    p = sub.add_parser("evaluate", help="every method on the identical scenes of a split")
    common(p)
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--methods", nargs="*", default=None)
    p.add_argument("--tag", default="", help="suffix of the result files (eval_<split><tag>.json / .md)")
    p = sub.add_parser("view", help="render one scene with its predictions to PNG")
    common(p)
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--index", type=int, default=0)
    p.add_argument("--out", default=None, help="PNG path (default runs/<name>/view_<split>_<index>.png)")
    p.add_argument("--open3d", action="store_true", help="also show the scene in an Open3D window")
    for name, what in PLANNER_HELP.items():     # dispatched before parsing: they take a checkpoint
        sub.add_parser(name, help=what, add_help=False)
    return ap


PLANNER_COMMANDS = {"evaluate-closed-loop": "closed_loop", "plan-commonroad": "commonroad_planning"}
PLANNER_HELP = {"evaluate-closed-loop": "a planner checkpoint in the highway-env closed loop "
                                        "(`ebmtraj evaluate-closed-loop --help`)",
                "plan-commonroad": "a planner checkpoint on the CommonRoad planning problems "
                                   "(`ebmtraj plan-commonroad --help`)"}


@cli_main("ebmtraj")  # expected errors: one line `ebmtraj: error: ...`, exit 2; --debug: traceback
def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in PLANNER_COMMANDS:  # planner evaluations take a checkpoint, not a config
        import importlib

        module = importlib.import_module(f"ebmtraj.{PLANNER_COMMANDS[argv[0]]}")
        entry = module.closed_loop_main if argv[0] == "evaluate-closed-loop" else module.commonroad_main
        return entry(argv[1:])
    args = parse_with_overrides(build_parser(), argv)  # key=value anywhere after the command
    torch.set_num_threads(max(1, args.threads))
    from .config import load

    overrides = list(args.overrides)
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    cfg = load(args.config, overrides)
    torch.manual_seed(cfg.seed)
    return {"prepare": _prepare, "train": _train, "predict": _predict, "evaluate": _evaluate,
            "view": _view}[args.command](cfg, args)


def _prepare(cfg, args) -> int:
    from .data.prepare import prepare

    out = prepare(cfg.data.dataset, out=cfg.data.root(), seed=cfg.seed,
                  limit=args.limit or cfg.data.prepare_limit, scene_config=cfg.data.scene_config())
    print(f"cached in {out} (summary: {out / 'manifest.json'})")
    return 0


def _train(cfg, args) -> int:
    from ebmcore.runs import request_fresh

    from .experiment import fit_ioc, fit_lstm

    if args.fresh:
        if args.model == "lstm":
            raise ConfigError("--fresh starts the EBM-IOC run over; --model lstm refits the LSTM "
                              "in the existing run without it")
        request_fresh(cfg.run_dir())    # set aside once stage 2's Trainer opens the folder
    if args.model in ("ioc", "all"):
        s = fit_ioc(cfg)
        print(f"EBM-IOC: best validation mean RMSE {s.get('best_val', float('nan')):.3f} m at step "
              f"{s.get('best_step')} ({s['total_s']:.0f} s); model in {cfg.run_dir() / 'model.pt'}")
    if args.model in ("lstm", "all"):
        s = fit_lstm(cfg)
        print(f"LSTM: best validation mean RMSE {s['best_val_mean_rmse']:.3f} m at step {s['best_step']} "
              f"({s['elapsed_s']:.0f} s)")
    return 0


def _predict(cfg, args) -> int:
    from ebmcore.io import save_tensors

    from .experiment import load_split, predictions, subset_scenes

    scenes, lanes = load_split(cfg, args.split)
    if args.index is not None:
        if not 0 <= args.index < scenes["mask"].shape[0]:
            raise DataError(f"--index {args.index} is outside the {scenes['mask'].shape[0]} scenes of {args.split}")
        scenes = subset_scenes(scenes, torch.tensor([args.index]))
    preds = predictions(cfg, scenes, lanes, args.methods)
    if args.index is not None:
        print(json.dumps({m: {"target_positions": p["pos"][0, :, 0].tolist(), "time_s": p["time_s"]}
                          for m, p in preds.items()}))
        return 0
    out = args.out or cfg.run_dir() / f"pred_{args.split}.pt"
    save_tensors({m: {"pos": p["pos"].float(), "head": p["head"].float()} for m, p in preds.items()}, out)
    print(f"saved {', '.join(preds)} predictions of {scenes['mask'].shape[0]} scenes to {out}")
    return 0


def _evaluate(cfg, args) -> int:
    from .experiment import evaluate, markdown

    res = evaluate(cfg, args.split, args.methods, tag=args.tag)
    print(markdown(res))
    print(f"written to {cfg.run_dir() / f'eval_{args.split}{args.tag}.json'}")
    return 0


def _view(cfg, args) -> int:
    from .experiment import load_split, predictions, subset_scenes
    from .viz import render_scene

    scenes, lanes = load_split(cfg, args.split)
    n = scenes["mask"].shape[0]
    if not 0 <= args.index < n:
        raise DataError(f"--index {args.index} is outside the {n} scenes of {args.split}")
    one = subset_scenes(scenes, torch.tensor([args.index]))
    methods = ["ebm_sample", "ebm_opt", "cv"]
    preds = predictions(cfg, one, lanes, methods, log=lambda *a: None)
    H = int(one["history"])
    raw = one["positions_raw"][0]
    mask = one["mask"][0]
    rec = one["recordings"][int(one["recording"][0])]
    out = args.out or cfg.run_dir() / f"view_{args.split}_{args.index}.png"
    path = render_scene(out, lanes=lanes.get(rec), history=raw[0, :H], future=raw[0, H:],
                        samples=preds["ebm_sample"]["pos"][0, :, 0], min_cost=preds["ebm_opt"]["pos"][0, 0, 0],
                        others=raw[1:][mask[1:], :H], others_future=raw[1:][mask[1:], H:],
                        extra={"constant velocity": preds["cv"]["pos"][0, 0, 0]},
                        title=f"{cfg.data.dataset} {args.split} scene {args.index} ({rec})")
    print(f"wrote {path}")
    if args.open3d:
        _open3d_window(raw, mask, preds)
    return 0


def _open3d_window(raw, mask, preds):
    """The same scene as 3-D polylines in an Open3D window (needs a display)."""
    import numpy as np
    import open3d as o3d

    geoms = []

    def line(p, colour):
        p = np.asarray(p, dtype=float)
        pts = np.c_[p, np.zeros(len(p))]
        ls = o3d.geometry.LineSet(o3d.utility.Vector3dVector(pts),
                                  o3d.utility.Vector2iVector([[i, i + 1] for i in range(len(p) - 1)]))
        ls.paint_uniform_color(colour)
        geoms.append(ls)

    for a in range(raw.shape[0]):
        if mask[a]:
            line(raw[a], (0.1, 0.4, 0.9) if a == 0 else (0.5, 0.5, 0.5))
    for s in preds["ebm_sample"]["pos"][0, :, 0]:
        line(s, (1.0, 0.6, 0.1))
    line(preds["ebm_opt"]["pos"][0, 0, 0], (0.9, 0.1, 0.1))
    o3d.visualization.draw_geometries(geoms)


if __name__ == "__main__":
    sys.exit(main())
