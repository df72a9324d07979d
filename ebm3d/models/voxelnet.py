"""The generative VoxelNet: a 3D ConvNet energy on occupancy grids.

The energy of a (centred) grid ``x`` (B, 1, R, R, R) is

    E(x) = -f_theta(x) + |x|^2 / (2 sigma_ref^2)

with ``f_theta`` a stack of strided 3D convolutions with ReLU followed by one convolution
whose kernel covers the whole remaining volume, giving a scalar per shape. The published
network (Xie et al., TPAMI 2020) on 32^3 is Conv3d(1->200, k16, s3) ReLU, Conv3d(200->100, k6,
s2) ReLU, full-volume conv to a scalar, weights N(0, 0.001^2), sigma_ref 0.5; the spatial sizes
go 32 -> 11 -> 6 -> 1 with TensorFlow's "SAME" padding, which is reproduced here
(:func:`same_padding`). :data:`CPU_DEFAULT` keeps that geometry (32 -> 11 -> 6 -> 1) with
smaller kernels and fewer channels, about 54x cheaper per forward pass.

The model also carries the training mean (a (1, 1, R, R, R) buffer): the paper trains on
occupancy minus the training mean, so :meth:`VoxelNet.centre` / :meth:`VoxelNet.uncentre` convert
between occupancy in [0, 1] and the model's space. The mean is per voxel (``centring='voxel'``)
or one number broadcast over the grid (``'scalar'``, the official code's).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ebmcore.energy import EnergyModel
from ebmcore.errors import ConfigError


@dataclass
class VoxelNetSpec:
    """Architecture of the energy network.

    channels/kernels/strides: one entry per hidden conv layer (each followed by ReLU).
    resolution: grid size R of the input (B, 1, R, R, R).
    sigma_ref: standard deviation of the Gaussian reference (None: no reference term).
    init_std: weights start as N(0, init_std^2), biases at 0.
    feature_pool: the classification features max-pool each hidden layer to this size cubed.
    centring: 'voxel' (per-voxel training mean) or 'scalar' (one mean over all voxels).
    feature_pooling: 'adaptive' (to feature_pool^3) or 'official' (windows OFFICIAL_FEATURE_POOL,
        stride = window, "SAME" padding).
    """

    channels: list[int] = field(default_factory=lambda: [32, 64])
    kernels: list[int] = field(default_factory=lambda: [6, 4])
    strides: list[int] = field(default_factory=lambda: [3, 2])
    resolution: int = 32
    sigma_ref: float | None = 0.5
    init_std: float = 0.001
    feature_pool: int = 3
    centring: str = "voxel"
    feature_pooling: str = "adaptive"

    def validate(self, prefix: str = "") -> "VoxelNetSpec":
        n = len(self.channels)
        if n == 0 or len(self.kernels) != n or len(self.strides) != n:
            raise ConfigError(f"{prefix}channels, kernels and strides must be non-empty lists of one length, "
                              f"got {self.channels}, {self.kernels}, {self.strides}")
        for name, values in (("channels", self.channels), ("kernels", self.kernels), ("strides", self.strides)):
            if any(v < 1 for v in values):
                raise ConfigError(f"{prefix}{name}: every entry must be >= 1, got {values}")
        if self.resolution < 2:
            raise ConfigError(f"{prefix}resolution: must be >= 2, got {self.resolution}")
        if self.sigma_ref is not None and not self.sigma_ref > 0:
            raise ConfigError(f"{prefix}sigma_ref: must be positive, got {self.sigma_ref}")
        if not self.init_std > 0:
            raise ConfigError(f"{prefix}init_std: must be positive, got {self.init_std}")
        if self.feature_pool < 1:
            raise ConfigError(f"{prefix}feature_pool: must be >= 1, got {self.feature_pool}")
        if self.centring not in ("voxel", "scalar"):
            raise ConfigError(f"{prefix}centring: 'voxel' or 'scalar', got {self.centring!r}")
        if self.feature_pooling not in ("adaptive", "official"):
            raise ConfigError(f"{prefix}feature_pooling: 'adaptive' or 'official', got {self.feature_pooling!r}")
        if self.feature_pooling == "official" and n != len(OFFICIAL_FEATURE_POOL):
            raise ConfigError(f"{prefix}feature_pooling: 'official' pools {len(OFFICIAL_FEATURE_POOL)} hidden "
                              f"layers, the network has {n}")
        sizes = layer_sizes(self.resolution, self.strides)
        if sizes[-1] < 1:
            raise ConfigError(f"{prefix}resolution {self.resolution} is too small for strides {self.strides}")
        return self


#: Max-pooling windows (= strides) of conv1 and conv2 for the official classification features.
OFFICIAL_FEATURE_POOL = (4, 2)
#: The network of the paper on 32^3 (REFERENCE.md §2).
PAPER = dict(channels=[200, 100], kernels=[16, 6], strides=[3, 2], sigma_ref=0.5, init_std=0.001)
#: The CPU default: the paper's layer geometry with smaller kernels and channels.
CPU_DEFAULT = dict(channels=[32, 64], kernels=[6, 4], strides=[3, 2], sigma_ref=0.5, init_std=0.001)


def layer_sizes(resolution: int, strides: list[int]) -> list[int]:
    """Spatial size after each "SAME"-padded strided layer: ``ceil(size / stride)``."""
    sizes, size = [], resolution
    for s in strides:
        size = math.ceil(size / s)
        sizes.append(size)
    return sizes


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding (before, after) of one axis; the extra cell goes after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def max_pool_same(x: torch.Tensor, window: int) -> torch.Tensor:
    """3D max-pooling of (B, C, S, S, S) with window = stride and TensorFlow "SAME" padding:
    (B, C, ceil(S / window), ...); the padded cells never win (they are -inf)."""
    before, after = same_padding(x.shape[-1], window, window)
    return F.max_pool3d(F.pad(x, (before, after) * 3, value=-math.inf), window)


class SameConv3d(nn.Module):
    """Conv3d with TensorFlow "SAME" padding for a known input size (stride may exceed 1)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, in_size: int):
        super().__init__()
        self.conv = nn.Conv3d(in_ch, out_ch, kernel, stride)
        before, after = same_padding(in_size, kernel, stride)
        self.pad = (before, after) * 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, self.pad))


class VoxelNet(EnergyModel):
    """The generative VoxelNet energy on (B, 1, R, R, R) centred occupancy grids.

    ``score(x)`` is f_theta, shape (B,); ``energy(x)`` adds the Gaussian reference term.
    ``features(x)`` is the classification descriptor: each hidden layer's ReLU output
    max-pooled (to ``feature_pool``^3 cells, or with the official windows), flattened and
    concatenated (27 * sum(channels) numbers with the default pool of 3; 8100 for the paper's
    net either way).
    """

    def __init__(self, spec: VoxelNetSpec | None = None, mean: torch.Tensor | None = None):
        spec = (spec or VoxelNetSpec()).validate()
        super().__init__(spec.sigma_ref)
        self.spec = spec
        sizes = [spec.resolution] + layer_sizes(spec.resolution, spec.strides)
        chans = [1] + list(spec.channels)
        self.convs = nn.ModuleList(
            SameConv3d(chans[i], chans[i + 1], spec.kernels[i], spec.strides[i], sizes[i])
            for i in range(len(spec.channels)))
        self.head = nn.Conv3d(chans[-1], 1, sizes[-1])  # full-volume convolution -> 1x1x1
        self.sizes = sizes
        R = spec.resolution
        self.register_buffer("mean", torch.zeros(1, 1, R, R, R) if mean is None else mean.reshape(1, 1, R, R, R).float())
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.normal_(m.weight, 0.0, self.spec.init_std)
                nn.init.zeros_(m.bias)

    # ------------------------------------------------------------------ data space
    def centre(self, occupancy: torch.Tensor) -> torch.Tensor:
        """Occupancy in [0, 1] (B, 1, R, R, R) -> the model's input (minus the training mean)."""
        return occupancy.to(self.mean.dtype) - self.mean

    def uncentre(self, x: torch.Tensor) -> torch.Tensor:
        """The model's space -> occupancy values (not clipped)."""
        return x + self.mean

    def set_mean(self, occupancy: torch.Tensor) -> None:
        """Store the mean of training grids (N, 1, R, R, R): per voxel, or one number broadcast
        over the grid when ``spec.centring`` is 'scalar'."""
        mean = occupancy.float().mean(0, keepdim=True)
        self.mean.copy_(mean.mean().expand_as(mean) if self.spec.centring == "scalar" else mean)

    def occupancy_bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The occupancy range [0, 1] in the model's space: (low, high), each (1, 1, R, R, R)."""
        return self.centre(torch.zeros_like(self.mean)), self.centre(torch.ones_like(self.mean))

    # ------------------------------------------------------------------ energy
    def _check(self, x: torch.Tensor) -> None:
        R = self.spec.resolution
        if x.dim() != 5 or tuple(x.shape[1:]) != (1, R, R, R):
            raise ValueError(f"VoxelNet expects (B, 1, {R}, {R}, {R}) grids, got {tuple(x.shape)}")

    def hidden(self, x: torch.Tensor) -> list[torch.Tensor]:
        """ReLU outputs of every hidden layer, (B, C_i, S_i, S_i, S_i)."""
        self._check(x)
        outs = []
        for conv in self.convs:
            x = torch.relu(conv(x))
            outs.append(x)
        return outs

    def score(self, x: torch.Tensor, cond=None) -> torch.Tensor:
        return self.head(self.hidden(x)[-1]).flatten(1).sum(1)

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Descriptor (B, sum_i C_i * feature_pool^3) of centred grids ``x``."""
        hidden = self.hidden(x)
        if self.spec.feature_pooling == "official":
            pooled = [max_pool_same(h, k) for h, k in zip(hidden, OFFICIAL_FEATURE_POOL)]
        else:
            pooled = [F.adaptive_max_pool3d(h, self.spec.feature_pool) for h in hidden]
        return torch.cat([p.flatten(1) for p in pooled], dim=1)

    def flops_per_forward(self) -> int:
        """Multiply-adds x 2 of one forward pass on one grid (convolutions only)."""
        total, chans = 0, [1] + list(self.spec.channels)
        for i, k in enumerate(self.spec.kernels):
            total += 2 * self.sizes[i + 1] ** 3 * chans[i + 1] * chans[i] * k**3
        total += 2 * chans[-1] * self.sizes[-1] ** 3
        return total
