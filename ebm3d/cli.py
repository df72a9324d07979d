"""``ebm3d``: train and use generative VoxelNets from the command line.

    ebm3d train CONFIG [key=value ...]        train (resuming a run) and write samples or the
                                               classification report, per the config's task
    ebm3d sample RUN [--n N] [key=value ...]   fresh samples from a trained run (multigrid when
                                               the run has levels)
    ebm3d recover RUN [--corruption random|region|both] [key=value ...]
    ebm3d superres RUN [key=value ...]
    ebm3d classify CONFIG [key=value ...]      train on all classes, linear classifier on features
    ebm3d evaluate RUN [--samples FILE]        inception score (training the reference classifier
                                               on first use) and nearest training neighbours
    ebm3d view TARGET [--png out.png]          the Open3D viewer (ebm3d.viz)

``key=value`` overrides any config key (``train.steps=100``, ``recovery.ratio=0.5``); for the
commands taking a RUN they apply to the run's saved config. Every command takes ``--seed``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from ebmcore.errors import ConfigError, DataError, DivergenceError
from ebmcore.io import atomic_write, load_tensors, save_tensors


def _json(path: Path, obj: dict) -> None:
    text = json.dumps(obj, indent=2)
    atomic_write(path, lambda tmp: tmp.write_text(text))


def _print(obj: dict) -> None:
    print(json.dumps(obj, indent=2))


def _load_cfg(args, task: str | None = None):
    from ebm3d.config import load_experiment

    overrides = list(args.overrides)
    if args.seed is not None:
        overrides.append(f"train.seed={args.seed}")
    if task is not None:
        overrides.append(f"task={task}")
    return load_experiment(args.config, overrides)


def cmd_train(args) -> int:
    cfg = _load_cfg(args)
    if args.fresh:
        _clear_run(cfg)
    if cfg.task == "classification":
        return _classify(cfg, args)
    from ebm3d.tasks.synthesis import run_synthesis

    report = run_synthesis(cfg, open3d=not args.no_open3d, progress=cfg.train.progress)
    _print({k: v for k, v in report.items() if k != "nearest_train_index"})
    return 0


def _clear_run(cfg) -> None:
    from ebm3d.tasks.training import level_dir, levels_of

    for res in levels_of(cfg):
        ckpt = level_dir(cfg, res) / "checkpoint.pt"
        ckpt.unlink(missing_ok=True)


def cmd_classify(args) -> int:
    cfg = _load_cfg(args, task="classification")
    if args.fresh:
        _clear_run(cfg)
    return _classify(cfg, args)


def _classify(cfg, args) -> int:
    from ebm3d.tasks.classification import run_classification
    from ebm3d.tasks.data import grids, load_shapes
    from ebm3d.tasks.synthesis import draw_samples, sample_report, write_samples
    from ebm3d.tasks.training import load_run

    report = run_classification(cfg, progress=cfg.train.progress)
    # samples of the all-class model (persistent chain states or fresh chains), for the inception score
    _, models = load_run(cfg.run_dir)
    buffer = load_tensors(cfg.run_dir / "checkpoint.pt")["chains"].get("buffer")
    samples = draw_samples(cfg, models, cfg.reference.n_samples, cfg.train.seed + 1, buffer)
    train = grids(load_shapes(cfg.data), "train", cfg.data.resolution)
    write_samples(cfg.run_dir, samples, sample_report(samples, train), open3d=not args.no_open3d)
    _print({k: v for k, v in report.items() if k not in ("selection_history",)})
    return 0


def _run_cfg(args):
    from ebm3d.tasks.training import load_run

    cfg, models = load_run(args.run, list(args.overrides))
    cfg.out_dir, cfg.name = str(Path(args.run).parent), Path(args.run).name
    return cfg, models


def cmd_sample(args) -> int:
    from ebm3d.tasks.data import load_shapes
    from ebm3d.tasks.synthesis import draw_samples, sample_report, write_samples
    from ebm3d.tasks.training import training_grids

    cfg, models = _run_cfg(args)
    n = args.n or cfg.synthesis.n_samples
    samples = draw_samples(cfg, models, n, args.seed or 0)
    report = sample_report(samples, training_grids(cfg, load_shapes(cfg.data)))
    report["files"] = write_samples(cfg.run_dir, samples, report, name=args.out, open3d=not args.no_open3d)
    _print({k: v for k, v in report.items() if k != "nearest_train_index"})
    return 0


def cmd_recover(args) -> int:
    from ebm3d.tasks.data import grids, load_shapes
    from ebm3d.tasks.recovery import evaluate_recovery
    from ebm3d.tasks.render import save_grid_png, save_open3d_png

    cfg, models = _run_cfg(args)
    model = models[-1]
    ds = load_shapes(cfg.data)
    rc = cfg.recovery
    truth = grids(ds, rc.split, cfg.data.resolution)[: rc.n_examples]
    train = grids(ds, "train", cfg.data.resolution)
    kinds = ["random", "region"] if args.corruption == "both" else [args.corruption]
    out = {"split": rc.split, "n_examples": len(truth), "config": {k: getattr(rc, k) for k in
           ("ratio", "box", "steps", "step_size", "noise", "init")}}
    for kind in kinds:
        results, arrays = evaluate_recovery(model, truth, train, rc, kind, args.seed or 0)
        out[kind] = results
        name = "recovery" if kind == "random" else f"recovery_{kind}"
        save_tensors(arrays, cfg.run_dir / f"{name}.pt")
        k = min(6, len(truth))
        rows = torch.stack([arrays["original"][:k], arrays["corrupted"][:k], arrays["recovered"][:k],
                            arrays["nearest_neighbour"][:k]], 1).flatten(0, 1)
        save_grid_png(rows, cfg.run_dir / f"{name}.png", n_cols=4,
                      titles=[t for _ in range(k) for t in ("original", "corrupted", "recovered", "nearest nb.")])
        if not args.no_open3d:
            save_open3d_png({key: arrays[key][:k] for key in ("original", "corrupted", "recovered")},
                            cfg.run_dir / f"{name}_o3d.png")
    _json(cfg.run_dir / "recovery.json", out)
    _print(out)
    return 0


def cmd_superres(args) -> int:
    from ebm3d.tasks.data import grids, load_shapes
    from ebm3d.tasks.render import save_grid_png, save_open3d_png
    from ebm3d.tasks.superres import evaluate_superres

    cfg, models = _run_cfg(args)
    sc = cfg.superres
    truth = grids(load_shapes(cfg.data), sc.split, cfg.data.resolution)[: sc.n_examples]
    results, arrays = evaluate_superres(models[-1], truth, sc, args.seed or 0)
    R = cfg.data.resolution
    out = {"split": sc.split, "n_examples": len(truth), "from": R // sc.factor, "to": R,
           "config": {k: getattr(sc, k) for k in ("factor", "steps", "step_size", "noise")}, **results}
    save_tensors(arrays, cfg.run_dir / "superres.pt")
    k = min(6, len(truth))
    rows = torch.stack([arrays["nearest"][:k], arrays["high"][:k], arrays["truth"][:k]], 1).flatten(0, 1)
    save_grid_png(rows, cfg.run_dir / "superres.png", n_cols=3,
                  titles=[t for _ in range(k) for t in (f"{R // sc.factor}^3 (nearest)", "super-resolved", "truth")])
    if not args.no_open3d:
        save_open3d_png({key: arrays[key][:k] for key in ("low", "high", "truth")}, cfg.run_dir / "superres_o3d.png")
    _json(cfg.run_dir / "superres.json", out)
    _print(out)
    return 0


def cmd_evaluate(args) -> int:
    from ebm3d.tasks.data import load_shapes
    from ebm3d.tasks.reference import score_samples, train_reference
    from ebm3d.tasks.synthesis import sample_report
    from ebm3d.tasks.training import training_grids

    cfg, _ = _run_cfg(args)
    samples_path = Path(args.samples) if args.samples else cfg.run_dir / "samples.pt"
    if not samples_path.is_file():
        raise DataError(f"{samples_path}: no samples (run ebm3d sample {args.run} first)")
    samples = load_tensors(samples_path)
    if not isinstance(samples, dict) or "samples" not in samples:
        raise DataError(f"{samples_path}: expected a dict with key 'samples'")
    samples = samples["samples"].float()
    ref_cfg = cfg.reference
    if args.reference:
        ref_cfg.run = args.reference
    classifier, ref_report = train_reference(ref_cfg, seed=args.seed or 0, progress=cfg.train.progress)
    from ebm3d.tasks.data import grids as split_grids

    real = split_grids(load_shapes(ref_cfg.data), "test", ref_cfg.data.resolution)
    out = {"samples": str(samples_path),
           "reference": {"run": ref_cfg.run, "test_accuracy": ref_report["test_accuracy"],
                         "val_accuracy": ref_report["val_accuracy"],
                         "real_test_inception_score": score_samples(classifier, real, ref_cfg.splits)}}
    if samples.shape[-1] == classifier.resolution:
        out["inception"] = score_samples(classifier, samples, ref_cfg.splits)
    else:
        out["inception"] = f"skipped: samples are {samples.shape[-1]}^3, the classifier takes {classifier.resolution}^3"
    nn = sample_report(samples, training_grids(cfg, load_shapes(cfg.data)))
    out["nearest_training_neighbour"] = {k: v for k, v in nn.items() if k != "nearest_train_index"}
    _json(cfg.run_dir / "evaluation.json", out)
    _print(out)
    return 0


def cmd_view(args) -> int:
    try:
        from ebm3d.viz import view_main
    except ImportError as err:
        print(f"ebm3d view: the Open3D viewer is not available ({err})", file=sys.stderr)
        return 2
    return view_main(args.rest)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ebm3d", description="Generative VoxelNet: train, sample, recover, "
                                     "super-resolve, classify, evaluate, view.")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p, target: str):
        p.add_argument(target, help="an experiment YAML" if target == "config" else "a run folder (runs/<name>)")
        p.add_argument("overrides", nargs="*", help="config overrides key.sub=value")
        p.add_argument("--seed", type=int, default=None, help="random seed")
        p.add_argument("--no-open3d", action="store_true", help="skip the Open3D PNG renders")
        p.add_argument("--threads", type=int, default=None,
                       help="torch CPU threads (1 is fastest on a busy shared machine)")
        return p

    p = common(sub.add_parser("train", help="train a run (resumes) and write its results"), "config")
    p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint and start over")
    p.set_defaults(fn=cmd_train)
    p = common(sub.add_parser("classify", help="unsupervised model on all classes + linear classifier"), "config")
    p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint and start over")
    p.set_defaults(fn=cmd_classify)
    p = common(sub.add_parser("sample", help="fresh samples from a trained run"), "run")
    p.add_argument("--n", type=int, default=None, help="number of samples (default synthesis.n_samples)")
    p.add_argument("--out", default="samples_fresh", help="file stem in the run folder (default samples_fresh)")
    p.set_defaults(fn=cmd_sample)
    p = common(sub.add_parser("recover", help="recover corrupted shapes; baselines in the same run"), "run")
    p.add_argument("--corruption", choices=["random", "region", "both"], default="both")
    p.set_defaults(fn=cmd_recover)
    p = common(sub.add_parser("superres", help="super-resolution vs nearest upsampling"), "run")
    p.set_defaults(fn=cmd_superres)
    p = common(sub.add_parser("evaluate", help="inception score and nearest neighbours of a run's samples"), "run")
    p.add_argument("--samples", help="a .pt with key 'samples' (default RUN/samples.pt)")
    p.add_argument("--reference", help="reference classifier folder (default reference.run of the config)")
    p.set_defaults(fn=cmd_evaluate)
    p = sub.add_parser("view", help="the Open3D viewer (see ebm3d view --help)", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(fn=cmd_view)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["view"]:  # the viewer parses its own options
        return cmd_view(argparse.Namespace(rest=argv[1:]))
    # --- generative PointNet: a config or run with `model: pointnet`, or reconstruct /
    # interpolate / robustness, goes to ebm3d.pointnet_cli (which documents its commands)
    from ebm3d.pointnet_cli import wants_pointnet

    if wants_pointnet(argv):
        from ebm3d.pointnet_cli import main as pointnet_main

        return pointnet_main(argv)
    # --- end of the PointNet block
    # key=value overrides may sit anywhere after the command (argparse cannot interleave positionals)
    overrides = [a for a in argv[1:] if "=" in a and not a.startswith("-")]
    args = build_parser().parse_args([a for a in argv if a not in overrides])
    if hasattr(args, "overrides"):
        args.overrides = list(args.overrides) + overrides
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    try:
        return args.fn(args)
    except (ConfigError, DataError, DivergenceError) as err:
        print(f"ebm3d {args.command}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
