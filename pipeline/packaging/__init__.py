"""Turning a validated variant into a bundle: which variant and session options a target ships (selection),
the bundle's files, its model card, and the mobile (.ort) conversion."""
