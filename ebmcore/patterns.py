"""Training data for the image and video backbones that ships with the suite.

- Textures: real photographs that scikit-image ships in its wheel (brick, grass, gravel).
- Dynamic texture: a simulated water surface, a damped 2-D wave equation driven by
  random rain drops, rendered with directional shading. No video data ships with the
  suite's dependencies, so this physically based pattern stands in for a real clip: it
  has the stationary, locally coherent motion that dynamic-texture models learn.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

TEXTURES = ("brick", "grass", "gravel")


def load_texture(name: str, size: int) -> torch.Tensor:
    """A real grey-scale texture photograph resized to (1, 1, size, size), values in [0, 1]."""
    import skimage.data

    if name not in TEXTURES:
        raise ValueError(f"unknown texture {name!r}; choose from {TEXTURES}")
    img = getattr(skimage.data, name)().astype(np.float32) / 255.0
    if img.ndim == 3:
        img = img.mean(-1)
    t = torch.from_numpy(img)[None, None]
    return F.interpolate(t, size=(size, size), mode="area").clamp(0, 1)


def wave_field(frames: int, size: int, seed: int = 0, drops_per_frame: float = 0.3,
               burn_in: int = 200, substeps: int = 2) -> torch.Tensor:
    """A rain-on-water video (1, 1, frames, size, size), values in [0, 1].

    Integrates ``u_tt = c^2 lap(u) - gamma u_t`` on a periodic grid with leapfrog
    steps (c*dt/dx = 0.5, stable), adds Gaussian drops at random times and places,
    and renders each frame as the surface's shading along a fixed light direction.
    """
    rng = np.random.default_rng(seed)
    u = np.zeros((size, size))
    u_prev = np.zeros_like(u)
    c2, gamma = 0.25, 0.02
    yy, xx = np.mgrid[0:size, 0:size]
    out = []
    for step in range(burn_in + frames):
        for _ in range(substeps):
            lap = (np.roll(u, 1, 0) + np.roll(u, -1, 0) + np.roll(u, 1, 1) + np.roll(u, -1, 1) - 4 * u)
            u, u_prev = 2 * u - u_prev + c2 * lap - gamma * (u - u_prev), u
        for _ in range(rng.poisson(drops_per_frame)):
            cy, cx = rng.uniform(0, size, 2)
            dy = np.minimum(np.abs(yy - cy), size - np.abs(yy - cy))
            dx = np.minimum(np.abs(xx - cx), size - np.abs(xx - cx))
            u += rng.uniform(0.5, 1.5) * np.exp(-(dx**2 + dy**2) / (2 * 1.5**2))
        if step >= burn_in:
            gy, gx = np.gradient(u)
            out.append(0.5 + 0.8 * (gx + 0.5 * gy))
    video = np.clip(np.stack(out), 0.0, 1.0).astype(np.float32)
    return torch.from_numpy(video)[None, None]
