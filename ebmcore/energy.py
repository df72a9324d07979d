"""The energy contract every model in the suite follows.

An energy model maps a batch ``x`` of any shape ``(B, ...)`` (and an optional
condition) to one energy per example, shape ``(B,)``; low energy means likely.
The density is ``p(x) ∝ exp(-E(x))`` with

    E(x) = -f_theta(x) + |x|^2 / (2 sigma_ref^2)

where ``f_theta`` is the network's score and the second term is the optional
Gaussian reference prior N(0, sigma_ref^2 I) of the generative ConvNet papers.
"""
from __future__ import annotations

import torch
from torch import nn


def reference_energy(x: torch.Tensor, sigma_ref: float) -> torch.Tensor:
    """Energy of the Gaussian reference N(0, sigma_ref^2 I): ``|x|^2 / (2 sigma^2)``, shape (B,)."""
    return x.pow(2).flatten(1).sum(1) / (2.0 * sigma_ref**2)


class EnergyModel(nn.Module):
    """Base class: subclasses implement :meth:`score` (``f_theta``, shape (B,)).

    ``forward`` and :meth:`energy` return ``-score(x) + reference_energy(x)``.
    ``sigma_ref=None`` drops the reference term.
    """

    def __init__(self, sigma_ref: float | None = None):
        super().__init__()
        if sigma_ref is not None and not sigma_ref > 0:
            raise ValueError(f"sigma_ref must be positive, got {sigma_ref}")
        self.sigma_ref = sigma_ref

    def score(self, x: torch.Tensor, cond=None) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def energy(self, x: torch.Tensor, cond=None) -> torch.Tensor:
        e = -self.score(x, cond)
        if e.dim() != 1 or e.shape[0] != x.shape[0]:
            raise ValueError(f"{type(self).__name__}.score must return shape (B,)={x.shape[0]}, got {tuple(e.shape)}")
        if self.sigma_ref is not None:
            e = e + reference_energy(x, self.sigma_ref)
        return e

    def forward(self, x: torch.Tensor, cond=None) -> torch.Tensor:
        return self.energy(x, cond)


class FunctionEnergy(EnergyModel):
    """Wraps a plain function ``fn(x) -> (B,)`` energy (no parameters) as an EnergyModel."""

    def __init__(self, fn, sigma_ref: float | None = None):
        super().__init__(sigma_ref)
        self.fn = fn

    def score(self, x, cond=None):
        return -self.fn(x)
