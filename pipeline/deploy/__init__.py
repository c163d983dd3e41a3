"""The consumer side: code that ships inside every bundle and needs only onnxruntime + numpy (+ Pillow).

verify.py and infer.py import nothing from this project, so a deployment team can run them as copied.
"""
