"""The commands README.md and docs/ show, run as written (tests/documented.py) in a fresh working folder: a
user's tree with only the MNIST files, where `pipeline` writes artifacts/ and metrics/ as it would in a clone.

A command may get overrides appended that shrink its work (one epoch on fewer images, fewer timing rounds, one
runtime cell) and nothing else; the rest is the text on the page.
"""

import os
import shutil
import subprocess

import pytest

from pipeline.runtimes import cells
from tests.conftest import CACHE, REPO
from tests.documented import documented, documented_shell

SHRINK_TRAIN = ["train.subset=6000", "train.eval_subset=1000"]
SHRINK_PACKAGE = ["target.cpu_x86.runtimes=[onnxruntime]", "target.cpu_x86.selection.rounds=3",
                  "target.cpu_x86.selection.per_round=10"]
VENV_BIN = REPO / ".venv" / "bin"


def _run(argv: list[str], cwd, *extra: str, env: dict | None = None, expect: int = 0) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    done = subprocess.run([*argv, *extra], cwd=cwd, capture_output=True, text=True, env=environ, timeout=900)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.returncode == expect, f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def tree(tmp_path_factory, mnist_dir):
    """A user's folder after `prepare`, with the model, variants and a cpu_x86 bundle built by the configuration
    page's commands, as written there."""
    root = tmp_path_factory.mktemp("user-tree")
    shutil.copytree(mnist_dir, root / "artifacts" / "data")
    (root / ".cache").symlink_to(CACHE)  # the wheel and runtime caches (paths.cache is .cache)
    _run(documented("pipeline train train.epochs=1 model=tiny"), root, *SHRINK_TRAIN)
    _run(documented("pipeline export --quantize int8"), root)
    _run(documented("pipeline export --quantize int8-dynamic --opset 18"), root)
    _run(documented("pipeline quantize quantize=[int8_static,int8_dynamic]"), root)
    _run(documented("pipeline quantize --variant int8_static_arm64"), root)
    validated = _run(documented("pipeline validate --explain"), root)
    assert "not judged: int8_static_reduce_range (not built: rebuild with `pipeline quantize --variant " \
           "int8_static_reduce_range`)" in validated.stderr
    _run(documented("pipeline package --target cpu_x86"), root, *SHRINK_PACKAGE)
    return root


@pytest.mark.slow
def test_a_bundle_built_by_the_documented_commands_verifies_and_predicts(tree):
    verified = _run(documented("pipeline verify artifacts/deploy/cpu_x86.tar.gz"), tree)
    assert verified.stdout.startswith("consistent")
    _run(documented("pipeline verify artifacts/deploy/cpu_x86.tar.gz --sha256 artifacts/deploy/cpu_x86.tar.gz.sha256"),
         tree)
    for argv in (documented("pipeline predict artifacts/deploy/cpu_x86/digit.png"),
                 documented("pipeline predict artifacts/deploy/cpu_x86/digit.png --target cpu_x86")):
        predicted = _run(argv, tree)
        assert predicted.stdout.startswith("artifacts/deploy/cpu_x86/digit.png: ")


@pytest.mark.slow
def test_a_signed_bundle_as_the_handoff_page_makes_and_checks_it(tree):
    _run(documented_shell("openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt "
                          "-out producer.pem"), tree)
    _run(documented("openssl ec -in producer.pem -pubout -out producer.pub.pem"), tree)
    _run(documented("pipeline package --target cpu_x86 --sign-key producer.pem"), tree, *SHRINK_PACKAGE)
    authentic = _run(documented("pipeline verify artifacts/deploy/cpu_x86.tar.gz --public-key producer.pub.pem"), tree)
    assert authentic.stdout.startswith("authentic")
    _run(documented("model_signing verify key artifacts/deploy/cpu_x86 --signature artifacts/deploy/cpu_x86/model.sig "
                    "--public_key producer.pub.pem"), tree)


@pytest.mark.slow
def test_the_consumers_commands_run_beside_the_bundle(tree):
    deploy = tree / "artifacts" / "deploy"
    python_checks = _run(documented("python cpu_x86/verify.py cpu_x86"), deploy)
    assert "cpu_x86" in python_checks.stdout
    _run(documented("python cpu_x86/verify.py cpu_x86 --provider CPUExecutionProvider --json"), deploy)
    label = _run(documented("python cpu_x86/infer.py cpu_x86/digit.png"), deploy)
    assert label.stdout.startswith("cpu_x86/digit.png")

    node = cells.ready(cells.RUNTIMES["onnxruntime-node"])
    (deploy / "node_modules").symlink_to(node / "node_modules")  # what the page's `npm install` leaves there
    _run(documented("node cpu_x86/verify.mjs cpu_x86"), deploy)

    _run(documented_shell("sh cpu_x86/cpp/release.sh onnxruntime-release && export ORT=$PWD/onnxruntime-release"),
         deploy)
    env = {"ORT": str(deploy / "onnxruntime-release")}
    _run(documented_shell('cmake -S cpu_x86/cpp -B consumer-build -DONNXRUNTIME_ROOT="$ORT"'), deploy, env=env)
    _run(documented("cmake --build consumer-build"), deploy)
    _run(documented("consumer-build/consumer cpu_x86"), deploy)
    _run(documented("consumer-build/consumer cpu_x86 --provider CPUExecutionProvider --json"), deploy)
    classified = _run(documented("consumer-build/consumer cpu_x86 --classify cpu_x86/digit.pgm"), deploy)
    assert classified.stdout.strip()


def test_the_readmes_first_commands_in_the_repository():
    _run(documented_shell("source .venv/bin/activate"), REPO)
    listed = _run(documented("pipeline --help"), REPO)
    assert "predict" in listed.stdout and "verify" in listed.stdout
    _run(documented("pipeline params --check"), REPO)
