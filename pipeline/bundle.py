"""Writing a deployment bundle: golden I/O in the ONNX test-data layout, file hashes, and a
byte-reproducible .tar.gz (sorted entries, zeroed times and owners)."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import numpy as np
from onnx import numpy_helper

from pipeline.io import atomic_path, sha256_file

MANIFEST = "manifest.json"


def write_golden(bundle: Path, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> list[str]:
    """test_data_set_<i>/input_0.pb and output_0.pb, the layout onnx_test_runner reads."""
    names = []
    for i, (x, y) in enumerate(zip(inputs, outputs, strict=True)):
        folder = bundle / f"test_data_set_{i}"
        folder.mkdir()
        (folder / "input_0.pb").write_bytes(numpy_helper.from_array(x, "input").SerializeToString())
        (folder / "output_0.pb").write_bytes(numpy_helper.from_array(y, "logits").SerializeToString())
        names.append(folder.name)
    return names


def file_hashes(bundle: Path) -> dict[str, str]:
    """sha256 of every file in the bundle except the manifest, which carries these hashes."""
    return {
        p.relative_to(bundle).as_posix(): sha256_file(p)
        for p in sorted(bundle.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def write_tarball(bundle: Path, archive: Path) -> Path:
    """A .tar.gz of `bundle` under its own name; identical inputs give identical bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in [bundle, *sorted(bundle.rglob("*"))]:
            info = tar.gettarinfo(str(path), arcname=(Path(bundle.name) / path.relative_to(bundle)).as_posix())
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            info.mode = 0o755 if path.is_dir() else 0o644
            if path.is_file():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    with atomic_path(archive) as tmp:
        tmp.write_bytes(gzip.compress(buffer.getvalue(), mtime=0))
    return archive


def golden_pictures(images: np.ndarray) -> list[tuple[str, bytes]]:
    """Raw PNG pictures of real MNIST test digits for the preparation check (verify.py runs them through the
    bundle's own digits.py, the web page through digits.mjs): plain ones, one inverted and enlarged on white
    paper, one drawn only in the alpha channel, off-centre on a larger transparent canvas."""
    from PIL import Image

    pictures = [(f"mnist_test_{i}", Image.fromarray(images[i])) for i in range(4)]
    inverted = Image.fromarray(255 - images[4]).resize((84, 84), Image.Resampling.NEAREST)
    alpha = np.zeros((90, 120, 4), np.uint8)
    alpha[50:78, 70:98, 3] = images[5]
    pictures += [("mnist_test_4_inverted_3x", inverted), ("mnist_test_5_alpha_offcentre", Image.fromarray(alpha))]
    encoded = []
    for name, picture in pictures:
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        encoded.append((f"golden_pictures/{name}.png", buffer.getvalue()))
    return encoded
