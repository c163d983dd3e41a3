"""digits.py and its port digits.mjs: the same bytes for the same picture, whatever the picture, and the same
"not a digit?" statistics and verdict."""

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

NODE_VERDICT = """
import {inkStats, notADigit} from '%s';
import fs from 'node:fs';
const {cases, thresholds} = JSON.parse(fs.readFileSync(0, 'utf8'));
console.log(JSON.stringify(cases.map(([hex, logits]) => {
  const stats = inkStats(Buffer.from(hex, 'hex'));
  return [stats, notADigit(stats, logits, thresholds)];
})));
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


def test_python_and_javascript_give_the_same_not_a_digit_verdict(mnist_dir):
    """Statistics and reasons, for real digits and for shapes that trip every bound."""
    rng = np.random.default_rng(3)
    prepared = [digits.prepare(p) for p in _pictures(mnist.load(mnist_dir).test_images[:30])]
    prepared += [np.zeros((28, 28), np.uint8), rng.integers(0, 256, (28, 28)).astype(np.uint8)]
    logits = [rng.normal(0, 4, 10).astype(np.float32) for _ in prepared]
    thresholds = {"ink_fraction_min": 0.05, "ink_fraction_max": 0.2, "components_max": 1, "aspect_max": 0.8,
                  "solid_max": 0.3, "energy_min": 5.0}
    cases = [[p.tobytes().hex(), [float(v) for v in x]] for p, x in zip(prepared, logits, strict=True)]
    done = subprocess.run(["node", "--input-type=module", "-e", NODE_VERDICT], capture_output=True, text=True,
                          input=json.dumps({"cases": cases, "thresholds": thresholds}), check=True)
    from_python = [[digits.ink_stats(p), digits.not_a_digit(digits.ink_stats(p), x, thresholds)]
                   for p, x in zip(prepared, logits, strict=True)]
    assert json.loads(done.stdout) == from_python
    assert {r.split(" (")[0] for _, reasons in from_python for r in reasons} == {why for _, _, why in digits.CHECKS}


def test_ink_statistics_tell_a_stroke_from_a_blob_and_count_pieces():
    stroke, blob, two = (np.zeros((28, 28), np.uint8) for _ in range(3))
    stroke[4:24, 13:15] = 255             # a "1": two pixels wide
    blob[4:24, 4:24] = 200                # a filled square
    two[10:18, 2:6] = two[10:18, 20:26] = 255
    one, square, pair = (digits.ink_stats(p) for p in (stroke, blob, two))
    assert one == {"ink_fraction": 40 / 784, "components": 1, "aspect": 2 / 20, "solid": 0.0}
    assert square["solid"] == 18 * 18 / 400 and square["ink_fraction"] == 400 / 784
    assert pair["components"] == 2 and pair["aspect"] == 24 / 8
    assert digits.not_a_digit(square, [9.0] + [0.0] * 9, {"solid_max": 0.74}) == [
        "solid like a blob or a photo (solid 0.81 > 0.74)"]
    assert digits.not_a_digit(one, [9.0] + [0.0] * 9, {"solid_max": 0.74, "energy_min": 3.0}) == []
    assert digits.energy([0.0, 0.0]) == np.log(2.0)
