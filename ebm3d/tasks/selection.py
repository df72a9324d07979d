"""Checkpoint selection on validation, the part classification and generation share.

A :class:`CheckpointSelector` is a Trainer callback: every ``every`` training steps (and once
more at the end, :meth:`~CheckpointSelector.finish`) it scores the run's evaluated model (its
parameter average when the run keeps one) on the validation split. The best checkpoint's weights
go to ``best_model.pt`` and the scores to ``selection.json``, which a resumed run continues.
Subclasses say what a score is (:meth:`~CheckpointSelector.score`).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from ebmcore.io import atomic_write, load_tensors, save_tensors
from ebmcore.runs import fresh_requested

BEST_MODEL, SELECTION = "best_model.pt", "selection.json"


class CheckpointSelector:
    """``score(model, step)`` returns a row with the validation figure under ``key``; higher is
    better, or lower with ``lower_is_better``."""

    key = "score"
    lower_is_better = False

    def __init__(self, run_dir: Path, every: int, *, keep_state: bool = False,
                 log: Callable[[str], None] | None = None):
        self.run_dir, self.every, self.keep_state, self.log = Path(run_dir), every, keep_state, log
        self.best: dict | None = None
        self.history: list[dict] = []
        state = self.run_dir / SELECTION
        if keep_state and state.is_file() and not fresh_requested(self.run_dir):  # a resumed run keeps its selection
            saved = json.loads(state.read_text())
            self.best, self.history = saved["best"], saved["history"]

    def score(self, model, step: int) -> dict:
        raise NotImplementedError

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value < self.best[self.key] if self.lower_is_better else value > self.best[self.key]

    def evaluate(self, model, step: int) -> dict:
        """Score the model; keep it when it is the best so far."""
        started = time.time()
        row = {"step": step, **self.score(model, step)}
        row["seconds"] = round(time.time() - started, 1)
        self.history.append(row)
        if self._better(row[self.key]):
            self.best = row
            save_tensors({"step": step, "model": model.state_dict()}, self.run_dir / BEST_MODEL)
        if self.keep_state:
            text = json.dumps({"best": self.best, "history": self.history}, indent=2)
            atomic_write(self.run_dir / SELECTION, lambda tmp: tmp.write_text(text))
        if self.log:
            self.log(f"step {step}: validation {self.key} {row[self.key]:.4f} in {row['seconds']} s")
        return row

    def finish(self, model, step: int) -> dict:
        """The final step's evaluation (unless the selection already holds it); the best row."""
        if not self.history or self.history[-1]["step"] != step:
            self.evaluate(model, step)
        return self.best

    def __call__(self, trainer, step, metrics):
        if step % self.every == 0 and step != trainer.cfg.steps:
            with trainer.evaluated() as model:
                self.evaluate(model, step)


def load_best(model, run_dir: Path):
    """Put the selected checkpoint (``run_dir/best_model.pt``) into ``model``; returns its step."""
    state = load_tensors(Path(run_dir) / BEST_MODEL)
    model.load_state_dict(state["model"])
    return int(state["step"])
