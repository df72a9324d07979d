"""The LSTM encoder-decoder baseline: learns on real scenes, saves / loads, shapes."""
from __future__ import annotations

import pytest
import torch

from ebmcore.errors import DataError
from ebmtraj import ioc
from ebmtraj.lstm import LSTM_FILE, LSTMPredictor, load_lstm, predict_lstm, train_lstm

from .ioc_helpers import real_scenes


@pytest.fixture(scope="module")
def rows():
    torch.set_num_threads(1)
    inp = real_scenes()["target"]
    model = ioc.build_model(ioc.ModelConfig(), inp["hist"].shape[1], inp["future"].shape[1])
    inp = dict(inp)
    inp["nominal"] = ioc.cond_of(inp, model)["nominal"]
    return inp


def test_lstm_starts_at_the_nominal_and_learns(rows, tmp_path):
    # one scenario is too little data to generalise from in a few seconds: this checks that the
    # model fits (selection on the training windows themselves)
    tr = va = rows
    summary = train_lstm(tr, va, tmp_path, hidden=32, steps=150, batch_size=64, lr=3e-3, eval_every=50)
    first, best = summary["history"][0]["rmse"], min(sum(h["rmse"]) for h in summary["history"])
    # step 0 predicts the constant-velocity nominal exactly (zero-initialised output layer)
    assert first == pytest.approx(ioc.rmse_table(va["nominal"], va["future"]), rel=1e-5)
    assert best < 0.8 * sum(first)
    model = load_lstm(tmp_path / LSTM_FILE)
    pred = predict_lstm(model, va)
    assert pred.shape == va["future"].shape and torch.isfinite(pred).all()
    assert sum(ioc.rmse_table(pred, va["future"])) == pytest.approx(best, rel=1e-4)


def test_lstm_shapes_and_missing_file(tmp_path):
    m = LSTMPredictor(ctx_dim=13, hidden=8, steps=7)
    out = m(torch.randn(3, 10, 2), torch.randn(3, 13), torch.randn(3, 7, 2))
    assert out.shape == (3, 7, 2)
    with pytest.raises(DataError, match="no LSTM baseline"):
        load_lstm(tmp_path / "missing.pt")
