"""Writing images and videos as PNG grids and GIFs (no Open3D needed)."""
from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch


def to_uint8(img: torch.Tensor | np.ndarray) -> np.ndarray:
    """Values in [0, 1] (clipped) to uint8."""
    arr = img.detach().cpu().numpy() if torch.is_tensor(img) else np.asarray(img)
    return (np.clip(arr, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def grid(images: torch.Tensor, ncols: int | None = None, pad: int = 2) -> np.ndarray:
    """Tile images (N, C, H, W) with values in [0, 1] into one (rows*H, cols*W[, C]) uint8 array."""
    n, c, h, w = images.shape
    ncols = ncols or int(np.ceil(np.sqrt(n)))
    nrows = int(np.ceil(n / ncols))
    canvas = np.ones((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), dtype=np.uint8) * 255
    for i, img in enumerate(to_uint8(images)):
        r, q = divmod(i, ncols)
        canvas[pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = img.transpose(1, 2, 0)
    return canvas[..., 0] if c == 1 else canvas


def save_grid(images: torch.Tensor, path: str | Path, ncols: int | None = None) -> Path:
    """Save images (N, C, H, W) in [0, 1] as one PNG grid."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, grid(images, ncols))
    return path


def save_gif(videos: torch.Tensor, path: str | Path, fps: int = 10) -> Path:
    """Save videos (N, C, T, H, W) in [0, 1] as one GIF whose frames tile the N videos."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = [grid(videos[:, :, t]) for t in range(videos.shape[2])]
    iio.imwrite(path, np.stack(frames), duration=1000 / fps, loop=0)
    return path
