"""Spatial-temporal generative ConvNet: an energy over videos (Xie, Zhu, Wu, CVPR 2017)."""
from __future__ import annotations

from torch import nn

from ..energy import EnergyModel
from .image import conv_stack


class SpatialTemporalConvNet(EnergyModel):
    """Energy over videos x (B, C, T, H, W) with 3-D (time x space) convolutions.

    ``f_theta(x)`` sums the top layer's responses over time and space, so the model
    is stationary in both: a dynamic texture of any length and size.
    """

    def __init__(self, channels: int = 1, widths=(32, 64), kernels=(5, 3), strides=(2, 2),
                 sigma_ref: float | None = 1.0):
        super().__init__(sigma_ref)
        self.features = conv_stack(nn.Conv3d, channels, widths, kernels, strides)
        self.channels = channels

    def score(self, x, cond=None):
        if x.dim() != 5 or x.shape[1] != self.channels:
            raise ValueError(f"SpatialTemporalConvNet expects (B, {self.channels}, T, H, W), got {tuple(x.shape)}")
        return self.features(x).flatten(1).sum(1)
