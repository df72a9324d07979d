"""The VoxelNet algorithm switches (``algorithm.*``, ``recovery.protocol``, ``model.centring``,
``model.feature_pooling``), the recovery baselines, the sample metrics, exact determinism and
resume of voxel runs, and a short run that learns. Each switch test compares the switch on
against off, so it fails if the switch stops doing anything."""
import json
from pathlib import Path

import pytest
import torch

from ebmcore.io import load_tensors
from ebmcore.learning import Trainer
from ebmcore.paths import dataset_dir
from ebm3d.cli import main
from ebm3d.config import RecoveryConfig, VoxelNetExperiment
from ebm3d.experiment import load_experiment
from ebm3d.models.voxelnet import PAPER, VoxelNet, VoxelNetSpec, max_pool_same
from ebm3d.tasks.recovery import evaluate_recovery, observed_mean_fill, random_mask, recover
from ebm3d.tasks.synthesis import sample_quality
from ebm3d.tasks.training import build_voxel_model, chain_bounds, effective_train_config, level_chains
from ebmcore.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
CHAIRS = dataset_dir("shapenets-chair-vox30")
need_chairs = pytest.mark.skipif(CHAIRS is None, reason="data_root()/shapenets-chair-vox30 is absent (set EBM_DATA)")

SMALL = ["model.channels=[4,8]", "model.kernels=[3,3]", "model.strides=[2,2]", "train.progress=false",
         "train.tensorboard=false", "train.log_every=1", "train.sample_every=1000", "train.ckpt_every=2"]


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("EBM_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def shapes(n=12, R=8, seed=0) -> torch.Tensor:
    """n binary 'chairs' at R^3: a seat slab, a back slab and four legs, with random extents."""
    g = torch.Generator().manual_seed(seed)
    out = torch.zeros(n, 1, R, R, R)
    for i in range(n):
        h = int(torch.randint(R // 4, R // 2, (1,), generator=g))
        out[i, 0, 1:R - 1, h, 1:R - 1] = 1  # seat
        out[i, 0, 1:R - 1, h:R - 1, 1] = 1  # back
        for x in (1, R - 2):
            for z in (1, R - 2):
                out[i, 0, x, :h, z] = 1  # legs
    return out


def small_cfg(tmp_path, overrides=()) -> VoxelNetExperiment:
    return load_experiment(CONFIGS / "voxelnet_chair16_cpu.yaml",
                           [f"out_dir={tmp_path}", "name=t", "data.source=furniture", "data.resolution=8",
                            "data.pool=avg", "data.rotations=null", *SMALL, "train.batch_size=4",
                            "train.sampler.steps=3", "train.chains.num_chains=8", *overrides])


def trainer(cfg: VoxelNetExperiment, data: torch.Tensor, run_dir) -> Trainer:
    """The engine's Trainer with the VoxelNet switches, as :func:`train_models` builds it."""
    model = build_voxel_model(cfg, 8, data)
    return Trainer(model, model.centre(data), effective_train_config(cfg, len(data)), run_dir,
                   clamp=chain_bounds(cfg, model), resume=False, full_config=cfg,
                   chains=level_chains(cfg, [], model, 8))


# ----------------------------------------------------------------------------- the clamp
@pytest.mark.parametrize("clamp", [True, False])
def test_clamp_keeps_training_chains_in_the_occupancy_range(tmp_path, clamp):
    cfg = small_cfg(tmp_path, [f"algorithm.clamp={str(clamp).lower()}", "train.sampler.step_size=1.0",
                               "train.chains.std=1.0"])
    t = trainer(cfg, shapes(), tmp_path / "run")
    t.train_step()
    occupancy = t.model.uncentre(t.chains.state_dict()["buffer"][:4])
    inside = bool(occupancy.min() >= -1e-6 and occupancy.max() <= 1 + 1e-6)
    assert inside == clamp


# ----------------------------------------------------------------------------- official bookkeeping
def test_official_bookkeeping_one_step_per_pass_and_every_chain_advances(tmp_path):
    data = shapes(12)  # 3 minibatches of 4
    cfg = small_cfg(tmp_path, ["algorithm.bookkeeping=official", "model.centring=scalar", "train.chains.per_batch=5",
                               "train.chains.std=0.0", "train.sampler.steps=0"])
    t = trainer(cfg, data, tmp_path / "run")
    assert t.cfg.chains.num_chains == 15 and t.cfg.chains.std == 1.0
    t.train_step()
    assert t.optimizer.state_dict()["state"][0]["step"] == 1  # one optimiser step for the whole pass
    chains = t.chains.state_dict()["buffer"]
    assert chains.shape[0] == 15 and abs(float(chains.std()) - 1.0) < 0.05  # all 15 started N(0, 1)
    assert float(t.model.mean.std()) == 0.0 and abs(float(t.model.mean[0, 0, 0, 0, 0]) - float(data.mean())) < 1e-6


def test_minibatch_bookkeeping_steps_per_minibatch(tmp_path):
    cfg = small_cfg(tmp_path, ["train.sampler.steps=0"])
    t = trainer(cfg, shapes(12), tmp_path / "run")
    t.train_step()
    assert t.optimizer.state_dict()["state"][0]["step"] == 1
    assert t.chains.state_dict()["buffer"].shape[0] == 8 and float(t.model.mean.std()) > 0


def test_official_bookkeeping_needs_the_scalar_mean(tmp_path):
    with pytest.raises(ConfigError, match="centring"):
        small_cfg(tmp_path, ["algorithm.bookkeeping=official"])


# ----------------------------------------------------------------------------- recovery
def _model(R=8) -> VoxelNet:
    torch.manual_seed(0)
    model = VoxelNet(VoxelNetSpec([4, 8], [3, 3], [2, 2], R, 0.5, 0.1))
    model.set_mean(shapes(6, R))
    return model


@pytest.mark.parametrize("protocol", ["official", "masked"])
def test_recovery_protocols_start_and_keep_the_observed_voxels(protocol):
    truth = shapes(4)
    mask = random_mask(truth.shape, 0.7, torch.Generator().manual_seed(1))
    model = _model()
    start = recover(model, truth, mask, RecoveryConfig(protocol=protocol, steps=0))
    expected = observed_mean_fill(truth, mask) if protocol == "official" else torch.where(mask, truth, 0 * truth)
    assert torch.allclose(start, expected, atol=1e-6)
    moved = recover(model, truth, mask, RecoveryConfig(protocol=protocol, steps=5, step_size=0.5))
    assert torch.equal(moved[mask], truth[mask]) and not torch.allclose(moved[~mask], start[~mask])


def test_official_recovery_runs_freely_and_pastes_at_the_end():
    """Free chain + paste back differs from resetting the observed voxels every step."""
    truth = shapes(4)
    mask = random_mask(truth.shape, 0.7, torch.Generator().manual_seed(1))
    model = _model()
    official = recover(model, truth, mask, RecoveryConfig(protocol="official", steps=10, step_size=0.5))
    start = observed_mean_fill(truth, mask)
    held = recover(model, start, torch.ones_like(mask), RecoveryConfig(protocol="masked", steps=0))
    assert torch.equal(held, start)
    masked_from_same_start = recover(model, start, mask, RecoveryConfig(protocol="masked", steps=10, step_size=0.5))
    assert not torch.allclose(official[~mask], masked_from_same_start[~mask])


def test_recovery_baselines():
    truth = shapes(4)
    train = shapes(8, seed=1)
    results, arrays = evaluate_recovery(_model(), truth, train, RecoveryConfig(steps=2), "random", 0)
    mask = arrays["mask"]
    hidden = (~mask).float()

    def hidden_error(pred):  # per shape over its hidden voxels, then averaged over shapes
        return float((((pred - truth).abs() * hidden).flatten(1).sum(1) / hidden.flatten(1).sum(1)).mean())

    assert results["all_empty"]["error_missing"] == pytest.approx(hidden_error(torch.zeros_like(truth)), abs=1e-6)
    assert results["observed_mean_fill"]["error_missing"] == pytest.approx(
        hidden_error(observed_mean_fill(truth, mask)), abs=1e-6)
    mean = train.mean(0, keepdim=True).expand_as(truth)
    assert results["mean_fill"]["error_missing"] == pytest.approx(hidden_error(mean), abs=1e-6)
    assert set(results) >= {"voxelnet", "all_empty", "mean_fill", "observed_mean_fill", "nearest_neighbour"}


def test_recovery_negatives_are_corrupted_batches_with_observed_voxels_pasted(tmp_path):
    data = shapes(8)
    cfg = small_cfg(tmp_path, ["algorithm.negatives=recovery", "train.chains.kind=short_run",
                               "train.sampler.noise=none", "train.sampler.step_size=0.5"])
    t = trainer(cfg, data, tmp_path / "run")
    t.train_step()
    batch = t.batch(0)["x"]
    syn, mask = t.last_samples, t.chains._mask
    assert 0.2 < float(mask.float().mean()) < 0.4  # recovery.ratio 0.7 hidden
    assert torch.equal(syn[mask], batch[mask]) and not torch.allclose(syn[~mask], batch[~mask])
    t.cfg.sampler.steps = 0  # the start: hidden voxels at the mean of the observed ones
    x0 = t.synthesise(t.batch(1))
    occ = t.model.uncentre(x0)
    want = observed_mean_fill(t.model.uncentre(t.batch(1)["x"]), t.chains._mask)
    assert torch.allclose(occ, want, atol=1e-6)


# ----------------------------------------------------------------------------- features
def test_official_feature_pooling():
    x = torch.randn(2, 1, 32, 32, 32)
    official = VoxelNet(VoxelNetSpec(**PAPER, feature_pooling="official"))
    adaptive = VoxelNet(VoxelNetSpec(**PAPER))
    adaptive.load_state_dict(official.state_dict())
    f_off, f_ad = official.features(x), adaptive.features(x)
    assert f_off.shape == f_ad.shape == (2, 8100)
    h1, h2 = official.hidden(x)  # 11^3 and 6^3
    want1 = h1[..., 8:11, 8:11, 8:11].amax(dim=(-3, -2, -1))  # the last SAME window of conv1: cells 8-10
    assert torch.allclose(f_off[:, :200 * 27].view(2, 200, 3, 3, 3)[..., 2, 2, 2], want1)
    assert torch.equal(max_pool_same(h2, 2), h2.view(2, 100, 3, 2, 3, 2, 3, 2).amax(dim=(3, 5, 7)))
    assert not torch.allclose(f_off, f_ad)  # adaptive windows overlap differently
    with pytest.raises(ConfigError, match="feature_pooling"):
        VoxelNetSpec(channels=[4], kernels=[3], strides=[2], feature_pooling="official").validate()


# ----------------------------------------------------------------------------- sample metrics
def test_sample_quality_sides_and_coverage():
    ref = (torch.rand(6, 1, 8, 8, 8, generator=torch.Generator().manual_seed(3)) > 0.7).float()  # distinct
    empty = torch.zeros(6, 1, 8, 8, 8)
    q = sample_quality(empty, ref)
    assert q["one_nna_gen_side"] == 1.0 and q["coverage"] == pytest.approx(1 / 6) and q["mmd_iou"] == 1.0
    same = sample_quality(ref.clone(), ref)
    assert same["mmd_iou"] == 0.0 and same["coverage"] == 1.0


# ----------------------------------------------------------------------------- determinism and resume
def _run(tmp_path, name, steps, extra=()):
    args = ["train", str(CONFIGS / "voxelnet_chair16_cpu.yaml"), f"out_dir={tmp_path}", f"name={name}",
            "data.source=furniture", "data.classes=[chair]", "data.n_per_class=12", "data.resolution=8",
            "data.pool=avg", "data.rotations=null", *SMALL, "train.batch_size=4", "train.sampler.steps=3",
            "train.chains.num_chains=8", "train.chains.std=0.5", f"train.steps={steps}", "synthesis.n_samples=4",
            "--no-open3d", *extra]
    assert main(args) == 0
    return load_tensors(tmp_path / name / "checkpoint.pt"), (tmp_path / name / "metrics.csv").read_text()


def test_same_seed_same_run_and_exact_resume(tmp_path):
    a, metrics_a = _run(tmp_path, "a", 4)
    b, metrics_b = _run(tmp_path, "b", 4)
    assert metrics_a == metrics_b
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert torch.equal(a["chains"]["buffer"], b["chains"]["buffer"])
    _run(tmp_path, "c", 2)
    c, metrics_c = _run(tmp_path, "c", 4)  # resumes at step 2
    assert metrics_c == metrics_a
    for key, value in a["model"].items():
        assert torch.equal(value, c["model"][key]), key
    assert torch.equal(a["chains"]["buffer"], c["chains"]["buffer"])


def test_paper_config_uses_the_official_bookkeeping():
    cfg = load_experiment(CONFIGS / "voxelnet_paper.yaml")
    assert (cfg.algorithm.bookkeeping, cfg.algorithm.clamp, cfg.model.centring) == ("official", False, "scalar")
    assert (cfg.train.steps, cfg.train.chains.per_batch, cfg.train.sampler.noise_off_after) == (3000, 25, 100)
    train = effective_train_config(cfg, 8640)
    assert (train.optim.accumulate, train.chains.num_chains, train.chains.std) == (0, 432 * 25, 1.0)


def test_record_writes_the_chair_section(tmp_path, monkeypatch):
    """``ebm3d train --record`` trains the dedicated recovery model and records every figure."""
    import ebmcore.results

    monkeypatch.setattr(ebmcore.results, "RESULTS_DIR", tmp_path / "results")
    import yaml

    tree = yaml.safe_load((CONFIGS / "voxelnet_chair16_recovery_cpu.yaml").read_text())
    tree["data"].update(resolution=8, pool="avg")
    tree["model"].update(channels=[4, 8], kernels=[3, 3])
    tree["train"].update(steps=2, progress=False, tensorboard=False)
    tree["train"]["sampler"]["steps"] = 3
    rec_yaml = tmp_path / "rec.yaml"
    rec_yaml.write_text(yaml.safe_dump(tree))
    extra = ["train.sampler.steps=3", f"recovery.dedicated={rec_yaml}", "recovery.n_examples=3",
             "superres.n_examples=3", "recovery.steps=3", "--record", "chair"]
    _run(tmp_path, "rec", 2, extra)
    section = json.loads((tmp_path / "results" / "ebm3d.json").read_text())["chair"]
    assert set(section["recovery_70"]) == {"ebm", "all_empty", "mean_fill", "observed_mean_fill", "nearest_train"}
    assert set(section["samples"]) >= {"one_nna_iou", "one_nna_gen_side", "one_nna_ref_side", "coverage", "mmd_iou"}
    assert set(section["superres"]) == {"ebm", "nearest"} and section["train_seconds"] > 0
    assert section["details"]["recovery_model"].endswith("voxelnet_chair16_recovery_cpu")
    assert (tmp_path / "voxelnet_chair16_recovery_cpu" / "checkpoint.pt").is_file()


# ----------------------------------------------------------------------------- learning
@need_chairs
def test_short_run_learns_to_recover_held_out_chairs(tmp_path):
    """A tiny clamped VoxelNet on 60 real chairs at 8^3: 70 % recovery beats leaving the holes empty."""
    from ebm3d.tasks.data import config_grids, voxel_source
    from ebm3d.tasks.training import train_models

    cfg = load_experiment(CONFIGS / "voxelnet_chair16_cpu.yaml",
                          [f"out_dir={tmp_path}", "name=learn", "data.resolution=8", "data.max_per_class=80",
                           "model.channels=[16,32]", "model.kernels=[3,3]", "train.steps=60",
                           "train.progress=false", "train.tensorboard=false", "train.sample_every=1000",
                           "train.ckpt_every=1000", "train.chains.num_chains=40"])
    source = voxel_source(cfg.data)
    train, held = config_grids(cfg.data, source, "train"), config_grids(cfg.data, source, "test")
    (model,), _, _ = train_models(cfg, train, resume=False)
    results, _ = evaluate_recovery(model, held, train, cfg.recovery, "random", 0, clamp=True)
    assert results["voxelnet"]["error_missing"] < 0.9 * results["all_empty"]["error_missing"]
