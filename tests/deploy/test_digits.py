"""digits.py and its port digits.mjs: the same bytes for the same picture, whatever the picture."""

import json
import subprocess

import numpy as np
import pytest
from PIL import Image

from pipeline.data import mnist
from pipeline.deploy import digits
from tests.conftest import REPO

NODE_PREPARE = """
import {prepare} from '%s';
import fs from 'node:fs';
const cases = JSON.parse(fs.readFileSync(0, 'utf8'));
const prepared = cases.map(([h, w, hex]) => Buffer.from(prepare(Buffer.from(hex, 'hex'), h, w)).toString('hex'));
console.log(JSON.stringify(prepared));
""" % (REPO / "pipeline" / "deploy" / "digits.mjs")


def _pictures(images: np.ndarray) -> list[np.ndarray]:
    """Awkward RGBA pictures of real test digits: resized both ways, inverted, ink in alpha only, thin."""
    rng = np.random.default_rng(0)
    pictures = []
    for i, digit in enumerate(images):
        size = int(rng.integers(12, 400))
        shape = (size, max(8, int(size * rng.uniform(0.4, 1.8))))
        picture = Image.fromarray(255 - digit if i % 2 else digit).resize(shape, Image.Resampling.BILINEAR)
        rgba = np.asarray(picture.convert("RGBA")).copy()
        if i % 3 == 0:
            rgba[..., 3] = rng.integers(0, 256, rgba.shape[:2])
        pictures.append(rgba)
    return pictures


def test_python_and_javascript_prepare_identical_bytes(mnist_dir):
    pictures = _pictures(mnist.load(mnist_dir).test_images[:40])
    cases = [[p.shape[0], p.shape[1], p.tobytes().hex()] for p in pictures]
    done = subprocess.run(["node", "--input-type=module", "-e", NODE_PREPARE], input=json.dumps(cases),
                          capture_output=True, text=True, check=True)
    from_js = [bytes.fromhex(h) for h in json.loads(done.stdout)]
    from_python = [digits.prepare(p).tobytes() for p in pictures]
    assert sum(a == b for a, b in zip(from_python, from_js, strict=True)) == len(pictures)


def test_a_prepared_digit_is_centred_and_fits_the_mnist_box(mnist_dir):
    picture = np.zeros((200, 300, 4), np.uint8)
    picture[..., 3] = 255
    picture[20:48, 250:278, :3] = mnist.load(mnist_dir).test_images[0][..., None]  # small, far off-centre
    pixels = digits.prepare(picture)
    rows, cols = np.nonzero(pixels)
    assert rows.max() - rows.min() < 21 and cols.max() - cols.min() < 21
    assert abs((rows * pixels[rows, cols]).sum() / pixels[rows, cols].sum() - 14) < 1.5


@pytest.mark.parametrize("colour", [0, 255, 128])
def test_a_flat_picture_has_no_ink(colour):
    with pytest.raises(digits.NoInk):
        digits.prepare(np.full((50, 50, 4), colour, np.uint8))
