"""The training stride as a data choice: denser, overlapping training windows from real US-101
tracks, while validation and test keep their 1 s windows exactly; its own cache folder; bad
values are one-line ConfigErrors."""
from pathlib import Path

import pytest
import torch

from ebmcore.errors import ConfigError
from ebmcore.paths import cache_root

from .ioc_helpers import us101_tracks

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "ioc_commonroad.yaml"


@pytest.fixture(scope="module")
def tracks():
    """Cleaned tracks of the first 30 shared US-101 vehicles and a split by vehicle."""
    return us101_tracks(30)


def test_train_stride_densifies_training_windows_only(tracks):
    from ebmtraj.data.scenes import SceneConfig, build_scenes

    tr, split_of = tracks
    base, rep_base = build_scenes(tr, split_of, SceneConfig())
    dense, rep_dense = build_scenes(tr, split_of, SceneConfig(train_stride=2))
    n_base, n_dense = rep_base["windows"]["train"], rep_dense["windows"]["train"]
    assert n_base > 20 and 4 * n_base <= n_dense <= 5 * n_base + 5 * len(tr["track_id"].unique())
    # Windows start on even frames; every 1 s window is among the dense ones.
    t0_dense = set(dense["train"]["t0"].tolist())
    assert all(round(t / 0.1) % 2 == 0 for t in t0_dense)
    assert set(base["train"]["t0"].tolist()) <= t0_dense
    for split in ("val", "test"):
        for key, value in base[split].items():
            if torch.is_tensor(value):
                assert torch.equal(value, dense[split][key]), (split, key)


def test_train_stride_config_key_cache_folder_and_errors():
    from ebmtraj.config import load
    from ebmtraj.data.scenes import SceneConfig

    cfg = load(CONFIG, ["data.train_stride=2"])
    assert cfg.data.scene_config().stride_of("train") == 2
    assert cfg.data.scene_config().stride_of("test") == 10
    assert cfg.data.root() == cache_root() / "ebmtraj" / "commonroad-trainstride2"
    assert load(CONFIG, ["data.train_stride=10"]).data.root() == cache_root() / "ebmtraj" / "commonroad"
    with pytest.raises(ConfigError, match="train_stride"):
        load(CONFIG, ["data.train_stride=0"])
    with pytest.raises(ConfigError, match="train_stride"):
        SceneConfig(train_stride=0)
