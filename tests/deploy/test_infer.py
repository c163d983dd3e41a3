from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.data import mnist
from pipeline.deploy.infer import Classifier, InputError, classify
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def digit_images(tmp_path_factory, mnist_dir):
    """Real test digits as PNGs: as MNIST stores them, and inverted + enlarged like a scanned drawing."""
    data = mnist.load(mnist_dir)
    folder = tmp_path_factory.mktemp("digits")
    files = {}
    for i in range(6):
        label = int(data.test_labels[i])
        Image.fromarray(data.test_images[i]).save(folder / f"mnist_{i}.png")
        Image.fromarray(255 - data.test_images[i]).resize((112, 112)).save(folder / f"paper_{i}.jpg", quality=95)
        files[f"mnist_{i}.png"] = files[f"paper_{i}.jpg"] = str(label)
    return folder, files


@pytest.mark.parametrize("target", ["cpu_x86", "arm64_mobile"])
def test_images_are_classified_whatever_their_polarity_and_size(bundles, digit_images, target):
    folder, expected = digit_images
    results = classify(bundles[target], [folder])
    assert len(results) == 12
    correct = sum(label == expected[Path(name).name] for name, label, _ in results)
    assert correct >= 11 and all(0.0 < p <= 1.0 for _, _, p in results)


def test_cli_predict_single_image_and_directory(bundles, digit_images):
    folder, expected = digit_images
    one = run_cli("predict", str(folder / "mnist_0.png"), "--bundle", str(bundles["cpu_x86"]))
    assert one.returncode == 0 and one.stdout.startswith(f"{folder / 'mnist_0.png'}: {expected['mnist_0.png']} (")
    table = run_cli("predict", str(folder), "--bundle", str(bundles["cpu_x86"]))
    assert table.returncode == 0 and "12 images" in table.stdout


@pytest.mark.parametrize("content, message", [(b"", "empty file"), (b"%PDF-1.4 not an image", "not a readable image")])
def test_bad_image_files_are_one_line_exit_2(bundles, tmp_path, content, message):
    bad = tmp_path / "bad.png"
    bad.write_bytes(content)
    result = run_cli("predict", str(bad), "--bundle", str(bundles["cpu_x86"]))
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("array, message", [
    (np.full((1, 1, 28, 28), np.nan, np.float32), "NaN/Inf values"),
    (np.zeros((0, 1, 28, 28), np.float32), "batch of 0"),
    (np.zeros((2, 28, 28), np.float32), "does not match the model's"),
    (np.zeros((2, 1, 28, 28), np.float64), "must be a float32 array"),
])
def test_bad_arrays_are_refused_not_silently_labelled(bundles, array, message):
    with pytest.raises(InputError, match=message):
        Classifier(bundles["cpu_x86"]).predict(array)


def test_npy_batches_are_labelled_per_row(bundles, mnist_dir, tmp_path):
    from pipeline.data.preprocessing import normalize

    data = mnist.load(mnist_dir)
    np.save(tmp_path / "batch.npy", normalize(data.test_images[:3]))
    results = classify(bundles["cpu_x86"], [tmp_path / "batch.npy"])
    assert [name for name, _, _ in results] == [f"{tmp_path / 'batch.npy'}[{i}]" for i in range(3)]
    assert [label for _, label, _ in results] == [str(int(y)) for y in data.test_labels[:3]]


def test_fixed_batch_models_take_any_number_of_images(bundles, mnist_dir):
    from pipeline.data.preprocessing import normalize

    data = mnist.load(mnist_dir)
    labels, _ = Classifier(bundles["arm64_mobile"]).predict(normalize(data.test_images[:5]))
    assert (labels == data.test_labels[:5]).mean() >= 0.8


def test_predict_takes_an_archive_and_names_the_built_targets(bundles, tmp_path):
    Image.fromarray(np.zeros((28, 28), np.uint8) + 255).save(tmp_path / "x.png")
    archive = bundles["cpu_x86"].with_suffix(".tar.gz")
    from_archive = run_cli("predict", str(bundles["cpu_x86"] / "digit.png"), "--bundle", str(archive))
    assert from_archive.returncode == 0 and ": 7 (" in from_archive.stdout
    unknown = run_cli("predict", str(tmp_path / "x.png"), "--target", "nope")
    assert unknown.returncode == 2 and "no bundle for target 'nope'" in unknown.stderr


def _awkward(digit: np.ndarray, style: str) -> Image.Image:
    """A real MNIST test digit made to look like something a person would feed in."""
    from PIL import ImageFilter

    big = Image.fromarray(digit).resize((112, 112), Image.Resampling.BICUBIC)
    if style == "inverted":  # dark ink on white paper
        return Image.fromarray(255 - np.asarray(big))
    if style == "alpha_only":  # black everywhere, the digit only in the alpha channel
        rgba = np.zeros((112, 112, 4), np.uint8)
        rgba[..., 3] = np.asarray(big)
        return Image.fromarray(rgba, "RGBA")
    if style == "off_centre":  # small, in a corner of a large canvas
        canvas = Image.new("L", (200, 200), 255)
        canvas.paste(Image.fromarray(255 - digit).resize((40, 40)), (130, 20))
        return canvas
    if style == "thick":
        return big.filter(ImageFilter.MaxFilter(7))
    if style == "thin":
        return big.filter(ImageFilter.MinFilter(5))
    if style == "grey_paper_jpeg":  # pencil on grey paper, saved as a low-quality JPEG
        paper = 170 - (np.asarray(big, np.float32) * 120 / 255)
        import io

        buffer = io.BytesIO()
        Image.fromarray(paper.astype(np.uint8)).save(buffer, format="JPEG", quality=25)
        return Image.open(io.BytesIO(buffer.getvalue()))
    raise ValueError(style)


AWKWARD = {"inverted": 0.95, "alpha_only": 0.95, "off_centre": 0.9, "thick": 0.8, "thin": 0.8,
           "grey_paper_jpeg": 0.9}


@pytest.mark.parametrize("style", list(AWKWARD))
def test_awkward_real_world_images_keep_an_accuracy_floor(bundles, mnist_dir, tmp_path, style):
    data = mnist.load(mnist_dir)
    paths = []
    for i in range(100):
        path = tmp_path / f"{i:03d}.png"
        _awkward(data.test_images[i], style).save(path)
        paths.append(path)
    results = classify(bundles["cpu_x86"], paths)
    accuracy = np.mean([label == str(data.test_labels[i]) for i, (_, label, _) in enumerate(results)])
    assert accuracy >= AWKWARD[style], f"{style}: {accuracy:.0%}"


@pytest.mark.parametrize("colour", [0, 255, 128])
def test_a_blank_image_is_refused_not_labelled(bundles, tmp_path, colour):
    Image.new("L", (64, 64), colour).save(tmp_path / "blank.png")
    result = run_cli("predict", str(tmp_path / "blank.png"), "--bundle", str(bundles["cpu_x86"]))
    assert result.returncode == 2 and "no ink found" in result.stderr
    assert result.stderr.strip().count("\n") == 0


def test_a_decompression_bomb_is_one_line_exit_2(bundles, tmp_path):
    Image.new("1", (20000, 20000)).save(tmp_path / "bomb.png")
    result = run_cli("predict", str(tmp_path / "bomb.png"), "--bundle", str(bundles["cpu_x86"]))
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0


def test_a_multi_frame_image_says_which_frame_is_classified(bundles, mnist_dir, tmp_path):
    data = mnist.load(mnist_dir)
    first, second = (Image.fromarray(data.test_images[i]) for i in (0, 1))
    first.save(tmp_path / "two.gif", save_all=True, append_images=[second])
    result = run_cli("predict", str(tmp_path / "two.gif"), "--bundle", str(bundles["cpu_x86"]))
    assert result.returncode == 0, result.stderr
    assert "two.gif: 2 frames; classifying frame 1" in result.stderr
    assert result.stdout.split()[-2] == str(data.test_labels[0])
