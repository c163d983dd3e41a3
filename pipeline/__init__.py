"""Take a PyTorch model to production through ONNX: export, optimize, quantize, validate, package."""

__version__ = "0.1.0"
