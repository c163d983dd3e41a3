"""Writing a deployment bundle: golden I/O in the ONNX test-data layout, golden pictures, file hashes, a
byte-reproducible .tar.gz (sorted entries, owners zeroed, every file dated the pipeline's release), its
and its published sha256 (signing is packaging/signing.py)."""

from __future__ import annotations

import gzip
import io
import math
import shutil
import tarfile
from pathlib import Path

import numpy as np

from pipeline.core.io import atomic_path, sha256_file
from pipeline.data import mnist, preprocessing
from pipeline.data.mnist import test_batch
from pipeline.deploy import infer
from pipeline.deploy.contents import UNLISTED
from pipeline.packaging.release import RELEASE_DATE
from pipeline.runtimes import cells


def write_golden(bundle: Path, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> list[str]:
    """test_data_set_<i>/input_0.pb and output_0.pb, the layout onnx_test_runner reads."""
    from onnx import numpy_helper

    names = []
    for i, (x, y) in enumerate(zip(inputs, outputs, strict=True)):
        folder = bundle / f"test_data_set_{i}"
        folder.mkdir()
        (folder / "input_0.pb").write_bytes(numpy_helper.from_array(x, "input").SerializeToString())
        (folder / "output_0.pb").write_bytes(numpy_helper.from_array(y, "logits").SerializeToString())
        names.append(folder.name)
    return names


def write_golden_set(session, data_dir: Path, staging: Path, samples: int, fixed_batch: int | None,
                     atol: float) -> dict:
    """Real test images and the shipped model's own outputs on the CPU EP, in the ONNX test-data layout, in
    chunks of the model's fixed batch where it has one; returns the manifest's `golden` block."""
    x, _ = test_batch(data_dir, samples)
    step = fixed_batch or len(x)
    inputs = [x[i : i + step] for i in range(0, len(x), step)]
    grid = golden_grid(atol)
    outputs = [on_grid(session.run(None, {session.get_inputs()[0].name: chunk})[0], grid) for chunk in inputs]
    return {"sets": write_golden(staging, inputs, outputs), "samples": len(x),
            "tolerance": {"atol": atol, "top1_must_match": True}, "grid": grid,
            "source": "MNIST test set, first images, outputs of this model on CPUExecutionProvider, rounded to "
                      "the nearest multiple of `grid`"}


def golden_grid(atol: float) -> float:
    """The power of two at most atol/16 that golden outputs are rounded to. The CPU EP's kernels differ by
    CPU (~1e-6 on these logits), so unrounded outputs would make the bundle's bytes depend on the CPU that
    built it; on this grid they are the same bytes on any x86-64 CPU (a value would have to sit within ~1e-6
    of a rounding boundary to differ), and rounding costs at most 1/32 of the tolerance the check allows."""
    return 2.0 ** math.floor(math.log2(atol / 16))


def on_grid(values: np.ndarray, grid: float) -> np.ndarray:
    """`values` rounded to multiples of `grid`; + 0.0 turns -0.0 into 0.0, since the sign of a value that
    rounds to zero is the one thing kernel rounding could still flip."""
    return (np.round(values.astype(np.float64) / grid) * grid + 0.0).astype(values.dtype)


def file_hashes(bundle: Path) -> dict[str, str]:
    """sha256 of every file in the bundle except the manifest, which carries these hashes."""
    return {
        p.relative_to(bundle).as_posix(): sha256_file(p)
        for p in sorted(bundle.rglob("*"))
        if p.is_file() and p.relative_to(bundle).as_posix() not in UNLISTED
    }


def _release_epoch() -> int:
    import datetime

    return int(datetime.datetime.fromisoformat(RELEASE_DATE).replace(tzinfo=datetime.UTC).timestamp())


def write_tarball(bundle: Path, archive: Path) -> Path:
    """A .tar.gz of `bundle` under its own name; identical inputs give identical bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in [bundle, *sorted(bundle.rglob("*"))]:
            info = tar.gettarinfo(str(path), arcname=(Path(bundle.name) / path.relative_to(bundle)).as_posix())
            info.mtime, info.uid, info.gid, info.uname, info.gname = _release_epoch(), 0, 0, "", ""
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
    """Raw pictures of real MNIST test digits for the preparation check, as PAM files (netpbm, RGBA), the format
    every consumer decodes with its own few lines (verify.py through digits.py, Node and the page through
    digits.mjs, the C++ consumer through its port): plain ones, one inverted and enlarged on white paper, one
    drawn only in the alpha channel, off-centre on a larger transparent canvas."""
    gray = [(f"mnist_test_{i}", images[i]) for i in range(4)]
    gray.append(("mnist_test_4_inverted_3x", np.repeat(np.repeat(255 - images[4], 3, axis=0), 3, axis=1)))
    pictures = [(name, np.dstack([g, g, g, np.full_like(g, 255)])) for name, g in gray]
    alpha = np.zeros((90, 120, 4), np.uint8)
    alpha[50:78, 70:98, 3] = images[5]
    pictures.append(("mnist_test_5_alpha_offcentre", alpha))
    return [(f"golden_pictures/{name}.pam", pam(rgba)) for name, rgba in pictures]


def pam(rgba: np.ndarray) -> bytes:
    """uint8 (H, W, 4) -> a PAM file (netpbm P7, RGB_ALPHA, maxval 255)."""
    height, width = rgba.shape[:2]
    header = f"P7\nWIDTH {width}\nHEIGHT {height}\nDEPTH 4\nMAXVAL 255\nTUPLTYPE RGB_ALPHA\nENDHDR\n"
    return header.encode() + np.ascontiguousarray(rgba, np.uint8).tobytes()


def write_digest(archive: Path, digest: Path) -> str:
    """`<archive>.sha256` in sha256sum's format, published beside the archive (and in the stage's metrics):
    `verify --sha256` and `sha256sum -c` check the download against it."""
    value = sha256_file(archive)
    with atomic_path(digest) as tmp:
        tmp.write_text(f"{value}  {archive.name}\n")
    return value


def write_web_page(staging: Path, page_dir: Path) -> None:
    """The drawing page and the onnxruntime-web WebAssembly runtime it loads, all served from the bundle."""
    for source in (*sorted(page_dir.iterdir()), *cells.web_runtime_files()):
        shutil.copy(source, staging / source.name)


def write_golden_pictures(session, data_dir: Path, staging: Path, grid: float) -> list[dict]:
    """Raw pictures through the bundle's own preparation (digits.py) to the shipped model's logits on the CPU EP
    (on the golden grid): an edit to the manifest's preprocessing, or to digits.py/digits.mjs, fails
    verification."""
    expected = []
    for name, picture in golden_pictures(mnist.load(data_dir).test_images):
        (staging / name).parent.mkdir(exist_ok=True)
        (staging / name).write_bytes(picture)
        x = infer.picture_input(staging / name, preprocessing.as_manifest())
        logits = on_grid(session.run(None, {session.get_inputs()[0].name: x})[0][0], grid)
        expected.append({"file": name, "label": preprocessing.CLASS_LABELS[int(logits.argmax())],
                         "logits": [float(v) for v in logits]})
    return expected


def write_sample_digit(data_dir: Path, bundle: Path) -> None:
    """The first MNIST test digit as digit.png and as digit.pgm (binary 28x28, what the C++ consumer reads), so
    the model card's `infer.py digit.png` and `consumer --classify digit.pgm` run as written."""
    from PIL import Image

    digit = mnist.load(data_dir).test_images[0]
    Image.fromarray(digit).save(bundle / "digit.png", format="PNG")
    (bundle / "digit.pgm").write_bytes(b"P5\n%d %d\n255\n" % (digit.shape[1], digit.shape[0]) + digit.tobytes())
