"""Selection of the linear classifier on validation: the val split, or k-fold cross-validation."""
from types import SimpleNamespace

import numpy as np
import pytest

from ebm3d.tasks.classification import select_classifier, validation_accuracy
from ebmcore.errors import ConfigError


def blobs(n: int, seed: int):
    """Three Gaussian classes in 5-D that overlap, so accuracy depends on C and the split."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.normal(size=(n, 5)) + 1.2 * np.eye(5)[y]
    return x, y


def cfg(folds: int, standardise: bool = True):
    return SimpleNamespace(classifier="logistic", C=[1e-4, 1.0], max_iter=500, folds=folds,
                           standardise=standardise)


def data():
    (xt, yt), (xv, yv) = blobs(300, 0), blobs(30, 1)
    return {"train": xt, "val": xv}, {"train": yt, "val": yv}


def test_cross_validation_scores_train_and_val_together():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    feats, ys = data()
    x, y = np.concatenate([feats["train"], feats["val"]]), np.concatenate([ys["train"], ys["val"]])
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=500))
    expected = cross_val_score(clf, x, y, cv=StratifiedKFold(5, shuffle=True, random_state=3)).mean()
    assert validation_accuracy(cfg(5), 1.0, feats, ys, seed=3) == pytest.approx(expected)
    # the val split alone is a different (30-shape) estimate
    assert validation_accuracy(cfg(0), 1.0, feats, ys, seed=3) != pytest.approx(expected)


def test_selection_keeps_the_best_cross_validated_C():
    feats, ys = data()
    C, acc, table = select_classifier(cfg(5), feats, ys, seed=0)
    assert [row["C"] for row in table] == [1e-4, 1.0]
    assert acc == max(row["val_accuracy"] for row in table)
    assert C == table[int(np.argmax([row["val_accuracy"] for row in table]))]["C"]
    assert table[0]["val_accuracy"] != table[1]["val_accuracy"]  # the two C really differ here


def test_one_fold_is_refused_with_the_key():
    feats, ys = data()
    with pytest.raises(ConfigError, match="classify.folds"):
        validation_accuracy(cfg(1), 1.0, feats, ys, seed=0)


def test_more_folds_than_shapes_of_a_class_is_refused_with_the_key():
    feats, ys = data()
    with pytest.raises(ConfigError, match="classify.folds: 200 folds"):
        validation_accuracy(cfg(200), 1.0, feats, ys, seed=0)


def test_standardise_switch():
    """classify.standardise: false feeds the raw features (as the official GPointNet script does);
    on features of very different scales the two classifiers differ."""
    from ebm3d.tasks.classification import make_classifier

    feats, ys = data()
    feats = {k: v * np.array([100.0, 1.0, 0.01, 1.0, 1.0]) for k, v in feats.items()}
    assert [type(step).__name__ for step in make_classifier(cfg(0, False), 1.0, 0)] == ["LogisticRegression"]
    assert [type(step).__name__ for step in make_classifier(cfg(0), 1.0, 0)] == ["StandardScaler", "LogisticRegression"]
    assert validation_accuracy(cfg(5, False), 1e-4, feats, ys, seed=0) != validation_accuracy(cfg(5), 1e-4, feats, ys, seed=0)
