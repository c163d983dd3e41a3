"""Handing releases off: their contract, the regression gate, and the registry (GTO tags, the DVC remote)."""
