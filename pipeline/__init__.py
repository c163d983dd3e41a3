"""Take a PyTorch model to production through ONNX: export, optimize, quantize, validate, package.

The folders say what each part does: core/ (stage declaration and plumbing), stages/ (one module per stage),
data/, model/ and measure/ (libraries the stages share), packaging/ (bundle writing), runtimes/ (the runtime
matrix that proves each bundle), deploy/ (what ships inside a bundle) and present/ (tables, charts, progress).
docs/architecture.md draws how they fit.
"""
