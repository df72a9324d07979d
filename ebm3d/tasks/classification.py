"""Classification from an unsupervised generative model's features: the part every shape model shares.

One model is trained without labels on the training split of all classes; its descriptor (each
model's ``features``) feeds a scikit-learn linear classifier (multinomial logistic regression or
a linear SVM) on standardised features.

Selection uses validation only: every ``classify.eval_every`` training steps (and at the end)
each value of ``C`` is scored on validation (:func:`validation_accuracy`, :class:`Selector`); the
best (checkpoint, C) pair is kept in ``best_model.pt``, and only that pair is scored on test
(:func:`test_scores`). The untrained network goes through the same selection
(:func:`score_features`). A model's task module supplies its features, training and data.

The ``classify`` config section this module reads has ``classifier`` (``logistic`` or ``svm``),
``C`` (the values tried), ``max_iter``, ``eval_every`` and ``folds`` (0: the val split;
k: k-fold cross-validation over train and val).
"""
from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from ebmcore.errors import ConfigError
from ebmcore.io import atomic_write, save_tensors


def make_classifier(cfg, C: float, seed: int):
    """Standardisation followed by a multinomial logistic regression or a linear SVM."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    if cfg.classifier == "logistic":
        clf = LogisticRegression(C=C, max_iter=cfg.max_iter)
    else:
        clf = LinearSVC(C=C, max_iter=cfg.max_iter, random_state=seed)
    return make_pipeline(StandardScaler(), clf)


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
    folds = StratifiedKFold(cfg.folds, shuffle=True, random_state=seed).split(x, y)
    return float(np.mean([accuracy(fit(cfg, C, x[a], y[a], seed), x[b], y[b]) for a, b in folds]))


def select_classifier(cfg, feats: dict[str, np.ndarray], ys: dict[str, np.ndarray],
                      seed: int) -> tuple[float, float, object, list[dict]]:
    """Score every C on validation (:func:`validation_accuracy`); (best C, its validation
    accuracy, its classifier fitted on train, table)."""
    table = [{"C": C, "val_accuracy": validation_accuracy(cfg, C, feats, ys, seed)} for C in cfg.C]
    best = max(table, key=lambda row: row["val_accuracy"])  # the first of equal scores
    clf = fit(cfg, best["C"], feats["train"], ys["train"], seed)
    return best["C"], best["val_accuracy"], clf, table


def score_features(cfg, feats: dict, ys: dict, seed: int) -> dict:
    """C selected on val for one set of features; its validation and test accuracy."""
    C, val_acc, clf, _ = select_classifier(cfg, feats, ys, seed)
    return {"C": C, "val_accuracy": val_acc, "test_accuracy": accuracy(clf, feats["test"], ys["test"])}


def test_scores(cfg, C: float, feats: dict, ys: dict, classes: list[str], seed: int) -> tuple[object, dict]:
    """The selected C fitted on train; its classifier, test accuracy and per-class test accuracy."""
    clf = fit(cfg, C, feats["train"], ys["train"], seed)
    pred = clf.predict(feats["test"])
    per_class = {classes[k]: float((pred[ys["test"] == k] == k).mean()) for k in np.unique(ys["test"])}
    return clf, {"test_accuracy": float((pred == ys["test"]).mean()), "per_class_test_accuracy": per_class}


class Selector:
    """Trainer callback: every ``classify.eval_every`` steps, the validation accuracy of the
    current features; the best checkpoint's weights go to ``best_model.pt``.

    features(model, x) -> (n, D) array; data / ys: {split: inputs} / {split: labels}. With
    ``keep_state`` the selection is saved in ``selection.json`` and a resumed run continues it.
    """

    def __init__(self, cfg, features: Callable, data: dict, ys: dict, run_dir: Path, *,
                 keep_state: bool = False, log: Callable[[str], None] | None = None):
        self.cfg, self.features, self.data, self.ys = cfg, features, data, ys
        self.run_dir, self.keep_state, self.log = Path(run_dir), keep_state, log
        self.best: dict | None = None
        self.history: list[dict] = []
        state = self.run_dir / "selection.json"
        if keep_state and state.is_file():  # a resumed run keeps what it selected before
            saved = json.loads(state.read_text())
            self.best, self.history = saved["best"], saved["history"]

    def evaluate(self, model, step: int) -> dict:
        """Select C on the current features; keep the model when it is the best so far."""
        started = time.time()
        feats = {k: self.features(model, self.data[k]) for k in ("train", "val")}
        C, acc, _, table = select_classifier(self.cfg.classify, feats, self.ys, self.cfg.train.seed)
        row = {"step": step, "val_accuracy": acc, "C": C, "by_C": table, "seconds": round(time.time() - started, 1)}
        self.history.append(row)
        if self.best is None or acc > self.best["val_accuracy"]:
            self.best = row
            save_tensors({"step": step, "model": model.state_dict()}, self.run_dir / "best_model.pt")
        if self.keep_state:
            text = json.dumps({"best": self.best, "history": self.history}, indent=2)
            atomic_write(self.run_dir / "selection.json", lambda tmp: tmp.write_text(text))
        if self.log:
            self.log(f"step {step}: validation accuracy {acc:.4f} (C={C}) in {row['seconds']} s")
        return row

    def finish(self, model, step: int) -> dict:
        """The final step's evaluation (unless the selection already holds it); the best row."""
        if not self.history or self.history[-1]["step"] != step:
            self.evaluate(model, step)
        return self.best

    def __call__(self, trainer, step, metrics):
        if step % self.cfg.classify.eval_every == 0 and step != trainer.cfg.steps:
            self.evaluate(trainer.model, step)
