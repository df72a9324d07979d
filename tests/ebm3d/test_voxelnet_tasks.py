"""End-to-end generative VoxelNet runs on tiny real slices of data_root(): train, sample, recover,
super-resolve, classify and evaluate through ``ebm3d.cli.main``, checking files, shapes, value
ranges, the baselines, and that training teaches the energy to prefer held-out data."""
import json
from pathlib import Path

import pytest
import torch

from ebmcore.io import load_tensors
from ebmcore.paths import dataset_dir
from ebm3d.cli import main
from ebm3d.config import RecoveryConfig
from ebm3d.tasks.data import voxel_source
from ebm3d.tasks.recovery import random_mask, region_mask
from ebm3d.tasks.training import load_voxel_run

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
CHAIRS = dataset_dir("shapenets-chair-vox30")
MODELNET = dataset_dir("modelnet10-pcd")
need_chairs = pytest.mark.skipif(CHAIRS is None, reason="data_root()/shapenets-chair-vox30 is absent (set EBM_DATA)")
need_modelnet = pytest.mark.skipif(MODELNET is None, reason="data_root()/modelnet10-pcd is absent (set EBM_DATA)")

# 20 chairs in their canonical rotation (16 train / 2 val / 2 test), a small net, short chains
TINY = ["data.rotations=[1]", "data.max_per_class=20", "model.channels=[8,16]", "model.kernels=[4,4]",
        "train.batch_size=8", "train.sampler.steps=5", "train.sampler.noise_off_after=10",
        "train.chains.num_chains=16", "train.progress=false", "train.tensorboard=false", "train.log_every=5",
        "train.sample_every=20", "synthesis.n_samples=8", "recovery.n_examples=2", "recovery.steps=10",
        "superres.n_examples=2"]


@pytest.fixture(scope="module", autouse=True)
def private_cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("EBM_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.fixture(scope="module")
def chair_run(tmp_path_factory):
    if CHAIRS is None:
        pytest.skip("data_root()/shapenets-chair-vox30 is absent")
    out = tmp_path_factory.mktemp("runs")
    args = ["train", str(CONFIGS / "voxelnet_chair_cpu.yaml"), f"out_dir={out}", "name=chair", "train.steps=40",
            *TINY, "--seed", "3", "--no-open3d"]
    assert main(args) == 0
    return out / "chair"


@need_chairs
def test_train_writes_the_run_and_samples(chair_run):
    for name in ("config.yaml", "checkpoint.pt", "metrics.csv", "curves.png", "samples.pt", "samples.png",
                 "samples.json", "samples/step_0000020.png"):
        assert (chair_run / name).is_file(), name
    samples = load_tensors(chair_run / "samples.pt")["samples"]
    assert samples.shape == (8, 1, 32, 32, 32) and samples.dtype == torch.float32
    assert float(samples.min()) >= 0 and float(samples.max()) <= 1
    report = json.loads((chair_run / "samples.json").read_text())
    assert report["steps"] == 40 and report["n_train"] == 16 and report["from_persistent_chains"]
    assert 0 <= report["nearest_train_iou_min"] <= report["nearest_train_iou_max"] <= 1
    rows = (chair_run / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,loss") and len(rows) == 1 + 40 // 5


@need_chairs
def test_training_makes_held_out_chairs_likelier_than_chain_starts(chair_run):
    cfg, (model,) = load_voxel_run(chair_run)
    untrained = type(model)(model.spec)
    untrained.mean.copy_(model.mean)
    source = voxel_source(cfg.data)
    held_out = model.centre(torch.cat([source.voxels("val"), source.voxels("test")]))
    starts = cfg.train.chains.std * torch.randn((len(held_out), 1, 32, 32, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        gap_trained = float(model.score(held_out).mean() - model.score(starts).mean())
        gap_untrained = float(untrained.score(held_out).mean() - untrained.score(starts).mean())
    # f_theta starts near zero everywhere; learning must raise held-out data above the chains' start
    assert abs(gap_untrained) < 1.0
    assert gap_trained > 10.0


@need_chairs
def test_resume_continues_from_the_checkpoint(chair_run, tmp_path):
    import shutil

    run = tmp_path / "chair"
    shutil.copytree(chair_run, run)
    args = ["train", str(CONFIGS / "voxelnet_chair_cpu.yaml"), f"out_dir={tmp_path}", "name=chair",
            "train.steps=45", *TINY, "--seed", "3", "--no-open3d"]
    assert main(args) == 0
    assert json.loads((run / "samples.json").read_text())["steps"] == 45
    assert len((run / "metrics.csv").read_text().splitlines()) == 1 + 45 // 5


@need_chairs
def test_sample_command_draws_fresh_samples(chair_run):
    assert main(["sample", str(chair_run), "--n", "3", "synthesis.steps=4", "--seed", "1", "--no-open3d"]) == 0
    samples = load_tensors(chair_run / "samples_fresh.pt")["samples"]
    assert samples.shape == (3, 1, 32, 32, 32) and 0 <= float(samples.min()) <= float(samples.max()) <= 1


@need_chairs
def test_recover_keeps_observed_voxels_and_scores_baselines(chair_run):
    assert main(["recover", str(chair_run), "--corruption", "both", "--seed", "0", "--no-open3d"]) == 0
    out = json.loads((chair_run / "recovery.json").read_text())
    assert abs(out["random"]["observed_fraction"] - 0.3) < 0.02
    for kind in ("random", "region"):
        for method in ("voxelnet", "mean_fill", "nearest_neighbour"):
            scores = out[kind][method]
            assert 0 <= scores["error_missing"] <= 1 and 0 <= scores["iou"] <= 1
    arrays = load_tensors(chair_run / "recovery.pt")
    mask = arrays["mask"]
    assert arrays["recovered"].shape == (2, 1, 32, 32, 32)
    assert torch.equal(arrays["recovered"][mask], arrays["original"][mask])
    assert torch.equal(arrays["nearest_neighbour"][mask], arrays["original"][mask])
    assert int(arrays["nearest_index"].max()) < 16
    assert (chair_run / "recovery.png").is_file() and (chair_run / "recovery_region.pt").is_file()


def test_masks_have_the_requested_structure():
    gen = torch.Generator().manual_seed(0)
    m = random_mask((4, 1, 32, 32, 32), 0.7, gen)
    assert abs(float((~m).float().mean()) - 0.7) < 0.01
    r = region_mask((3, 1, 32, 32, 32), 0.5, gen)
    for b in range(3):
        hidden = (~r[b, 0]).nonzero()
        assert len(hidden) == 16**3
        assert (hidden.max(0).values - hidden.min(0).values).tolist() == [15, 15, 15]
    with pytest.raises(ValueError, match="corruption"):
        from ebm3d.tasks.recovery import make_mask
        make_mask("stripes", (1, 1, 8, 8, 8), RecoveryConfig(), gen)


@need_chairs
def test_superres_matches_the_low_resolution_input(chair_run):
    assert main(["superres", str(chair_run), "--seed", "0", "--no-open3d"]) == 0
    out = json.loads((chair_run / "superres.json").read_text())
    assert (out["from"], out["to"]) == (16, 32)
    assert out["max_block_average_gap"] < 1e-5
    for method in ("voxelnet", "nearest_upsampling"):
        assert 0 <= out[method]["error"] <= 1 and 0 <= out[method]["iou"] <= 1
    arrays = load_tensors(chair_run / "superres.pt")
    assert arrays["low"].shape == (2, 1, 16, 16, 16) and arrays["high"].shape == (2, 1, 32, 32, 32)


@need_chairs
def test_multigrid_trains_coarse_to_fine(tmp_path):
    args = ["train", str(CONFIGS / "voxelnet_chair_cpu.yaml"), f"out_dir={tmp_path}", "name=mg", "train.steps=6",
            "synthesis.levels=[16,32]", "train.chains.kind=short_run", "synthesis.steps=3", *TINY, "--no-open3d"]
    assert main(args) == 0
    assert (tmp_path / "mg" / "level16" / "checkpoint.pt").is_file()
    cfg, models = load_voxel_run(tmp_path / "mg")
    assert [m.spec.resolution for m in models] == [16, 32]
    samples = load_tensors(tmp_path / "mg" / "samples.pt")["samples"]
    assert samples.shape == (8, 1, 32, 32, 32)
    assert not json.loads((tmp_path / "mg" / "samples.json").read_text())["from_persistent_chains"]


@need_modelnet
def test_classify_and_inception_score_on_modelnet10(tmp_path, monkeypatch):
    import ebmcore.results

    monkeypatch.setattr(ebmcore.results, "RESULTS_DIR", tmp_path / "results")
    # 4 shapes per class and official split: 30 train / 10 val / 40 test over the ten classes, at 32^3
    # (the reference classifier's resolution)
    data = ["data.max_per_class=4", "data.val_fraction=0.25"]
    args = ["classify", str(CONFIGS / "voxelnet_modelnet10_cpu.yaml"), f"out_dir={tmp_path}", "name=mn",
            *data, "data.resolution=32", "data.source_resolution=null", "model.strides=[3,2]",
            "model.channels=[8,16]", "model.kernels=[4,4]", "train.steps=6", "train.batch_size=10",
            "train.sampler.steps=3", "train.progress=false", "reference.n_samples=20", "train.chains.num_chains=20",
            "train.tensorboard=false", "classify.eval_every=3", "classify.C=[0.1,1.0]", "classify.folds=2", "--no-open3d",
            "--record", "mn10"]
    assert main(args) == 0
    recorded = json.loads((tmp_path / "results" / "ebm3d.json").read_text())["mn10"]
    assert 0 <= recorded["trained"] <= 1 and 0 <= recorded["untrained"] <= 1 and recorded["train_seconds"] > 0
    report = json.loads((tmp_path / "mn" / "classification.json").read_text())
    assert recorded["trained"] == report["test_accuracy"]
    assert recorded["untrained"] == report["untrained_baseline"]["test_accuracy"]
    assert report["n"] == {"train": 30, "val": 10, "test": 40}
    assert report["feature_dim"] == 27 * (8 + 16)
    assert [row["step"] for row in report["selection_history"]] == [3, 6]
    assert report["selected_C"] in (0.1, 1.0) and 0 <= report["test_accuracy"] <= 1
    assert report["test_accuracy"] > 0.2  # ten balanced test classes: chance is 0.1
    ref = [f"reference.run={tmp_path / 'ref'}", "reference.epochs=1", *[f"reference.{d}" for d in data]]
    assert main(["evaluate", str(tmp_path / "mn"), *ref, "reference.splits=2", "--seed", "0"]) == 0
    ev = json.loads((tmp_path / "mn" / "evaluation.json").read_text())
    assert 1.0 <= ev["inception"]["inception_score"] <= 10.0
    assert 0 <= ev["reference"]["test_accuracy"] <= 1
    assert json.loads((tmp_path / "ref" / "reference.json").read_text())["n"]["test"] == 40
