"""Measuring speed soundly: interleaved timing statistics, the benchmark's runners, FLOPs, peak RSS probes and
the batch-size crossover sweep."""
