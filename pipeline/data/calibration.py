"""The calibration data reader: the only model-specific part of quantization.

Draws a seeded, fixed subset of *training* images (never test images, which judge the result) and feeds
them to ONNX Runtime's calibrator in batches, advancing a progress bar.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.data import mnist, preprocessing


def calibration_images(data_dir: Path, samples: int, seed: int) -> np.ndarray:
    data = mnist.load(Path(data_dir))
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(data.train_images), size=min(samples, len(data.train_images)), replace=False))
    return preprocessing.normalize(data.train_images[chosen])


class MnistCalibrationReader:
    """ORT's CalibrationDataReader protocol (get_next/rewind; ORT accepts any class with get_next), without
    importing onnxruntime where the stage declarations are read."""
    def __init__(self, images: np.ndarray, batch_size: int, input_name: str, progress=None):
        self.images = images
        self.batch_size = batch_size
        self.input_name = input_name
        self.progress = progress
        self._task = progress.add_task("calibrate", total=len(images)) if progress else None
        self._offset = 0

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch_size)

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._offset >= len(self.images):
            return None
        batch = self.images[self._offset : self._offset + self.batch_size]
        self._offset += len(batch)
        if self.progress:
            self.progress.update(self._task, advance=len(batch))
        return {self.input_name: batch}

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        batch = self.get_next()
        if batch is None:
            raise StopIteration
        return batch

    def rewind(self) -> None:
        self._offset = 0
