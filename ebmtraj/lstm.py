"""The learned deterministic baseline: an LSTM encoder-decoder on the identical split and inputs.

The encoder reads the history (B,H,2) positions and their per-step displacements in the agent
frame; its last hidden state, joined with the scene context (B,13) of
:mod:`ebmtraj.cost_inputs`, starts the decoder, which emits per step the displacement of the
prediction from the constant-velocity nominal (B,T,2). Trained with Adam on the mean squared
position error against the observed (raw) future; the best state on validation RMSE is kept.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from torch import nn

from ebmcore.errors import DataError
from ebmcore.io import load_tensors, save_tensors

LSTM_FILE = "lstm.pt"


class LSTMPredictor(nn.Module):
    """history (B,H,2), ctx (B,C), nominal (B,T,2) -> positions (B,T,2) [m], agent frame."""

    def __init__(self, ctx_dim: int = 13, hidden: int = 64, steps: int = 40):
        super().__init__()
        self.steps, self.hidden = steps, hidden
        self.history = 10          # history frames of the training rows (set by train_lstm; saved)
        self.encoder = nn.LSTM(4, hidden, batch_first=True)
        self.join = nn.Sequential(nn.Linear(hidden + ctx_dim, hidden), nn.Tanh())
        self.decoder = nn.LSTM(hidden, hidden, batch_first=True)
        self.out = nn.Linear(hidden, 2)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.register_buffer("in_scale", torch.ones(4 + ctx_dim))

    def forward(self, hist: torch.Tensor, ctx: torch.Tensor, nominal: torch.Tensor) -> torch.Tensor:
        step = torch.diff(hist, dim=1, prepend=hist[:, :1])
        seq = torch.cat([hist, step], -1) / self.in_scale[:4]
        _, (h, _) = self.encoder(seq)
        z = self.join(torch.cat([h[-1], ctx / self.in_scale[4:]], -1))
        dec, _ = self.decoder(z[:, None].expand(-1, self.steps, -1).contiguous())
        return nominal + torch.cumsum(self.out(dec), dim=1)


def train_lstm(train: dict, val: dict, run_dir: str | Path, *, hidden: int = 64, steps: int = 3000,
               batch_size: int = 128, lr: float = 1e-3, eval_every: int = 250, seed: int = 0,
               log=None) -> dict:
    """Fit on ``train`` rows (hist, ctx, nominal, future) and keep the best state on ``val``
    (mean RMSE at 1-4 s) in ``run_dir/lstm.pt``. Returns a summary."""
    from .prediction import rmse_table

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = LSTMPredictor(train["ctx"].shape[1], hidden, train["future"].shape[1])
    model.history = int(train["hist"].shape[1])
    step_in = torch.diff(train["hist"], dim=1)
    scale = torch.cat([train["hist"].flatten(0, 1).std(0), step_in.flatten(0, 1).std(0),
                       train["ctx"].std(0)]).clamp_min(1e-2)
    model.in_scale.copy_(scale)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = len(train["future"])
    best, best_step, history = math.inf, -1, []
    start = time.time()
    for step in range(steps + 1):
        if step % eval_every == 0 or step == steps:
            model.eval()
            with torch.no_grad():
                table = rmse_table(model(val["hist"], val["ctx"], val["nominal"]), val["future"])
            history.append({"step": step, "rmse": table})
            if log:
                log(step, table)
            if sum(table) < best:
                best, best_step = sum(table), step
                save_lstm(model, Path(run_dir) / LSTM_FILE, {"val_rmse": table, "step": step})
            model.train()
        if step == steps:
            break
        idx = torch.randint(0, n, (min(batch_size, n),), generator=gen)
        pred = model(train["hist"][idx], train["ctx"][idx], train["nominal"][idx])
        loss = ((pred - train["future"][idx]) ** 2).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
    return {"best_step": best_step, "best_val_mean_rmse": best / 4, "history": history,
            "elapsed_s": time.time() - start}


def save_lstm(model: LSTMPredictor, path: Path, extra: dict | None = None) -> Path:
    blob = {"format": 1, "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "hidden": model.hidden, "steps": model.steps, "history": model.history,
            "ctx_dim": int(model.join[0].in_features - model.hidden), "extra": extra or {}}
    return save_tensors(blob, path)


def load_lstm(path: str | Path, history: int | None = None) -> LSTMPredictor:
    """The saved baseline; ``history``: the frames the rows it will predict hold (DataError if
    it was trained on another history length; files from before the length was saved were
    trained on 10 frames)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no LSTM baseline saved (run `ebmtraj train --model lstm`)")
    blob = load_tensors(path)
    model = LSTMPredictor(int(blob["ctx_dim"]), int(blob["hidden"]), int(blob["steps"]))
    model.history = int(blob.get("history", 10))
    if history is not None and history != model.history:
        raise DataError(f"{path}: the LSTM was trained on {model.history} history frames, the rows "
                        f"have {history} (data.history); train it on this config")
    model.load_state_dict(blob["state"])
    return model.eval()


@torch.no_grad()
def predict_lstm(model: LSTMPredictor, rows: dict, chunk: int = 8192) -> torch.Tensor:
    """Positions (N,T,2) in the agent frame for rows with hist, ctx, nominal."""
    model.eval()
    n = rows["hist"].shape[0]
    return torch.cat([model(rows["hist"][i:i + chunk], rows["ctx"][i:i + chunk], rows["nominal"][i:i + chunk])
                      for i in range(0, n, chunk)]) if n else rows["nominal"].clone()
