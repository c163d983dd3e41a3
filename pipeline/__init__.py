"""Take a PyTorch model to production through ONNX: export, optimize, quantize, validate, package."""

__version__ = "0.1.0"
# Bundle files carry this date (not the run's, which would change the bytes; not 1970, which reads as broken):
# the release of the pipeline that packaged them, moved with __version__.
RELEASE_DATE = "2026-11-25"
