"""Generative ConvNet: an energy over images (Xie, Lu, Zhu, Wu, ICML 2016)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..energy import EnergyModel


def conv_stack(conv, in_channels: int, widths: Sequence[int], kernels: Sequence[int], strides: Sequence[int]):
    """Conv -> ReLU layers with 'same'-style padding (k // 2); ``conv`` is nn.Conv2d or nn.Conv3d."""
    if not (len(widths) == len(kernels) == len(strides)):
        raise ValueError("widths, kernels and strides need one entry per layer")
    layers, c = [], in_channels
    for width, k, s in zip(widths, kernels, strides):
        layers += [conv(c, width, k, stride=s, padding=k // 2), nn.ReLU()]
        c = width
    return nn.Sequential(*layers)


class GenerativeConvNet(EnergyModel):
    """Energy over images x (B, C, H, W).

    ``f_theta(x)`` is the sum over all positions and channels of the top layer's
    responses, so the model is spatially stationary: the right form for textures,
    and it works for any image size.
    """

    def __init__(self, channels: int = 1, widths=(32, 64), kernels=(7, 5), strides=(2, 2),
                 sigma_ref: float | None = 1.0):
        super().__init__(sigma_ref)
        self.features = conv_stack(nn.Conv2d, channels, widths, kernels, strides)
        self.channels = channels

    def score(self, x, cond=None):
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"GenerativeConvNet expects (B, {self.channels}, H, W), got {tuple(x.shape)}")
        return self.features(x).flatten(1).sum(1)
