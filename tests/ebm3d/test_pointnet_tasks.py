"""Generative PointNet tasks: config, chain settings, synthesis, reconstruction, interpolation,
a short training run on real chairs, and the command line on the built-in shapes."""
import json
import math

import pytest
import torch

from ebmcore.errors import ConfigError, DataError
from ebmcore.io import load_tensors
from ebmcore.paths import data_root
from ebmcore.sampling import langevin

from ebm3d.data.readers import read_pcd
from ebm3d.registry import declared_name
from ebm3d.experiment import load_experiment
from ebm3d.tasks.interpolation import interpolate, noise_path
from ebm3d.tasks.reconstruction import reconstruct
from ebm3d.tasks.synthesis import chain_settings, draw_clouds
from ebm3d.tasks.training import build_point_model, load_point_run, train_point_model


def load_pointnet_experiment(path, overrides=None):
    """A PointNet experiment (defaults when ``path`` is None) through the one loader."""
    return load_experiment(path, overrides, model="pointnet")

pytestmark = pytest.mark.usefixtures("one_thread")

PCD = data_root() / "modelnet10-pcd"
needs_pcd = pytest.mark.skipif(not (PCD / "chair").is_dir(), reason=f"shared modelnet10-pcd not found at {PCD}")
TINY = ["energy.widths=[8,16]", "energy.mlp=[8]", "energy.sigma_ref=null", "energy.norm=layer", "train.sampler.steps=4",
        "train.sampler.step_size=1.0", "train.sampler.noise_scale=0.01", "data.train_points=32",
        "data.n_points=64", "threads=1"]


def _cfg(tmp_path, *extra):
    return load_pointnet_experiment(None, [f"out_dir={tmp_path}", "name=t", *TINY, *extra])


def _model(cfg, seed=0):
    torch.manual_seed(seed)
    return build_point_model(cfg).eval()


def _chairs(n=2, points=32):
    files = sorted((PCD / "chair" / "test").glob("*.pcd"))[:n]
    x = torch.from_numpy(__import__("numpy").stack([read_pcd(f) for f in files])).float()[:, :points]
    x = x - x.mean(1, keepdim=True)
    return x / x.norm(dim=2).amax(1)[:, None, None]


# ------------------------------------------------------------------ config


def test_config_keeps_pointnet_defaults_under_partial_train_section(tmp_path):
    cfg = load_pointnet_experiment(None, ["train.steps=7"])
    assert cfg.train.steps == 7
    assert cfg.train.chains.std == 0.3 and cfg.train.chains.kind == "short_run"
    assert cfg.train.sampler.clamp == [-1.0, 1.0] and cfg.train.optim.lr == 5e-4


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="energy.depth"):
        load_pointnet_experiment(None, ["energy.depth=3"])
    with pytest.raises(ConfigError, match="train.sampler.steps"):
        load_pointnet_experiment(None, ["train.sampler.steps=-1"])
    with pytest.raises(ConfigError, match="leaks the label"):
        load_pointnet_experiment(None, ["task=classification", "data.normalisation=category_minmax"])
    with pytest.raises(ConfigError, match="train_points"):
        load_pointnet_experiment(None, ["data.n_points=100", "data.train_points=200"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: pointnet\ndata: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_pointnet_experiment(bad)


def test_every_shipped_config_loads_and_is_recognised():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "configs"
    names = ["pointnet_demo", "pointnet_chair_cpu", "pointnet_modelnet10_cpu", "pointnet_paper"]
    for name in names:
        path = root / f"{name}.yaml"
        cfg = load_pointnet_experiment(path)
        assert cfg.name == name if name != "pointnet_paper" else cfg.name == "pointnet_chair_paper"
        assert declared_name(path) == "pointnet"
    assert load_pointnet_experiment(root / "pointnet_paper.yaml").energy.widths == [64, 64, 128, 256, 1024]
    assert declared_name(root / "voxelnet_chair_cpu.yaml") == "voxelnet"
    assert declared_name(root / "does_not_exist.yaml") is None


# ------------------------------------------------------------------ chains


def test_chain_step_scales_with_point_count(tmp_path):
    cfg = _cfg(tmp_path)
    base, big = chain_settings(cfg), chain_settings(cfg, n_points=128)  # 4x the 32 training points
    assert base["step_size"] == 1.0 and math.isclose(big["step_size"], 2.0)
    # per-point drift step^2 / (2 N) and the noise per step are unchanged
    assert math.isclose(big["step_size"] ** 2 / 128, base["step_size"] ** 2 / 32)
    assert math.isclose(big["step_size"] * big["noise"](0, 4), base["step_size"] * base["noise"](0, 4))
    assert chain_settings(cfg, noise="none")["noise"](0, 4) == 0.0


def test_synthesis_is_seeded_finite_and_clamped(tmp_path):
    cfg = _cfg(tmp_path)
    model = _model(cfg)
    a = draw_clouds(model, cfg, 5, seed=3, batch_size=2)
    b = draw_clouds(model, cfg, 5, seed=3, batch_size=2)
    assert a.shape == (5, 32, 3)
    torch.testing.assert_close(a, b)
    assert torch.isfinite(a).all() and a.abs().max() <= 1.0
    assert not torch.allclose(a, draw_clouds(model, cfg, 5, seed=4, batch_size=2))
    assert draw_clouds(model, cfg, 2, n_points=100, seed=0).shape == (2, 100, 3)


def test_synthesis_takes_its_own_chain_length(tmp_path):
    """``synthesis.steps`` sets the sampling chain (0 steps: the initial noise itself)."""
    from ebm3d.tasks.synthesis import initial_noise

    cfg = _cfg(tmp_path, "synthesis.steps=0")
    z = initial_noise(cfg, 3, 32, torch.Generator().manual_seed(5))
    torch.testing.assert_close(draw_clouds(_model(cfg), cfg, 3, seed=5), z)
    longer = _cfg(tmp_path, "synthesis.steps=8")
    assert not torch.allclose(draw_clouds(_model(longer), longer, 3, seed=5), draw_clouds(_model(cfg), _cfg(tmp_path), 3, seed=5))


@needs_pcd
def test_reconstruction_lowers_the_error_it_optimises(tmp_path):
    cfg = _cfg(tmp_path, "reconstruction.iterations=10", "reconstruction.lr=0.08", "reconstruction.batch_size=2")
    model = _model(cfg)
    targets = _chairs(3, 32)
    report, arrays = reconstruct(model, cfg, targets, seed=0)
    curve = report["curve_x1000"]
    assert len(curve) == 11 and report["n_examples"] == 3
    assert report["mse_x1000"] < 0.5 * report["initial_mse_x1000"]
    assert curve[-1] < curve[0]
    # the reported error is the chain's output from the optimised z, measured independently
    kw = chain_settings(cfg, noise="none")
    again = langevin(model.energy, arrays["z"], **kw)
    torch.testing.assert_close(again, arrays["reconstruction"])
    mse = (again - targets).pow(2).mean((1, 2)) * 1000
    assert math.isclose(float(mse.mean()), report["mse_x1000"], rel_tol=1e-4)
    # the model's parameters are untouched and trainable again
    assert all(p.requires_grad and p.grad is None for p in model.parameters())


@needs_pcd
def test_chamfer_reconstruction_lowers_the_chamfer_distance(tmp_path):
    cfg = _cfg(tmp_path, "reconstruction.iterations=8", "reconstruction.lr=0.08", "reconstruction.loss=chamfer")
    report, _ = reconstruct(_model(cfg), cfg, _chairs(2, 32), seed=0)
    assert report["loss"] == "chamfer"
    assert report["chamfer_x1000"] < 0.7 * report["initial_chamfer_x1000"]
    assert report["curve_x1000"][-1] == pytest.approx(report["chamfer_x1000"], rel=1e-4)


def test_interpolation_ends_are_the_chains_of_the_two_noises(tmp_path):
    cfg = _cfg(tmp_path, "interpolation.n_pairs=2", "interpolation.n_steps=5")
    model = _model(cfg)
    strips = interpolate(model, cfg, seed=1)
    assert strips.shape == (2, 5, 32, 3) and torch.isfinite(strips).all()
    g = torch.Generator().manual_seed(1)
    z0, z1 = (cfg.train.chains.std * torch.randn(1, 32, 3, generator=g)[0] for _ in range(2))
    kw = chain_settings(cfg, noise="none")
    ends = langevin(model.energy, torch.stack([z0, z1]), **kw)
    torch.testing.assert_close(strips[0, 0], ends[0])
    torch.testing.assert_close(strips[0, -1], ends[1], atol=1e-5, rtol=1e-5)
    assert (strips[0, 1:] - strips[0, :-1]).abs().amax() > 0  # it moves along the path


def test_noise_paths():
    z0, z1 = torch.randn(50, 3), torch.randn(50, 3)
    sph, lin = noise_path(z0, z1, 5), noise_path(z0, z1, 5, "linear")
    torch.testing.assert_close(sph[0], z0)
    torch.testing.assert_close(sph[-1], z1, atol=1e-6, rtol=0)
    torch.testing.assert_close(lin[2], (z0 + z1) / 2)
    big = noise_path(torch.randn(20000), torch.randn(20000), 3)
    assert abs(float(big[1].std()) - 1.0) < 0.03  # the spherical middle keeps the variance
    with pytest.raises(ValueError):
        noise_path(z0, z1, 3, "cubic")


# ------------------------------------------------------------------ training


@needs_pcd
def test_short_training_on_real_chairs_lowers_the_objective(tmp_path):
    from ebm3d.tasks.data import point_source

    cfg = _cfg(tmp_path, "data.classes=[chair]", "data.max_per_class=24", "train.steps=30",
               "train.batch_size=8", "train.log_every=1", "train.progress=false", "train.tensorboard=false",
               "train.optim.lr=0.003", "train.ckpt_every=10", "train.sample_every=10")
    source = point_source(cfg.data)
    model, trainer, _ = train_point_model(cfg, source.points("train", ["chair"]))
    rows = [json.loads(line) for line in (cfg.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 30
    loss = [r["loss"] for r in rows]
    assert sum(loss[-10:]) / 10 < sum(loss[:5]) / 5
    s = trainer.last_samples
    assert s.shape == (8, 32, 3) and torch.isfinite(s).all() and s.abs().max() <= 1.0
    assert (cfg.run_dir / "samples" / "step000010.pt").is_file()
    # the run reloads with its config and weights
    cfg2, (model2,) = load_point_run(cfg.run_dir)
    assert cfg2.energy.widths == [8, 16]
    x = source.points("test", ["chair"])[:2]
    torch.testing.assert_close(model2.energy(x), model.eval().energy(x))


def test_bad_training_input_and_missing_run(tmp_path):
    with pytest.raises(DataError, match=r"\(N, P, 3\)"):
        train_point_model(_cfg(tmp_path), torch.zeros(4, 10, 2))
    with pytest.raises(DataError, match="checkpoint.pt"):
        load_point_run(tmp_path / "nothing")


# ------------------------------------------------------------------ command line


def test_cli_end_to_end_on_builtin_chairs(tmp_path, capsys, monkeypatch):
    from pathlib import Path

    import ebmcore.results
    from ebm3d.cli import main

    monkeypatch.setattr(ebmcore.results, "RESULTS_DIR", tmp_path / "results")

    config = Path(__file__).resolve().parents[2] / "configs" / "pointnet_demo.yaml"
    common = [f"out_dir={tmp_path}", "data.n_per_class=10", "data.n_points=64", "data.train_points=32",
              "train.steps=3", "train.progress=false", "train.sampler.steps=4"]
    assert main(["train", str(config), *common, "--no-open3d"]) == 0
    run = tmp_path / "pointnet_demo"
    report = json.loads((run / "train_report.json").read_text())
    assert report["steps"] == 3 and report["samples"]["finite"]
    assert load_tensors(run / "samples.pt")["samples"].shape == (16, 32, 3)
    assert main(["sample", str(run), "--n", "3", "--ply", "--no-open3d"]) == 0
    assert len(list((run / "samples_fresh_ply").glob("*.ply"))) == 3
    assert main(["reconstruct", str(run), "reconstruction.n_examples=2", "reconstruction.iterations=2",
                 "--no-open3d"]) == 0
    rec = json.loads((run / "reconstruction.json").read_text())
    assert rec["n_examples"] == 2 and rec["mse_x1000"] > 0
    assert set(load_tensors(run / "reconstruction.pt")) == {"target", "reconstruction", "initial", "z"}
    assert main(["interpolate", str(run), "interpolation.n_steps=3", "--no-open3d"]) == 0
    assert load_tensors(run / "interpolation.pt")["strips"].shape == (3, 3, 32, 3)
    assert main(["evaluate", str(run), "evaluate.n_ref=2", "evaluate.emd_points=16", "synthesis.steps=2",
                 "evaluate.record=pointnet_chair"]) == 0
    ev = json.loads((run / "evaluation.json").read_text())
    recorded = json.loads((tmp_path / "results" / "ebm3d.json").read_text())["pointnet_chair"]
    assert recorded["one_nna_cd"] == ev["rows"]["model"]["1-NNA-CD"] and 0 <= recorded["cov_cd"] <= 1
    sides = recorded["one_nna_cd_gen_side"], recorded["one_nna_cd_ref_side"]   # 2 samples, 2 references
    assert recorded["one_nna_cd"] == pytest.approx(sum(sides) / 2)
    assert recorded["settings"]["chain_steps"] == 2 and recorded["train_seconds"] == report["train_seconds"]
    assert recorded["train_cpu_seconds"] == report["train_cpu_seconds"] > 0     # one training call
    assert ev["settings"]["points"] == 32  # the training point count, the only one this network takes
    assert set(ev["rows"]) == {"model", "oracle", "gaussian"}
    assert {"MMD-CD", "COV-EMD", "1-NNA-EMD", "JSD"} <= set(ev["rows"]["model"])
    capsys.readouterr()
    assert main(["reconstruct", str(tmp_path / "missing_run")]) == 2
    assert "no checkpoint.pt" in capsys.readouterr().err


def test_training_seconds_add_up_over_resumes(tmp_path):
    from ebm3d.tasks.training import add_train_seconds, train_cpu_seconds, train_seconds

    add_train_seconds(tmp_path, {"wall": 10.0, "cpu": 4.0})
    assert add_train_seconds(tmp_path, {"wall": 5.0, "cpu": 2.5}) == {"wall": 15.0, "cpu": 6.5}
    level = tmp_path / "level16"
    level.mkdir()
    add_train_seconds(level, {"wall": 1.0, "cpu": 1.0})
    assert train_seconds(tmp_path) == 16.0 and train_cpu_seconds(tmp_path) == 7.5
    # a folder whose earlier calls kept only wall time: the CPU total is unknown, not understated
    (level / "timing.json").write_text('{"train_seconds": 3.0}')
    add_train_seconds(level, {"wall": 1.0, "cpu": 1.0})
    assert train_seconds(tmp_path) == 19.0 and train_cpu_seconds(tmp_path) is None
