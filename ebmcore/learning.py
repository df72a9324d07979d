"""Analysis by synthesis: the EBM training step and loop.

One step (maximum likelihood with MCMC samples):

1. synthesis: start chains (:mod:`ebmcore.chains`) and run the sampler on the
   current energy to get ``x_syn``;
2. analysis: minimise ``mean E(x_obs) - mean E(x_syn)`` (+ an optional energy-magnitude
   regulariser ``alpha * mean(E_obs^2 + E_syn^2)``), with gradient clipping.

The :class:`Trainer` adds what a real run needs: a divergence guard (NaN or
exploding energies or samples restore the last good state and shrink the step
size, giving up after ``max_retries``), atomic checkpoints that are never written
with non-finite values, exact resume (model, optimiser, chains, RNG states, step),
CSV/JSON/TensorBoard metrics, a tqdm bar, and DistributedDataParallel when started
by ``torchrun``.
"""
from __future__ import annotations

import contextlib
import copy
import math
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from . import distributed as dist_utils
from . import runs
from .averaging import ParameterAverage
from .chains import finish, make_chains
from .config import save_config, to_dict
from .errors import ConfigError, DivergenceError
from .io import load_checkpoint, load_weights, save_tensors
from .progress import progress_bar
from .sampling import sample
from .training_config import OptimConfig, TrainConfig, sampler_kwargs
from .tracking import MetricsLogger, plot_curves

CHECKPOINT = "checkpoint.pt"


def make_optimizer(params, cfg: OptimConfig) -> torch.optim.Optimizer:
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.beta1, weight_decay=cfg.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig):
    """StepLR when ``lr_step_every`` is set (stepped once per optimiser step), else None."""
    if cfg.lr_step_every is None:
        return None
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.lr_step_every, gamma=cfg.lr_gamma)


def contrastive_loss(e_obs: torch.Tensor, e_syn: torch.Tensor, energy_reg: float = 0.0) -> torch.Tensor:
    """``mean E(x_obs) - mean E(x_syn)`` plus ``energy_reg * mean(E_obs^2 + E_syn^2)``."""
    loss = e_obs.mean() - e_syn.mean()
    if energy_reg:
        loss = loss + energy_reg * (e_obs.pow(2).mean() + e_syn.pow(2).mean())
    return loss


def _as_data(data) -> dict[str, torch.Tensor]:
    data = {"x": data} if isinstance(data, torch.Tensor) else dict(data)
    if "x" not in data:
        raise ValueError("training data must be a tensor or a dict with key 'x'")
    n = data["x"].shape[0]
    for key, value in data.items():
        if value.shape[0] != n:
            raise ValueError(f"data[{key!r}] has {value.shape[0]} rows, data['x'] has {n}")
    return data


def _all_finite(tensors) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors if torch.is_tensor(t) and t.is_floating_point())


def _state_tensors(obj):
    if torch.is_tensor(obj):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _state_tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _state_tensors(v)


class Trainer:
    """Trains an :class:`~ebmcore.energy.EnergyModel` by analysis by synthesis.

    ``data`` is a tensor of observed examples (N, ...) or a dict of tensors with the
    examples under ``"x"`` and conditioning tensors under other keys (all with N rows;
    the model receives them as ``cond``, a dict). ``run_dir`` receives ``config.yaml``,
    ``checkpoint.pt``, ``metrics.csv``/``.jsonl``, ``tb/`` and ``curves.png``.
    ``callbacks`` are called as ``cb(trainer, step, metrics)`` after every step.
    ``chains`` replaces the configured chain initialiser (any object with ``init(n, data,
    generator)``, ``update(samples)``, ``state_dict()`` and ``load_state_dict()``, as in
    :mod:`ebmcore.chains`); after the sampler, the batch's samples go through the chains'
    ``finish(samples)`` hook when they have one (a recovery initialiser pastes its observed
    entries back there). ``clamp`` = (low, high), numbers or tensors broadcastable to one
    example (for instance (1, *shape)), replaces ``sampler.clamp``: every chain is clamped to it
    after every sampler step (bounds that depend on the example, such as an occupancy range in
    a centred space). ``transform(batch, index) -> batch`` is applied to every minibatch
    (data augmentation); it must be a pure function of the batch and the minibatch index so
    that a resumed run sees the same data. With ``optim.accumulate`` = m > 1 (0: one pass over
    the data) one step averages the gradients of m minibatches before the optimiser steps. Every
    ``sample_every`` steps the batch's synthesised samples go to ``samples/stepNNNNNN.pt``
    (key ``samples``); domain code adds pictures of them through a callback. With
    ``average`` (a decay) the Trainer keeps an exponential moving average of the model's state,
    updated after every step and saved in the checkpoint; :meth:`evaluated` swaps it in.
    ``regulariser(batch) -> scalar`` (a differentiable function of the model on the minibatch,
    such as a likelihood term that needs no sampling) is added to every minibatch's contrastive
    loss; its value is logged as ``regulariser``.
    """

    def __init__(self, model: nn.Module, data, cfg: TrainConfig, run_dir: str | Path, *,
                 resume: bool = True, callbacks: list[Callable] | None = None, full_config=None,
                 chains=None, transform: Callable | None = None, clamp: Sequence | None = None,
                 regulariser: Callable | None = None):
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.regulariser = regulariser
        self.rank, self.world = dist_utils.init_from_env(cfg.device)
        if cfg.batch_size % self.world:
            raise ConfigError(f"batch_size {cfg.batch_size} must divide evenly over {self.world} processes")
        self.device = torch.device(cfg.device)
        self.model = model.to(self.device)
        self.net = self.model
        if self.world > 1:
            self.net = nn.parallel.DistributedDataParallel(self.model)
        self.data = _as_data(data)
        self.transform = transform
        self.clamp = None if clamp is None else tuple(
            b.to(self.device) if torch.is_tensor(b) else b for b in clamp)
        self.optimizer = make_optimizer(self.model.parameters(), cfg.optim)
        self.average = ParameterAverage(self.model, cfg.average) if cfg.average is not None else None
        self.scheduler = make_scheduler(self.optimizer, cfg.optim)
        c = cfg.chains
        self.chains = chains if chains is not None else make_chains(
            c.kind, self.data["x"].shape[1:], std=c.std, mean=c.mean, num_chains=c.num_chains,
            reinit_prob=c.reinit_prob)
        n = self.data["x"].shape[0]
        self.micro_batches = cfg.optim.accumulate or max(1, math.ceil(n / cfg.batch_size))
        torch.manual_seed(cfg.seed + self.rank)
        self.generator = torch.Generator().manual_seed(cfg.seed + 7919 * (self.rank + 1))
        self.step_size = cfg.sampler.step_size
        self.step = 0
        self.retries = 0
        self.callbacks = list(callbacks or [])
        self.last_samples: torch.Tensor | None = None
        self.logger: MetricsLogger | None = None
        if self.rank == 0:  # the run is certain to start: set aside, lock, clean, check the resume
            saved = full_config if full_config is not None else cfg
            resume = runs.open_run(self.run_dir, resume=resume, config=to_dict(saved))
        else:
            resume = resume and not runs.fresh_requested(self.run_dir)
        if resume and (self.run_dir / CHECKPOINT).exists():
            path = self.run_dir / CHECKPOINT
            load_weights(self, load_checkpoint(path, require=("model", "optimizer", "chains", "rng")), path)
        self._snapshot = copy.deepcopy(self.state_dict())
        if self.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(full_config if full_config is not None else cfg, self.run_dir / "config.yaml")

    # ----- data and sampling -------------------------------------------------
    def batch_indices(self, step: int) -> torch.Tensor:
        """This rank's example indices for ``step``: a pure function of (seed, step), so a
        resumed run sees the same batches. The global batch is a slice of a per-epoch
        permutation; rank r takes the r-th contiguous part."""
        n, b = self.data["x"].shape[0], self.cfg.batch_size
        start = step * b
        idx = []
        while len(idx) < b:
            epoch, offset = divmod(start + len(idx), n)
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch))
            idx.extend(perm[offset: offset + b - len(idx)].tolist())
        part = b // self.world
        return torch.tensor(idx[self.rank * part: (self.rank + 1) * part])

    def batch(self, index: int) -> dict[str, torch.Tensor]:
        """Minibatch number ``index`` (``step * micro_batches + k``), after ``transform``."""
        idx = self.batch_indices(index)
        out = {k: v[idx].to(self.device) for k, v in self.data.items()}
        return self.transform(out, index) if self.transform is not None else out

    def sampler_kwargs(self) -> dict:
        return sampler_kwargs(self.cfg.sampler, step=self.step, step_size=self.step_size, generator=self.generator,
                              clamp=self.clamp)

    def synthesise(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Start this batch's chains (``chains.per_batch`` of them, default one per example), run
        the sampler on the current energy and hand the samples to the chains' ``finish`` hook."""
        cond = {k: v for k, v in batch.items() if k != "x"} or None
        n = self.cfg.chains.per_batch or batch["x"].shape[0]
        if cond is not None and n != batch["x"].shape[0]:
            raise ConfigError("chains.per_batch must equal the batch size for conditional models")
        extra = {"cond": cond} if cond is not None else {}  # chain kinds that ignore cond need not take it
        x0 = self.chains.init(n, batch["x"], self.generator, **extra).to(self.device)
        x_syn = sample(lambda x: self.model.energy(x, cond), x0, **self.sampler_kwargs())
        return finish(self.chains, x_syn.detach())

    # ----- one step -------------------------------------------------------------
    def _unhealthy(self, e_obs, e_syn, x_syn, loss) -> str | None:
        """Why the guard rejects this minibatch (None: it passes)."""
        g = self.cfg.guard
        if not _all_finite([e_obs, e_syn, x_syn, loss]):
            return "non-finite energies, samples or loss"
        energy = float(torch.cat([e_obs.detach().abs().flatten(), e_syn.detach().abs().flatten()]).max())
        if energy >= g.max_energy:
            return f"exploding energies: |E| {energy:.3g} above guard.max_energy {g.max_energy:g}"
        if float(x_syn.abs().max()) >= g.max_sample_abs:
            return f"exploding samples: |x| {float(x_syn.abs().max()):.3g} above guard.max_sample_abs {g.max_sample_abs:g}"
        if abs(loss.item()) >= g.max_loss:
            return f"exploding loss: loss {loss.item():.3g} above guard.max_loss {g.max_loss:g}"
        return None

    def _micro_step(self, index: int) -> tuple[dict, torch.Tensor] | str:
        """Synthesis and analysis on minibatch ``index``; accumulates ``1/micro_batches`` of its
        gradient. Returns (metrics, x_syn), or the reason the guard rejects it."""
        batch = self.batch(index)
        x_obs = batch["x"]
        cond = {k: v for k, v in batch.items() if k != "x"} or None
        x_syn = self.synthesise(batch)
        both_cond = None if cond is None else {k: torch.cat([v, v]) for k, v in cond.items()}
        energies = self.net(torch.cat([x_obs, x_syn.to(x_obs.dtype)]), both_cond)
        e_obs, e_syn = energies[: len(x_obs)], energies[len(x_obs):]
        loss = contrastive_loss(e_obs, e_syn, self.cfg.optim.energy_reg)
        metrics = {"loss": loss.item(), "energy_obs": e_obs.mean().item(), "energy_syn": e_syn.mean().item()}
        if self.regulariser is not None:
            reg = self.regulariser(batch)
            loss = loss + reg
            metrics["regulariser"] = reg.item()
        reason = self._unhealthy(e_obs, e_syn, x_syn, loss) if self.cfg.guard.enabled else None
        if not dist_utils.all_ok(reason is None):
            return reason or "divergence on another process"
        (loss / self.micro_batches).backward()
        return metrics, x_syn

    def train_step(self) -> dict | None:
        """One analysis-by-synthesis update (``micro_batches`` minibatches, one optimiser step);
        returns its metrics, or None if the guard rejected it (state restored, step size shrunk)."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        sums: dict[str, float] = {}
        for k in range(self.micro_batches):
            out = self._micro_step(self.step * self.micro_batches + k)
            if isinstance(out, str):
                return self._recover(out)
            part, x_syn = out  # only the last minibatch's samples are kept (an epoch's would not fit)
            sums = {key: sums.get(key, 0.0) + value for key, value in part.items()}
            self.chains.update(x_syn)
        guard = self.cfg.guard.enabled
        params = [p for p in self.model.parameters() if p.grad is not None]
        clip = self.cfg.optim.grad_clip
        grad_norm = nn.utils.clip_grad_norm_(params, clip if clip else math.inf)
        if guard and not dist_utils.all_ok(bool(torch.isfinite(grad_norm))):
            return self._recover("non-finite gradient")
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        if guard and not dist_utils.all_ok(_all_finite(self.model.parameters())):
            return self._recover("non-finite parameters after the update")
        if self.average is not None:
            self.average.update()
        self.last_samples = x_syn
        self.step += 1
        if self.step % self.cfg.guard.snapshot_every == 0:
            self._snapshot = copy.deepcopy(self.state_dict())
            self.retries = 0
        metrics = {key: value / self.micro_batches for key, value in sums.items()}
        return {**metrics, "grad_norm": float(grad_norm), "step_size": self.step_size,
                "lr": self.optimizer.param_groups[0]["lr"]}

    def _recover(self, reason: str):
        detected = self.step + 1  # the update that failed
        self.retries += 1
        if self.retries > self.cfg.guard.max_retries:
            raise DivergenceError(
                f"training diverged at step {detected} ({reason}); gave up after "
                f"{self.cfg.guard.max_retries} restores with step size shrunk to {self.step_size:g}. "
                "Lower optim.lr or sampler.step_size, or raise optim.energy_reg.")
        shrunk = self.step_size * self.cfg.guard.shrink
        self.load_state_dict(copy.deepcopy(self._snapshot))
        self.step_size = shrunk
        if self.logger is not None:
            self.logger.rewind(self.step)  # the undone steps' rows go; each step is logged once
        tqdm.write(f"divergence guard: {reason} detected at step {detected}; restored the state of step "
                   f"{self.step}, step size now {self.step_size:g} (retry {self.retries}/{self.cfg.guard.max_retries})")
        return None

    # ----- state --------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"format": 1, "step": self.step, "step_size": self.step_size,
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else {},
                "chains": self.chains.state_dict(),
                **({"average": self.average.state_dict()} if self.average is not None else {}),
                "rng": {"torch": torch.get_rng_state(), "generator": self.generator.get_state()},
                "config": to_dict(self.cfg)}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler"):
            self.scheduler.load_state_dict(state["scheduler"])
        self.chains.load_state_dict(state["chains"])
        if self.average is not None and state.get("average"):
            self.average.load_state_dict(state["average"])
        elif self.average is not None:  # a run that adds an average on resume starts it here
            self.average = ParameterAverage(self.model, self.average.decay)
        torch.set_rng_state(state["rng"]["torch"])
        self.generator.set_state(state["rng"]["generator"])
        self.step, self.step_size = int(state["step"]), float(state["step_size"])

    def evaluated(self):
        """A ``with`` block in which ``self.model`` is the model to evaluate: the parameter
        average when the run keeps one, else the current model."""
        return self.average.swapped_in() if self.average is not None else contextlib.nullcontext(self.model)

    def save_checkpoint(self) -> Path | None:
        """Write ``checkpoint.pt`` atomically (rank 0 only); refuse non-finite state."""
        if self.rank != 0:
            return None
        state = self.state_dict()
        if not _all_finite(_state_tensors({k: state[k] for k in ("model", "optimizer", "chains", "average") if k in state})):
            tqdm.write(f"not writing a checkpoint at step {self.step}: the state holds NaN or inf")
            return None
        return save_tensors(state, self.run_dir / CHECKPOINT)

    # ----- the loop ---------------------------------------------------------------
    def fit(self) -> dict:
        """Train until ``cfg.steps``; returns the last logged metrics."""
        cfg = self.cfg
        logger = MetricsLogger(self.run_dir, cfg.tensorboard, self.step) if self.rank == 0 else None
        self.logger = logger
        bar = progress_bar(total=cfg.steps, initial=self.step, disable=not cfg.progress or self.rank != 0,
                   desc=self.run_dir.name, dynamic_ncols=True)
        last: dict = {}
        try:
            while self.step < cfg.steps:
                before = self.step
                metrics = self.train_step()
                if metrics is None:
                    bar.n = self.step
                    continue
                bar.update(self.step - before)
                metrics = dist_utils.mean_across_ranks(metrics)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    last = metrics
                    bar.set_postfix(loss=f"{metrics['loss']:.3g}")
                    if logger:
                        logger.log(self.step, metrics)
                if self.rank == 0 and (self.step % cfg.sample_every == 0 or self.step == cfg.steps):
                    save_tensors({"samples": self.last_samples, "step": self.step},
                                 self.run_dir / "samples" / f"step{self.step:06d}.pt")
                for cb in self.callbacks:
                    cb(self, self.step, metrics)
                if self.step % cfg.ckpt_every == 0 or self.step == cfg.steps:
                    self.save_checkpoint()
            if self.rank == 0 and (self.run_dir / "metrics.jsonl").exists():
                plot_curves(self.run_dir)
        finally:
            bar.close()
            if logger:
                logger.close()
            self.logger = None
            if self.rank == 0:
                runs.unlock_run(self.run_dir)
        return last
