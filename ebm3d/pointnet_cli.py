"""Command line of the generative PointNet (reached through ``ebm3d``; see :func:`wants_pointnet`).

    ebm3d train CONFIG [key=value ...]          CONFIG says ``model: pointnet``: train (resuming), then
                                                 samples (task synthesis) or the classifier and its
                                                 robustness curves (task classification)
    ebm3d sample RUN [--n N] [--points P] [--ply]
    ebm3d reconstruct RUN [key=value ...]       optimise the chain's initial noise (MSE x 1000)
    ebm3d interpolate RUN [key=value ...]       strips between two noise vectors
    ebm3d evaluate RUN                          MMD / COV / 1-NNA (CD, EMD) and JSD, with the oracle
                                                 and Gaussian references
    ebm3d classify CONFIG [key=value ...]       train on all classes + linear classifier (+ robustness)
    ebm3d robustness RUN                        the three robustness curves of a classification run

Every command takes ``--seed`` and ``--no-open3d`` (skip the PNG renders). Results go to the run
folder (``runs/<name>/``) as .pt arrays (``ebm3d view`` shows them), JSON reports and PNGs.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from ebmcore.cli_errors import cli_main, parse_with_overrides
from ebmcore.errors import ConfigError, DataError, DivergenceError
from ebmcore.io import atomic_write, save_tensors

RUN_COMMANDS = ("sample", "reconstruct", "interpolate", "evaluate", "robustness")
CONFIG_COMMANDS = ("train", "classify")
POINTNET_ONLY = ("reconstruct", "interpolate", "robustness")


def wants_pointnet(argv: list[str]) -> bool:
    """Whether an ``ebm3d`` command line is for the generative PointNet: a PointNet-only command,
    or a train/classify/sample/evaluate whose config file or run folder says ``model: pointnet``."""
    from ebm3d.tasks.pointnet_config import is_pointnet_config

    if not argv:
        return False
    if argv[0] in POINTNET_ONLY:
        return True
    if argv[0] in RUN_COMMANDS + CONFIG_COMMANDS:
        target = next((a for a in argv[1:] if not a.startswith("-") and "=" not in a), None)
        return target is not None and is_pointnet_config(target)
    return False


def _write_json(path: Path, obj: dict) -> None:
    text = json.dumps(obj, indent=2)
    atomic_write(path, lambda tmp: tmp.write_text(text))


def _print(obj: dict) -> None:
    print(json.dumps(obj, indent=2))


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _load_cfg(args, task: str | None = None):
    from ebm3d.tasks.pointnet_config import load_pointnet_experiment

    overrides = list(args.overrides)
    if args.seed is not None:
        overrides.append(f"train.seed={args.seed}")
    if task is not None:
        overrides.append(f"task={task}")
    return load_pointnet_experiment(args.config, overrides)


def _clear(cfg) -> None:
    from ebmcore.runs import request_fresh

    request_fresh(cfg.run_dir)  # set aside (not deleted) once the data load and training starts


# ------------------------------------------------------------------ synthesis


def _save_samples(cfg, model, n: int, n_points: int | None, seed: int, noise: str | None, open3d: bool,
                  ply: bool, stem: str = "samples") -> dict:
    from ebm3d.tasks.pointnet_eval import unit_sphere
    from ebm3d.tasks.pointnet_tasks import render, synthesise

    sc = cfg.synthesis
    samples = synthesise(model, cfg, n, n_points=n_points or sc.n_points, seed=seed,
                         noise=noise or sc.noise, batch_size=sc.batch_size)
    files = {"samples": str(save_tensors({"samples": samples, "seed": seed}, cfg.run_dir / f"{stem}.pt"))}
    if open3d:
        png = render(unit_sphere(samples[:36]), cfg.run_dir / f"{stem}.png")
        if png:
            files["png"] = str(png)
    if ply:
        from ebm3d.export import export_samples

        files["ply"] = str(export_samples(samples, cfg.run_dir / f"{stem}_ply", "ply")[0].parent)
    finite = bool(torch.isfinite(samples).all())
    return {"n": len(samples), "points": int(samples.shape[1]), "finite": finite,
            "min": float(samples.min()), "max": float(samples.max()),
            "std_per_axis": [round(float(v), 4) for v in samples.std(dim=1).mean(0)], "files": files}


def cmd_train(args) -> int:
    cfg = _load_cfg(args)
    if args.fresh:
        _clear(cfg)
    if cfg.task == "classification":
        return _classify(cfg, args)
    from ebm3d.tasks.pointnet_data import load_point_shapes, points
    from ebm3d.tasks.pointnet_train import train_pointnet

    ds = load_point_shapes(cfg.data, progress=cfg.train.progress)
    data = points(ds, "train", cfg.data.classes)
    model, trainer, seconds = train_pointnet(cfg, data)
    model.eval()
    report = {"run": str(cfg.run_dir), "steps": trainer.step, "train_seconds": round(seconds["wall"], 1),
              "train_cpu_seconds": round(seconds["cpu"], 1), "train_points": cfg.train_points,
              "n_train": len(data), "step_size": trainer.step_size,
              "samples": _save_samples(cfg, model, cfg.synthesis.n_samples, None, args.seed or 0, None,
                                       not args.no_open3d, False)}
    _write_json(cfg.run_dir / "train_report.json", report)
    _print(report)
    return 0


def _run(args):
    from ebm3d.tasks.pointnet_train import load_pointnet_run

    return load_pointnet_run(args.run, list(args.overrides))


def cmd_sample(args) -> int:
    cfg, model = _run(args)
    report = _save_samples(cfg, model, args.n or cfg.synthesis.n_samples, args.points, args.seed or 0,
                           args.noise, not args.no_open3d, args.ply, stem=args.out)
    _print(report)
    return 0


def cmd_reconstruct(args) -> int:
    from ebm3d.tasks.pointnet_data import load_point_shapes, points
    from ebm3d.tasks.pointnet_tasks import reconstruct, render

    cfg, model = _run(args)
    rc = cfg.reconstruction
    ds = load_point_shapes(cfg.data)
    targets = points(ds, rc.split, cfg.data.classes)[: rc.n_examples]
    n_points = cfg.train_points
    g = torch.Generator().manual_seed(args.seed or 0)
    if n_points < targets.shape[1]:  # the clouds the model was trained on: random subsets
        idx = torch.rand(targets.shape[:2], generator=g).argsort(1)[:, :n_points]
        targets = torch.gather(targets, 1, idx.unsqueeze(-1).expand(-1, -1, 3))
    report, arrays = reconstruct(model, cfg, targets, seed=args.seed or 0,
                                 progress=lambda d, t: _log(f"reconstructed {d}/{t}"))
    report.update(split=rc.split, iterations=rc.iterations, lr=rc.lr, lr_decay=rc.lr_decay,
                  chain_steps=cfg.train.sampler.steps)
    save_tensors(arrays, cfg.run_dir / f"{args.out}.pt")
    if not args.no_open3d:
        k = min(6, len(targets))
        rows = [[arrays["target"][i], arrays["initial"][i], arrays["reconstruction"][i]] for i in range(k)]
        render(rows, cfg.run_dir / f"{args.out}.png")
    _write_json(cfg.run_dir / f"{args.out}.json", report)
    _print({k: v for k, v in report.items() if k not in ("per_example_mse_x1000", "curve_x1000")})
    return 0


def cmd_interpolate(args) -> int:
    from ebm3d.tasks.pointnet_tasks import interpolate, render

    cfg, model = _run(args)
    strips = interpolate(model, cfg, seed=args.seed or 0)
    save_tensors({"interpolation": strips[0], "strips": strips, "path": cfg.interpolation.path},
                 cfg.run_dir / "interpolation.pt")
    out = {"pairs": int(strips.shape[0]), "steps": int(strips.shape[1]), "points": int(strips.shape[2]),
           "finite": bool(torch.isfinite(strips).all()), "file": str(cfg.run_dir / "interpolation.pt")}
    if not args.no_open3d:
        png = render([list(s) for s in strips], cfg.run_dir / "interpolation.png")
        out["png"] = str(png) if png else None
    _print(out)
    return 0


def cmd_evaluate(args) -> int:
    from ebmcore.io import load_tensors

    from ebm3d.tasks.pointnet_data import load_point_shapes, points
    from ebm3d.tasks.pointnet_eval import generation_report, point_subset
    from ebm3d.tasks.pointnet_tasks import synthesise

    started = time.time()
    cfg, model = _run(args)
    ec = cfg.evaluate
    ds = load_point_shapes(cfg.data)
    n_points = ec.n_points or cfg.train_points
    g = torch.Generator().manual_seed(args.seed or 0)
    refs = points(ds, ec.ref_split, cfg.data.classes)
    refs = point_subset(refs[: ec.n_ref] if ec.n_ref else refs, n_points, g)
    n = ec.n_samples or len(refs)
    if args.samples:
        samples = load_tensors(args.samples)["samples"][:n]
        if len(samples) < n:
            raise DataError(f"{args.samples}: {len(samples)} samples, the evaluation needs {n}")
    else:
        _log(f"drawing {n} samples of {n_points} points")
        samples = synthesise(model, cfg, n, n_points=n_points, seed=args.seed or 0,
                             batch_size=cfg.synthesis.batch_size)
        save_tensors({"samples": samples}, cfg.run_dir / "eval_samples.pt")
    train = point_subset(points(ds, "train", cfg.data.classes), n_points, g)
    report = generation_report(samples, refs, train, ec, seed=args.seed or 0, log=_log)
    report["settings"].update(ref_split=ec.ref_split, classes=cfg.data.classes,
                              data_normalisation=cfg.data.normalisation,
                              chain_steps=cfg.train.sampler.steps if cfg.synthesis.steps is None else cfg.synthesis.steps,
                              training_chain_steps=cfg.train.sampler.steps)
    _write_json(cfg.run_dir / "evaluation.json", report)
    if ec.record:
        _record_generation(cfg, report, started)
    _print(report)
    return 0


def _record_generation(cfg, report: dict, started: float) -> None:
    """The model row's CD metrics (fractions) with the oracle and blob rows, into the results file."""
    from ebmcore.results import record

    rows = report["rows"]
    train = json.loads((cfg.run_dir / "train_report.json").read_text())
    payload = {"one_nna_cd": rows["model"]["1-NNA-CD"], "cov_cd": rows["model"]["COV-CD"],
               "mmd_cd": rows["model"]["MMD-CD"], "rows": rows, "settings": report["settings"],
               "run": str(cfg.run_dir), "train_steps": train["steps"],
               "train_cpu_seconds": train.get("train_cpu_seconds")}
    record("ebm3d", cfg.evaluate.record, payload, started=started, train_seconds=train["train_seconds"])


# ------------------------------------------------------------------ classification


def _classify(cfg, args) -> int:
    from ebm3d.tasks.pointnet_classify import robustness_curves, run_classification
    from ebm3d.tasks.pointnet_data import load_point_shapes

    ds = load_point_shapes(cfg.data, progress=cfg.train.progress)
    report = run_classification(cfg, ds, log=_log)
    out = {k: v for k, v in report.items() if k != "selection_history"}
    if not args.no_robustness:
        rob = robustness_curves(cfg, ds, seed=args.seed or 0, log=_log)
        out["robustness"] = {k: dict(zip(map(str, c["values"]), c["accuracy"])) for k, c in rob["curves"].items()}
    _print(out)
    return 0


def cmd_classify(args) -> int:
    cfg = _load_cfg(args, task="classification")
    if args.fresh:
        _clear(cfg)
    return _classify(cfg, args)


def cmd_robustness(args) -> int:
    from ebm3d.tasks.pointnet_classify import robustness_curves
    from ebm3d.tasks.pointnet_data import load_point_shapes

    cfg, _ = _run(args)
    if not (cfg.run_dir / "selection.json").is_file():
        raise DataError(f"{cfg.run_dir}: no selection.json (run ebm3d classify on its config first)")
    rob = robustness_curves(cfg, load_point_shapes(cfg.data), seed=args.seed or 0, log=_log)
    _print(rob)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ebm3d", description="Generative PointNet: train, sample, reconstruct, "
                                     "interpolate, evaluate, classify, robustness.")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p, target: str):
        p.add_argument(target, help="an experiment YAML (model: pointnet)" if target == "config"
                       else "a run folder (runs/<name>)")
        p.add_argument("overrides", nargs="*", help="config overrides key.sub=value")
        p.add_argument("--seed", type=int, default=None, help="random seed")
        p.add_argument("--no-open3d", action="store_true", help="skip the Open3D PNG renders")
        return p

    for name, help_ in (("train", "train a run (resumes) and write its results"),
                        ("classify", "one model on all classes + linear classifier + robustness")):
        p = common(sub.add_parser(name, help=help_), "config")
        p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint and start over")
        p.add_argument("--no-robustness", action="store_true", help="classification: skip the robustness curves")
        p.set_defaults(fn=cmd_train if name == "train" else cmd_classify)
    p = common(sub.add_parser("sample", help="fresh samples from a trained run"), "run")
    p.add_argument("--n", type=int, default=None, help="number of samples (default synthesis.n_samples)")
    p.add_argument("--points", type=int, default=None, help="points per sample (default: the training count)")
    p.add_argument("--noise", choices=["constant", "none"], default=None, help="chain noise (default synthesis.noise)")
    p.add_argument("--ply", action="store_true", help="also export every sample as .ply")
    p.add_argument("--out", default="samples_fresh", help="file stem in the run folder (default samples_fresh)")
    p.set_defaults(fn=cmd_sample)
    p = common(sub.add_parser("reconstruct", help="reconstruct held-out clouds through the chain"), "run")
    p.add_argument("--out", default="reconstruction", help="file stem in the run folder (default reconstruction)")
    p.set_defaults(fn=cmd_reconstruct)
    p = common(sub.add_parser("interpolate", help="interpolation strips between noise vectors"), "run")
    p.set_defaults(fn=cmd_interpolate)
    p = common(sub.add_parser("evaluate", help="MMD/COV/1-NNA (CD, EMD), JSD with oracle and blob rows"), "run")
    p.add_argument("--samples", help="a .pt with key 'samples' to evaluate instead of fresh ones")
    p.set_defaults(fn=cmd_evaluate)
    p = common(sub.add_parser("robustness", help="robustness curves of a classification run"), "run")
    p.set_defaults(fn=cmd_robustness)
    return parser


@cli_main("ebm3d")  # expected errors: one line `ebm3d: error: ...`, exit 2; --debug: traceback
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_with_overrides(build_parser(), argv)  # key=value anywhere after the command
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
