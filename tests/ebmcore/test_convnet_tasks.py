"""Image and video EBMs: short end-to-end train / sample / recover runs on the built-in patterns."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from ebmcore import cli
from ebmcore.backbones import GenerativeConvNet, SpatialTemporalConvNet
from ebmcore.convnet_tasks import load_experiment, load_trained, observed_pattern, recovery_mask
from ebmcore.errors import ConfigError
from ebmcore.patterns import load_texture, wave_field
from ebmcore.tracking import read_metrics


def test_patterns_are_real_and_in_range():
    tex = load_texture("gravel", 32)
    assert tex.shape == (1, 1, 32, 32) and 0 <= tex.min() and tex.max() <= 1 and tex.std() > 0.05
    video = wave_field(8, 16, seed=1)
    assert video.shape == (1, 1, 8, 16, 16) and video.std() > 0.05
    # motion: consecutive frames differ, yet are correlated (coherent waves, not noise)
    a, b = video[0, 0, 3].flatten(), video[0, 0, 4].flatten()
    assert 0.2 < torch.corrcoef(torch.stack([a, b]))[0, 1] < 0.999
    with pytest.raises(ValueError, match="unknown texture"):
        load_texture("marble", 32)


def test_backbones_shape_checks():
    assert GenerativeConvNet(1)(torch.zeros(2, 1, 16, 16)).shape == (2,)
    assert SpatialTemporalConvNet(1)(torch.zeros(2, 1, 4, 16, 16)).shape == (2,)
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        GenerativeConvNet(1)(torch.zeros(2, 3, 16, 16))


@pytest.mark.parametrize("config, overrides, mask", [
    ("configs/texture_demo.yaml", ["data.size=24", "train.sampler.steps=10", "train.steps=30"], "center"),
    ("configs/dynamic_texture_waves.yaml", ["data.size=16", "data.frames=8", "train.sampler.steps=10",
                                            "train.steps=20"], "frames"),
])
def test_train_sample_recover(tmp_path, capsys, config, overrides, mask):
    common = [f"out_dir={tmp_path}", "name=run", "train.progress=false", "train.sample_every=10",
              "train.tensorboard=false", "train.log_every=5"]
    assert cli.main(["train", config, *common, *overrides]) == 0
    run = tmp_path / "run"
    rows = read_metrics(run / "metrics.jsonl")
    assert len(rows) == int(overrides[-1].split("=")[1]) // 5
    assert all(np.isfinite([r["loss"] for r in rows]))
    # learning: the model prefers the real pattern to copies with the same pixel values shuffled
    # (same histogram and norm, no structure)
    cfg, model = load_trained(run)
    observed = observed_pattern(cfg)
    g = torch.Generator().manual_seed(0)
    shuffled = torch.stack([observed.flatten()[torch.randperm(observed.numel(), generator=g)].view(observed.shape[1:])
                            for _ in range(8)])
    with torch.no_grad():
        assert model.energy(observed).item() < model.energy(shuffled).min().item()
    assert (run / "curves.png").exists() and (run / "config.yaml").exists()
    assert cli.main(["sample", str(run), "--n", "2", "--steps", "5"]) == 0
    png = np.asarray(Image.open(run / "synthesis.png"))
    assert png.std() > 1  # not a blank image
    capsys.readouterr()
    assert cli.main(["recover", str(run), "--mask", mask, "--steps", "10"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0 <= result["ebm_error"] <= 1 and 0 <= result["mean_fill_error"] <= 1


def test_recovery_masks():
    m = recovery_mask((1, 1, 8, 16, 16), "frames")
    assert m[:, :, [0, 1, 4, 5]].all() and not m[:, :, [2, 3, 6, 7]].any()
    c = recovery_mask((1, 1, 16, 16), "center")
    assert (~c).sum() == 64


def test_experiment_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="data.source"):
        load_experiment("configs/texture_demo.yaml", ["kind=video"])
    with pytest.raises(ConfigError, match="net"):
        load_experiment("configs/texture_demo.yaml", ["net.widths=[8]"])
    with pytest.raises(ConfigError, match="train.sampler.noise_scale"):
        load_experiment("configs/texture_demo.yaml", ["train.sampler.noise_scale=-1"])
