"""The PointNet classifier pipeline and robustness curves on a tiny real slice of modelnet10-pcd."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from ebmcore.paths import data_root

from ebm3d import transforms as T
from ebm3d.experiment import load_experiment
from ebm3d.tasks.classification import run_classification
from ebm3d.tasks.data import point_source
from ebm3d.tasks.robustness import corrupt, grids, robustness_curves

PCD = data_root() / "modelnet10-pcd"
pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(not PCD.is_dir(), reason=f"shared modelnet10-pcd not found at {PCD}")]


def test_classifier_pipeline_and_robustness_on_a_real_slice(tmp_path, monkeypatch):
    import ebmcore.results

    monkeypatch.setattr(ebmcore.results, "RESULTS_DIR", tmp_path / "results")
    cfg = load_experiment(None, model="pointnet", overrides=[
        f"out_dir={tmp_path}", "name=cls", "task=classification", "data.normalisation=sphere",
        "data.max_per_class=6", "data.val_fraction=0.2", "data.n_points=128", "data.train_points=64",
        "energy.widths=[8,16]", "energy.mlp=[8]", "energy.sigma_ref=null", "energy.norm=layer", "train.steps=4",
        "train.batch_size=8", "classify.record=pointnet_modelnet10",
        "train.sampler.steps=3", "train.sampler.step_size=1.0", "train.sampler.noise_scale=0.01",
        "train.progress=false", "train.tensorboard=false", "classify.eval_every=2", "classify.C=[0.01,1.0]",
        "robustness.missing=[0.0,0.5,0.99]", "robustness.outliers=[0.0,1.0]", "robustness.jitter=[0.0,0.1]"])
    source = point_source(cfg.data)
    assert len(source.classes) == 10 and source.counts()["val"]  # a validation split to select on
    report = run_classification(cfg, source, log=lambda m: None)
    n = report["n"]
    assert n["train"] + n["val"] == 60 and n["test"] == 60
    assert report["feature_dim"] == 16  # the last layer's features
    assert [h["step"] for h in report["selection_history"]] == [2, 4]
    assert report["selected_step"] in (2, 4) and report["selected_C"] in (0.01, 1.0)
    assert 0.0 <= report["test_accuracy"] <= 1.0 and report["train_accuracy"] > 0.3
    assert set(report["per_class_test_accuracy"]) == set(source.classes)
    assert 0.0 <= report["untrained_baseline"]["test_accuracy"] <= 1.0
    assert json.loads((cfg.run_dir / "classification.json").read_text())["test_accuracy"] == report["test_accuracy"]
    recorded = json.loads((tmp_path / "results" / "ebm3d.json").read_text())["pointnet_modelnet10"]
    assert recorded["trained"] == report["test_accuracy"] and recorded["trained_val"] == report["val_accuracy"]
    assert recorded["untrained"] == report["untrained_baseline"]["test_accuracy"] and recorded["train_seconds"] >= 0

    rob = robustness_curves(cfg, source, seed=0, log=lambda m: None)
    curves = rob["curves"]
    assert curves["missing"]["values"] == [0.0, 0.5, 0.99] and len(curves["outliers"]["accuracy"]) == 2
    # no corruption is the clean test set: the same accuracy as the classification report
    for kind in ("missing", "outliers", "jitter"):
        assert curves[kind]["accuracy"][0] == pytest.approx(report["test_accuracy"])
        with Image.open(cfg.run_dir / f"robustness_{kind}.png") as im:
            assert im.format == "PNG" and im.size[0] > 100
    assert json.loads((cfg.run_dir / "robustness.json").read_text())["n_test"] == 60


def test_default_grids_are_the_published_ones():
    cfg = load_experiment(None, model="pointnet")
    g = grids(cfg)
    assert g["missing"][0] == 0.0 and g["missing"][-1] == 0.99 and len(g["missing"]) == 20
    assert g["outliers"][0] == 0.0 and g["outliers"][-1] == 1.0
    assert g["jitter"] == [0, .001, .003, .005, .007, .01, .02, .05, .1]
    assert g["missing"] == list(T.MISSING_RATIOS)


def test_corruptions_change_the_clouds_as_stated():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 1024, 3)
    assert corrupt("missing", x, 0.99, 0.3, g).shape == (4, 11, 3)
    out = corrupt("outliers", x, 0.5, 0.3, g)
    assert out.shape == (4, 1536, 3) and torch.equal(out[:, :1024], x)
    assert abs(float(out[:, 1024:].std()) - 0.3) < 0.02
    j = corrupt("jitter", x, 0.05, 0.3, g)
    assert abs(float((j - x).std()) - 0.05) < 0.002
    with pytest.raises(ValueError):
        corrupt("rotate", x, 0.1, 0.3, g)
    assert np.isfinite(j.numpy()).all()
