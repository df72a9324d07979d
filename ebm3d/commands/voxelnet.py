"""The generative VoxelNet's ``ebm3d`` commands (its entry in :mod:`ebm3d.registry`).

    ebm3d train CONFIG [key=value ...] [--record SECTION]
                                               train (resuming a run) and write samples or the
                                               classification report, per the config's task;
                                               --record also evaluates on the test split (samples,
                                               70 % recovery, super-resolution; or trained against
                                               untrained features) into docs/results/ebm3d.json
    ebm3d sample RUN [--n N] [key=value ...]   fresh samples from a trained run (multigrid when
                                               the run has levels)
    ebm3d recover RUN [--corruption random|region|both] [key=value ...]
    ebm3d superres RUN [key=value ...]
    ebm3d classify CONFIG [key=value ...]      train on all classes, linear classifier on features
    ebm3d evaluate RUN [--samples FILE]        inception score (training the reference classifier
                                               on first use) and nearest training neighbours

``key=value`` overrides any config key (``train.steps=100``, ``recovery.ratio=0.5``); for the
commands taking a RUN they apply to the run's saved config. Every command takes ``--seed`` and
``--threads``.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from ebmcore.errors import ConfigError, DataError
from ebmcore.io import load_tensors

from ebm3d.commands.common import FRESH, N_SAMPLES, SAMPLES_OUT, load_config, print_json, write_json
from ebm3d.config import VoxelNetExperiment
from ebm3d.experiment import load_experiment
from ebm3d.models.voxelnet import VoxelNet
from ebm3d.registry import Command, ShapeModel, option
from ebm3d.tasks.data import config_grids, voxel_source
from ebm3d.tasks.training import load_voxel_run, train_models


def cmd_train(args) -> int:
    cfg = load_config(args)
    if cfg.task == "classification":
        return _classify(cfg, args)
    from ebm3d.tasks.synthesis import run_synthesis

    started = time.time()
    report = run_synthesis(cfg, open3d=not args.no_open3d, progress=cfg.train.progress)
    print_json({k: v for k, v in report.items() if k != "nearest_train_index"})
    if args.record:
        _record_synthesis(cfg, args, started)
    return 0


def _record_synthesis(cfg, args, started: float) -> None:
    """Evaluate a trained synthesis run on its test split and record it (section ``args.record``)."""
    from ebmcore.results import record
    from ebm3d.tasks.recovery import run_recovery
    from ebm3d.tasks.render import save_grid_png
    from ebm3d.tasks.superres import run_superres
    from ebm3d.tasks.synthesis import draw_samples, sample_quality
    from ebm3d.tasks.training import train_seconds

    _, models = load_voxel_run(cfg.run_dir)
    source = voxel_source(cfg.data)
    train, test = config_grids(cfg.data, source, "train"), config_grids(cfg.data, source, "test")
    chains = load_tensors(cfg.run_dir / "checkpoint.pt")["chains"].get("buffer")
    samples = draw_samples(cfg, models, len(test), cfg.train.seed + 1, chains)
    save_grid_png(samples[:36].clamp(0, 1), cfg.run_dir / "samples_test_eval.png")
    seed, open3d = args.seed or 0, not args.no_open3d
    seconds = train_seconds(cfg.run_dir)
    recoverer, rec_cfg = models[-1], cfg
    if cfg.recovery.dedicated:
        rec_cfg, recoverer = _dedicated_recovery_model(cfg, train)
        seconds += train_seconds(rec_cfg.run_dir)
    rec = run_recovery(rec_cfg, recoverer, test[: cfg.recovery.n_examples], train, ["random"], seed, cfg.run_dir,
                       open3d)
    sr = run_superres(cfg, models[-1], test[: cfg.superres.n_examples], seed, cfg.run_dir, open3d)
    methods = {"ebm": "voxelnet", "all_empty": "all_empty", "mean_fill": "mean_fill",
               "observed_mean_fill": "observed_mean_fill", "nearest_train": "nearest_neighbour"}
    errors = {k: rec["random"][m]["error_missing"] for k, m in methods.items()}
    payload = {
        f"recovery_{round(100 * cfg.recovery.ratio)}": errors,
        "samples": sample_quality(samples, test),
        "superres": {"ebm": sr["voxelnet"]["error"], "nearest": sr["nearest_upsampling"]["error"]},
        "details": {"recovery": rec, "superres": sr, "n_train": len(train), "n_test": len(test),
                    "resolution": cfg.data.resolution, "samples_from_persistent_chains": chains is not None,
                    "recovery_model": str(rec_cfg.run_dir), "train_seconds_synthesis": round(train_seconds(cfg.run_dir), 1)},
    }
    record("ebm3d", args.record, payload, started=started, train_seconds=round(seconds, 1))
    print_json({k: v for k, v in payload.items() if k != "details"})


def cmd_classify(args) -> int:
    return _classify(load_config(args, task="classification"), args)


def _dedicated_recovery_model(cfg, train):
    """Train (resuming) the dedicated recovery model named by ``cfg.recovery.dedicated`` on ``train``
    (its run folder sits next to this run's); returns its config and model."""
    rec_cfg = load_experiment(cfg.recovery.dedicated, [f"out_dir={cfg.out_dir}"], model="voxelnet")
    if rec_cfg.algorithm.negatives != "recovery":
        raise ConfigError(f"recovery.dedicated: {cfg.recovery.dedicated} does not train with recovery negatives")
    if (rec_cfg.data.resolution, rec_cfg.data.pool) != (cfg.data.resolution, cfg.data.pool):
        raise ConfigError("recovery.dedicated: its data.resolution and data.pool must match this run's")
    models, _, _ = train_models(rec_cfg, train)
    return rec_cfg, models[-1]


def _classify(cfg, args) -> int:
    from ebm3d.tasks.classification import run_classification
    from ebm3d.tasks.synthesis import draw_samples, sample_report, write_samples

    if args.record:
        cfg.classify.record = args.record
    source = voxel_source(cfg.data, progress=cfg.train.progress)
    report = run_classification(cfg, source)
    # samples of the all-class model (persistent chain states or fresh chains), for the inception score
    _, models = load_voxel_run(cfg.run_dir)
    buffer = load_tensors(cfg.run_dir / "checkpoint.pt")["chains"].get("buffer")
    samples = draw_samples(cfg, models, cfg.reference.n_samples, cfg.train.seed + 1, buffer)
    train = config_grids(cfg.data, source, "train")
    write_samples(cfg.run_dir, samples, sample_report(samples, train), open3d=not args.no_open3d)
    print_json({k: v for k, v in report.items() if k not in ("selection_history",)})
    return 0


def _run_cfg(args):
    cfg, models = load_voxel_run(args.run, list(args.overrides))
    cfg.out_dir, cfg.name = str(Path(args.run).parent), Path(args.run).name
    return cfg, models


def cmd_sample(args) -> int:
    from ebm3d.tasks.synthesis import draw_samples, sample_report, write_samples
    from ebm3d.tasks.training import training_grids

    cfg, models = _run_cfg(args)
    n = args.n or cfg.synthesis.n_samples
    samples = draw_samples(cfg, models, n, args.seed or 0)
    report = sample_report(samples, training_grids(cfg, voxel_source(cfg.data)))
    report["files"] = write_samples(cfg.run_dir, samples, report, name=args.out, open3d=not args.no_open3d)
    print_json({k: v for k, v in report.items() if k != "nearest_train_index"})
    return 0


def cmd_recover(args) -> int:
    from ebm3d.tasks.recovery import run_recovery

    cfg, models = _run_cfg(args)
    source = voxel_source(cfg.data)
    truth = config_grids(cfg.data, source, cfg.recovery.split)[: cfg.recovery.n_examples]
    train = config_grids(cfg.data, source, "train")
    kinds = ["random", "region"] if args.corruption == "both" else [args.corruption]
    rec_cfg, model = _dedicated_recovery_model(cfg, train) if cfg.recovery.dedicated else (cfg, models[-1])
    out = run_recovery(rec_cfg, model, truth, train, kinds, args.seed or 0, cfg.run_dir, not args.no_open3d)
    out["recovery_model"] = str(rec_cfg.run_dir)
    write_json(cfg.run_dir / "recovery.json", out)
    print_json(out)
    return 0


def cmd_superres(args) -> int:
    from ebm3d.tasks.superres import run_superres

    cfg, models = _run_cfg(args)
    truth = config_grids(cfg.data, voxel_source(cfg.data), cfg.superres.split)[: cfg.superres.n_examples]
    out = run_superres(cfg, models[-1], truth, args.seed or 0, cfg.run_dir, not args.no_open3d)
    write_json(cfg.run_dir / "superres.json", out)
    print_json(out)
    return 0


def cmd_evaluate(args) -> int:
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
    real = voxel_source(ref_cfg.data).voxels("test", ref_cfg.data.resolution)
    out = {"samples": str(samples_path),
           "reference": {"run": ref_cfg.run, "test_accuracy": ref_report["test_accuracy"],
                         "val_accuracy": ref_report["val_accuracy"],
                         "real_test_inception_score": score_samples(classifier, real, ref_cfg.splits)}}
    if samples.shape[-1] == classifier.resolution:
        out["inception"] = score_samples(classifier, samples, ref_cfg.splits)
    else:
        out["inception"] = f"skipped: samples are {samples.shape[-1]}^3, the classifier takes {classifier.resolution}^3"
    nn = sample_report(samples, training_grids(cfg, voxel_source(cfg.data)))
    out["nearest_training_neighbour"] = {k: v for k, v in nn.items() if k != "nearest_train_index"}
    write_json(cfg.run_dir / "evaluation.json", out)
    print_json(out)
    return 0


_THREADS = option("--threads", type=int, default=None, help="torch CPU threads (1 is fastest on a busy shared machine)")
_RECORD = option("--record", metavar="SECTION", help="also evaluate on the test split and record the figures as "
                 "this section of docs/results/ebm3d.json")

def _load_data(cfg: VoxelNetExperiment, progress: bool = False):
    """Registry ``load_data``: the voxel source of ``cfg.data``."""
    return voxel_source(cfg.data, progress=progress)


def _inputs(cfg: VoxelNetExperiment, source, split: str) -> torch.Tensor:
    """Registry ``inputs``: occupancy (N, 1, R, R, R) at the configured resolution and pooling."""
    return config_grids(cfg.data, source, split)


def _train(cfg: VoxelNetExperiment, grids: torch.Tensor, callbacks=None, resume: bool = True):
    """Registry ``train``: every multigrid level on occupancy ``grids`` (N, 1, R, R, R); the finest
    model, its trainer and the seconds of all levels."""
    models, trainers, seconds = train_models(cfg, grids, callbacks=callbacks, resume=resume)
    return models[-1], trainers[-1], seconds


def _untrained(cfg: VoxelNetExperiment, trained: VoxelNet) -> VoxelNet:
    """Registry ``untrained``: the architecture drawn from ``train.seed`` with the trained model's
    data mean."""
    torch.manual_seed(cfg.train.seed)
    fresh = VoxelNet(trained.spec).to(trained.mean.device)
    fresh.mean.copy_(trained.mean)
    return fresh


def _features(cfg: VoxelNetExperiment, model: VoxelNet, grids: torch.Tensor) -> torch.Tensor:
    """Registry ``features``: :meth:`VoxelNet.features` of occupancy grids (b, 1, R, R, R), centred."""
    return model.features(model.centre(grids))


MODEL = ShapeModel(
    name="voxelnet",
    description="generative VoxelNet: train, sample, recover, super-resolve, classify, evaluate",
    config=VoxelNetExperiment,
    load_run=load_voxel_run,
    load_data=_load_data,
    inputs=_inputs,
    train=_train,
    untrained=_untrained,
    features=_features,
    commands={
        "train": Command("train a run (resumes) and write its results", "config", cmd_train,
                         (FRESH, _RECORD, _THREADS)),
        "classify": Command("unsupervised model on all classes + linear classifier", "config", cmd_classify,
                            (FRESH, _RECORD, _THREADS)),
        "sample": Command("fresh samples from a trained run", "run", cmd_sample, (
            N_SAMPLES,
            SAMPLES_OUT,
            _THREADS)),
        "recover": Command("recover corrupted shapes; baselines in the same run", "run", cmd_recover, (
            option("--corruption", choices=["random", "region", "both"], default="both"), _THREADS)),
        "superres": Command("super-resolution vs nearest upsampling", "run", cmd_superres, (_THREADS,)),
        "evaluate": Command("inception score and nearest neighbours of a run's samples", "run", cmd_evaluate, (
            option("--samples", help="a .pt with key 'samples' (default RUN/samples.pt)"),
            option("--reference", help="reference classifier folder (default reference.run of the config)"),
            _THREADS)),
    },
)
