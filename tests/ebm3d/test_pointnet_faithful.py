"""The published GPointNet algorithms, one switch each: every test fails when its switch is removed
or the shipped configs stop using it. Also determinism and exact resume of point runs."""
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ebmcore.errors import ConfigError
from ebmcore.io import load_tensors
from ebmcore.sampling import langevin

from ebm3d.data.points import normalise
from ebm3d.models.pointnet import PAPER, GenerativePointNet, PointNetSpec
from ebm3d.experiment import load_experiment
from ebm3d.tasks.synthesis import chain_settings
from ebm3d.tasks.training import build_point_model, point_trainer

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SYNTHESIS = ("pointnet_paper.yaml", "pointnet_chair_cpu.yaml")


def _flat_score(cfg) -> GenerativePointNet:
    """The experiment's network with f_theta = 0: the chain then samples the reference alone."""
    model = build_point_model(cfg)
    last = model.head[-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    return model


# ------------------------------------------------------------------ sampler: temperature 1 + sigma_ref


@pytest.mark.parametrize("name", SYNTHESIS)
def test_sampler_is_langevin_at_temperature_one_with_the_reference(name):
    """With f_theta = 0 the update is x <- (1 - a) x + delta * eps, a = delta^2 / (2 sigma_ref^2).
    From x = 0 the per-coordinate std after T steps is delta * sqrt(sum_k (1 - a)^(2k)) (noise at
    temperature 1); without noise x = c shrinks to c (1 - a)^T (the reference term)."""
    cfg = load_experiment(CONFIGS / name, ["data.n_points=512", "data.train_points=512",
                                                    "energy.widths=[8,8]", "energy.mlp=[4]"])
    s = cfg.train.sampler
    assert (s.step_size, s.noise_scale, s.steps, cfg.energy.sigma_ref) == (0.01, 1.0, 64, 0.3)
    model, kw = _flat_score(cfg), chain_settings(cfg)
    a = s.step_size**2 / (2 * cfg.energy.sigma_ref**2)
    g = torch.Generator().manual_seed(0)
    x = langevin(model.energy, torch.zeros(4, 512, 3), generator=g, **kw)
    expected = s.step_size * math.sqrt(sum((1 - a) ** (2 * k) for k in range(s.steps)))
    assert x.std().item() == pytest.approx(expected, rel=0.03)
    x = langevin(model.energy, torch.full((1, 512, 3), 0.9), **{**kw, "noise": "none"})
    torch.testing.assert_close(x, torch.full_like(x, 0.9 * (1 - a) ** s.steps))


# ------------------------------------------------------------------ data: one scalar min/max


def test_category_scalar_normalisation_keeps_aspect_ratios():
    rng = np.random.default_rng(0)
    pts = rng.uniform(-1, 1, (6, 50, 3)) * np.array([3.0, 1.0, 0.5]) + rng.normal(0, 0.1, (6, 1, 3))
    labels, fit = np.array([0, 0, 0, 1, 1, 1]), np.array([True, True, False, True, True, False])
    sphere, _ = normalise(pts, labels, fit, 2, "sphere")
    out, stats = normalise(pts, labels, fit, 2, "category_scalar")
    for c in (0, 1):
        train = out[(labels == c) & fit]
        assert train.min() == pytest.approx(-1.0, abs=1e-6) and train.max() == pytest.approx(1.0, abs=1e-6)
        assert np.allclose(stats[c, :, 0], stats[c, :, 1]) and np.allclose(stats[c, :, 0], stats[c, :, 2])
    extent = lambda x: x.max(axis=1) - x.min(axis=1)  # noqa: E731
    np.testing.assert_allclose(extent(out) / extent(out)[:, :1], extent(sphere) / extent(sphere)[:, :1], rtol=1e-5)
    per_axis, _ = normalise(pts, labels, fit, 2, "category_minmax")  # the other mode stretches the axes
    assert not np.allclose(extent(per_axis) / extent(per_axis)[:, :1], extent(sphere) / extent(sphere)[:, :1], rtol=0.05)
    for name in SYNTHESIS:
        assert load_experiment(CONFIGS / name).data.normalisation == "category_scalar"


# ------------------------------------------------------------------ network: residual layer, per-position affine


def _net(**kw) -> GenerativePointNet:
    torch.manual_seed(0)
    spec = dict(widths=[8, 8, 16], mlp=[8], sigma_ref=0.3, norm="none")
    spec.update(kw)
    return GenerativePointNet(PointNetSpec(**spec)).double()


def test_residual_layer_adds_its_input():
    x = torch.randn(2, 20, 3, dtype=torch.float64)
    for residual in (True, False):
        model = _net(residual=residual)
        torch.nn.init.zeros_(model.convs[1].layer.weight if residual else model.convs[1].weight)
        torch.nn.init.zeros_(model.convs[1].layer.bias if residual else model.convs[1].bias)
        h = model.point_features(x)
        if residual:  # relu(h1 + 0) = h1: the 8 -> 8 layer passes its input on
            torch.testing.assert_close(h[1], h[0])
        else:
            assert h[1].abs().max() == 0
    assert PAPER["residual"]
    for name in SYNTHESIS + ("pointnet_modelnet10_cpu.yaml",):
        cfg = load_experiment(CONFIGS / name)
        assert cfg.energy.residual and cfg.energy.widths[:2] == [64, 64]
        assert type(build_point_model(cfg).convs[1]).__name__ == "Residual"


def test_position_norm_has_a_scale_and_shift_per_point_position():
    x = torch.randn(2, 12, 3, dtype=torch.float64)
    model = _net(norm="position", n_points=12)
    norm = model.norms[0].norm
    assert norm.weight.shape == (12,) and norm.bias.shape == (12,)
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(model.score(x[:, perm]), model.score(x))  # equal weights: invariant
    with torch.no_grad():
        norm.weight[0] = 3.0  # the first position gets its own scale: the order now matters
    assert (model.score(x[:, perm]) - model.score(x)).abs().max() > 1e-6
    with pytest.raises(ValueError, match="takes 12 points"):
        model.score(torch.randn(2, 10, 3, dtype=torch.float64))
    with pytest.raises(ConfigError, match="n_points"):
        PointNetSpec(norm="position").validate()
    assert PAPER["norm"] == "position"
    for name in SYNTHESIS:
        cfg = load_experiment(CONFIGS / name)
        assert cfg.energy.norm == "position"
        assert build_point_model(cfg).norms[0].norm.weight.shape == (cfg.train_points,)


def test_head_pools_by_the_mean_or_by_the_maximum_over_points():
    x = torch.randn(3, 20, 3, dtype=torch.float64)
    perm = torch.randperm(20, generator=torch.Generator().manual_seed(2))
    scores = {}
    for pool, reduce in (("mean", lambda h: h.mean(2)), ("max", lambda h: h.amax(2))):
        model = _net(pool=pool)
        scores[pool] = model.score(x)
        torch.testing.assert_close(scores[pool], model.head(reduce(model.point_features(x)[-1])).squeeze(1))
        torch.testing.assert_close(model.score(x[:, perm]), scores[pool])  # permutation invariant
    assert (scores["max"] - scores["mean"]).abs().max() > 1e-3
    with pytest.raises(ConfigError, match="pool"):
        PointNetSpec(pool="sum").validate()
    cfg = load_experiment(CONFIGS / "pointnet_modelnet10_cpu.yaml", ["energy.pool=max"])
    assert build_point_model(cfg).spec.pool == "max"
    assert load_experiment(CONFIGS / "pointnet_modelnet10_cpu.yaml").energy.pool == "mean"


# ------------------------------------------------------------------ training: StepLR


@pytest.mark.parametrize("name", SYNTHESIS + ("pointnet_modelnet10_cpu.yaml",))
def test_learning_rate_decays_by_0998_every_10_updates(tmp_path, name):
    cfg = load_experiment(CONFIGS / name, [
        f"out_dir={tmp_path}", "name=lr", "energy.widths=[8,8]", "energy.mlp=[4]", "data.n_points=16",
        "data.train_points=16", "train.batch_size=2", "train.sampler.steps=1", "train.steps=20",
        "train.progress=false", "train.tensorboard=false", "threads=1"])
    o = cfg.train.optim
    assert (o.lr_step_every, o.lr_gamma) == (10, 0.998)
    trainer = point_trainer(cfg, build_point_model(cfg), 0.3 * torch.randn(4, 16, 3), resume=False)
    trainer.fit()
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(o.lr * 0.998**2)


# ------------------------------------------------------------------ classification: last layer


def test_classification_uses_the_last_layers_features():
    from ebm3d.tasks.classification import extract_features

    cfg = load_experiment(CONFIGS / "pointnet_modelnet10_cpu.yaml")
    assert cfg.classify.features == "last"
    assert load_experiment(None, model="pointnet").classify.features == "last"
    model = build_point_model(cfg)
    x = torch.randn(3, 40, 3)
    feats = extract_features(cfg, model, x)
    assert feats.shape == (3, cfg.energy.widths[-1])
    np.testing.assert_allclose(feats, model.point_features(x)[-1].amax(dim=2).detach().numpy(), rtol=1e-6)


# ------------------------------------------------------------------ determinism and exact resume


def _run_cfg(tmp_path, name, steps):
    return load_experiment(CONFIGS / "pointnet_chair_cpu.yaml", [
        f"out_dir={tmp_path}", f"name={name}", "energy.widths=[8,8,16]", "energy.mlp=[8]", "data.n_points=48",
        "data.train_points=32", "train.batch_size=4", "train.sampler.steps=4", f"train.steps={steps}",
        "train.ckpt_every=100", "train.log_every=1", "train.progress=false", "train.tensorboard=false", "threads=1"])


def _train(cfg, data):
    torch.manual_seed(cfg.train.seed)
    trainer = point_trainer(cfg, build_point_model(cfg), data)
    trainer.fit()
    trainer.save_checkpoint()
    return trainer


def test_point_runs_are_deterministic_and_resume_exactly(tmp_path):
    data = 0.3 * torch.randn(10, 48, 3, generator=torch.Generator().manual_seed(0))
    a = _train(_run_cfg(tmp_path, "a", 6), data)
    b = _train(_run_cfg(tmp_path, "b", 6), data)
    _train(_run_cfg(tmp_path, "c", 3), data)
    c = _train(_run_cfg(tmp_path, "c", 6), data)  # resumes from step 3 of the same folder
    assert c.step == 6
    for other in (b, c):
        for (k, p), q in zip(a.model.state_dict().items(), other.model.state_dict().values()):
            assert torch.equal(p, q), k
        assert torch.equal(a.last_samples, other.last_samples)
        assert a.optimizer.param_groups[0]["lr"] == other.optimizer.param_groups[0]["lr"]
    rows = lambda run: (tmp_path / run / "metrics.csv").read_text().splitlines()[1:]  # noqa: E731
    assert len(rows("a")) == 6 and rows("a") == rows("b") == rows("c")
    assert load_tensors(tmp_path / "c" / "checkpoint.pt")["step"] == 6


def test_a_run_with_a_parameter_average_is_evaluated_with_it(tmp_path):
    """``train.average``: the trained model handed on after training and the model loaded from
    the run folder are the checkpoint's average, not its current weights."""
    from ebm3d.tasks.training import load_point_run, train_point_model

    data = 0.3 * torch.randn(10, 48, 3, generator=torch.Generator().manual_seed(0))
    cfg = load_experiment(CONFIGS / "pointnet_chair_cpu.yaml", [
        f"out_dir={tmp_path}", "name=avg", "energy.widths=[8,8,16]", "energy.mlp=[8]", "data.n_points=48",
        "data.train_points=32", "train.batch_size=4", "train.sampler.steps=4", "train.steps=4",
        "train.progress=false", "train.tensorboard=false", "threads=1", "train.average=0.5"])
    model, trainer, _ = train_point_model(cfg, data)
    saved = load_tensors(tmp_path / "avg" / "checkpoint.pt")
    _, (loaded,) = load_point_run(tmp_path / "avg")
    for k, v in saved["average"].items():
        assert torch.equal(loaded.state_dict()[k], v), k
        assert torch.equal(model.state_dict()[k], v), k
    assert any(not torch.equal(saved["model"][k], v) for k, v in saved["average"].items())


def test_checkpoint_selection_on_validation_picks_the_lowest_1nna(tmp_path, monkeypatch):
    """``evaluate.select_every``: ``ebm3d train`` scores the run every so many updates on the val
    split, keeps the best checkpoint in best_model.pt, and ``evaluate`` loads that one."""
    import json

    from ebm3d.cli import main
    from ebm3d.tasks import generation_metrics

    scores = iter([0.9, 0.7, 0.8])                           # steps 2, 4 and the final 6
    monkeypatch.setattr(generation_metrics.GenerationSelector, "score",
                        lambda self, model, step: {"val_one_nna_cd": next(scores)})
    run = tmp_path / "sel"
    args = [f"out_dir={tmp_path}", "name=sel", "energy.widths=[8,8,16]", "energy.mlp=[8]", "data.n_per_class=20",
            "data.n_points=48", "data.train_points=32", "train.batch_size=4",
            "train.sampler.steps=2", "train.steps=6", "train.ckpt_every=2", "evaluate.select_every=2",
            "evaluate.n_ref=4", "synthesis.n_samples=2", "threads=1"]
    assert main(["train", str(CONFIGS / "pointnet_demo.yaml"), "--no-open3d", *args]) == 0
    selection = json.loads((run / "selection.json").read_text())
    assert [r["step"] for r in selection["history"]] == [2, 4, 6] and selection["best"]["step"] == 4
    best = load_tensors(run / "best_model.pt")
    assert best["step"] == 4
    last = load_tensors(run / "checkpoint.pt")["model"]
    assert any(not torch.equal(v, last[k]) for k, v in best["model"].items())
    assert main(["evaluate", str(run), "evaluate.n_ref=4", "evaluate.oracle=false", "synthesis.steps=2"]) == 0
    assert json.loads((run / "evaluation.json").read_text())["settings"]["selected_step"] == 4


def test_generation_selector_scores_fresh_samples_against_validation(tmp_path):
    from ebm3d.tasks.generation_metrics import GenerationSelector

    cfg = _run_cfg(tmp_path, "score", 1)
    cfg.evaluate.select_every = 1
    val = 0.3 * torch.randn(4, 32, 3, generator=torch.Generator().manual_seed(1))
    selector = GenerationSelector(cfg, val, tmp_path)
    torch.manual_seed(0)
    row = selector.score(build_point_model(cfg), 1)
    assert 0.0 <= row["val_one_nna_cd"] <= 1.0 and 0.0 <= row["val_cov_cd"] <= 1.0 and row["val_mmd_cd"] > 0
    assert selector.score(build_point_model(cfg), 1)["val_mmd_cd"] != row["val_mmd_cd"]  # another network
