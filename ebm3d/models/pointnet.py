"""The generative PointNet: a permutation-invariant energy on point sets.

The score ``f_theta`` of a point set ``x`` (B, N, 3) is

    h_0 = x^T (B, 3, N);  h_l = ReLU(LN_points(Conv1d_1x1(h_{l-1})))   for each width in ``widths``
    f_theta(x) = MLP(mean over points of h_L)                           (``mlp`` widths, ReLU, -> 1)

and the energy is ``E(x) = -f_theta(x) + |x|^2 / (2 sigma_ref^2)`` (:class:`ebmcore.energy.EnergyModel`).
The published network (Xie et al., CVPR 2021) has widths 64, 64, 128, 256, 1024, an MLP 512, 256,
128, 64 and sigma_ref 0.3 (:data:`PAPER`); :data:`CPU_DEFAULT` is a narrower one that trains on a
2-core CPU.

``LN_points`` normalises every channel of every cloud over its points (zero mean, unit variance
over the N points) and then applies a per-channel scale and shift. The published code used
``LayerNorm(num_point)``, whose affine parameters belong to point *positions*; that ties the
network to one point count and breaks exact permutation invariance, so here the affine part is
per channel. With it, a permutation of the points permutes every hidden row the same way, the
average pool removes the order, and the input-gradient is permuted along (tested).

Two consequences of normalising over points are worth knowing:

- the network accepts any point count N >= 2 (the robustness tests feed it clouds with points
  removed or outliers added);
- the first layer is affine in ``x`` and its normalisation removes each channel's mean and scale,
  so ``f_theta`` is invariant to translating a cloud and to scaling it uniformly. Position and
  overall size of a sample are therefore set by the chain's initial noise and the Gaussian
  reference, not by ``f_theta``; generation metrics compare shapes after the same per-shape
  normalisation (see :mod:`ebm3d.tasks.pointnet_eval`).

:meth:`GenerativePointNet.features` gives the classification descriptor: every hidden layer's
per-point features max-pooled over the points (the paper pools the last one).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ebmcore.energy import EnergyModel
from ebmcore.errors import ConfigError

#: The published energy network (REFERENCE.md section 3).
PAPER = dict(widths=[64, 64, 128, 256, 1024], mlp=[512, 256, 128, 64], sigma_ref=0.3, norm="layer")
#: The CPU default of configs/pointnet_*_cpu.yaml: the same structure, about 30x fewer
#: multiply-adds per point, and no reference term (those configs sample with a large step, under
#: which the reference term alone would shrink every sample; see docs/ebm3d_pointnet.md).
CPU_DEFAULT = dict(widths=[32, 64, 128], mlp=[64, 32], sigma_ref=None, norm="layer")

NORMS = ("layer", "none")


@dataclass
class PointNetSpec:
    """Architecture of the point energy (defaults: the published network).

    widths: output channels of the per-point 1x1 convolutions (each followed by the point
        normalisation and ReLU).
    mlp: hidden widths of the MLP on the average-pooled features (ReLU); a last linear layer
        gives the scalar score.
    sigma_ref: standard deviation of the Gaussian reference (None: no reference term).
    norm: ``"layer"`` (normalisation over the points, per channel) or ``"none"``.
    eps: added to the variance in the normalisation.
    """

    widths: list[int] = field(default_factory=lambda: list(PAPER["widths"]))
    mlp: list[int] = field(default_factory=lambda: list(PAPER["mlp"]))
    sigma_ref: float | None = 0.3
    norm: str = "layer"
    eps: float = 1e-5

    def validate(self, prefix: str = "") -> "PointNetSpec":
        if not self.widths or any(w < 1 for w in self.widths):
            raise ConfigError(f"{prefix}widths: a non-empty list of positive widths, got {self.widths}")
        if any(w < 1 for w in self.mlp):
            raise ConfigError(f"{prefix}mlp: every width must be >= 1, got {self.mlp}")
        if self.sigma_ref is not None and not self.sigma_ref > 0:
            raise ConfigError(f"{prefix}sigma_ref: must be positive, got {self.sigma_ref}")
        if self.norm not in NORMS:
            raise ConfigError(f"{prefix}norm: {self.norm!r} is not one of {list(NORMS)}")
        if not self.eps > 0:
            raise ConfigError(f"{prefix}eps: must be positive, got {self.eps}")
        return self

    def macs_per_point(self) -> int:
        """Multiply-adds of the per-point layers for one point (the dominant cost)."""
        dims = [3, *self.widths]
        return sum(a * b for a, b in zip(dims, dims[1:]))


class PointConv(nn.Conv1d):
    """A 1x1 Conv1d on (B, C_in, N) -> (B, C_out, N), computed as one batched matrix product
    (about 1.5x faster on the CPU than the convolution kernel for kernel size 1)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.matmul(self.weight.squeeze(-1), h) + self.bias.unsqueeze(-1)


class PointNorm(nn.Module):
    """Normalise (B, C, N) features over the N points of each cloud and channel, then scale and
    shift per channel. Permutation-equivariant in N."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels, 1))
        self.bias = nn.Parameter(torch.zeros(channels, 1))
        self.eps = eps

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(h, h.shape[-1:], eps=self.eps) * self.weight + self.bias


class GenerativePointNet(EnergyModel):
    """The generative PointNet energy on point sets (B, N, 3), N >= 2.

    ``score(x)`` is f_theta (B,); ``energy(x)`` adds |x|^2 / (2 sigma_ref^2).
    """

    def __init__(self, spec: PointNetSpec | None = None):
        spec = (spec or PointNetSpec()).validate()
        super().__init__(spec.sigma_ref)
        self.spec = spec
        convs, norms, prev = [], [], 3
        for width in spec.widths:
            convs.append(PointConv(prev, width))
            norms.append(PointNorm(width, spec.eps) if spec.norm == "layer" else nn.Identity())
            prev = width
        self.convs, self.norms = nn.ModuleList(convs), nn.ModuleList(norms)
        layers = []
        for width in spec.mlp:
            layers += [nn.Linear(prev, width), nn.ReLU()]
            prev = width
        layers.append(nn.Linear(prev, 1))
        self.head = nn.Sequential(*layers)

    @staticmethod
    def _check(x: torch.Tensor) -> None:
        if x.dim() != 3 or x.shape[-1] != 3 or x.shape[1] < 2:
            raise ValueError(f"GenerativePointNet expects points (B, N, 3) with N >= 2, got {tuple(x.shape)}")

    def point_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every hidden layer's per-point features, each (B, C_l, N)."""
        self._check(x)
        h, out = x.transpose(1, 2), []
        for conv, norm in zip(self.convs, self.norms):
            h = F.relu(norm(conv(h)))
            out.append(h)
        return out

    def score(self, x: torch.Tensor, cond=None) -> torch.Tensor:
        h = self.point_features(x)[-1]
        return self.head(h.mean(dim=2)).squeeze(1)

    def features(self, x: torch.Tensor, layers: str = "all") -> torch.Tensor:
        """Classification descriptor (B, D): per-point features max-pooled over the points.

        layers: ``"all"`` concatenates every hidden layer (D = sum(widths)); ``"last"`` keeps the
        last one (D = widths[-1], the published choice).
        """
        feats = self.point_features(x)
        if layers == "last":
            feats = feats[-1:]
        elif layers != "all":
            raise ValueError(f"layers must be 'all' or 'last', got {layers!r}")
        return torch.cat([f.amax(dim=2) for f in feats], dim=1)
