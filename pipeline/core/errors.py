"""How a command fails on purpose: one exception type per kind of failure, each with the word the CLI prints
before its one-line message and the exit code it ends with.

PipelineError (and ConfigError) is bad input: nothing was done, exit 2. A GateFailure is something the pipeline
built or measured that did not hold, after its report was written: exit 1, in one of six kinds. FAILURES is the
table docs/troubleshooting.md is tested against (tests/core/test_errors.py).
"""


class PipelineError(Exception):
    """Bad input or environment: a corrupt or missing file, a wrong checksum, a store that refused."""

    label, exit_code = "error", 2


class ConfigError(PipelineError):
    """A config value, override or params file that the schemas refuse, before any work."""


class UnloadableModel(PipelineError):
    """ONNX Runtime cannot load a model: the input's fault when a user gave it, the pipeline's when it built it
    (the quantize fallback catches this for its own candidates)."""


class GateFailure(Exception):
    """Something the pipeline built or measured did not hold; the message names what, the value, the threshold
    and the setting that would get past it."""

    label, exit_code = "gate failed", 1


class ParityGateFailure(GateFailure):
    """A variant drifts from PyTorch beyond a parity gate, or no candidate of a target passes its gates."""

    label = "parity gate failed"


class AccuracyGateFailure(GateFailure):
    """A smaller model (the pruned one) is not shown to be within its accuracy budget of the model it came from."""

    label = "accuracy gate failed"


class RuntimeCellFailure(GateFailure):
    """A bundle (or a model package variant) fails its golden check on a runtime it ships for."""

    label = "runtime check failed"


class BuildFailure(GateFailure):
    """A consumer the pipeline builds (the bundle's C++ consumer) does not build."""

    label = "build failed"


class CalibrationFailure(GateFailure):
    """The not-a-digit bounds, calibrated on the shipped model, reject too many held-out digits."""

    label = "calibration failed"


class RegressionGateFailure(GateFailure):
    """A release is slower or less accurate than the previous one, beyond the gate's margins."""

    label = "regression gate failed"


FAILURES = (PipelineError, ConfigError, ParityGateFailure, AccuracyGateFailure, RuntimeCellFailure,
            BuildFailure, CalibrationFailure, RegressionGateFailure)
