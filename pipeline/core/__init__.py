"""The stage machinery: how a stage is declared and run, the composed config and params.yaml, the dvc.yaml
derived from the declarations, errors, atomic file writing and artifact lineage."""
