"""One table of hostile and broken bundles, run against every consumer: verify.py, verify.mjs (Node), the C++
consumer (x86-64, and the aarch64 build under qemu), the web page's own check in Chromium, and the two
classifiers (infer.py, the C++ --classify). Every consumer must give verify.py's exit code and name the same field
or file; a classifier answers nothing for a bundle the checkers refuse.

Each case edits a copy of a real bundle. Unless the case is about the digests themselves, manifest.json's `files`
is rewritten to match the edit, as a careless or hostile producer would: the digests prove nothing about a
manifest anyone can rewrite, so the checks after them must catch the edit.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.deploy.digits import read_netpbm
from pipeline.packaging.bundle import file_hashes, pam
from pipeline.runtimes import cells, cpp
from tests.helpers import consumers


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def _write(folder: Path, manifest: dict, rehash: bool = True) -> None:
    if rehash:
        manifest["files"] = file_hashes(folder)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def set_value(key: str, value) -> Callable[[Path], None]:
    """The manifest's `key` (dotted; [i] for a list item) set to `value` (or deleted, for DELETE)."""
    def edit(folder: Path) -> None:
        manifest = _manifest(folder)
        *parents, last = key.replace("[", ".").replace("]", "").split(".")
        node = manifest
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if value is DELETE:
            del node[last]
        else:
            node[int(last) if isinstance(node, list) else last] = value(node[last]) if callable(value) else value
        _write(folder, manifest)
    return edit


DELETE = object()


def flip_model_byte(folder: Path) -> None:
    """A byte of the model changed, the manifest's digest left as it was."""
    data = bytearray((folder / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "model.onnx").write_bytes(bytes(data))


def add_file(folder: Path) -> None:
    (folder / "extra.py").write_text("print('not listed')\n")


def remove_file(folder: Path) -> None:
    (folder / "test_data_set_0" / "output_0.pb").unlink()


def long_name(folder: Path) -> None:
    manifest = _manifest(folder)
    manifest["files"]["x" * 5000] = "0" * 64
    _write(folder, manifest, rehash=False)


def unsafe_path(folder: Path) -> None:
    manifest = _manifest(folder)
    manifest["files"]["../outside.txt"] = "0" * 64
    _write(folder, manifest, rehash=False)


def repaint_picture(folder: Path) -> None:
    """The first golden picture's lower half painted over with its background (digests rewritten)."""
    picture = folder / _manifest(folder)["golden"]["pictures"][0]["file"]
    rgba = read_netpbm(picture.read_bytes()).copy()
    rgba[rgba.shape[0] // 2 :, :, :3] = 0
    picture.write_bytes(pam(rgba))
    _write(folder, _manifest(folder))


def break_picture_header(folder: Path) -> None:
    picture = folder / _manifest(folder)["golden"]["pictures"][0]["file"]
    picture.write_bytes(picture.read_bytes().replace(b"P7", b"P9", 1))
    _write(folder, _manifest(folder))


def drift_golden_output(folder: Path) -> None:
    """The golden outputs shifted by 1.0 (digests rewritten): the model no longer reproduces them."""
    import numpy as np
    from onnx import numpy_helper

    from pipeline.deploy.contents import read_tensor

    path = folder / "test_data_set_0" / "output_0.pb"
    path.write_bytes(numpy_helper.from_array(read_tensor(path) + np.float32(1.0)).SerializeToString())
    _write(folder, _manifest(folder))


def rename_model_output(folder: Path) -> None:
    """A model whose output is not the one the manifest declares (digests rewritten)."""
    import onnx

    model = onnx.load(folder / "model.onnx")
    old = model.graph.output[0].name
    for node in model.graph.node:
        node.output[:] = ["scores" if name == old else name for name in node.output]
    model.graph.output[0].name = "scores"
    onnx.save(model, folder / "model.onnx")
    _write(folder, _manifest(folder))


@dataclass(frozen=True)
class Case:
    name: str
    edit: Callable[[Path], None] | None
    exit: int
    names: str            # what every consumer's message must contain: the field or file at fault
    page: bool = True     # False: a static web server lists no folder, so the page cannot see this


CASES = [
    Case("intact", None, 0, ""),
    Case("class labels reversed", set_value("class_labels", lambda labels: labels[::-1]), 1, "class_labels"),
    Case("preprocessing.mean edited", set_value("preprocessing.mean", [0.9]), 1, "preprocessing"),
    Case("preprocessing.std edited", set_value("preprocessing.std", [1.0]), 1, "preprocessing"),
    Case("preprocessing.scale edited", set_value("preprocessing.scale", 1.0), 1, "preprocessing"),
    Case("output shape [1, 1000]", set_value("io.outputs[0].shape", [1, 1000]), 2, "io.outputs[0].shape"),
    Case("input dtype uint8", set_value("io.inputs[0].dtype", "uint8"), 2, "io.inputs[0].dtype"),
    Case("input renamed", set_value("io.inputs[0].name", "image"), 2, "io.inputs[0].name"),
    Case("ood block deleted", set_value("ood", DELETE), 2, "`ood`"),
    Case("ood threshold not a number", set_value("ood.thresholds.energy_min", "high"), 2, "ood.thresholds.energy_min"),
    Case("eleven class labels", set_value("class_labels", lambda labels: [*labels, "x"]), 2, "class_labels"),
    Case("preprocessing.mean a number", set_value("preprocessing.mean", 0.9), 2, "preprocessing.mean"),
    Case("providers not a list", set_value("target.providers", "CPUExecutionProvider"), 2, "target.providers"),
    Case("golden atol deleted", set_value("golden.tolerance.atol", DELETE), 2, "golden.tolerance.atol"),
    Case("picture logits not numbers", set_value("golden.pictures[0].logits", "x"), 2, "golden.pictures[0].logits"),
    Case("schema version 2", set_value("schema_version", 2), 2, "unsupported schema"),
    Case("model byte flipped", flip_model_byte, 2, "sha256 mismatch for model.onnx"),
    Case("file added", add_file, 2, "unlisted file extra.py", page=False),
    Case("file removed", remove_file, 2, "missing file test_data_set_0/output_0.pb"),
    Case("5,000-character file name", long_name, 2, "missing file xxxx"),
    Case("'..' in a listed path", unsafe_path, 2, "unsafe path"),
    Case("golden picture repainted", repaint_picture, 1, "mnist_test_0.pam"),
    Case("golden picture header broken", break_picture_header, 2, "mnist_test_0.pam"),
    Case("golden outputs drifted", drift_golden_output, 1, "test_data_set_0"),
    Case("model output renamed", rename_model_output, 2, "io.outputs[0].name"),
]
IDS = [case.name for case in CASES]


def _copies(source: Path, parent: Path) -> list[Path]:
    parent.mkdir()
    folders = []
    for i, case in enumerate(CASES):
        folder = Path(shutil.copytree(source, parent / f"case{i:02d}"))
        if case.edit is not None:
            case.edit(folder)
        folders.append(folder)
    return folders


def _agree(outcomes: dict[str, list[consumers.Outcome]], only: Callable[[Case], bool] = lambda _: True) -> None:
    """Every consumer gives each case's exit code and names its field."""
    wrong = [f"{case.name}: {consumer} exit {outcome.code}: {outcome.message[:300]}"
             for consumer, results in outcomes.items() for case, outcome in zip(CASES, results, strict=True)
             if only(case) and (outcome.code != case.exit or case.names not in outcome.message)]
    assert not wrong, "\n".join(wrong)


@pytest.fixture(scope="module")
def cpu_cases(bundles, tmp_path_factory) -> list[Path]:
    return _copies(bundles["cpu_x86"], tmp_path_factory.mktemp("conformance") / "cpu_x86")


def test_every_consumer_refuses_what_verify_py_refuses_with_its_code_and_field(bundles, cpu_cases):
    intact = cpu_cases[0]
    python = consumers.python_main("verify", intact, [[str(folder)] for folder in cpu_cases])
    node_env = cells.environment(cells.RUNTIMES["onnxruntime-node"])
    consumers.node_ready(intact.parent, node_env)
    node = [consumers.program(["node", str(folder / "verify.mjs"), str(folder)]) for folder in cpu_cases]
    native, env = cpp.native_command(cells.environment(cells.RUNTIMES["onnxruntime-cpp"]), intact)
    cxx = [consumers.program([*native, str(folder)], env=env) for folder in cpu_cases]
    _agree({"verify.py": python, "verify.mjs": node, "C++": cxx})


def test_the_aarch64_cpp_consumer_agrees_under_emulation(cpu_cases):
    runtime = cells.RUNTIMES["onnxruntime-cpp-aarch64"]
    command, env = runtime.checker(cells.environment(runtime), cpu_cases[0])
    cxx = [consumers.program([*command, str(folder), "--allow-fallback"], env=env) for folder in cpu_cases]
    _agree({"C++ aarch64": cxx})


def test_the_classifiers_answer_only_for_a_bundle_that_passes(cpu_cases):
    intact = cpu_cases[0]
    digit = intact / "digit.pgm"
    python = consumers.python_main("infer", intact, [[str(digit), "--bundle", str(folder)] for folder in cpu_cases])
    native, env = cpp.native_command(cells.environment(cells.RUNTIMES["onnxruntime-cpp"]), intact)
    cxx = [consumers.program([*native, str(folder), "--classify", str(digit)], env=env) for folder in cpu_cases]
    _agree({"infer.py": python, "C++ --classify": cxx})
    assert python[0].stdout == cxx[0].stdout  # the same line for the intact bundle: PATH, label, probability


def test_the_web_page_refuses_what_verify_py_refuses(web_bundle, tmp_path):
    cases = _copies(web_bundle, tmp_path / "web")
    python = consumers.python_main("verify", cases[0], [[str(folder), "--allow-fallback"] for folder in cases])
    page = consumers.page_verdicts(cases[0].parent, [folder.name for folder in cases])
    _agree({"verify.py": python, "page": page}, only=lambda case: case.page)


# ---- Hostile bundles: seeded mutants of the cpu_x86 bundle, digests kept consistent. Code files are left alone: a
# consumer whose own code was changed is another program.
MUTANTS = 40
ODD_VALUES = [None, True, -1, 0, 1e308, -1e308, "", "x" * 5000, [], [[]], {}, {"a": 1}, [1, "a", None], 3.5]
CODE = (".py", ".mjs", ".cpp", ".hpp", ".txt", ".html")


def _paths(node, prefix=()):
    """Every value's path in the manifest (outside `files`, which the mutations keep consistent)."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, value in items:
        if prefix or key != "files":
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))


def mutate(folder: Path, rng) -> str:
    manifest = _manifest(folder)
    if rng.random() < 0.5:
        data_files = sorted(name for name in manifest["files"] if not name.endswith(CODE))
        name = data_files[rng.integers(len(data_files))]
        data = bytearray((folder / name).read_bytes())
        kind = ("flip", "truncate", "extend")[rng.integers(3)]
        if kind == "flip" and data:
            at = int(rng.integers(len(data)))
            data[at] ^= 1 << int(rng.integers(8))
        elif kind == "truncate":
            data = data[: int(rng.integers(len(data) + 1))]
        else:
            data += bytes(rng.integers(0, 256, int(rng.integers(1, 64)), dtype="uint8"))
        (folder / name).write_bytes(bytes(data))
        _write(folder, manifest)
        return f"{kind} {name}"
    paths = list(_paths(manifest))
    path = paths[rng.integers(len(paths))]
    value = ODD_VALUES[rng.integers(len(ODD_VALUES))]
    node = manifest
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    _write(folder, manifest)
    return f"{'.'.join(map(str, path))} = {json.dumps(value)[:40]}"


def test_hostile_bundles_never_crash_a_consumer_nor_pass_where_verify_py_refuses(bundles, tmp_path):
    import numpy as np

    rng = np.random.default_rng(2026)
    parent = tmp_path / "mutants"
    parent.mkdir()
    intact = Path(shutil.copytree(bundles["cpu_x86"], parent / "intact"))
    folders, what = [], []
    for i in range(MUTANTS):
        folder = Path(shutil.copytree(intact, parent / f"mutant{i:02d}"))
        what.append(mutate(folder, rng))
        folders.append(folder)
    python = consumers.python_main("verify", intact, [[str(folder)] for folder in folders])
    consumers.node_ready(parent, cells.environment(cells.RUNTIMES["onnxruntime-node"]))
    node = [consumers.program(["node", str(folder / "verify.mjs"), str(folder)]) for folder in folders]
    sanitized, env = cpp.sanitized_command(cells.environment(cells.RUNTIMES["onnxruntime-cpp"]), intact)
    cxx = [consumers.program([*sanitized, str(folder)], env=env) for folder in folders]
    wrong = []
    for i, mutation in enumerate(what):
        for consumer, outcome in (("verify.py", python[i]), ("verify.mjs", node[i]), ("C++ (sanitizers)", cxx[i])):
            if not outcome.documented or (outcome.code == 0 and python[i].code != 0):
                wrong.append(f"{mutation}: {consumer} exit {outcome.code} (verify.py {python[i].code}): "
                             f"{outcome.message[:400]}")
    assert not wrong, "\n".join(wrong)
    assert sum(outcome.code != 0 for outcome in python) > MUTANTS // 4  # many mutations were hostile
