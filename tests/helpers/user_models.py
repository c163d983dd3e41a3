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


class InvertedResidualNet(nn.Module):
    """MobileNetV2-style: inverted residual blocks (1x1 expand, 3x3 depthwise, 1x1 project) with BatchNorm,
    ReLU6 and Hardswish, a strided block without the skip, adaptive average pooling and dropout."""

    def __init__(self, base: int = 8, expand: int = 4):
        super().__init__()

        def block(cin: int, cout: int, stride: int, act) -> nn.Sequential:
            hidden = cin * expand
            return nn.Sequential(
                nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), act(),
                nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden, bias=False),
                nn.BatchNorm2d(hidden), act(),
                nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout))

        self.stem = nn.Sequential(nn.Conv2d(1, base, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(base),
                                  nn.ReLU6())
        self.same = block(base, base, 1, nn.ReLU6)              # 14x14, with the residual skip
        self.down = block(base, 2 * base, 2, nn.Hardswish)      # 7x7, no skip (shape changes)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(2 * base, 10))

    def forward(self, x):
        x = self.stem(x)
        x = x + self.same(x)
        return self.head(self.down(x))


class PlainSiluNet(nn.Module):
    """A plain VGG-like stack: convolutions with biases, SiLU, max pooling, dropout and a two-layer head."""

    def __init__(self, width: int = 12):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.SiLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.SiLU(), nn.MaxPool2d(2),
            nn.Dropout(0.1))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * 49, 32), nn.SiLU(), nn.Linear(32, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


class BasicBlockResNet(nn.Module):
    """ResNet basic blocks: two 3x3 convolutions with BatchNorm and ReLU, a strided block whose shortcut is a
    1x1 convolution, and adaptive max pooling before the classifier."""

    def __init__(self, channels: int = 8):
        super().__init__()
        c = channels
        self.stem = nn.Sequential(nn.Conv2d(1, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU())
        self.body1 = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
                                   nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
        self.body2 = nn.Sequential(nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * c),
                                   nn.ReLU(), nn.Conv2d(2 * c, 2 * c, 3, padding=1, bias=False), nn.BatchNorm2d(2 * c))
        self.shortcut = nn.Sequential(nn.Conv2d(c, 2 * c, 1, stride=2, bias=False), nn.BatchNorm2d(2 * c))
        self.head = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(2 * c, 10))

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(x + self.body1(x))
        x = torch.relu(self.shortcut(x) + self.body2(x))
        return self.head(x)


class TinyViT(nn.Module):
    """A small vision transformer: 7x7 patch embedding, a class token and learned positions, pre-norm blocks of
    multi-head self-attention and a GELU MLP, LayerNorm, the class token's head. INT8 hurts it where CNNs do
    not mind: the softmax inputs, the attention matmuls, LayerNorm."""

    def __init__(self, dim: int = 32, heads: int = 4, depth: int = 2, patch: int = 7):
        super().__init__()
        self.embed = nn.Conv2d(1, dim, patch, stride=patch)
        tokens = (28 // patch) ** 2
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 10)

    def forward(self, x):
        x = self.embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        return self.head(self.norm(self.blocks(x))[:, 0])


class SqueezeExciteSiluNet(nn.Module):
    """A CNN with SiLU activations and squeeze-and-excitation gating (global pool, bottleneck, sigmoid, scale)."""

    def __init__(self, width: int = 16):
        super().__init__()

        def squeeze_excite(channels: int) -> nn.Module:
            return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, channels // 4, 1), nn.SiLU(),
                                 nn.Conv2d(channels // 4, channels, 1), nn.Sigmoid())

        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.SiLU())
        self.conv = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.SiLU())
        self.gate = squeeze_excite(width)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10))

    def forward(self, x):
        x = self.conv(self.stem(x))
        return self.head(x * self.gate(x))
