"""Where Markov chains start, and multigrid sampling across resolutions.

Each chain initialiser has the same small interface:

- ``init(n, data, generator, cond=None) -> x0`` of shape (n, *shape): where this batch's chains start
  (``cond``: the batch's condition, for initialisers that use it, such as the cooperative generator);
- ``finish(samples) -> samples``: the sampler's output for the batch, post-processed before the
  energy sees it (identity here; a recovery initialiser pastes its observed entries back);
- ``update(samples)``: hands back the batch's final samples (persistent kinds keep them);
- ``state_dict()`` / ``load_state_dict()``: plain tensors, for exact resume.

Kinds: ``noise`` / ``short_run`` (fresh noise every time: the short-run
non-persistent chain), ``data`` (contrastive divergence: start at the observed
batch), ``persistent`` (carry last iteration's samples), ``replay`` (a buffer of
past samples, re-initialised to noise with a small probability).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F


class StatelessChains:
    """Base of chain initialisers that keep nothing between calls: ``update`` ignores the
    samples and the state is empty; ``finish`` returns the samples as they are. Subclasses
    implement ``init``."""

    def finish(self, samples: torch.Tensor) -> torch.Tensor:
        """The batch's samples (n, *shape) after the sampler, as the energy will see them."""
        return samples

    def update(self, samples):
        pass

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


class NoiseChains(StatelessChains):
    """Fresh Gaussian noise N(mean, std^2) every call: short-run, non-persistent chains."""

    def __init__(self, shape: Sequence[int], std: float = 1.0, mean: float = 0.0):
        self.shape, self.std, self.mean = tuple(shape), std, mean

    def noise(self, n: int, generator: torch.Generator | None = None, dtype=torch.float32) -> torch.Tensor:
        return self.mean + self.std * torch.randn((n, *self.shape), generator=generator, dtype=dtype)

    def init(self, n, data=None, generator=None, cond=None):
        return self.noise(n, generator, data.dtype if data is not None else torch.float32)


class DataChains(NoiseChains):
    """Contrastive divergence: chains start at the observed batch."""

    def __init__(self, shape):
        super().__init__(shape, 0.0, 0.0)

    def init(self, n, data=None, generator=None, cond=None):
        if data is None:
            raise ValueError("data-initialised chains need the observed batch")
        return data.detach().clone()


class PersistentChains(NoiseChains):
    """``num_chains`` chains carried across training steps, used in turn ``n`` at a time.

    The first use of each chain starts it from noise; afterwards it continues from
    its last sample (the persistent chains of the generative VoxelNet paper).
    """

    def __init__(self, shape, num_chains: int, std: float = 1.0, mean: float = 0.0):
        super().__init__(shape, std, mean)
        self.buffer = torch.empty(0)
        self.num_chains = num_chains
        self.cursor = 0
        self._last = None

    def init(self, n, data=None, generator=None, cond=None):
        if n > self.num_chains:
            raise ValueError(f"batch of {n} chains exceeds num_chains={self.num_chains}")
        if self.buffer.numel() == 0:
            self.buffer = self.noise(self.num_chains, generator)
        if self.cursor + n > self.num_chains:
            self.cursor = 0
        self._last = torch.arange(self.cursor, self.cursor + n)
        self.cursor += n
        return self.buffer[self._last].clone()

    def update(self, samples):
        self.buffer[self._last] = samples.detach().to(self.buffer.device, self.buffer.dtype)

    def state_dict(self):
        return {"buffer": self.buffer, "cursor": self.cursor}

    def load_state_dict(self, state):
        self.buffer, self.cursor = state["buffer"].clone(), int(state["cursor"])


class ReplayBuffer(PersistentChains):
    """A buffer of ``capacity`` past samples; each chain starts from a random entry, or from
    fresh noise with probability ``reinit_prob`` (about 5 % in the literature)."""

    def __init__(self, shape, capacity: int, reinit_prob: float = 0.05, std: float = 1.0, mean: float = 0.0):
        super().__init__(shape, capacity, std, mean)
        if not 0.0 <= reinit_prob <= 1.0:
            raise ValueError(f"reinit_prob must be in [0, 1], got {reinit_prob}")
        self.reinit_prob = reinit_prob

    def init(self, n, data=None, generator=None, cond=None):
        if self.buffer.numel() == 0:
            self.buffer = self.noise(self.num_chains, generator)
        self._last = torch.randint(0, self.num_chains, (n,), generator=generator)
        x = self.buffer[self._last].clone()
        fresh = torch.rand(n, generator=generator) < self.reinit_prob
        if fresh.any():
            x[fresh] = self.noise(int(fresh.sum()), generator)
        return x


def finish(chains, samples: torch.Tensor) -> torch.Tensor:
    """``chains.finish(samples)``, or ``samples`` for an initialiser without that hook."""
    hook = getattr(chains, "finish", None)
    return samples if hook is None else hook(samples)


def make_chains(kind: str, shape, *, std=1.0, mean=0.0, num_chains=100, reinit_prob=0.05):
    """Build a chain initialiser by its config name."""
    if kind in ("noise", "short_run"):
        return NoiseChains(shape, std, mean)
    if kind == "data":
        return DataChains(shape)
    if kind == "persistent":
        return PersistentChains(shape, num_chains, std, mean)
    if kind == "replay":
        return ReplayBuffer(shape, num_chains, reinit_prob, std, mean)
    raise ValueError(f"unknown chain kind {kind!r}; use noise, short_run, data, persistent or replay")


def upsample(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Nearest-neighbour upsampling of (B, C, *S) grids with 1-3 spatial dims."""
    return F.interpolate(x, scale_factor=factor, mode="nearest")


def multigrid(
    samplers: Sequence[Callable[[torch.Tensor], torch.Tensor]],
    x0: torch.Tensor,
    factor: int = 2,
    up: Callable[[torch.Tensor, int], torch.Tensor] = upsample,
) -> list[torch.Tensor]:
    """Coarse-to-fine sampling: run ``samplers[0]`` from ``x0``, upsample its result by
    ``factor`` to start ``samplers[1]``, and so on. Each sampler maps x0 -> samples at
    its own resolution (a ``langevin`` call bound to that level's energy).
    Returns the samples of every level, coarsest first."""
    levels, x = [], x0
    for i, run in enumerate(samplers):
        if i:
            x = up(x, factor)
        x = run(x)
        levels.append(x)
    return levels
