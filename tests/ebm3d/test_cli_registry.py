"""The shape-model registry and the one ``ebm3d`` command line built from it."""
from __future__ import annotations

from pathlib import Path

import pytest

from ebmcore.errors import ConfigError

from ebm3d import registry
from ebm3d.cli import build_parser, main
from ebm3d.experiment import load_experiment

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_help_lists_every_command_of_every_model():
    text = build_parser().format_help()
    for model in registry.models():
        for command in model.commands:
            assert command in text
    assert "view" in text
    assert [m.name for m in registry.models()] == ["voxelnet", "pointnet"]


def test_model_name_forms(tmp_path):
    for text, name in (("model: pointnet\n", "pointnet"), ("model: {name: pointnet}\n", "pointnet"),
                       ("model: {widths: [8]}\n", "voxelnet"), ("name: x\n", "voxelnet")):
        (tmp_path / "c.yaml").write_text(text)
        assert registry.declared_name(tmp_path / "c.yaml") == name
    (tmp_path / "c.yaml").write_text("model: {name: nope}\n")
    with pytest.raises(ConfigError, match="unknown model"):
        registry.declared_name(tmp_path / "c.yaml")
    assert registry.declared_name(tmp_path / "missing.yaml") is None


def test_one_loader_dispatches_on_the_model_name():
    assert type(load_experiment(CONFIGS / "pointnet_demo.yaml")).__name__ == "PointNetExperiment"
    assert type(load_experiment(CONFIGS / "voxelnet_demo.yaml")).__name__ == "VoxelNetExperiment"


def test_commands_and_options_of_the_other_model_are_refused(tmp_path, capsys):
    (tmp_path / "config.yaml").write_text("model: pointnet\n")
    assert main(["recover", str(tmp_path)]) == 2
    assert "pointnet" in capsys.readouterr().err
    assert main(["train", str(CONFIGS / "pointnet_demo.yaml"), "--record", "x"]) == 2
    assert "--record is an option of voxelnet" in capsys.readouterr().err


def test_model_section_with_a_name_and_partial_sections(tmp_path):
    from ebm3d.config import VoxelNetExperiment
    from ebm3d.config import PointNetExperiment

    (tmp_path / "v.yaml").write_text("model: {name: voxelnet, channels: [8, 16]}\ntrain: {steps: 7}\n")
    cfg = load_experiment(tmp_path / "v.yaml")
    assert cfg.model.channels == [8, 16] and cfg.model.kernels == VoxelNetExperiment().model.kernels
    assert cfg.train.steps == 7 and cfg.train.optim == VoxelNetExperiment().train.optim
    (tmp_path / "p.yaml").write_text("model: {name: pointnet}\ntrain: {steps: 7}\n")
    cfg = load_experiment(tmp_path / "p.yaml")
    assert cfg.train.steps == 7 and cfg.train.sampler == PointNetExperiment().train.sampler  # PointNet defaults
    with pytest.raises(ConfigError, match="not a voxelnet"):
        load_experiment(tmp_path / "p.yaml", model="voxelnet")


def test_each_entry_names_its_config_class_and_loaders():
    for model in registry.models():
        cfg = load_experiment(None, [], model=model.name)
        assert type(cfg) is model.config and cfg.run_dir.name == cfg.name
        assert registry.entry_for(cfg) is model


def test_renamed_keys_keep_loading_and_both_forms_are_refused(tmp_path):
    """A run saved before classify.baseline became classify.untrained_baseline still loads."""
    (tmp_path / "p.yaml").write_text("model: pointnet\nclassify: {baseline: false}\n")
    assert load_experiment(tmp_path / "p.yaml").classify.untrained_baseline is False
    assert load_experiment(tmp_path / "p.yaml", ["classify.baseline=true"]).classify.untrained_baseline is True
    with pytest.raises(ConfigError, match="classify.baseline: renamed to classify.untrained_baseline"):
        load_experiment(tmp_path / "p.yaml", ["classify.untrained_baseline=true"])
