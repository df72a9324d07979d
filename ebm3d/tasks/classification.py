"""Classification from an unsupervised generative model's features: the part every shape model shares.

One model is trained without labels on the training split of all classes; its descriptor (each
model's ``features``) feeds a scikit-learn linear classifier (multinomial logistic regression or
a linear SVM) on standardised features.

Selection uses validation only: every ``classify.eval_every`` training steps (and at the end)
each value of ``C`` is scored on validation (:func:`validation_accuracy`, :class:`Selector`); the
best (checkpoint, C) pair is kept in ``best_model.pt`` (the selection in ``selection.json``, which
a resumed run continues), and only that pair is scored on test (:func:`test_scores`). The
untrained network goes through the same selection (:func:`score_features`).

:func:`run_classification` is the one pipeline of every model: the model's registry entry
(:mod:`ebm3d.registry`) supplies its data, input representation, training, untrained network
and features. The ``classify`` config section is :class:`ebm3d.config.ClassifyConfig`.
"""
from __future__ import annotations

import copy
import json
import time
import warnings
from pathlib import Path
from functools import partial
from typing import Callable

import numpy as np
import torch

from ebmcore.errors import ConfigError
from ebmcore.io import atomic_write

from ebm3d import registry
from ebm3d.tasks.selection import SELECTION, CheckpointSelector, load_best

SPLITS = ("train", "val", "test")


def make_classifier(cfg, C: float, seed: int):
    """A multinomial logistic regression or a linear SVM, after standardisation if
    ``cfg.standardise``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    if cfg.classifier == "logistic":
        clf = LogisticRegression(C=C, max_iter=cfg.max_iter)
    else:
        clf = LinearSVC(C=C, max_iter=cfg.max_iter, random_state=seed)
    return make_pipeline(*([StandardScaler()] if cfg.standardise else []), clf)


def fit(cfg, C: float, feats: np.ndarray, ys: np.ndarray, seed: int):
    """The classifier of ``cfg`` with this ``C``, fitted on (feats, ys)."""
    clf = make_classifier(cfg, C, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings at max_iter: the accuracy says enough
        clf.fit(feats, ys)
    return clf


def accuracy(clf, feats: np.ndarray, ys: np.ndarray) -> float:
    """The fraction of ``feats`` that ``clf`` labels as ``ys``."""
    return float((clf.predict(feats) == ys).mean())


def validation_accuracy(cfg, C: float, feats: dict[str, np.ndarray], ys: dict[str, np.ndarray],
                        seed: int) -> float:
    """The validation accuracy of the classifier with this ``C``.

    ``cfg.folds`` 0: fitted on train, scored on the val split. ``cfg.folds`` k > 1: the mean
    accuracy of stratified k-fold cross-validation over train and val together (seeded by
    ``seed``); with ~4000 shapes instead of ~400 its standard error is about a third.
    """
    if not cfg.folds:
        return accuracy(fit(cfg, C, feats["train"], ys["train"], seed), feats["val"], ys["val"])
    from sklearn.model_selection import StratifiedKFold

    if cfg.folds == 1:
        raise ConfigError("classify.folds: 1 fold is no cross-validation; use 0 (the val split) or 2 or more")
    x = np.concatenate([feats["train"], feats["val"]])
    y = np.concatenate([ys["train"], ys["val"]])
    smallest = int(np.unique(y, return_counts=True)[1].min()) if len(y) else 0
    if smallest < cfg.folds:
        raise ConfigError(f"classify.folds: {cfg.folds} folds need {cfg.folds} shapes of every class in train + val; "
                          f"the smallest class has {smallest}")
    folds = StratifiedKFold(cfg.folds, shuffle=True, random_state=seed).split(x, y)
    return float(np.mean([accuracy(fit(cfg, C, x[a], y[a], seed), x[b], y[b]) for a, b in folds]))


def select_classifier(cfg, feats: dict[str, np.ndarray], ys: dict[str, np.ndarray],
                      seed: int) -> tuple[float, float, list[dict]]:
    """Score every C on validation (:func:`validation_accuracy`); (best C, its validation
    accuracy, table)."""
    table = [{"C": C, "val_accuracy": validation_accuracy(cfg, C, feats, ys, seed)} for C in cfg.C]
    best = max(table, key=lambda row: row["val_accuracy"])  # the first of equal scores
    return best["C"], best["val_accuracy"], table


def score_features(cfg, feats: dict, ys: dict, seed: int) -> dict:
    """C selected on validation for one set of features; its validation and test accuracy."""
    C, val_acc, _ = select_classifier(cfg, feats, ys, seed)
    clf = fit(cfg, C, feats["train"], ys["train"], seed)
    return {"C": C, "val_accuracy": val_acc, "test_accuracy": accuracy(clf, feats["test"], ys["test"])}


def test_scores(cfg, C: float, feats: dict, ys: dict, classes: list[str], seed: int) -> tuple[object, dict]:
    """The selected C fitted on train; its classifier, test accuracy and per-class test accuracy."""
    clf = fit(cfg, C, feats["train"], ys["train"], seed)
    pred = clf.predict(feats["test"])
    per_class = {classes[k]: float((pred[ys["test"] == k] == k).mean()) for k in np.unique(ys["test"])}
    return clf, {"test_accuracy": float((pred == ys["test"]).mean()), "per_class_test_accuracy": per_class}


class Selector(CheckpointSelector):
    """Every ``classify.eval_every`` steps, the validation accuracy of the current features with C
    selected (:func:`select_classifier`); see :class:`ebm3d.tasks.selection.CheckpointSelector`.

    features(model, x) -> (n, D) array; data / ys: {split: inputs} / {split: labels}.
    """

    key = "val_accuracy"

    def __init__(self, cfg, features: Callable, data: dict, ys: dict, run_dir: Path, *,
                 keep_state: bool = False, log: Callable[[str], None] | None = None):
        super().__init__(run_dir, cfg.classify.eval_every, keep_state=keep_state, log=log)
        self.cfg, self.features, self.data, self.ys = cfg, features, data, ys

    def score(self, model, step: int) -> dict:
        feats = {k: self.features(model, self.data[k]) for k in ("train", "val")}
        C, acc, table = select_classifier(self.cfg.classify, feats, self.ys, self.cfg.train.seed)
        return {"val_accuracy": acc, "C": C, "by_C": table}


@torch.no_grad()
def extract_features(cfg, model, inputs: torch.Tensor) -> np.ndarray:
    """Descriptors (n, D) float32 of ``inputs`` (n, ...), in batches of ``classify.batch_size``,
    by the registry entry of ``cfg``'s model (the model in eval mode meanwhile)."""
    entry, was_training = registry.entry_for(cfg), model.training
    device = next(model.parameters()).device
    model.eval()
    size = cfg.classify.batch_size
    out = [entry.features(cfg, model, inputs[i:i + size].to(device)).cpu() for i in range(0, len(inputs), size)]
    model.train(was_training)
    return torch.cat(out).numpy()


def split_inputs(cfg, source) -> tuple[dict, dict]:
    """{split: the model's inputs} and {split: labels (n,) as a numpy array} for train, val and
    test (the training split as cut by the data config)."""
    entry = registry.entry_for(cfg)
    data = {s: entry.inputs(cfg, source, s) for s in SPLITS}
    return data, {s: source.labels(s).numpy()[: len(data[s])] for s in SPLITS}


def load_selected(cfg) -> tuple[object, dict]:
    """The selected model (``best_model.pt``, in eval mode) and the selection record of a
    classification run."""
    from ebm3d.experiment import load_run

    record = json.loads((cfg.run_dir / SELECTION).read_text())
    _, models = load_run(cfg.run_dir)
    model = models[-1]
    load_best(model, cfg.run_dir)
    return model.eval(), record["best"]


def run_classification(cfg, source, *, log: Callable[[str], None] | None = None) -> dict:
    """Train the unsupervised model on the training split of the data ``source``
    (:mod:`ebm3d.data.sources`; resuming), select the
    checkpoint and C on val, report test accuracy (with ``classify.untrained_baseline``, next to
    the untrained network's, selected the same way); writes ``classification.json`` and, with
    ``classify.record``, the results section."""
    started, entry, c = time.time(), registry.entry_for(cfg), cfg.classify
    data, ys = split_inputs(cfg, source)
    features = partial(extract_features, cfg)  # (model, inputs) -> (n, D)
    selector = Selector(cfg, features, data, ys, cfg.run_dir, keep_state=True, log=log)
    model, trainer, seconds = entry.train(cfg, data["train"], callbacks=[selector])
    with trainer.evaluated() as evaluated:
        best = selector.finish(evaluated, trainer.step)
    chosen = copy.deepcopy(model)
    load_best(chosen, cfg.run_dir)
    feats = {k: features(chosen, v) for k, v in data.items()}
    clf, scores = test_scores(c, best["C"], feats, ys, source.classes, cfg.train.seed)
    report = {"test_accuracy": scores["test_accuracy"], "val_accuracy": best["val_accuracy"],
              "train_accuracy": accuracy(clf, feats["train"], ys["train"]),
              "selected_step": best["step"], "selected_C": best["C"], "classifier": c.classifier,
              "feature_dim": int(feats["train"].shape[1]), "n": {k: int(len(v)) for k, v in data.items()},
              "per_class_test_accuracy": scores["per_class_test_accuracy"], "selection_history": selector.history,
              "train_seconds": round(seconds["wall"], 1), "train_cpu_seconds": round(seconds["cpu"], 1),
              "classes": source.classes}
    if c.untrained_baseline:
        untrained = entry.untrained(cfg, model)
        report["untrained_baseline"] = score_features(c, {k: features(untrained, v) for k, v in data.items()},
                                                      ys, cfg.train.seed)
        if log:
            log(f"untrained network: validation {report['untrained_baseline']['val_accuracy']:.4f}, "
                f"test {report['untrained_baseline']['test_accuracy']:.4f}")
    text = json.dumps(report, indent=2)
    atomic_write(cfg.run_dir / "classification.json", lambda tmp: tmp.write_text(text))
    if c.record:
        record_classification(cfg, report, started)
    return report


def record_classification(cfg, report: dict, started: float) -> None:
    """Trained and untrained test accuracy (fractions, each selected on validation, from the same
    run) into section ``classify.record`` of docs/results/ebm3d.json."""
    from ebmcore.results import record

    from ebm3d.tasks.training import train_cpu_seconds, train_seconds

    base = report.get("untrained_baseline")
    if base is None:
        raise ConfigError("classify.record needs classify.untrained_baseline: true (trained against untrained)")
    payload = {"trained": report["test_accuracy"], "untrained": base["test_accuracy"],
               "trained_val": report["val_accuracy"], "untrained_val": base["val_accuracy"],
               "selected_step": report["selected_step"], "selected_C": report["selected_C"],
               "untrained_C": base["C"], "feature_dim": report["feature_dim"], "n": report["n"],
               "classifier": report["classifier"], "train_steps": cfg.train.steps,
               "train_cpu_seconds": train_cpu_seconds(cfg.run_dir),
               "train_cpu_seconds_last_call": report["train_cpu_seconds"], "run": str(cfg.run_dir)}
    record("ebm3d", cfg.classify.record, payload, started=started,
           train_seconds=round(train_seconds(cfg.run_dir), 1))
