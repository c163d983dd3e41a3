"""The pipeline's stages, one module each, each declaring itself as `STAGE = Stage(...)` (pipeline/core/stage.py).

Every module here that declares a STAGE is a stage: the registry finds them, so adding a stage touches no list.
"""
