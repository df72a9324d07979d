"""Classification from an unsupervised generative VoxelNet's features.

One model is trained, without labels, on the training split of all classes (e.g. the ten of
ModelNet10). Its descriptor (:meth:`VoxelNet.features`: every hidden layer max-pooled to 3^3 and
concatenated) feeds a scikit-learn linear classifier (multinomial logistic regression or a
linear SVM) on standardised features.

Model selection uses the validation split only: every ``classify.eval_every`` training steps
(and at the end) each value of ``C`` is fitted on train and scored on validation; the best
(checkpoint, C) pair is kept in ``best_features.pt``, and only that pair is scored on test.
"""
from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from ebmcore.io import atomic_write, save_tensors

from ebm3d.config import ClassifyConfig, ExperimentConfig
from ebm3d.models.voxelnet import VoxelNet
from ebm3d.tasks.data import config_grids, labels, load_shapes


@torch.no_grad()
def extract_features(model: VoxelNet, occupancy: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """Descriptors (N, D) float32 of occupancy grids (N, 1, R, R, R)."""
    was_training = model.training
    model.eval()
    device = model.mean.device
    out = [model.features(model.centre(occupancy[i:i + batch_size].to(device))).cpu()
           for i in range(0, len(occupancy), batch_size)]
    model.train(was_training)
    return torch.cat(out).numpy()


def make_classifier(cfg: ClassifyConfig, C: float, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    if cfg.classifier == "logistic":
        clf = LogisticRegression(C=C, max_iter=cfg.max_iter)
    else:
        clf = LinearSVC(C=C, max_iter=cfg.max_iter, random_state=seed)
    return make_pipeline(StandardScaler(), clf)


def select_classifier(cfg: ClassifyConfig, feats: dict[str, np.ndarray], ys: dict[str, np.ndarray],
                      seed: int) -> tuple[float, float, object, list[dict]]:
    """Fit one classifier per C on train, score on val; returns (best C, its val acc, model, table)."""
    table, best = [], (None, -1.0, None)
    for C in cfg.C:
        clf = make_classifier(cfg, C, seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence warnings at max_iter are reported as is
            clf.fit(feats["train"], ys["train"])
        acc = float((clf.predict(feats["val"]) == ys["val"]).mean())
        table.append({"C": C, "val_accuracy": acc})
        if acc > best[1]:
            best = (C, acc, clf)
    return best[0], best[1], best[2], table


class Selector:
    """Trainer callback: every ``eval_every`` steps, validation accuracy of the current features;
    keeps the best checkpoint's model state (``best_model.pt``) and its classifier choice."""

    def __init__(self, cfg: ExperimentConfig, data: dict[str, torch.Tensor], ys: dict[str, np.ndarray],
                 run_dir: Path):
        self.cfg, self.data, self.ys, self.run_dir = cfg, data, ys, Path(run_dir)
        self.best: dict | None = None
        self.history: list[dict] = []

    def evaluate(self, model: VoxelNet, step: int) -> dict:
        started = time.time()
        feats = {k: extract_features(model, v, self.cfg.classify.batch_size) for k, v in self.data.items()
                 if k in ("train", "val")}
        C, acc, _, table = select_classifier(self.cfg.classify, feats, self.ys, self.cfg.train.seed)
        row = {"step": step, "val_accuracy": acc, "C": C, "by_C": table, "seconds": round(time.time() - started, 1)}
        self.history.append(row)
        if self.best is None or acc > self.best["val_accuracy"]:
            self.best = row
            save_tensors({"step": step, "model": model.state_dict()}, self.run_dir / "best_model.pt")
        return row

    def __call__(self, trainer, step, metrics):
        every = self.cfg.classify.eval_every
        if step % every == 0 and step != trainer.cfg.steps:
            self.evaluate(trainer.model, step)


def run_classification(cfg: ExperimentConfig, *, progress: bool = False) -> dict:
    """Train the unsupervised model (resuming), select on val, report test accuracy."""
    from ebm3d.tasks.training import train_models
    from ebmcore.io import load_tensors

    ds = load_shapes(cfg.data, progress=progress)
    data = {s: config_grids(cfg.data, ds, s) for s in ("train", "val", "test")}
    ys = {s: labels(ds, s).numpy()[: len(data[s])] for s in data}
    run_dir = cfg.run_dir
    selector = Selector(cfg, data, ys, run_dir)
    models, trainers, seconds = train_models(cfg, data["train"], callbacks=[selector])
    model = models[-1]
    selector.evaluate(model, trainers[-1].step)
    best = selector.best
    chosen = VoxelNet(model.spec).to(model.mean.device)
    chosen.load_state_dict(load_tensors(run_dir / "best_model.pt")["model"])
    feats = {k: extract_features(chosen, v, cfg.classify.batch_size) for k, v in data.items()}
    clf = make_classifier(cfg.classify, best["C"], cfg.train.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(feats["train"], ys["train"])
    test_acc = float((clf.predict(feats["test"]) == ys["test"]).mean())
    per_class = {ds.classes[c]: float((clf.predict(feats["test"][ys["test"] == c]) == c).mean())
                 for c in np.unique(ys["test"])}
    report = {"test_accuracy": test_acc, "val_accuracy": best["val_accuracy"], "selected_step": best["step"],
              "selected_C": best["C"], "classifier": cfg.classify.classifier, "feature_dim": int(feats["train"].shape[1]),
              "n": {k: int(len(v)) for k, v in data.items()}, "per_class_test_accuracy": per_class,
              "selection_history": selector.history, "train_seconds": round(seconds, 1),
              "classes": ds.classes}
    if cfg.classify.untrained_baseline:
        report["untrained_baseline"] = untrained_baseline(cfg, model, data, ys)
    text = json.dumps(report, indent=2)
    atomic_write(run_dir / "classification.json", lambda tmp: tmp.write_text(text))
    return report


def untrained_baseline(cfg: ExperimentConfig, trained: VoxelNet, data: dict, ys: dict) -> dict:
    """Val-selected C and test accuracy of the same pipeline on the untrained network's features."""
    torch.manual_seed(cfg.train.seed)
    fresh = VoxelNet(trained.spec).to(trained.mean.device)
    fresh.mean.copy_(trained.mean)
    feats = {k: extract_features(fresh, v, cfg.classify.batch_size) for k, v in data.items()}
    C, val_acc, clf, _ = select_classifier(cfg.classify, feats, ys, cfg.train.seed)
    return {"val_accuracy": val_acc, "C": C,
            "test_accuracy": float((clf.predict(feats["test"]) == ys["test"]).mean())}
