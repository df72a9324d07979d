"""Classification from an unsupervised generative VoxelNet's features.

One model is trained, without labels, on the training split of all classes (e.g. the ten of
ModelNet10). Its descriptor (:meth:`VoxelNet.features`: every hidden layer max-pooled to 3^3 and
concatenated) goes through the shared selection and scoring of :mod:`ebm3d.tasks.classification`
(the checkpoint and C selected on validation, only that pair scored on test; the untrained
network through the same pipeline in the same run).
"""
from __future__ import annotations

import json
from functools import partial

import numpy as np
import torch

from ebmcore.io import atomic_write

from ebm3d.config import ExperimentConfig
from ebm3d.models.voxelnet import VoxelNet
from ebm3d.tasks.classification import Selector, score_features, test_scores
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


def run_classification(cfg: ExperimentConfig, *, progress: bool = False) -> dict:
    """Train the unsupervised model (resuming), select on val, report test accuracy."""
    from ebm3d.tasks.training import train_models
    from ebmcore.io import load_tensors

    ds = load_shapes(cfg.data, progress=progress)
    data = {s: config_grids(cfg.data, ds, s) for s in ("train", "val", "test")}
    ys = {s: labels(ds, s).numpy()[: len(data[s])] for s in data}
    run_dir = cfg.run_dir
    features = partial(extract_features, batch_size=cfg.classify.batch_size)
    selector = Selector(cfg, features, data, ys, run_dir)
    models, trainers, seconds = train_models(cfg, data["train"], callbacks=[selector])
    model = models[-1]
    selector.evaluate(model, trainers[-1].step)  # the final step (the callback skips it)
    best = selector.best
    chosen = VoxelNet(model.spec).to(model.mean.device)
    chosen.load_state_dict(load_tensors(run_dir / "best_model.pt")["model"])
    feats = {k: features(chosen, v) for k, v in data.items()}
    _, scores = test_scores(cfg.classify, best["C"], feats, ys, ds.classes, cfg.train.seed)
    report = {"test_accuracy": scores["test_accuracy"], "val_accuracy": best["val_accuracy"],
              "selected_step": best["step"], "selected_C": best["C"], "classifier": cfg.classify.classifier,
              "feature_dim": int(feats["train"].shape[1]), "n": {k: int(len(v)) for k, v in data.items()},
              "per_class_test_accuracy": scores["per_class_test_accuracy"],
              "selection_history": selector.history, "train_seconds": round(seconds, 1), "classes": ds.classes}
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
    return score_features(cfg.classify, feats, ys, cfg.train.seed)
