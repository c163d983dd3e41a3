"""Model definitions and the training loop (single process or DistributedDataParallel)."""
