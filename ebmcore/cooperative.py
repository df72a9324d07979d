"""Cooperative learning: a fast generator that starts the energy's Langevin chains.

Cooperative training (CoopNets, Xie et al., TPAMI 2020; "fast thinking initialiser, slow thinking
solver") pairs the energy model with a generator ``x = g(z, cond)``, ``z ~ N(0, I)``:

1. the generator proposes ``x0 = g(z)`` (fast thinking);
2. Langevin on the energy revises ``x0`` into ``x_syn`` (slow thinking), and the energy learns
   from ``x_syn`` as usual;
3. the generator learns from the revision: one optimiser step on ``|g(z) - x_syn|^2`` for the
   same ``z`` ("MCMC teaching"), so its next proposals start nearer the energy's modes.

The teaching step is a regression, so the generator learns the mean revision ``E[x_syn | z]``:
with short chains its proposals are narrower than the energy's samples, and the Langevin noise
of step 2 is what spreads them. It serves as a starting guess (a search's initialiser), not as a
sampler of its own.

:class:`CooperativeChains` is a chain initialiser (the interface of :mod:`ebmcore.chains`):
give it to ``Trainer(chains=...)`` and any energy model trains cooperatively. After training its
:meth:`~CooperativeChains.propose` is the fast initialiser of any later search on that energy.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class CooperativeChains:
    """Chains started by a generator network that learns from the Langevin revisions.

    generator: ``nn.Module`` with ``forward(z, cond=None) -> x`` of shape (n, *shape).
    latent_dim: size of ``z`` (n, latent_dim), drawn N(0, I).
    lr / betas: Adam settings of the generator; ``steps_per_update`` optimiser steps are taken
    on every batch of revised samples.
    """

    def __init__(self, generator: nn.Module, latent_dim: int, *, lr: float = 1e-3,
                 betas: Sequence[float] = (0.5, 0.999), steps_per_update: int = 1):
        self.generator, self.latent_dim = generator, latent_dim
        self.optimizer = torch.optim.Adam(generator.parameters(), lr=lr, betas=tuple(betas))
        self.steps_per_update = steps_per_update
        self._z: torch.Tensor | None = None
        self._cond = None
        self.last_loss = float("nan")

    def _device(self) -> torch.device:
        return next(self.generator.parameters()).device

    def propose(self, n: int, cond=None, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z, g(z, cond))``: n fresh latents (n, latent_dim) and the generator's proposals,
        without a graph (the fast initialiser of a search)."""
        z = torch.randn((n, self.latent_dim), generator=generator).to(self._device())
        with torch.no_grad():
            return z, self.generator(z, cond)

    def init(self, n, data=None, generator=None, cond=None):
        self._z, x0 = self.propose(n, cond, generator)
        self._cond = cond
        return x0 if data is None else x0.to(data.dtype)

    def update(self, samples: torch.Tensor) -> None:
        """One teaching step: regress the proposals of the last ``init`` onto ``samples``."""
        if self._z is None:
            raise RuntimeError("CooperativeChains.update called before init")
        target = samples.detach().to(self._device())
        self.generator.train()
        for _ in range(self.steps_per_update):
            loss = (self.generator(self._z, self._cond) - target).pow(2).flatten(1).sum(1).mean()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        self.last_loss = loss.item()

    def state_dict(self) -> dict:
        return {"generator": self.generator.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.generator.load_state_dict(state["generator"])
            self.optimizer.load_state_dict(state["optimizer"])
