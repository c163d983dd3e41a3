"""How a 28x28 grayscale digit becomes model input. The one place these constants live.

Training, export metadata, the deploy manifest and `predict` all read them from here. numpy only, so the
consumer side can import it without torch.
"""

from __future__ import annotations

import numpy as np

# Mean and std of the 60k MNIST training pixels after scaling to [0, 1].
SCALE = 1.0 / 255.0
MEAN = 0.1307
STD = 0.3081
HEIGHT = WIDTH = 28
LAYOUT = "NCHW"
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
CLASS_LABELS = [str(d) for d in range(10)]


def normalize(images_u8: np.ndarray) -> np.ndarray:
    """uint8 images (N, 28, 28) -> float32 NCHW (N, 1, 28, 28), scaled and standardized."""
    x = images_u8.astype(np.float32) * np.float32(SCALE)
    x = (x - np.float32(MEAN)) / np.float32(STD)
    return x.reshape(-1, 1, HEIGHT, WIDTH)


def as_manifest() -> dict:
    return {
        "layout": LAYOUT,
        "dtype": "float32",
        "shape": [-1, 1, HEIGHT, WIDTH],
        "scale": SCALE,
        "mean": [MEAN],
        "std": [STD],
        "formula": "x = (pixel_u8 * scale - mean) / std",
        "color": "grayscale, white digit on black background",
        # What infer.py does to any image before the formula: MNIST's own preparation of its digits.
        "image_steps": [
            "composite transparency onto white",
            "grayscale; the background (border median) becomes black, the ink white, whatever the polarity",
            "refuse an image with no ink (less than 40 grey levels of contrast)",
            "crop to the ink's bounding box",
            "fit into 20x20 keeping the aspect ratio",
            "centre by centre of mass in 28x28",
        ],
    }
