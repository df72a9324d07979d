"""An exponential moving average of a model's state, for evaluating a noisily trained EBM.

Analysis-by-synthesis updates are noisy (a few chains per step contrast a few examples), so the
model a run stops at oscillates around where it is heading, and figures measured on it move by
several points between neighbouring checkpoints. The average follows the heading: it is the
model that evaluation, sampling and model selection use when a run keeps one
(``train.average`` in :class:`ebmcore.training_config.TrainConfig`), while training continues
from the current, unaveraged state.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn


class ParameterAverage:
    """``avg <- decay * avg + (1 - decay) * current`` over a model's floating-point state
    (parameters and buffers), after every :meth:`update`. :meth:`swapped_in` puts the average
    into the model for a ``with`` block and restores the current state after it.
    :meth:`state_dict` / :meth:`load_state_dict` make it part of a checkpoint, so a resumed run
    continues the same average."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"the parameter average's decay must lie in [0, 1), got {decay!r}")
        self.model, self.decay = model, decay
        self.avg = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self) -> None:
        for k, v in self.model.state_dict().items():
            if k in self.avg:
                self.avg[k].mul_(self.decay).add_(v.detach(), alpha=1.0 - self.decay)

    @contextlib.contextmanager
    def swapped_in(self):
        current = {k: v.detach().clone() for k, v in self.model.state_dict().items() if k in self.avg}
        self.model.load_state_dict(self.avg, strict=False)
        try:
            yield self.model
        finally:
            self.model.load_state_dict(current, strict=False)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in self.avg.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.avg) - set(state)
        if missing:
            raise KeyError(f"the saved parameter average lacks {sorted(missing)[:3]}")
        self.avg = {k: state[k].detach().clone().to(self.avg[k]) for k in self.avg}


def evaluated_state(checkpoint: dict) -> dict[str, torch.Tensor]:
    """The model state a trained run is evaluated with: a Trainer checkpoint's ``model``, with
    its parameter ``average`` in place of the floating-point entries when the run keeps one."""
    return {**checkpoint["model"], **(checkpoint.get("average") or {})}
