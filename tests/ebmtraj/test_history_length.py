"""The history length as a config choice (issue 12, item 5): 3 s windows from real US-101 tracks
reach the model's inputs, its search and the LSTM; bad values are one-line ConfigErrors; the 1 s
default and its cache folder are unchanged."""
from pathlib import Path

import numpy as np
import pytest
import torch

from ebmcore.errors import ConfigError, DataError
from ebmcore.io import save_tensors
from ebmcore.paths import cache_root

from .ioc_helpers import us101_tracks

ROOT = Path(__file__).resolve().parents[2]
US101 = ROOT / "configs" / "ioc_us101.yaml"   # 3 s of history


@pytest.fixture(scope="module")
def tracks():
    """Cleaned tracks of the first 40 shared US-101 vehicles with Frenet columns and a split."""
    return us101_tracks(40, lanes=True)


@pytest.fixture(scope="module")
def scenes(tracks):
    """{history: train-split scene tensors} for 10 and 30 history frames."""
    from ebmtraj.data.scenes import SceneConfig, build_scenes

    tr, split_of, _ = tracks
    return {h: build_scenes(tr, split_of, SceneConfig(history=h))[0]["train"] for h in (10, 30)}


def test_thirty_frame_windows_reach_the_inputs_the_search_and_the_lstm(scenes, tracks, tmp_path):
    from ebmtraj import ioc
    from ebmtraj.cost_inputs import CTX_NAMES, build_inputs, future_states
    from ebmtraj.lstm import LSTMPredictor, load_lstm, predict_lstm, save_lstm

    s = scenes[30]
    n = s["mask"].shape[0]
    assert n > 20 and int(s["history"]) == 30 and int(s["future"]) == 40
    assert s["positions_raw"].shape[2] == s["states"].shape[2] == 70
    assert torch.isfinite(s["states"][s["mask"]]).all()
    rows = build_inputs(s, tracks[2], "target")
    assert rows["hist"].shape == (n, 30, 2) and rows["future"].shape == (n, 40, 2)
    # The agent frame ends the history at the origin; v_hist is the 3 s mean speed.
    assert rows["hist"][:, -1].abs().max() < 1.0
    raw = s["positions_raw"][:, 0, :30].double()
    v_mean = (raw.diff(dim=1).norm(dim=-1) / 0.1).mean(1)
    torch.testing.assert_close(rows["v_hist"].double(), v_mean, atol=1e-3, rtol=1e-4)

    fs = future_states(s, rows)
    model = ioc.build_model(ioc.ModelConfig(start_net=True), 30, 40, ioc.control_scale(fs))
    ioc.prepare_training(model, rows, fs, fit_iters=5)
    assert model.cost.history == 30 and model.cost.neural.net[0].in_features == 2 * 30 + len(CTX_NAMES)
    cond = ioc.cond_of(rows, model)
    pred = ioc.predict(model, cond, ioc.PredictConfig(mode="adam", init="generator", opt_steps=2))
    assert pred["states"].shape == (n, 1, 40, 6) and torch.isfinite(pred["states"]).all()
    # A run whose model reads 1 s cannot predict 3 s scenes: a clear error, not a shape error.
    from ebmcore.config import to_dict
    from ebmtraj.config import IOCConfig
    from ebmtraj.experiment import predictions

    cfg = IOCConfig(name="one_second", runs=str(tmp_path))
    ioc.save_model(ioc.build_model(cfg.model, 10, 40), cfg.run_dir() / ioc.MODEL_FILE, to_dict(cfg))
    with pytest.raises(DataError, match="the model reads 10 history frames, the scenes have 30"):
        predictions(cfg, s, tracks[2], ["ebm_opt"], log=lambda *a: None)

    lstm = LSTMPredictor(rows["ctx"].shape[1], 16, 40)
    lstm.history = 30
    path = save_lstm(lstm, tmp_path / "lstm.pt")
    rows["nominal"] = cond["nominal"]
    out = predict_lstm(load_lstm(path, history=30), rows)
    assert out.shape == (n, 40, 2) and torch.isfinite(out).all()
    with pytest.raises(DataError, match="trained on 30 history frames, the rows have 10"):
        load_lstm(path, history=10)


def test_three_second_windows_are_the_one_second_windows_with_more_past(scenes):
    """Same present times and futures (windows every 1 s); cutting a 3 s window's history to its
    last 10 frames gives the 1 s window of the same vehicle and time."""
    from ebmtraj.data.scenes import trim_history

    s10, s30 = scenes[10], scenes[30]
    assert 0 < s30["mask"].shape[0] < s10["mask"].shape[0]
    cut = trim_history(s30, 10)
    assert int(cut["history"]) == 10 and cut["positions_raw"].shape[2] == 50
    key10 = {(int(v), round(float(t), 3)): i for i, (v, t) in
             enumerate(zip(s10["vehicle_id"][:, 0], s10["t0"]))}
    hits = 0
    for j, (v, t) in enumerate(zip(cut["vehicle_id"][:, 0], cut["t0"])):
        i = key10.get((int(v), round(float(t), 3)))
        assert i is not None, "every 3 s window's present time is a 1 s window's"
        np.testing.assert_allclose(cut["positions_raw"][j, 0].numpy(), s10["positions_raw"][i, 0].numpy())
        np.testing.assert_allclose(cut["states"][j, 0, 10:].numpy(), s10["states"][i, 0, 10:].numpy())
        # the last history state (where constant velocity starts) does not depend on the length
        np.testing.assert_allclose(cut["states"][j, 0, 9].numpy(), s10["states"][i, 0, 9].numpy(), atol=1e-4)
        hits += 1
    assert hits == s30["mask"].shape[0]
    with pytest.raises(DataError, match="30 history frames; 40 cannot"):
        trim_history(s30, 40)


def test_bad_history_values_are_one_line_config_errors():
    from ebmtraj.config import load
    from ebmtraj.data.scenes import SceneConfig

    for value, words in (("2", "data.history: 2 is below the minimum 3"),
                         ("101", "data.history: 101 is above the maximum 100"),
                         ("3.5", "data.history: expected an integer"),
                         ("abc", "data.history")):
        with pytest.raises(ConfigError) as err:
            load(US101, [f"data.history={value}"])
        assert words in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=r"data.history \(4 frames\) is shorter than inputs.fit_frames \(5\)"):
        load(US101, ["data.history=4", "inputs.fit_frames=5"])
    with pytest.raises(ConfigError, match="scene history must be a whole number of frames >= 2, got 1"):
        SceneConfig(history=1)


def test_caches_commands_and_mismatched_data(scenes, monkeypatch, tmp_path):
    import ebmtraj.data.prepare as prep
    from ebmtraj.cli import main
    from ebmtraj.config import load
    from ebmtraj.experiment import load_split

    one = load(US101, ["data.history=10"])
    three = load(US101)
    assert one.data.history == 10 and one.data.root() == cache_root() / "ebmtraj" / "us101-vehicles"
    assert three.data.history == 30 and three.data.root() == cache_root() / "ebmtraj" / "us101-vehicles-history30"
    assert three.evaluate.record == "us101" and three.name == "ioc_us101"

    seen = {}
    monkeypatch.setattr(prep, "prepare", lambda name, **kw: seen.update(name=name, **kw) or Path(kw["out"]))
    assert main(["prepare", str(US101), f"data.cache={tmp_path / 'c'}"]) == 0
    assert seen["scene_config"].history == 30 and seen["out"] == tmp_path / "c"
    assert main(["prepare", str(US101), "data.history=10"]) == 0
    assert seen["scene_config"].history == 10 and seen["out"] == one.data.root()

    for h in (10, 30):
        for split in ("train", "val", "test"):
            save_tensors(scenes[h], tmp_path / f"h{h}" / f"scenes_{split}.pt")
    sc, _ = load_split(load(US101, [f"data.cache={tmp_path / 'h30'}"]), "test")
    assert int(sc["history"]) == 30 and sc["positions_raw"].shape[2] == 70
    sc, _ = load_split(load(US101, [f"data.cache={tmp_path / 'h30'}", "data.history=10"]), "test")
    assert int(sc["history"]) == 10 and sc["positions_raw"].shape[2] == 50
    with pytest.raises(DataError, match="prepared with 10 history frames, the config asks for data.history=30"):
        load_split(load(US101, [f"data.cache={tmp_path / 'h10'}"]), "test")
