"""The CNNs the pipeline ships. Any nn.Module taking (N, 1, 28, 28) float32 and returning (N, 10) logits
works too: point `model._target_` at its class.
"""

from __future__ import annotations

from torch import nn


def _conv_block(c_in: int, c_out: int, kernel: int) -> list[nn.Module]:
    # No conv bias: BatchNorm's shift replaces it, and export folds BN into the conv.
    return [nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


class CompactCNN(nn.Module):
    """Three conv+BN+ReLU blocks, each halving the resolution (28→14→7→3), then one linear layer.

    width=16 gives 29k parameters and 4.3 MFLOP per image: small enough to train in well under a
    minute per epoch on two cores, big enough for >99.3 % test accuracy.
    """

    def __init__(self, width: int = 16, num_classes: int = 10):
        super().__init__()
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be a positive integer, got {width!r}")
        self.features = nn.Sequential(
            *_conv_block(1, width, 5), nn.MaxPool2d(2),
            *_conv_block(width, 2 * width, 3), nn.MaxPool2d(2),
            *_conv_block(2 * width, 4 * width, 3), nn.MaxPool2d(2),
        )
        self.classifier = nn.Linear(4 * width * 3 * 3, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


class LargeCNN(nn.Module):
    """pytorch/examples' MNIST net (1.2M parameters): two convs and a 9216→128→10 MLP with dropout."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.25)
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(9216, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, num_classes)
        )

    def forward(self, x):
        return self.classifier(self.features(x))
