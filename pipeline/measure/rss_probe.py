"""Peak resident memory of one variant, measured in a fresh process (peak RSS is per process).

    python -m pipeline.measure.rss_probe onnx MODEL.onnx THREADS BATCH
    python -m pipeline.measure.rss_probe torch MODEL_DIR THREADS BATCH
Prints the peak RSS in MiB after loading the model and running one batch three times. Read from
/proc/self/status (VmHWM), not getrusage: ru_maxrss survives fork+exec and would report the parent's peak.
"""

from __future__ import annotations

import re
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np


def peak_rss_mib(kind: str, path: Path, threads: int, batch: int) -> float | None:
    """Run this probe in a fresh interpreter; its peak RSS in MiB, or None when the probe failed."""
    command = [sys.executable, "-m", "pipeline.measure.rss_probe", kind, str(path), str(threads), str(batch)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    return float(result.stdout.strip().splitlines()[-1]) if result.returncode == 0 else None


def main(kind: str, path: str, threads: int, batch: int) -> float:
    x = np.zeros((batch, 1, 28, 28), np.float32)
    # Each probe imports only what its kind loads (a project module too): its peak RSS is the runner's own.
    if kind == "torch":
        import torch

        from pipeline.model import checkpoint

        torch.set_num_threads(threads)
        model, _ = checkpoint.load(path)
        with torch.no_grad():
            for _ in range(3):
                model(torch.from_numpy(x))
    else:
        from pipeline.model import onnx_utils

        sess = onnx_utils.session(path, threads=threads)
        for _ in range(3):
            sess.run(None, {sess.get_inputs()[0].name: x})
    status = Path("/proc/self/status")
    if status.exists():
        match = re.search(r"VmHWM:\s+(\d+) kB", status.read_text())
        if match:
            return int(match.group(1)) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    print(f"{main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])):.1f}")
