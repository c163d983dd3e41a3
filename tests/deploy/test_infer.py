import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.data import mnist
from pipeline.deploy.infer import Classifier, InputError, NpyScale, classify
from tests.conftest import run_cli

WIDE = {"COLUMNS": "400"}  # rich folds a table to the terminal's width; a wide one keeps each input on one line


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
    results = classify(bundles[target], [folder], allow_fallback=True)  # arm64: NNAPI is not here
    assert len(results) == 12 and all(r.error is None for r in results)
    correct = sum(r.label == expected[Path(r.name).name] for r in results)
    assert correct >= 11 and all(0.0 < r.probability <= 1.0 for r in results)
    assert sum(bool(r.not_a_digit) for r in results) <= 1  # real digits, whatever their polarity and size


def test_cli_predict_single_image_and_directory(bundles, digit_images):
    folder, expected = digit_images
    one = run_cli("predict", str(folder / "mnist_0.png"), "--bundle", str(bundles["cpu_x86"]))
    assert one.returncode == 0 and one.stdout.startswith(f"{folder / 'mnist_0.png'}: {expected['mnist_0.png']} (")
    table = run_cli("predict", str(folder), "--bundle", str(bundles["cpu_x86"]))
    assert table.returncode == 0 and "12 inputs: 12 classified" in table.stdout


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
    assert [r.name for r in results] == [f"{tmp_path / 'batch.npy'}[{i}]" for i in range(3)]
    assert [r.label for r in results] == [str(int(y)) for y in data.test_labels[:3]]


def test_fixed_batch_models_take_any_number_of_images(bundles, mnist_dir):
    from pipeline.data.preprocessing import normalize

    data = mnist.load(mnist_dir)
    labels, _ = Classifier(bundles["arm64_mobile"], allow_fallback=True).predict(normalize(data.test_images[:5]))
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
    accuracy = np.mean([r.label == str(data.test_labels[i]) for i, r in enumerate(results)])
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


def _picture(kind: str) -> Image.Image:
    """Things people feed a digit reader that are not digits: a dot, a word, a few digits at once."""
    from PIL import ImageDraw, ImageFont

    if kind == "dot":
        image = Image.new("L", (120, 90), 255)
        ImageDraw.Draw(image).ellipse((50, 30, 62, 42), fill=20)
    elif kind == "hello":
        font = ImageFont.load_default(size=32)
        image = Image.new("L", (140, 60), 250)
        ImageDraw.Draw(image).text((12, 10), "hello", font=font, fill=0)
    else:
        raise ValueError(kind)
    return image


@pytest.mark.parametrize("kind", ["dot", "hello"])
def test_a_dot_and_a_word_are_flagged_not_labelled_confidently(bundles, tmp_path, kind):
    _picture(kind).save(tmp_path / f"{kind}.png")
    result = run_cli("predict", str(tmp_path / f"{kind}.png"), "--bundle", str(bundles["cpu_x86"]))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{tmp_path / kind}.png: not a digit? ") and " — closest label " in result.stdout
    assert result.stdout.strip().count("\n") == 0


def test_held_out_mnist_digits_are_not_flagged(bundles, mnist_dir, tmp_path):
    """Odd-indexed test digits were held out of the calibration: at most 1 % of them are flagged."""
    data = mnist.load(mnist_dir)
    np.save(tmp_path / "held_out.npy", data.test_images[1:2000:2])
    results = classify(bundles["cpu_x86"], [tmp_path / "held_out.npy"])
    flagged = [r.not_a_digit for r in results if r.not_a_digit]
    assert len(results) == 1000 and all(r.error is None for r in results)
    assert len(flagged) <= 10, flagged


def test_a_folder_gets_a_line_per_file_and_exit_2_when_any_fails(bundles, mnist_dir, tmp_path):
    data = mnist.load(mnist_dir)
    folder = tmp_path / "mixed"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(data.test_images[i]).save(folder / f"good_{i}.png")
    Image.new("L", (64, 64), 255).save(folder / "blank.png")
    (folder / "notes.txt").write_text("not a picture")
    _picture("hello").save(folder / "word.png")
    (folder / ".hidden").write_text("skipped")
    expected = {f"good_{i}.png": str(data.test_labels[i]) for i in range(3)}

    table = run_cli("predict", str(folder), "--bundle", str(bundles["cpu_x86"]), env=WIDE)
    assert table.returncode == 2 and "6 inputs: 4 classified (1 flagged not a digit?), 2 could not be" in table.stdout
    rows = {Path(line.split("│")[1].strip()).name: line for line in table.stdout.splitlines() if "│" in line}
    assert set(rows) == {*expected, "blank.png", "notes.txt", "word.png"}
    for name, label in expected.items():
        assert rows[name].split("│")[2].strip() == label and "not a digit" not in rows[name]
    assert "error: no ink found" in rows["blank.png"] and "error: not a readable image" in rows["notes.txt"]
    assert "not a digit?" in rows["word.png"]
    assert table.stderr.strip() == "error: 2 of 6 inputs could not be classified"

    script = subprocess.run([sys.executable, str(bundles["cpu_x86"] / "infer.py"), str(folder)], capture_output=True,
                            text=True)
    assert script.returncode == 2
    lines = {Path(line.split("\t")[0]).name: line.split("\t") for line in script.stdout.splitlines()}
    assert {name: fields[1] for name, fields in lines.items() if name in expected} == expected
    assert set(lines) == {*expected, "word.png"} and lines["word.png"][3].startswith("not a digit? ")
    assert script.stderr.splitlines() == [
        f"error: {folder / 'blank.png'}: no ink found (the image is blank or one flat colour): nothing to classify",
        f"error: {folder / 'notes.txt'}: not a readable image (cannot identify image file '{folder / 'notes.txt'}')",
        "error: 2 of 6 inputs could not be classified"]


def test_npy_layouts_and_scales_are_read_as_documented(bundles, mnist_dir, tmp_path):
    from pipeline.data.preprocessing import normalize

    data = mnist.load(mnist_dir)
    digits, labels = data.test_images[:4], [str(y) for y in data.test_labels[:4]]
    arrays = {"n28x28_u8": digits, "n1x28x28_u8": digits[:, None], "n28x28_unit": digits.astype(np.float32) / 255,
              "n1x28x28_f64_unit": digits[:, None].astype(np.float64) / 255, "normalized": normalize(digits),
              "n28x28_normalized_f64": normalize(digits)[:, 0].astype(np.float64)}
    for name, array in arrays.items():
        np.save(tmp_path / f"{name}.npy", array)
        results = classify(bundles["cpu_x86"], [tmp_path / f"{name}.npy"])
        assert [r.label for r in results] == labels and not any(r.not_a_digit for r in results), name
    np.save(tmp_path / "one.npy", digits[0])  # (28, 28): one digit, named by its file
    (one,) = classify(bundles["cpu_x86"], [tmp_path / "one.npy"])
    assert (one.name, one.label) == (str(tmp_path / "one.npy"), labels[0])

    np.save(tmp_path / "float255.npy", digits.astype(np.float32))  # 0-255 in floats: ambiguous, refused ...
    (refused,) = classify(bundles["cpu_x86"], [tmp_path / "float255.npy"])
    assert "pixels 0-255, or normalized? Say which with --npy-scale" in refused.error
    said = classify(bundles["cpu_x86"], [tmp_path / "float255.npy"], NpyScale.pixels_255)  # ... until said
    assert [r.label for r in said] == labels
    cli = run_cli("predict", str(tmp_path / "float255.npy"), "--npy-scale", "0-255", "--bundle",
                  str(bundles["cpu_x86"]), env=WIDE)
    assert cli.returncode == 0 and "4 inputs: 4 classified" in cli.stdout
    wrong = classify(bundles["cpu_x86"], [tmp_path / "n28x28_u8.npy"], NpyScale.pixels_1)
    assert "values from 0 to 255 are not pixels 0-1" in wrong[0].error


def test_predict_help_states_the_npy_layouts_and_scales(bundles):
    help_text = " ".join(run_cli("predict", "--help", env=WIDE).stdout.split())
    for text in ("(N, 28, 28), (28, 28) or (N, 1, 28, 28)", "integer dtypes (uint8) are pixels 0-255",
                 "floats all in [0, 1] are pixels 0-1", "already normalized", "not a digit?", "Exit 0"):
        assert text in help_text, text
    script = subprocess.run([sys.executable, str(bundles["cpu_x86"] / "infer.py"), "--help"], capture_output=True,
                            text=True)
    for text in ("(N, 28, 28), (28, 28) or (N, 1, 28, 28)", "integer dtypes (uint8, ...) are pixels 0-255",
                 "already normalized", "--npy-scale {auto,0-255,0-1,normalized}", "not a digit?"):
        assert text in " ".join(script.stdout.split()), text
