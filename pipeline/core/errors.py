"""The two ways a command fails on purpose.

PipelineError is bad input (a corrupt file, an unknown override, a wrong checksum): the CLI prints its
one-line message and exits 2. GateFailure is a parity gate that did not hold: exit 1, after the report
has been written.
"""


class PipelineError(Exception):
    """Bad input or environment; the message is one line that names the problem."""


class GateFailure(Exception):
    """One or more parity gates failed; the message names variant, metric, value and threshold."""
