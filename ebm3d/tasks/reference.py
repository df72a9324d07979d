"""The inception score of voxel samples, with a reference classifier trained in the suite.

:func:`train_reference` trains :class:`~ebm3d.models.reference.ReferenceClassifier` on the
training split of ``reference.data`` (ModelNet10 by default) with cross-entropy and Adam, keeps
the epoch with the best validation accuracy, and reports that model's test accuracy
(``reference.json`` beside ``classifier.pt`` in ``reference.run``). :func:`score_samples` gives
the inception score of samples binarised at 0.5, over ``reference.splits`` splits (10, as in the
paper), via :mod:`ebm3d.metrics`.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from ebmcore.progress import progress_bar as tqdm  # one log line every 10 s when not a terminal

from ebmcore.errors import ConfigError
from ebmcore.io import atomic_write, load_tensors, save_tensors

from ebm3d.config import ReferenceConfig
from ebm3d.metrics import classifier_probabilities, inception_score
from ebm3d.models.reference import ReferenceClassifier
from ebm3d.tasks.data import voxel_source


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random quarter turns about the up (z) axis and mirror flips in x, per example."""
    out = x.clone()
    turns = torch.randint(0, 4, (len(x),), generator=generator)
    flips = torch.rand(len(x), generator=generator) < 0.5
    for i in range(len(x)):
        g = torch.rot90(x[i], int(turns[i]), dims=(1, 2))
        out[i] = torch.flip(g, dims=(1,)) if flips[i] else g
    return out


@torch.no_grad()
def accuracy(model: ReferenceClassifier, x: torch.Tensor, y: torch.Tensor, batch_size: int = 64) -> float:
    probs = classifier_probabilities(model, x, threshold=0.5, batch_size=batch_size)
    return float((probs.argmax(1) == y).double().mean())


def train_reference(cfg: ReferenceConfig, seed: int = 0, progress: bool = True) -> tuple[ReferenceClassifier, dict]:
    """Train (or load, when ``cfg.run`` holds one) the reference classifier; returns it and its report."""
    run = Path(cfg.run)
    if (run / "classifier.pt").is_file() and (run / "reference.json").is_file():
        return load_reference(run)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    source = voxel_source(cfg.data, progress=progress)
    R = cfg.data.resolution
    data = {s: source.voxels(s, R) for s in ("train", "val", "test")}
    ys = {s: source.labels(s) for s in data}
    model = ReferenceClassifier(len(source.classes), R, tuple(cfg.channels), cfg.hidden, cfg.dropout, cfg.input_pool)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    history, best = [], (-1.0, None, 0)
    started = time.time()
    n = len(data["train"])
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        for lo in tqdm(range(0, n, cfg.batch_size), desc=f"reference epoch {epoch}", disable=not progress):
            idx = perm[lo:lo + cfg.batch_size]
            x = data["train"][idx]
            if cfg.augment:
                x = augment(x, gen)
            loss = F.cross_entropy(model((x > 0.5).float()), ys["train"][idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        val = accuracy(model, data["val"], ys["val"])
        history.append({"epoch": epoch, "train_loss": total / n, "val_accuracy": val})
        if val > best[0]:
            best = (val, {k: v.clone() for k, v in model.state_dict().items()}, epoch)
    model.load_state_dict(best[1])
    report = {"val_accuracy": best[0], "selected_epoch": best[2],
              "test_accuracy": accuracy(model, data["test"], ys["test"]),
              "train_accuracy": accuracy(model, data["train"], ys["train"]),
              "classes": source.classes, "n": {k: len(v) for k, v in data.items()}, "history": history,
              "train_seconds": round(time.time() - started, 1)}
    save_tensors({"model": model.state_dict(), "n_classes": len(source.classes), "resolution": R,
                  "channels": list(cfg.channels), "hidden": cfg.hidden, "dropout": cfg.dropout,
                  "input_pool": cfg.input_pool},
                 run / "classifier.pt")
    text = json.dumps(report, indent=2)
    atomic_write(run / "reference.json", lambda tmp: tmp.write_text(text))
    return model, report


def load_reference(run: str | Path) -> tuple[ReferenceClassifier, dict]:
    run = Path(run)
    if not (run / "classifier.pt").is_file():
        raise ConfigError(f"{run}: no classifier.pt (train the reference classifier first)")
    state = load_tensors(run / "classifier.pt")
    model = ReferenceClassifier(int(state["n_classes"]), int(state["resolution"]), tuple(state["channels"]),
                                int(state["hidden"]), float(state["dropout"]), int(state["input_pool"]))
    model.load_state_dict(state["model"])
    model.eval()
    return model, json.loads((run / "reference.json").read_text())


def score_samples(model: ReferenceClassifier, samples: torch.Tensor, splits: int = 10, seed: int = 0) -> dict:
    """Inception score of samples (N, 1, R, R, R) binarised at 0.5 and the predicted class counts.

    The samples are shuffled (seeded) before the split, so a set stored in class order (a test
    split) does not give single-class splits.
    """
    order = torch.randperm(len(samples), generator=torch.Generator().manual_seed(seed))
    probs = classifier_probabilities(model, samples[order], threshold=0.5)
    score = inception_score(probs, splits=splits)
    counts = torch.bincount(probs.argmax(1), minlength=probs.shape[1]).tolist()
    return {"inception_score": score.mean, "inception_score_std": score.std, "n_samples": len(samples),
            "predicted_class_counts": counts}
