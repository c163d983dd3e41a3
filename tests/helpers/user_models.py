"""Modules a user might point `model._target_` at: one that exports, and two that cannot."""

from __future__ import annotations

import torch
from torch import nn


class UserMLP(nn.Module):
    """Not one of ours: a plain MLP, to show any (N,1,28,28) -> (N,10) module goes through export."""

    def __init__(self, hidden: int = 32):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def forward(self, x):
        return self.net(x)


class DataDependentBranch(nn.Module):
    """Python control flow on a tensor's value: torch.export cannot trace it (step 1 of 3)."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(784, 10)

    def forward(self, x):
        y = self.linear(x.flatten(1))
        return y if y.sum() > 0 else -y


class UnsupportedOp(nn.Module):
    """An op with no ONNX translation (eigenvalues): fails in the ONNX conversion (step 3 of 3)."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(784, 10)

    def forward(self, x):
        y = self.linear(x.flatten(1))
        return torch.linalg.eigvals(y.T @ y).real.expand(x.shape[0], 10)


class DiesOnRank1(nn.Module):
    """A worker that crashes: rank 1 exits abruptly on its 5th training step (a lost machine)."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(784, 10)
        self.steps = 0

    def forward(self, x):
        import os

        self.steps += self.training
        if self.training and os.environ.get("RANK") == "1" and self.steps == 5:
            os._exit(17)
        return self.linear(x.flatten(1))


class ResidualGeluNet(nn.Module):
    """The README's bring-your-own-model example: nothing like our CNNs. A stem, one residual block of
    depthwise-separable convolutions, GELU (exported as Erf, which INT8 leaves in float) and a global-pool
    head. Any (N, 1, 28, 28) -> (N, 10) module works the same way."""

    def __init__(self, channels: int = 16):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, channels, 3, stride=2, padding=1, bias=False),
                                  nn.BatchNorm2d(channels), nn.GELU())
        self.block = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False),  # depthwise
            nn.BatchNorm2d(channels), nn.GELU(),
            nn.Conv2d(channels, channels, 1, bias=False),  # pointwise
            nn.BatchNorm2d(channels),
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 10))

    def forward(self, x):
        x = self.stem(x)
        return self.head(nn.functional.gelu(x + self.block(x)))
