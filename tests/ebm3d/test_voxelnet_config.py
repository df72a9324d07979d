"""Experiment configs of the generative VoxelNet: the shipped YAML files load, and bad keys or
values are refused with the key named."""
from pathlib import Path

import pytest

from ebmcore.errors import ConfigError
from ebmcore.training_config import TrainConfig
from ebm3d.cli import main
from ebm3d.config import VoxelNetExperiment
from ebm3d.experiment import load_experiment
from ebm3d.tasks.training import levels_of

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
NAMES = ["voxelnet_paper.yaml", "voxelnet_paper_superres.yaml", "voxelnet_chair_cpu.yaml",
         "voxelnet_modelnet10_cpu.yaml", "voxelnet_demo.yaml", "voxelnet_chair16_cpu.yaml"]


@pytest.mark.parametrize("name", NAMES)
def test_shipped_configs_load(name):
    cfg = load_experiment(CONFIGS / name)
    assert isinstance(cfg, VoxelNetExperiment) and isinstance(cfg.train, TrainConfig)
    assert cfg.name == name.removesuffix(".yaml")
    assert levels_of(cfg)[-1] == cfg.data.resolution


def test_paper_config_has_the_published_settings():
    cfg = load_experiment(CONFIGS / "voxelnet_paper.yaml")
    assert cfg.model.channels == [200, 100] and cfg.model.kernels == [16, 6] and cfg.model.strides == [3, 2]
    assert cfg.model.init_std == 0.001 and cfg.model.sigma_ref == 0.5
    t = cfg.train
    assert (t.optim.lr, t.optim.beta1, t.batch_size) == (0.01, 0.5, 20)
    assert (t.sampler.steps, t.sampler.step_size, t.chains.kind) == (20, 0.1, "persistent")
    assert (cfg.recovery.ratio, cfg.recovery.steps, cfg.recovery.step_size) == (0.7, 90, 0.07)
    sr = load_experiment(CONFIGS / "voxelnet_paper_superres.yaml")
    assert (sr.data.resolution // sr.superres.factor, sr.data.resolution) == (16, 64)
    assert (sr.superres.steps, sr.superres.step_size) == (10, 0.01)


def test_overrides_reach_nested_keys():
    cfg = load_experiment(CONFIGS / "voxelnet_chair_cpu.yaml",
                          ["train.sampler.steps=3", "recovery.ratio=0.5", "model.channels=[4,8]"])
    assert cfg.train.sampler.steps == 3 and cfg.recovery.ratio == 0.5 and cfg.model.channels == [4, 8]


@pytest.mark.parametrize("override, key", [
    (["recovery.ratoi=0.5"], "recovery.ratoi"),
    (["recovery.ratio=1.5"], "recovery.ratio"),
    (["data.source=mnist"], "data.source"),
    (["data.resolution=48"], "data.resolution"),
    (["model.channels=[0,4]"], "model.channels"),
    (["superres.factor=3"], "superres.factor"),
    (["train.sampler.step_size=-1"], "train.sampler.step_size"),
    (["data.source=modelnet", "data.rotations=[1]"], "rotations"),
    (["data.resolution=64"], "resolution"),
    (["synthesis.levels=[12,32]", "data.source=modelnet", "data.rotations=null"], "synthesis.levels"),
    (["synthesis.levels=[4,16,32]", "data.source=modelnet", "data.rotations=null"], "synthesis.levels"),
    (["synthesis.levels=[16]", "data.source=modelnet", "data.rotations=null"], "synthesis.levels"),
    (["train.chains.kind=persistent", "train.chains.num_chains=2", "train.batch_size=16"], "num_chains"),
    (["name=../escape"], "name"),
])
def test_bad_configs_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_experiment(CONFIGS / "voxelnet_chair_cpu.yaml", override)


def test_cli_reports_config_errors(tmp_path, capsys):
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["train", str(CONFIGS / "voxelnet_chair_cpu.yaml"), "train.stpes=3"]) == 2
    assert "train.stpes" in capsys.readouterr().err
    assert main(["recover", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err
