"""Bad configs get errors naming the key; loading refuses pickled objects; extraction stays inside."""
import io
import tarfile
import zipfile

import pytest
import torch

from ebmcore.config import load_config, save_config
from ebmcore.errors import CheckpointError, ConfigError
from ebmcore.io import load_tensors, safe_extract, save_tensors
from ebmcore.training_config import TrainConfig


def _write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_yaml_and_overrides_build_typed_config(tmp_path):
    path = _write(tmp_path, "steps: 7\nsampler:\n  step_size: 0.2\n")
    cfg = load_config(TrainConfig, path, ["optim.lr=0.01", "sampler.clamp=[-1, 1]", "chains.kind=replay"])
    assert cfg.steps == 7 and cfg.sampler.step_size == 0.2 and cfg.optim.lr == 0.01
    assert cfg.sampler.clamp == [-1.0, 1.0] and cfg.chains.kind == "replay"
    save_config(cfg, tmp_path / "resolved.yaml")
    assert load_config(TrainConfig, tmp_path / "resolved.yaml") == cfg


@pytest.mark.parametrize("text, overrides, key", [
    ("stepz: 3\n", [], "stepz"),
    ("sampler:\n  stpes: 3\n", [], "sampler.stpes"),
    ("", ["optim.lr=-1"], "optim.lr"),
    ("", ["sampler.step_size=1e9"], "sampler.step_size"),
    ("", ["batch_size=0"], "batch_size"),
    ("", ["batch_size=2.5"], "batch_size"),
    ("", ["sampler.method=gibbs"], "sampler.method"),
    ("", ["sampler.clamp=[1, -1]"], "sampler.clamp"),
    ("optim: 3\n", [], "optim"),
    ("", ["optim.lr=.nan"], "optim.lr"),
    ("", ["progress=maybe"], "progress"),
])
def test_bad_configs_name_the_key(tmp_path, text, overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.").replace("[", r"\[")):
        load_config(TrainConfig, _write(tmp_path, text), overrides)


def test_config_file_problems(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(TrainConfig, tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(TrainConfig, _write(tmp_path, "- 1\n- 2\n"))
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(TrainConfig, None, ["steps"])


def test_yaml_loader_is_safe(tmp_path):
    path = _write(tmp_path, "steps: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ConfigError, match=r"c.yaml, line 1, column 8: refused the YAML tag !!python/object"):
        load_config(TrainConfig, path)


class Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_load_refuses_pickled_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": Evil()}, path)
    with pytest.raises(CheckpointError, match="not a plain-weights checkpoint") as info:
        load_tensors(path)
    assert "weights_only" not in str(info.value)
    save_tensors({"w": torch.ones(2), "step": 3, "names": ["a"]}, tmp_path / "ok.pt")
    assert load_tensors(tmp_path / "ok.pt")["step"] == 3


def test_safe_extract_refuses_escaping_members(tmp_path):
    bad_tar = tmp_path / "bad.tar.gz"
    with tarfile.open(bad_tar, "w:gz") as tf:
        data = b"x"
        info = tarfile.TarInfo("../evil.txt")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    with pytest.raises(ValueError, match="outside"):
        safe_extract(bad_tar, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()
    bad_zip = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad_zip, "w") as zf:
        zf.writestr("/abs/evil.txt", "x")
        zf.writestr("../../evil2.txt", "x")
    with pytest.raises(ValueError, match="outside"):
        safe_extract(bad_zip, tmp_path / "out2")
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr("a/b.txt", "hello")
    assert (safe_extract(good, tmp_path / "out3") / "a" / "b.txt").read_text() == "hello"
