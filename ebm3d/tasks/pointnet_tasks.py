"""What a trained generative PointNet does: synthesis, reconstruction and interpolation.

All three run the short-run chain the model was trained with, ``x = M_theta(z)``: Langevin from
``z ~ N(0, std^2 I)`` (``train.chains``) for ``train.sampler.steps`` steps of size
``train.sampler.step_size``, clamped to ``train.sampler.clamp``.

- :func:`synthesise`: fresh chains (noise on as in training, or off).
- :func:`reconstruct`: the noise-free chain is a deterministic generator; its initial noise z is
  optimised (Adam) so that ``M_theta(z)`` matches a given cloud point for point, back-propagating
  through the unrolled chain (:func:`ebmcore.sampling.langevin` with ``differentiable=True``). The
  error is the paper's: mean squared error over points and coordinates, times 1000.
- :func:`interpolate`: ``M_theta(z_t)`` along a path between two noise vectors.
"""
from __future__ import annotations

import contextlib
import math
import warnings
from pathlib import Path

import torch

from ebmcore.sampling import langevin, scaled_schedule

from ebm3d.models.pointnet import GenerativePointNet
from ebm3d.tasks.pointnet_config import PointNetExperiment


def chain_settings(cfg: PointNetExperiment, noise: str | None = None, steps: int | None = None,
                   step_size: float | None = None, n_points: int | None = None) -> dict:
    """Keyword arguments of :func:`ebmcore.sampling.langevin` for the run's chain.

    The noise is the training sampler's schedule times its ``noise_scale`` (switched off when the
    run trained with ``noise_off_after``), unless ``noise`` names another schedule.

    ``n_points``: the chain's point count, when it differs from the training one. The energy
    averages over the points, so each point's gradient shrinks as 1/N; the drift
    ``step_size^2 / 2 * grad`` per point stays the same when ``step_size`` grows by
    sqrt(N / N_train), and the noise per step stays the same when the noise scale shrinks by
    the same factor. Without this a model trained on 256 points barely moves 1024.
    """
    s = cfg.train.sampler
    if noise is None:
        noise = "none" if s.noise_off_after is not None else s.noise
    delta = s.step_size if step_size is None else step_size
    ratio = 1.0 if n_points is None else math.sqrt(n_points / cfg.train_points)
    return {"steps": s.steps if steps is None else steps,
            "step_size": delta * ratio,
            "noise": scaled_schedule(noise, s.noise_scale / ratio),
            "clamp": s.clamp}


def initial_noise(cfg: PointNetExperiment, n: int, n_points: int, generator: torch.Generator) -> torch.Tensor:
    """z (n, n_points, 3) ~ N(mean, std^2) with the run's chain settings."""
    c = cfg.train.chains
    return c.mean + c.std * torch.randn(n, n_points, 3, generator=generator)


def synthesise(model: GenerativePointNet, cfg: PointNetExperiment, n: int, *, n_points: int | None = None,
               seed: int = 0, noise: str | None = None, batch_size: int = 50) -> torch.Tensor:
    """``n`` fresh samples (n, n_points, 3) from short-run chains (seeded), with the Langevin steps
    and step size of ``cfg.synthesis`` (None there: the training chain's)."""
    g = torch.Generator().manual_seed(seed)
    n_points = n_points or cfg.train_points
    sc = cfg.synthesis
    kwargs = chain_settings(cfg, noise, steps=sc.steps, step_size=sc.step_size, n_points=n_points)
    out = []
    for start in range(0, n, batch_size):
        z = initial_noise(cfg, min(batch_size, n - start), n_points, g)
        out.append(langevin(model.energy, z, generator=g, **kwargs))
    return torch.cat(out)


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


def noise_path(z0: torch.Tensor, z1: torch.Tensor, n_steps: int, path: str = "spherical") -> torch.Tensor:
    """(n_steps, ...) noise vectors from z0 to z1 (both ends included).

    ``spherical``: cos(pi t / 2) z0 + sin(pi t / 2) z1, whose entries keep the noise's variance
    for independent Gaussian z0, z1; ``linear``: (1 - t) z0 + t z1.
    """
    t = torch.linspace(0, 1, n_steps).view(-1, *([1] * z0.dim()))
    if path == "spherical":
        return torch.cos(t * math.pi / 2) * z0 + torch.sin(t * math.pi / 2) * z1
    if path == "linear":
        return (1 - t) * z0 + t * z1
    raise ValueError(f"path must be 'spherical' or 'linear', got {path!r}")


def interpolate(model: GenerativePointNet, cfg: PointNetExperiment, seed: int = 0,
                n_points: int | None = None) -> torch.Tensor:
    """Strips (n_pairs, n_steps, N, 3): the noise-free chain along a path between two noises."""
    ic = cfg.interpolation
    g = torch.Generator().manual_seed(seed)
    n_points = n_points or cfg.train_points
    kwargs = chain_settings(cfg, noise="none", n_points=n_points)
    strips = []
    for _ in range(ic.n_pairs):
        z0, z1 = (initial_noise(cfg, 1, n_points, g)[0] for _ in range(2))
        strips.append(langevin(model.energy, noise_path(z0, z1, ic.n_steps, ic.path), **kwargs))
    return torch.stack(strips)


def render(obj, path: Path, **kwargs) -> Path | None:
    """Render points (a batch, or rows of clouds) to a PNG with the Open3D viewer; None (and a
    warning) where Open3D cannot render here."""
    try:
        from ebm3d.viz import render_png

        return render_png(obj, path, **kwargs)
    except Exception as err:  # a missing display or library must not lose a finished run
        warnings.warn(f"no Open3D render for {path.name}: {type(err).__name__}: {err}")
        return None
