"""A small supervised volumetric classifier for the inception score.

(B, 1, R, R, R) occupancy -> average-pool by ``input_pool`` (32^3 -> 16^3 by default, which keeps
it cheap on a CPU) -> for each width c: Conv3d(k3, pad 1) BatchNorm ReLU MaxPool(2) ->
Linear(hidden) ReLU Dropout -> Linear(n_classes) logits. With the defaults on 32^3 the sizes go
32 -> 16 -> 8 -> 4 (x 32 channels).
"""
from __future__ import annotations

import torch
from torch import nn


class ReferenceClassifier(nn.Module):
    def __init__(self, n_classes: int, resolution: int = 32, channels: tuple[int, ...] = (16, 32),
                 hidden: int = 128, dropout: float = 0.4, input_pool: int = 2):
        super().__init__()
        layers: list[nn.Module] = [nn.AvgPool3d(input_pool)] if input_pool > 1 else []
        c_in = 1
        for c in channels:
            layers += [nn.Conv3d(c_in, c, 3, padding=1), nn.BatchNorm3d(c), nn.ReLU(), nn.MaxPool3d(2)]
            c_in = c
        self.features = nn.Sequential(*layers)
        with torch.no_grad():
            n_feat = self.features.eval()(torch.zeros(1, 1, resolution, resolution, resolution)).numel()
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(n_feat, hidden), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(hidden, n_classes))
        self.resolution, self.n_classes = resolution, n_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, n_classes) of occupancy grids (B, 1, R, R, R) in [0, 1]."""
        R = self.resolution
        if x.dim() != 5 or tuple(x.shape[1:]) != (1, R, R, R):
            raise ValueError(f"ReferenceClassifier expects (B, 1, {R}, {R}, {R}), got {tuple(x.shape)}")
        return self.head(self.features(x))
