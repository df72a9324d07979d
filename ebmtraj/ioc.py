"""EBM-IOC learning: observed controls, the two training stages and model selection.

* Observed controls (:func:`fit_controls`): for each demonstrated future, the control sequence
  whose rollout from the causal initial state reproduces the smoothed future positions.
* Learning, in two stages (:func:`prepare_training`, :func:`pretrain_neural`, :func:`train`):

  1. exact maximum likelihood of the neural term's own (translation-invariant) factor, which
     needs no sampling and fits the history-dependent references and scales;
  2. maximum likelihood of the whole energy (features, neural term, dynamics, prior) by
     analysis by synthesis with :class:`ebmcore.learning.Trainer`: Langevin on the controls with
     the rollout inside the energy (back-propagation through time at every step), chains
     started at the observed controls (``train.chains.kind: data``) or at the nominal
     (``short_run``). The optimisation variant switches the noise off
     (``train.sampler.noise: none``): the synthesised example is then where gradient descent on
     the cost leads, so learning makes demonstrations (locally) minimum-cost.

  The best model on validation RMSE of the minimum-cost prediction is kept (``model.pt``),
  including the stage-1 model (step 0), so a stage 2 that does not help cannot make it worse.

The model itself (configs, construction, checkpoints) is :mod:`ebmtraj.model`; prediction is
:mod:`ebmtraj.prediction` (search: :mod:`ebmtraj.search`; multi-agent terms:
:mod:`ebmtraj.interaction`). This is the only ``ebmtraj`` module that imports
``ebmcore.learning``.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from torch import nn

from ebmcore.cooperative import CooperativeChains
from ebmcore.learning import Trainer, TrainConfig

from .cost import IOCEnergy, rollout
from .cost_inputs import COND_TENSORS
from .model import MODEL_FILE, ModelConfig, PredictConfig, build_model, load_model, save_model
from .prediction import positions, predict, predict_joint, rmse_table
from .search import generator_start

__all__ = ["MODEL_FILE", "ModelConfig", "PredictConfig", "StartGenerator", "build_model", "cond_of",
           "control_scale", "fit_controls", "load_model", "predict", "predict_joint", "prepare_training",
           "pretrain_neural", "rmse_table", "save_model", "stage2_chains", "stage2_parameters", "train"]

def cond_of(inputs: dict, model: IOCEnergy | None = None) -> dict:
    """The cost's inputs from :func:`ebmtraj.cost_inputs.build_inputs`, plus the nominal
    positions (computed once here instead of at every energy evaluation)."""
    cond = {k: inputs[k] for k in COND_TENSORS}
    if model is not None:
        with torch.no_grad():
            cond["nominal"] = model.nominal(cond)
    elif "nominal" in inputs:
        cond["nominal"] = inputs["nominal"]
    return cond


def control_scale(fstates: torch.Tensor) -> tuple[float, float]:
    """Acceleration [m/s^2] and steering [rad] spread of observed states (the diagonal bases)."""
    return (float(fstates[..., 4].std().clamp_min(0.05)), float(fstates[..., 5].std().clamp_min(1e-3)))


def fit_controls(model: IOCEnergy, cond: dict, fstates: torch.Tensor, *, iters: int = 60,
                 smooth: float = 1e-3, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Observed controls: z (N,T,2) whose rollout from ``cond['x0']`` matches the smoothed
    future positions ``fstates[..., :2]`` (N,T,2) in least squares, with a small penalty
    ``smooth * |dz|^2`` against jitter. Starts at the observed acceleration / steering levels;
    L-BFGS. Returns (z, per-row position RMSE [m] of the reconstruction)."""
    zs, errs = [], []
    param = model.param
    for lo in range(0, len(fstates), chunk):
        sl = slice(lo, lo + chunk)
        x0, target = cond["x0"][sl].double(), fstates[sl].double()
        u_obs = torch.diff(torch.cat([x0[:, None, 4:6], target[..., 4:6]], 1), dim=1)
        z = param.whiten(u_obs, x0).detach().contiguous().requires_grad_(True)
        opt = torch.optim.LBFGS([z], lr=1.0, max_iter=iters, history_size=20,
                                line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            st = rollout(x0, param.controls(z, x0), model.cost.dt, model.wheelbase)
            loss = ((st[..., :2] - target[..., :2]) ** 2).sum() + smooth * (z.diff(dim=1) ** 2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            st = rollout(x0, param.controls(z, x0), model.cost.dt, model.wheelbase)
            errs.append(((st[..., :2] - target[..., :2]) ** 2).sum(-1).mean(1).sqrt())
        zs.append(z.detach().float())
    return torch.cat(zs), torch.cat(errs).float()


def prepare_training(model: IOCEnergy, inputs: dict, fstates: torch.Tensor, *, fit_iters: int = 60,
                     shrink: float = 0.33):
    """Observed controls and calibration: fit the demonstrated controls, set the whitened
    control basis from their levels, the feature scales and the encoder's input scale.
    Returns (data dict for the Trainer: ``x`` = observed z plus the cond tensors, per-row
    reconstruction RMSE [m])."""
    cond = cond_of(inputs, model)
    z_obs, err = fit_controls(model, cond, fstates, iters=fit_iters)
    with torch.no_grad():
        u_obs = model.param.controls(z_obs, cond["x0"])
        if model.param.basis == "whitened":
            model.param.fit(cond["x0"][:, None, 4:6] + torch.cumsum(u_obs, 1), shrink)
            z_obs = model.param.whiten(u_obs, cond["x0"])
        states, u = model.rollout(z_obs, cond)
        hist_in = torch.cat([cond["hist"].flatten(1), cond["ctx"]], 1)
        model.cost.calibrate(states, u, cond, hist_in)
    return {"x": z_obs.contiguous(), **cond}, err


def neural_target(model: IOCEnergy, batch: dict) -> torch.Tensor:
    """The neural term's regression target (n, T, 2) in metres: the rolled-out positions of the
    observed controls ``batch["x"]`` minus the nominal path (no gradient)."""
    with torch.no_grad():
        cond = {k: v for k, v in batch.items() if k != "x"}
        return model.rollout(batch["x"], cond)[0][..., :2] - batch["nominal"]


def neural_nll(model: IOCEnergy, cond: dict, target: torch.Tensor) -> torch.Tensor:
    """Mean exact negative log-likelihood (up to a constant) of the neural term's Gaussian factor,
    ``sum (r / sigma)^2 / 2 + log sigma`` over the T steps and 2 axes, for targets (n, T, 2)."""
    ref, log_sigma = model.cost.neural.encode(cond)
    r = (target - ref) * torch.exp(-log_sigma)
    return (0.5 * r * r + log_sigma).sum((1, 2)).mean()


def nll_anchor(model: IOCEnergy, weight: float):
    """Stage 2's regulariser (the Trainer's ``regulariser``): ``weight`` x :func:`neural_nll` of
    the minibatch's observed controls, which keeps the neural term near stage 1's exact fit while
    the contrast trains the whole energy."""
    def regulariser(batch: dict) -> torch.Tensor:
        return weight * neural_nll(model, batch, neural_target(model, batch))
    return regulariser


def pretrain_neural(model: IOCEnergy, data: dict, *, steps: int = 2000, batch_size: int = 256,
                    lr: float = 3e-3, seed: int = 0, log=None, val=None, eval_every: int = 250) -> list[float]:
    """Stage 1: exact maximum likelihood of the neural term's own factor.

    The neural term alone, ``exp(-sum ((p - nominal - ref) / sigma)^2 / 2)`` over positions p, is
    a Gaussian: its normaliser is ``prod (sqrt(2 pi) sigma)`` whatever the reference, so its
    negative log-likelihood on the observed positions, ``sum (r / sigma)^2 / 2 + log sigma``, is
    exact and needs no sampling. Minimising it with Adam fits the references and scales; the
    whole energy is then trained by analysis by synthesis (:func:`train`).
    ``data``: the Trainer's dict (``x`` = observed z). ``val = (cond, future)``: early stopping --
    every ``eval_every`` steps the references' RMSE (mean over 1-4 s) against the validation
    futures (N,T,2) is measured and the best state is kept (small data sets overfit).
    Returns the loss every 100 steps.
    """
    term = model.cost.neural
    target = torch.cat([neural_target(model, {k: v[i:i + 4096] for k, v in data.items()})
                        for i in range(0, len(data["x"]), 4096)])
    opt = torch.optim.Adam(term.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    n, losses = len(target), []
    best, best_state = math.inf, None

    def check(step):
        nonlocal best, best_state
        with torch.no_grad():
            ref, _ = term.encode(val[0])
        table = rmse_table(val[0]["nominal"] + ref, val[1])
        score = sum(table) / len(table)
        if log:
            log(step, f"validation RMSE of the references {score:.3f}")
        if score < best:
            best, best_state = score, {k: v.detach().clone() for k, v in term.state_dict().items()}

    term.train()
    for step in range(steps):
        if val is not None and step % eval_every == 0:
            check(step)
        idx = torch.randint(0, n, (min(batch_size, n),), generator=gen)
        loss = neural_nll(model, {"hist": data["hist"][idx], "ctx": data["ctx"][idx]}, target[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            losses.append(float(loss.detach()))
            if log:
                log(step, losses[-1])
    if val is not None:
        check(steps)
        term.load_state_dict(best_state)
    return losses



# ----------------------------------------------------------------------------- training

class StartGenerator(nn.Module):
    """The cooperative generator of a model with a ``start_net``: ``forward(latent (n, L), cond)
    -> z (n, T, 2)`` = :func:`ebmtraj.search.generator_start` (closed-form start + correction).
    Holds the model without registering it, so its parameters are the start network's only."""

    def __init__(self, model: IOCEnergy):
        super().__init__()
        if model.start_net is None:
            raise ValueError("the model has no start_net (model.start_net: true)")
        self.net = model.start_net
        self._model = (model,)

    def forward(self, latent: torch.Tensor, cond: dict | None = None) -> torch.Tensor:
        return generator_start(self._model[0], cond, latent=latent)


def stage2_chains(model: IOCEnergy, kind: str, lr: float = 1e-3):
    """The chain initialiser of stage 2: None (``train.chains`` as configured) for 'config', or
    cooperative chains started by the model's generator, taught by the revisions."""
    if kind == "config":
        return None
    if kind == "cooperative":
        return CooperativeChains(StartGenerator(model), model.start_net.latent, lr=lr)
    raise ValueError(f"stage-2 chains must be 'config' or 'cooperative', got {kind!r}")


STAGE2_PARAMS = ("all", "features", "weights", "anchored")


def stage2_parameters(model: IOCEnergy, which: str) -> None:
    """Which energy parameters stage 2 trains: 'all'; 'features' (the feature weights and the
    neural term's scales; its reference network stays at stage 1's fit); or 'weights' (the
    feature weights only: the whole neural term, references and scales, stays at stage 1's exact
    maximum-likelihood fit and anchors the energy's scale, which the noise-free contrast cannot
    set -- it rewards larger scales and smaller weights everywhere); or 'anchored' (everything
    but the neural term's scales: the references and the feature weights learn, the scales stay
    at stage 1's exact fit)."""
    if which not in STAGE2_PARAMS:
        raise ValueError(f"stage-2 params must be one of {', '.join(STAGE2_PARAMS)}, got {which!r}")
    for p in model.cost.neural.net.parameters():
        p.requires_grad_(which in ("all", "anchored"))
    model.cost.neural.log_sigma.requires_grad_(which in ("all", "features"))


@dataclass
class ValidationState:
    best: float = math.inf
    best_step: int = -1
    history: list = field(default_factory=list)


def selection_config(pcfg: PredictConfig) -> PredictConfig:
    """The deterministic predictor models are selected on: the minimum-cost trajectory."""
    return PredictConfig(**{**pcfg.__dict__, "mode": "adam", "samples": 1})


def validation_callback(model: IOCEnergy, cond_val: dict, future_val: torch.Tensor, run_dir: Path,
                        every: int, pcfg: PredictConfig, full_config: dict | None = None):
    """Callback for the Trainer: at step 0 (call it once before training) and every ``every``
    steps, the RMSE of the minimum-cost prediction on the validation rows; the best model (mean
    RMSE over 1-4 s) goes to ``run_dir/model.pt``. The model validated and saved is the
    Trainer's evaluated one (its parameter average when ``train.average`` is set)."""
    state = ValidationState()
    det = selection_config(pcfg)

    def cb(trainer, step, metrics):
        if step % every and (trainer is None or step != trainer.cfg.steps):
            return
        with (trainer.evaluated() if trainer is not None else contextlib.nullcontext()):
            _validate(step, metrics)

    def _validate(step, metrics):
        pred = predict(model, cond_val, det)
        table = rmse_table(positions(pred)[:, 0], future_val)
        score = sum(table) / len(table)
        state.history.append({"step": step, "rmse": table})
        metrics.update({f"val_rmse_{i + 1}s": v for i, v in enumerate(table)})
        if score < state.best and all(math.isfinite(v) for v in table):
            state.best, state.best_step = score, step
            save_model(model, run_dir / MODEL_FILE, full_config, extra={"val_rmse": table, "step": step})
        model.train()

    cb.state = state
    return cb



def train(model: IOCEnergy, data: dict, tcfg: TrainConfig, run_dir: str | Path, *, val=None,
          full_config=None, resume: bool = True, eval_every: int = 50,
          pcfg: PredictConfig | None = None, chains=None, regulariser=None) -> dict:
    """Stage 2: analysis by synthesis on ``data`` (``{"x": z_obs, **cond}``) with the engine's
    Trainer (Langevin on the controls, BPTT through the rollout). ``chains``: the Trainer's chain
    initialiser (None: ``tcfg.chains``; :func:`stage2_chains`); ``regulariser``: added to the
    contrastive loss (:func:`nll_anchor`). With ``tcfg.average`` (an
    exponential moving average of the model's state, kept in the Trainer's checkpoint) the
    averaged model is the one validated and selected.

    ``val = (cond_val, future_val)`` turns on model selection on validation RMSE (model.pt holds
    the best, step 0 included); without it model.pt is the last state. ``full_config`` (a
    dataclass) is saved with the run and in model.pt. Returns a summary dict.
    """
    from ebmcore.config import to_dict

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    pcfg = pcfg or PredictConfig()
    cfg_dict = to_dict(full_config) if full_config is not None else {}
    callbacks = []
    trainer = Trainer(model, data, tcfg, run_dir, resume=resume, callbacks=callbacks,
                      full_config=full_config, chains=chains, regulariser=regulariser)
    if val is not None:
        cb = validation_callback(model, val[0], val[1], run_dir, eval_every, pcfg, cfg_dict)
        callbacks.append(cb)
        trainer.callbacks.append(cb)
        if trainer.step == 0:
            cb(None, 0, {})
    start = time.time()
    last = trainer.fit()
    elapsed = time.time() - start
    summary = {"last": last, "elapsed_s": elapsed, "steps": trainer.step}
    if val is not None:
        summary.update(best_val=cb.state.best, best_step=cb.state.best_step, val_history=cb.state.history)
        if cb.state.best_step < 0:
            save_model(model, run_dir / MODEL_FILE, cfg_dict)
    else:
        save_model(model, run_dir / MODEL_FILE, cfg_dict)
    return summary
