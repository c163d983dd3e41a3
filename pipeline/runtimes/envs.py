"""Building each runtime's environment from the registries alone (PyPI, npm, Debian), under .cache/runtimes/.

Each builder takes its (empty) folder and fills it; runtimes/__init__.py rebuilds a folder whose recorded spec
(`.ready`) differs from the wanted one, so a version bump here refreshes the cache. A step that fails raises
RuntimeUnavailable with one line naming the step and the tool's last line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

OPENVINO_EP_PACKAGE = "onnxruntime-openvino==1.24.1"
# OpenVINO's EP as a plugin library of this environment's onnxruntime (1.32): what ORT's model package API, which
# onnxruntime-openvino (an older release) lacks, opens an OpenVINO variant with (pipeline/runtimes/package_probe.py).
OPENVINO_PLUGIN_PACKAGE = "onnxruntime-ep-openvino==1.8.1"
NODE_PACKAGE = "onnxruntime-node@1.30.0"  # the newest on npm
# The oldest tools the model cards name, which are the ones CI runs the consumers with (a test holds them equal):
# Node.js for verify.mjs, the C++ compiler and CMake for the C++ consumer.
NODE_MAJOR = 20
CXX_TOOLS = ("g++", 12, "cmake", (3, 25))
WEB_PACKAGE = "onnxruntime-web@1.30.0"
# What the web bundle ships of onnxruntime-web: the WebAssembly build only (14 MB, 3.7 MB gzipped).
WEB_RUNTIME_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
CHROMIUM = Path("/usr/bin/chromium")
# The consumer-side Python packages, at this environment's versions (verify.py and infer.py need them).
CONSUMER_WHEELS = tuple(f"{name}=={version(name)}" for name in ("numpy", "pillow"))
# The oldest Python a bundle's card names: Debian 12's own 3.11 (3.11.2), unpacked from bookworm's packages.
DEBIAN_PYTHON = ("python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib")
# qemu-user 10.x by the host's Debian release: bookworm's own 7.2 segfaults on onnxruntime.
QEMU_SUITES = {"12": "bookworm-backports", "13": "trixie"}
# An aarch64 Python 3.11 and the libraries onnxruntime and numpy load, from Debian bookworm arm64.
ARM64_PACKAGES = (
    "python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib", "libc6", "libstdc++6", "libgcc-s1",
    "zlib1g", "libexpat1", "libssl3", "libffi8", "libbz2-1.0", "liblzma5", "libcrypt1", "libuuid1",
    "libsqlite3-0", "libncursesw6", "libtinfo6", "libreadline8",
)
DEBIAN = "http://deb.debian.org/debian"
DEBIAN_VERSION = Path("/etc/debian_version")
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


class RuntimeUnavailable(Exception):
    """This machine cannot set the runtime up; the message is the one-line reason."""


def openvino_spec() -> str:
    return " ".join((OPENVINO_EP_PACKAGE, *CONSUMER_WHEELS))


def build_openvino(root: Path) -> None:
    run([sys.executable, "-m", "venv", "--clear", str(root)], "create the venv")
    run([str(root / "bin" / "python"), "-m", "pip", "install", "-q", OPENVINO_EP_PACKAGE, *CONSUMER_WHEELS],
        f"pip install {OPENVINO_EP_PACKAGE}")


def openvino_plugin_spec() -> str:
    return " ".join((f"onnxruntime=={version('onnxruntime')}", OPENVINO_PLUGIN_PACKAGE, f"numpy=={version('numpy')}"))


def build_openvino_plugin(root: Path) -> None:
    run([sys.executable, "-m", "venv", "--clear", str(root)], "create the venv")
    run([str(root / "bin" / "python"), "-m", "pip", "install", "-q", f"onnxruntime=={version('onnxruntime')}",
         OPENVINO_PLUGIN_PACKAGE, f"numpy=={version('numpy')}"], f"pip install {OPENVINO_PLUGIN_PACKAGE}")


def debian_python_spec() -> str:
    return " ".join(("bookworm", *DEBIAN_PYTHON, f"onnxruntime=={version('onnxruntime')}", *CONSUMER_WHEELS))


def build_debian_python(root: Path) -> None:
    """Debian 12's python3.11 (unpacked, never installed; it runs on the host's C libraries) and the consumer's
    wheels for it from PyPI: nothing of this project's environment."""
    unpack_packages(root, ["deb [arch=amd64] {debian} bookworm main"], ["amd64"], DEBIAN_PYTHON, root / "sysroot",
                    "Debian 12's python3.11")
    run([sys.executable, "-m", "pip", "install", "-q", "--target", str(root / "site"), "--python-version", "3.11",
         "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64", "--only-binary=:all:",
         f"onnxruntime=={version('onnxruntime')}", *CONSUMER_WHEELS], "pip install the consumer's wheels")


def unpack_packages(root: Path, sources: list[str], architectures: list[str], packages, dest: Path,
                    what: str) -> None:
    """Debian packages downloaded with private apt lists under `root` (removed after) and unpacked into `dest`:
    nothing is installed."""
    apt = apt_get(root / "apt", sources, architectures)
    debs = root / "debs"
    debs.mkdir()
    run([*apt, "update", "-q"], f"apt-get update (private lists) for {what}")
    run([*apt, "download", *packages], f"apt-get download {what}", cwd=debs)
    for deb in sorted(debs.glob("*.deb")):
        run(["dpkg-deb", "-x", str(deb), str(dest)], f"unpack {deb.name}")
    shutil.rmtree(debs)
    shutil.rmtree(root / "apt")


def debian_python_command(root: Path) -> tuple[list[str], dict[str, str]]:
    usr = root / "sysroot" / "usr"
    return [str(usr / "bin" / "python3.11")], {"PYTHONHOME": str(usr), "PYTHONPATH": str(root / "site")}


def aarch64_spec() -> str:
    return " ".join((qemu_suite(), f"onnxruntime=={version('onnxruntime')}", *CONSUMER_WHEELS))


def build_aarch64(root: Path) -> None:
    suite = qemu_suite()
    apt = apt_get(root / "apt", ["deb [arch=arm64] {debian} bookworm main",
                                 f"deb [arch=amd64] {{debian}} {suite} main"], ["amd64", "arm64"])
    debs = root / "debs"
    debs.mkdir()
    run([*apt, "update", "-q"], "apt-get update (private lists)")
    run([*apt, "download", f"qemu-user/{suite}", *(f"{p}:arm64" for p in ARM64_PACKAGES)],
        "apt-get download qemu-user and the arm64 packages", cwd=debs)
    for deb in sorted(debs.glob("*.deb")):
        if deb.name.startswith("qemu-user"):
            run(["dpkg-deb", "-x", str(deb), str(debs / "qemu")], f"unpack {deb.name}")
            shutil.move(debs / "qemu" / "usr" / "bin" / "qemu-aarch64", root / "qemu-aarch64")  # static binary
        else:
            run(["dpkg-deb", "-x", str(deb), str(root / "sysroot")], f"unpack {deb.name}")
    run([sys.executable, "-m", "pip", "install", "-q", "--target", str(root / "site"), "--python-version", "3.11",
         "--platform", "manylinux_2_28_aarch64", "--platform", "manylinux_2_17_aarch64", "--only-binary=:all:",
         f"onnxruntime=={version('onnxruntime')}", *CONSUMER_WHEELS], "pip install the aarch64 wheels")
    shutil.rmtree(debs)


def aarch64_command(root: Path) -> tuple[list[str], dict[str, str]]:
    sysroot = root / "sysroot"
    # neoverse-n1: a real Arm server core (and no cpuid warning from onnxruntime).
    return [str(root / "qemu-aarch64"), "-L", str(sysroot), str(sysroot / "usr/bin/python3.11")], {
        "PYTHONPATH": str(root / "site"), "QEMU_CPU": "neoverse-n1"}


def build_npm(package: str):
    def build(root: Path) -> None:
        (root / "package.json").write_text('{"private": true}\n')
        env = {**os.environ, "ONNXRUNTIME_NODE_INSTALL": "skip"}  # else onnxruntime-node's script fetches CUDA
        run(["npm", "install", "--no-audit", "--no-fund", "--silent", package], f"npm install {package}", cwd=root,
            env=env)
    return build


def no_java(_root: Path) -> None:
    raise RuntimeUnavailable("no Java consumer: ONNX Runtime's Java binding comes only from Maven Central, and "
                             "runtimes here are built from PyPI, npm and Debian (Debian packages no ONNX Runtime "
                             "for Java)")


def check_browser() -> None:
    if not CHROMIUM.is_file():
        raise RuntimeUnavailable(f"Chromium is not installed ({CHROMIUM}; `apt-get install chromium`)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        raise RuntimeUnavailable("playwright-python is not installed (it drives Chromium)") from None


def qemu_suite() -> str:
    major = DEBIAN_VERSION.read_text().strip().split(".")[0] if DEBIAN_VERSION.is_file() else ""
    if major not in QEMU_SUITES:
        raise RuntimeUnavailable(f"qemu-user 10 comes from Debian {' or '.join(QEMU_SUITES)}; this machine is "
                                 f"{'Debian ' + major if major else 'not Debian'}")
    return QEMU_SUITES[major]


def apt_get(state: Path, sources: list[str], architectures: list[str]) -> list[str]:
    """apt-get with private sources, lists and cache under `state`: the host's dpkg state is never touched.
    `sources` are deb lines (`{debian}`: Debian's mirror), each checked with Debian's archive keyring."""
    (state / "lists" / "partial").mkdir(parents=True)
    (state / "cache" / "archives" / "partial").mkdir(parents=True)
    listing = state / "sources.list"
    listing.write_text("".join(line.replace("deb [", f"deb [signed-by={KEYRING} ", 1).format(debian=DEBIAN) + "\n"
                               for line in sources))
    options = {"Dir::Etc::SourceList": listing, "Dir::Etc::SourceParts": "/dev/null",
               "Dir::State::Lists": state / "lists", "Dir::Cache": state / "cache", "Debug::NoLocking": "1",
               "APT::Sandbox::User": "root"}
    return ["apt-get", *(f"-o{k}={v}" for k, v in options.items()),
            *(f"-oAPT::Architectures::={arch}" for arch in architectures)]


def run(command: list[str], what: str, cwd: Path | None = None, env: dict | None = None) -> None:
    try:
        done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    except OSError as exc:
        raise RuntimeUnavailable(f"cannot {what}: {exc}") from None
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise RuntimeUnavailable(f"cannot {what}: {last}")
