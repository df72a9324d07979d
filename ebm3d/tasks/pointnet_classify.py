"""Classification from an unsupervised generative PointNet, and its robustness curves.

One model is trained without labels on the training split of all classes (the ten of
ModelNet10). Its descriptor (:meth:`GenerativePointNet.features`: per-point features max-pooled
over the points) feeds a scikit-learn linear classifier (linear SVM or logistic regression) on
standardised features.

Selection and scoring are the shared ones of :mod:`ebm3d.tasks.classification` (the checkpoint
and C selected on validation, only that pair scored on test; the untrained network through the
same pipeline in the same run); the selection is kept in ``selection.json`` across resumes.

Robustness: the selected classifier, fitted on clean training features, classifies test clouds
that were corrupted before the features were computed (points removed, outliers from
N(0, 0.3^2) appended, every coordinate jittered), on the grids of :mod:`ebm3d.transforms`. Because
the energy network normalises over the points it sees, the corrupted clouds go through the
network as they are (a different point count included).
"""
from __future__ import annotations

import json
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ebmcore.io import atomic_write, load_tensors

from ebm3d import transforms as T
from ebm3d.models.pointnet import GenerativePointNet
from ebm3d.tasks.classification import Selector, accuracy, fit, score_features, test_scores
from ebm3d.tasks.pointnet_config import PointNetExperiment


@torch.no_grad()
def extract_features(model: GenerativePointNet, clouds: torch.Tensor, layers: str = "all",
                     batch_size: int = 64) -> np.ndarray:
    """Descriptors (n, D) float32 of clouds (n, N, 3)."""
    was_training = model.training
    model.eval()
    out = [model.features(clouds[i:i + batch_size], layers) for i in range(0, len(clouds), batch_size)]
    model.train(was_training)
    return torch.cat(out).numpy()


def split_data(ds, classes=None) -> tuple[dict, dict]:
    """{split: clouds (n, N, 3)} and {split: labels (n,)} for train, val and test."""
    from ebm3d.tasks.pointnet_data import labels, points

    clouds = {s: points(ds, s, classes) for s in ("train", "val", "test")}
    ys = {s: labels(ds, s, classes).numpy() for s in clouds}
    return clouds, ys


def load_selected(cfg: PointNetExperiment) -> tuple[GenerativePointNet, dict]:
    """The selected model (``best_model.pt``) and the selection record of a classification run."""
    from ebm3d.tasks.pointnet_train import build_model

    record = json.loads((cfg.run_dir / "selection.json").read_text())
    model = build_model(cfg)
    model.load_state_dict(load_tensors(cfg.run_dir / "best_model.pt")["model"])
    model.eval()
    return model, record["best"]


def untrained_baseline(cfg: PointNetExperiment, clouds: dict, ys: dict) -> dict:
    """The same pipeline on the network as initialised (the training run's seed, no update):
    what the learned features add over random ones."""
    from ebm3d.tasks.pointnet_train import build_model

    torch.manual_seed(cfg.train.seed)
    model, c = build_model(cfg).eval(), cfg.classify
    feats = {k: extract_features(model, v, c.features, c.batch_size) for k, v in clouds.items()}
    return score_features(c, feats, ys, cfg.train.seed)


def run_classification(cfg: PointNetExperiment, ds, log=print) -> dict:
    """Train the unsupervised model (resuming), select on val, report test accuracy (and, with
    ``classify.baseline``, the accuracy of the untrained network's features, selected the same
    way). With ``classify.record`` both go to docs/results/ebm3d.json."""
    from ebm3d.tasks.pointnet_train import train_pointnet

    started = time.time()
    clouds, ys = split_data(ds)
    baseline = untrained_baseline(cfg, clouds, ys) if cfg.classify.baseline else None
    if baseline:
        log(f"untrained network: validation {baseline['val_accuracy']:.4f}, test {baseline['test_accuracy']:.4f}")
    c = cfg.classify
    features = partial(extract_features, layers=c.features, batch_size=c.batch_size)
    selector = Selector(cfg, features, clouds, ys, cfg.run_dir, keep_state=True, log=log)
    model, trainer, seconds = train_pointnet(cfg, clouds["train"], callbacks=[selector])
    selector.finish(model, trainer.step)
    chosen, best = load_selected(cfg)
    feats = {k: features(chosen, v) for k, v in clouds.items()}
    clf, scores = test_scores(c, best["C"], feats, ys, ds.classes, cfg.train.seed)
    per_class = scores["per_class_test_accuracy"]
    report = {"test_accuracy": scores["test_accuracy"], "val_accuracy": best["val_accuracy"],
              "train_accuracy": accuracy(clf, feats["train"], ys["train"]),
              "selected_step": best["step"], "selected_C": best["C"], "classifier": c.classifier,
              "features": c.features, "feature_dim": int(feats["train"].shape[1]),
              "n": {k: int(len(v)) for k, v in clouds.items()}, "per_class_test_accuracy": per_class,
              "untrained_baseline": baseline, "selection_history": selector.history,
              "train_seconds": round(seconds["wall"], 1), "train_cpu_seconds": round(seconds["cpu"], 1),
              "classes": ds.classes}
    text = json.dumps(report, indent=2)
    atomic_write(cfg.run_dir / "classification.json", lambda tmp: tmp.write_text(text))
    if c.record:
        record_classification(cfg, report, started)
    return report


def record_classification(cfg: PointNetExperiment, report: dict, started: float) -> None:
    """Trained and untrained test accuracy (fractions, each selected on validation) into the
    results file."""
    from ebmcore.results import record

    trained = {"test_accuracy": report["test_accuracy"], "val_accuracy": report["val_accuracy"],
               "selected_step": report["selected_step"], "C": report["selected_C"]}
    payload = {"trained": trained, "untrained": report["untrained_baseline"], "features": report["features"],
               "feature_dim": report["feature_dim"], "classifier": report["classifier"], "n": report["n"],
               "train_steps": cfg.train.steps, "train_points": cfg.train_points,
               "train_cpu_seconds": report["train_cpu_seconds"], "run": str(cfg.run_dir)}
    record("ebm3d", cfg.classify.record, payload, started=started, train_seconds=report["train_seconds"])


# ------------------------------------------------------------------ robustness


def grids(cfg: PointNetExperiment) -> dict[str, list[float]]:
    r = cfg.robustness
    return {"missing": list(r.missing if r.missing is not None else T.MISSING_RATIOS),
            "outliers": list(r.outliers if r.outliers is not None else T.OUTLIER_RATIOS),
            "jitter": list(r.jitter if r.jitter is not None else T.JITTER_SIGMAS)}


def corrupt(kind: str, clouds: torch.Tensor, value: float, std: float, generator: torch.Generator) -> torch.Tensor:
    if kind == "missing":
        return T.drop_points(clouds, value, generator)
    if kind == "outliers":
        return T.add_outliers(clouds, value, std, generator)
    if kind == "jitter":
        return T.jitter(clouds, value, generator=generator)
    raise ValueError(f"unknown corruption {kind!r}")


def robustness_curves(cfg: PointNetExperiment, ds, seed: int = 0, log=print) -> dict:
    """Test accuracy of the selected classifier on each corruption grid; writes
    ``robustness.json`` and ``robustness_<kind>.png`` in the run folder."""
    model, best = load_selected(cfg)
    clouds, ys = split_data(ds)
    c = cfg.classify
    clf = fit(c, best["C"], extract_features(model, clouds["train"], c.features, c.batch_size), ys["train"],
              cfg.train.seed)
    n_test = cfg.robustness.n_test or len(clouds["test"])
    test, y_test = clouds["test"][:n_test], ys["test"][:n_test]
    out = {"selected_step": best["step"], "selected_C": best["C"], "n_test": int(n_test),
           "outlier_std": cfg.robustness.outlier_std, "curves": {}}
    for kind, values in grids(cfg).items():
        g = torch.Generator().manual_seed(seed)
        accs = []
        for v in values:
            x = corrupt(kind, test, v, cfg.robustness.outlier_std, g)
            acc = accuracy(clf, extract_features(model, x, c.features, c.batch_size), y_test)
            accs.append(acc)
            log(f"{kind} {v:g}: {x.shape[1]} points, accuracy {acc:.4f}")
        out["curves"][kind] = {"values": values, "accuracy": accs}
        plot_curve(kind, values, accs, cfg.run_dir / f"robustness_{kind}.png")
    text = json.dumps(out, indent=2)
    atomic_write(cfg.run_dir / "robustness.json", lambda tmp: tmp.write_text(text))
    return out


_LABELS = {"missing": "ratio of points removed", "outliers": "outliers added (ratio of the point count)",
           "jitter": "jitter standard deviation"}


def plot_curve(kind: str, values: list[float], accs: list[float], path: Path) -> Path:
    """Test accuracy (%) against the corruption level, as a small PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.2), dpi=100)
    ax.plot(values, [100 * a for a in accs], "o-", color="tab:blue", markersize=4)
    if kind == "jitter":
        ax.set_xscale("symlog", linthresh=1e-3)
    ax.set_xlabel(_LABELS[kind])
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.set_title(f"generative PointNet features: {kind}")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
    return Path(path)
