"""The pipeline's release: its version (also the installed package's, through pyproject.toml) and date.

They live here, not in pipeline/__init__.py, because every stage's dvc.yaml deps include the parent packages'
__init__ files: a version bump there would retrain the model. Only what writes release-stamped bytes (the
bundles) and the CLI's --version read this module.
"""

VERSION = "0.1.0"
# Bundle files carry this date (not the run's, which would change the bytes; not 1970, which reads as broken):
# the release of the pipeline that packaged them, moved with VERSION.
RELEASE_DATE = "2026-11-25"
