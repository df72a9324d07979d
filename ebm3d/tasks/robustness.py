"""Robustness curves of a generative PointNet's classifier on corrupted test clouds.

The selected classifier of a classification run (:func:`ebm3d.tasks.classification.load_selected`),
fitted on clean training features, classifies test clouds that were corrupted before the features
were computed (points removed, outliers from N(0, 0.3^2) appended, every coordinate jittered), on
the grids of :mod:`ebm3d.transforms`. Because the energy network normalises over the points it
sees, the corrupted clouds go through the network as they are (a different point count included).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ebmcore.io import atomic_write

from ebm3d import transforms as T
from ebm3d.config import PointNetExperiment
from ebm3d.tasks.classification import accuracy, extract_features, fit, load_selected, split_inputs


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


def robustness_curves(cfg: PointNetExperiment, source, seed: int = 0, log=print) -> dict:
    """Test accuracy of the selected classifier on each corruption grid; writes
    ``robustness.json`` and ``robustness_<kind>.png`` in the run folder."""
    model, best = load_selected(cfg)
    clouds, ys = split_inputs(cfg, source)
    clf = fit(cfg.classify, best["C"], extract_features(cfg, model, clouds["train"]), ys["train"], cfg.train.seed)
    n_test = cfg.robustness.n_test or len(clouds["test"])
    test, y_test = clouds["test"][:n_test], ys["test"][:n_test]
    out = {"selected_step": best["step"], "selected_C": best["C"], "n_test": int(n_test),
           "outlier_std": cfg.robustness.outlier_std, "curves": {}}
    for kind, values in grids(cfg).items():
        g = torch.Generator().manual_seed(seed)
        accs = []
        for v in values:
            x = corrupt(kind, test, v, cfg.robustness.outlier_std, g)
            acc = accuracy(clf, extract_features(cfg, model, x), y_test)
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
