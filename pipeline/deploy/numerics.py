"""The one softmax, shared by the consumers (infer.py) and the pipeline's parity gates: a module of its own, so
that what depends on it (every stage that judges parity) does not depend on the consumer code around it. Ships
in every bundle beside infer.py; needs only numpy.
"""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, classes) logits, shifted by each row's maximum."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)
