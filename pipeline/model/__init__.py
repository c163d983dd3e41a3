"""Model libraries the stages share: checkpoints, ONNX files and sessions, parity measurement and its gates,
and localizing which node (and PyTorch module) diverges."""
