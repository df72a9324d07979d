"""The typed settings of a training run and of its sampler.

:class:`TrainConfig` (with its sampler, chain, optimiser and guard sections) is what a config's
``train:`` section reads into, and :func:`sampler_from_config` turns a sampler section into a
sampler. They live apart from :mod:`ebmcore.learning` so that code which only reads configs or
samples (a planner, an evaluation) imports no training loop.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from .config import check
from .errors import ConfigError
from .sampling import sample, scaled_schedule


@dataclass
class SamplerConfig:
    method: str = check("langevin", choices=["langevin", "hmc"])
    steps: int = check(20, min=0, max=100_000)
    step_size: float = check(0.1, min=0.0, max=100.0)
    noise: str = check("constant", choices=["constant", "none", "annealed"])  # YAML reads a bare off as false
    noise_scale: float = check(1.0, min=0.0, max=100.0)  # multiplies the schedule: < 1 samples colder
    noise_off_after: int | None = check(None, min=0)  # training step after which noise is off
    clamp: list[float] | None = None
    leapfrog_steps: int = check(5, min=1, max=1000)
    metropolis: bool = True

    def validate(self, prefix=""):
        if self.clamp is not None and (len(self.clamp) != 2 or self.clamp[0] >= self.clamp[1]):
            raise ConfigError(f"{prefix}clamp must be [low, high] with low < high, got {self.clamp}")
        if self.steps > 0 and self.step_size == 0:
            raise ConfigError(f"{prefix}step_size: 0 with {self.steps} sampler steps never moves the "
                              "chains; use a step size > 0")


@dataclass
class ChainConfig:
    kind: str = check("short_run", choices=["noise", "short_run", "data", "persistent", "replay"])
    std: float = check(1.0, min=0.0, max=1e3)
    mean: float = 0.0
    num_chains: int = check(100, min=1, max=10_000_000)
    reinit_prob: float = check(0.05, min=0.0, max=1.0)
    per_batch: int | None = check(None, min=1, max=10_000_000)  # chains synthesised per minibatch (None: batch_size)


@dataclass
class OptimConfig:
    name: str = check("adam", choices=["adam", "sgd"])
    lr: float = check(1e-3, min=0.0, max=10.0)
    beta1: float = check(0.9, min=0.0, max=1.0)
    beta2: float = check(0.999, min=0.0, max=1.0)
    weight_decay: float = check(0.0, min=0.0, max=1.0)
    grad_clip: float | None = check(None, min=0.0)
    energy_reg: float = check(0.0, min=0.0, max=1e3)
    # minibatches whose gradients are averaged into one optimiser step; 0 = one step per pass over
    # the data (the generative VoxelNet's official bookkeeping)
    accumulate: int = check(1, min=0, max=1_000_000)
    lr_step_every: int | None = check(None, min=1)  # StepLR: multiply lr by lr_gamma every this many steps
    lr_gamma: float = check(1.0, min=0.0, max=1.0)


@dataclass
class GuardConfig:
    enabled: bool = True
    max_energy: float = check(1e8, min=0.0)
    max_sample_abs: float = check(1e4, min=0.0)
    max_loss: float = check(1e9, min=0.0)  # a larger |loss| is divergence even when finite
    max_retries: int = check(5, min=0, max=100)
    shrink: float = check(0.5, min=0.0, max=1.0)
    snapshot_every: int = check(10, min=1)


@dataclass
class TrainConfig:
    steps: int = check(100, min=0, max=100_000_000)
    batch_size: int = check(16, min=1, max=1_000_000)
    seed: int = 0
    log_every: int = check(10, min=1)
    ckpt_every: int = check(50, min=1)
    sample_every: int = check(50, min=1)
    device: str = "cpu"
    progress: bool = True
    tensorboard: bool = True
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    chains: ChainConfig = field(default_factory=ChainConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)
    # decay of an exponential moving average of the model's state (ebmcore.averaging), kept in
    # the checkpoint and used for evaluation and model selection (None: the current model)
    average: float | None = check(None, min=0.0, max=0.9999)


def sampler_kwargs(cfg: SamplerConfig, *, step: int = 0, step_size: float | None = None,
                   generator: torch.Generator | None = None, clamp: Sequence | None = None) -> dict:
    """Keyword arguments of :func:`ebmcore.sampling.sample` for ``cfg`` at training step ``step``
    (the noise is off from ``noise_off_after`` on; ``step_size`` overrides the configured one;
    ``clamp`` = (low, high), numbers or tensors broadcastable to the chains, overrides
    ``cfg.clamp``)."""
    noise = cfg.noise
    if cfg.noise_off_after is not None and step >= cfg.noise_off_after:
        noise = "none"
    kwargs = dict(method=cfg.method, steps=cfg.steps, step_size=cfg.step_size if step_size is None else step_size,
                  clamp=cfg.clamp if clamp is None else clamp, generator=generator, noise=scaled_schedule(noise, cfg.noise_scale))
    if cfg.method == "hmc":
        kwargs.update(leapfrog_steps=cfg.leapfrog_steps, metropolis=cfg.metropolis)
    return kwargs


def sampler_from_config(cfg: SamplerConfig, **kwargs) -> Callable[..., torch.Tensor]:
    """``run(energy_fn, x0, **extra) -> samples``: the configured sampler (see :func:`sampler_kwargs`
    for ``kwargs``); ``extra`` adds or replaces sampler arguments (``mask``, ``observed``, ...)."""
    base = sampler_kwargs(cfg, **kwargs)

    def run(energy_fn, x0, **extra):
        return sample(energy_fn, x0, **{**base, **extra})
    return run
