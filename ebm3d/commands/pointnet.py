"""The generative PointNet's ``ebm3d`` commands (its entry in :mod:`ebm3d.registry`).

    ebm3d train CONFIG [key=value ...]          CONFIG names the model pointnet: train (resuming), then
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

import json
import sys
import time

import torch

from ebmcore.errors import DataError
from ebmcore.io import load_tensors, save_tensors

from ebm3d.commands.common import FRESH, N_SAMPLES, SAMPLES_OUT, load_config, print_json, write_json
from ebm3d.config import PointNetExperiment
from ebm3d.models.pointnet import GenerativePointNet
from ebm3d.registry import Command, ShapeModel, option
from ebm3d.tasks.data import point_source
from ebm3d.tasks.render import save_open3d_png
from ebm3d.tasks.selection import BEST_MODEL, load_best
from ebm3d.tasks.synthesis import draw_clouds
from ebm3d.tasks.training import build_point_model, load_point_run, train_point_model
from ebm3d.transforms import point_subset


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ synthesis


def _save_samples(cfg, model, n: int, n_points: int | None, seed: int, noise: str | None, open3d: bool,
                  ply: bool, stem: str = "samples") -> dict:
    from ebm3d.tasks.generation_metrics import unit_sphere

    sc = cfg.synthesis
    samples = draw_clouds(model, cfg, n, n_points=n_points or sc.n_points, seed=seed,
                          noise=noise or sc.noise, batch_size=sc.batch_size)
    files = {"samples": str(save_tensors({"samples": samples, "seed": seed}, cfg.run_dir / f"{stem}.pt"))}
    if open3d:
        png = save_open3d_png(unit_sphere(samples[:36]), cfg.run_dir / f"{stem}.png")
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
    cfg = load_config(args)
    if cfg.task == "classification":
        return _classify(cfg, args)
    source = point_source(cfg.data, progress=cfg.train.progress)
    data = source.points("train", cfg.data.classes)
    selector = _generation_selector(cfg, source)
    model, trainer, seconds = train_point_model(cfg, data, callbacks=[selector] if selector else None)
    if selector:
        selector.finish(model, trainer.step)
        model, _ = _selected(cfg, model)
    report = {"run": str(cfg.run_dir), "steps": trainer.step, "train_seconds": round(seconds["wall"], 1),
              "train_cpu_seconds": round(seconds["cpu"], 1), "train_points": cfg.train_points,
              "n_train": len(data), "step_size": trainer.step_size,
              "samples": _save_samples(cfg, model, cfg.synthesis.n_samples, None, args.seed or 0, None,
                                       not args.no_open3d, False)}
    write_json(cfg.run_dir / "train_report.json", report)
    print_json(report)
    return 0


def _generation_selector(cfg: PointNetExperiment, source):
    """The checkpoint selector of ``evaluate.select_every`` (None when it is off): validation
    clouds at the evaluation's point count (a seeded subset)."""
    from ebm3d.tasks.generation_metrics import GenerationSelector

    if not cfg.evaluate.select_every:
        return None
    val = source.points("val", cfg.data.classes)
    val = point_subset(val, cfg.evaluate.n_points or cfg.train_points, torch.Generator().manual_seed(0))
    return GenerationSelector(cfg, val, cfg.run_dir, log=_log)


def _selected(cfg: PointNetExperiment, model: GenerativePointNet) -> tuple[GenerativePointNet, int | None]:
    """The model with the selected checkpoint's weights when the run selects one
    (``evaluate.select_every``), and that checkpoint's step (None: the model as given)."""
    if not cfg.evaluate.select_every or not (cfg.run_dir / BEST_MODEL).is_file():
        return model, None
    return model, load_best(model, cfg.run_dir)


def _run(args) -> tuple[PointNetExperiment, GenerativePointNet]:
    """The config (with the command line's overrides) and trained model of ``args.run`` (the
    selected checkpoint when the run selects one)."""
    cfg, (model,) = load_point_run(args.run, list(args.overrides))
    return cfg, _selected(cfg, model)[0]


def cmd_sample(args) -> int:
    cfg, model = _run(args)
    report = _save_samples(cfg, model, args.n or cfg.synthesis.n_samples, args.points, args.seed or 0,
                           args.noise, not args.no_open3d, args.ply, stem=args.out)
    print_json(report)
    return 0


def cmd_reconstruct(args) -> int:
    from ebm3d.tasks.reconstruction import reconstruct

    cfg, model = _run(args)
    rc = cfg.reconstruction
    targets = point_source(cfg.data).points(rc.split, cfg.data.classes)[: rc.n_examples]
    g = torch.Generator().manual_seed(args.seed or 0)
    targets = point_subset(targets, cfg.train_points, g)  # the clouds the model was trained on: random subsets
    report, arrays = reconstruct(model, cfg, targets, seed=args.seed or 0,
                                 progress=lambda d, t: _log(f"reconstructed {d}/{t}"))
    report.update(split=rc.split, iterations=rc.iterations, lr=rc.lr, lr_decay=rc.lr_decay,
                  chain_steps=cfg.train.sampler.steps)
    save_tensors(arrays, cfg.run_dir / f"{args.out}.pt")
    if not args.no_open3d:
        k = min(6, len(targets))
        rows = [[arrays["target"][i], arrays["initial"][i], arrays["reconstruction"][i]] for i in range(k)]
        save_open3d_png(rows, cfg.run_dir / f"{args.out}.png")
    write_json(cfg.run_dir / f"{args.out}.json", report)
    print_json({k: v for k, v in report.items() if k not in ("per_example_mse_x1000", "curve_x1000")})
    return 0


def cmd_interpolate(args) -> int:
    from ebm3d.tasks.interpolation import interpolate

    cfg, model = _run(args)
    strips = interpolate(model, cfg, seed=args.seed or 0)
    save_tensors({"interpolation": strips[0], "strips": strips, "path": cfg.interpolation.path},
                 cfg.run_dir / "interpolation.pt")
    out = {"pairs": int(strips.shape[0]), "steps": int(strips.shape[1]), "points": int(strips.shape[2]),
           "finite": bool(torch.isfinite(strips).all()), "file": str(cfg.run_dir / "interpolation.pt")}
    if not args.no_open3d:
        png = save_open3d_png([list(s) for s in strips], cfg.run_dir / "interpolation.png")
        out["png"] = str(png) if png else None
    print_json(out)
    return 0


def cmd_evaluate(args) -> int:
    from ebm3d.tasks.generation_metrics import generation_report

    started = time.time()
    cfg, (model,) = load_point_run(args.run, list(args.overrides))
    model, selected_step = _selected(cfg, model)
    ec = cfg.evaluate
    source = point_source(cfg.data)
    n_points = ec.n_points or cfg.train_points
    g = torch.Generator().manual_seed(args.seed or 0)
    refs = source.points(ec.ref_split, cfg.data.classes)
    refs = point_subset(refs[: ec.n_ref] if ec.n_ref else refs, n_points, g)
    n = ec.n_samples or len(refs)
    if args.samples:
        samples = load_tensors(args.samples)["samples"][:n]
        if len(samples) < n:
            raise DataError(f"{args.samples}: {len(samples)} samples, the evaluation needs {n}")
    else:
        _log(f"drawing {n} samples of {n_points} points")
        samples = draw_clouds(model, cfg, n, n_points=n_points, seed=args.seed or 0,
                              batch_size=cfg.synthesis.batch_size)
        save_tensors({"samples": samples}, cfg.run_dir / "eval_samples.pt")
    train = point_subset(source.points("train", cfg.data.classes), n_points, g)
    report = generation_report(samples, refs, train, ec, seed=args.seed or 0, log=_log)
    report["settings"].update(ref_split=ec.ref_split, classes=cfg.data.classes,
                              data_normalisation=cfg.data.normalisation,
                              chain_steps=cfg.train.sampler.steps if cfg.synthesis.steps is None else cfg.synthesis.steps,
                              training_chain_steps=cfg.train.sampler.steps, selected_step=selected_step)
    write_json(cfg.run_dir / "evaluation.json", report)
    if ec.record:
        _record_generation(cfg, report, started)
    print_json(report)
    return 0


def _record_generation(cfg, report: dict, started: float) -> None:
    """The model row's CD metrics (fractions) with the oracle and blob rows, into the results file."""
    from ebmcore.results import record

    from ebm3d.tasks.training import train_cpu_seconds, train_seconds

    rows = report["rows"]
    train = json.loads((cfg.run_dir / "train_report.json").read_text())   # the last training call
    payload = {"one_nna_cd": rows["model"]["1-NNA-CD"], "one_nna_cd_gen_side": rows["model"]["1-NNA-CD-gen-side"],
               "one_nna_cd_ref_side": rows["model"]["1-NNA-CD-ref-side"], "cov_cd": rows["model"]["COV-CD"],
               "mmd_cd": rows["model"]["MMD-CD"], "rows": rows, "settings": report["settings"],
               "run": str(cfg.run_dir), "train_steps": train["steps"],
               "train_cpu_seconds": train_cpu_seconds(cfg.run_dir),
               "train_cpu_seconds_last_call": train.get("train_cpu_seconds")}
    # wall (and CPU) seconds summed over every training call of the run (resumes included)
    record("ebm3d", cfg.evaluate.record, payload, started=started, train_seconds=train_seconds(cfg.run_dir))


# ------------------------------------------------------------------ classification


def _classify(cfg, args) -> int:
    from ebm3d.tasks.classification import run_classification
    from ebm3d.tasks.robustness import robustness_curves

    source = point_source(cfg.data, progress=cfg.train.progress)
    report = run_classification(cfg, source, log=_log)
    out = {k: v for k, v in report.items() if k != "selection_history"}
    if not args.no_robustness:
        rob = robustness_curves(cfg, source, seed=args.seed or 0, log=_log)
        out["robustness"] = {k: dict(zip(map(str, c["values"]), c["accuracy"])) for k, c in rob["curves"].items()}
    print_json(out)
    return 0


def cmd_classify(args) -> int:
    return _classify(load_config(args, task="classification"), args)


def cmd_robustness(args) -> int:
    from ebm3d.tasks.robustness import robustness_curves

    cfg, _ = _run(args)
    if not (cfg.run_dir / "selection.json").is_file():
        raise DataError(f"{cfg.run_dir}: no selection.json (run ebm3d classify on its config first)")
    rob = robustness_curves(cfg, point_source(cfg.data), seed=args.seed or 0, log=_log)
    print_json(rob)
    return 0


_NO_ROBUSTNESS = option("--no-robustness", action="store_true", help="classification: skip the robustness curves")

def _load_data(cfg: PointNetExperiment, progress: bool = False):
    """Registry ``load_data``: the point source of ``cfg.data``."""
    return point_source(cfg.data, progress=progress)


def _inputs(cfg: PointNetExperiment, source, split: str) -> torch.Tensor:
    """Registry ``inputs``: the split's clouds (N, P, 3), every class the source holds."""
    return source.points(split)


def _untrained(cfg: PointNetExperiment, trained: GenerativePointNet) -> GenerativePointNet:
    """Registry ``untrained``: the network as :func:`train_point_model` initialises it (``train.seed``)."""
    torch.manual_seed(cfg.train.seed)
    return build_point_model(cfg).eval()


def _features(cfg: PointNetExperiment, model: GenerativePointNet, clouds: torch.Tensor) -> torch.Tensor:
    """Registry ``features``: per-point features of ``classify.features`` layers, max-pooled over
    the points (b, D)."""
    return model.features(clouds, cfg.classify.features)


MODEL = ShapeModel(
    name="pointnet",
    description="generative PointNet: train, sample, reconstruct, interpolate, evaluate, classify, robustness",
    config=PointNetExperiment,
    load_run=load_point_run,
    load_data=_load_data,
    inputs=_inputs,
    train=train_point_model,
    untrained=_untrained,
    features=_features,
    commands={
        "train": Command("train a run (resumes) and write its results", "config", cmd_train,
                         (FRESH, _NO_ROBUSTNESS)),
        "classify": Command("one model on all classes + linear classifier + robustness", "config", cmd_classify,
                            (FRESH, _NO_ROBUSTNESS)),
        "sample": Command("fresh samples from a trained run", "run", cmd_sample, (
            N_SAMPLES,
            option("--points", type=int, default=None, help="points per sample (default: the training count)"),
            option("--noise", choices=["constant", "none"], default=None,
                   help="chain noise (default synthesis.noise)"),
            option("--ply", action="store_true", help="also export every sample as .ply"),
            SAMPLES_OUT)),
        "reconstruct": Command("reconstruct held-out clouds through the chain", "run", cmd_reconstruct, (
            option("--out", default="reconstruction", help="file stem in the run folder (default reconstruction)"),)),
        "interpolate": Command("interpolation strips between noise vectors", "run", cmd_interpolate),
        "evaluate": Command("MMD/COV/1-NNA (CD, EMD), JSD with oracle and blob rows", "run", cmd_evaluate, (
            option("--samples", help="a .pt with key 'samples' to evaluate instead of fresh ones"),)),
        "robustness": Command("robustness curves of a classification run", "run", cmd_robustness),
    },
)
