"""Reconstruction of point clouds through a generative PointNet's short-run chain.

The noise-free chain ``x = M_theta(z)`` (Langevin from ``z ~ N(0, std^2 I)`` with the run's
sampler, :func:`ebm3d.tasks.synthesis.chain_settings`) is a deterministic generator; its initial
noise z is optimised (Adam) so that ``M_theta(z)`` matches a given cloud point for point,
back-propagating through the unrolled chain (:func:`ebmcore.sampling.langevin` with
``differentiable=True``). The error is the paper's: mean squared error over points and
coordinates, times 1000.
"""
from __future__ import annotations

import contextlib
import math

import torch

from ebmcore.sampling import langevin

from ebm3d.config import PointNetExperiment
from ebm3d.models.pointnet import GenerativePointNet
from ebm3d.tasks.synthesis import chain_settings, initial_noise


@contextlib.contextmanager
def _frozen(model: torch.nn.Module):
    """The model's parameters need no gradient inside (only the chain's start is optimised)."""
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)


def reconstruction_error(x: torch.Tensor, target: torch.Tensor, loss: str = "mse") -> torch.Tensor:
    """Per-cloud error (B,), differentiable: ``mse`` is the mean squared error over points and
    coordinates, point i against point i (the paper's); ``chamfer`` the squared-distance Chamfer
    distance, blind to point order."""
    if loss == "mse":
        return (x - target).pow(2).mean(dim=(1, 2))
    if loss == "chamfer":
        d2 = torch.cdist(x, target).pow(2)
        return d2.amin(dim=2).mean(dim=1) + d2.amin(dim=1).mean(dim=1)
    raise ValueError(f"loss must be 'mse' or 'chamfer', got {loss!r}")


def reconstruct_batch(model: GenerativePointNet, cfg: PointNetExperiment, target: torch.Tensor,
                      generator: torch.Generator) -> dict:
    """Optimise z for one batch of target clouds (B, N, 3).

    The error optimised is ``reconstruction.loss`` (see :func:`reconstruction_error`). Each cloud
    keeps the z of its lowest error over the iterations (the objective is not smooth:
    ReLUs and the clamp make Adam's last iterate slightly worse than its best at times).
    Returns ``z`` (B, N, 3), ``reconstruction`` = M(z) (B, N, 3), ``initial`` = M(z_0), and the
    per-iteration error (``history`` (B, iterations + 1); entry k is the error of the z before
    update k, the last entry the error of the kept z).
    """
    rc = cfg.reconstruction
    kwargs = chain_settings(cfg, noise="none", n_points=target.shape[1])
    z0 = initial_noise(cfg, target.shape[0], target.shape[1], generator)
    z = z0.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=rc.lr)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=rc.lr_decay)
    history = []
    best_err = torch.full((target.shape[0],), math.inf)
    best_z = z.detach().clone()
    with _frozen(model):
        for _ in range(rc.iterations):
            x = langevin(model.energy, z, differentiable=True, **kwargs)
            err = reconstruction_error(x, target, rc.loss)
            history.append(err.detach())
            better = err.detach() < best_err
            best_err = torch.where(better, err.detach(), best_err)
            best_z[better] = z.detach()[better]
            opt.zero_grad(set_to_none=True)
            err.sum().backward()
            opt.step()
            sched.step()
        initial = langevin(model.energy, z0, **kwargs)
        last = langevin(model.energy, z.detach(), **kwargs)
        last_err = reconstruction_error(last, target, rc.loss)
        better = last_err < best_err
        best_z[better] = z.detach()[better]
        final = langevin(model.energy, best_z, **kwargs)
    history.append(reconstruction_error(final, target, rc.loss))
    return {"z": best_z, "reconstruction": final.detach(), "initial": initial.detach(),
            "history": torch.stack(history, dim=1)}


def reconstruct(model: GenerativePointNet, cfg: PointNetExperiment, targets: torch.Tensor, seed: int = 0,
                progress=None) -> tuple[dict, dict]:
    """Reconstruct every cloud of ``targets`` (n, N, 3); returns (report, arrays).

    report: MSE x 1000 of the optimised chain (``mse_x1000``, mean and per cloud) and of the chain
    from the first z (``initial_mse_x1000``), the Chamfer distance x 1000 (squared, order-free) of
    both, and the mean curve of the optimised loss x 1000 over the iterations (``curve_x1000``).
    arrays: ``target``, ``reconstruction``, ``initial``, ``z`` for the viewer.
    """
    g = torch.Generator().manual_seed(seed)
    bs = cfg.reconstruction.batch_size
    parts = []
    for start in range(0, len(targets), bs):
        parts.append(reconstruct_batch(model, cfg, targets[start:start + bs], g))
        if progress:
            progress(min(start + bs, len(targets)), len(targets))
    history = torch.cat([p["history"] for p in parts])  # (n, iterations + 1), in the optimised loss
    arrays = {k: torch.cat([p[k] for p in parts]) for k in ("z", "reconstruction", "initial")}
    arrays["target"] = targets
    measured = {f"{loss}_{k}": reconstruction_error(arrays[k], targets, loss) * 1000
                for loss in ("mse", "chamfer") for k in ("reconstruction", "initial")}
    final = measured["mse_reconstruction"]
    report = {"loss": cfg.reconstruction.loss,
              "mse_x1000": float(final.mean()), "mse_x1000_std": float(final.std()) if len(final) > 1 else 0.0,
              "initial_mse_x1000": float(measured["mse_initial"].mean()),
              "chamfer_x1000": float(measured["chamfer_reconstruction"].mean()),
              "initial_chamfer_x1000": float(measured["chamfer_initial"].mean()),
              "per_example_mse_x1000": [round(float(v), 4) for v in final],
              "curve_x1000": [round(float(v) * 1000, 4) for v in history.mean(0)],
              "n_examples": len(targets), "n_points": int(targets.shape[1])}
    return report, arrays
