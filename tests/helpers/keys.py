"""An EC P-256 key pair on disk, as `openssl ecparam -name prime256v1 -genkey` makes one: what a producer signs
bundles with and a verifier signs device records with."""

from __future__ import annotations

from pathlib import Path


def ec_key_pair(folder: Path, name: str):
    """(the key, its private PEM file, its public PEM file) under `folder`."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private, public = folder / f"{name}.pem", folder / f"{name}.pub.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return key, private, public
