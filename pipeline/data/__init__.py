"""MNIST: the IDX files, the one digit preparation (normalization) and the calibration reader for static INT8."""
