"""Interpolation between two noise vectors through a generative PointNet's noise-free chain.

Each strip is ``M_theta(z_t)`` along a path from z0 to z1 (:func:`noise_path`), with the run's
chain (:func:`ebm3d.tasks.synthesis.chain_settings`, noise off).
"""
from __future__ import annotations

import math

import torch

from ebmcore.sampling import langevin

from ebm3d.config import PointNetExperiment
from ebm3d.models.pointnet import GenerativePointNet
from ebm3d.tasks.synthesis import chain_settings, initial_noise


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
