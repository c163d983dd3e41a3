"""The runtime matrix: each bundle proven by its own verify.py on the runtime it will run on.

A deployment team runs a bundle with only its runtime installed, so each cell runs the bundle's shipped
`verify.py --provider P --json` in an environment that holds that runtime and nothing from this repo:

- `onnxruntime`: this environment's onnxruntime, CPU EP, native x86-64;
- `onnxruntime-openvino`: an isolated venv (its module is also called `onnxruntime`), OpenVINO EP;
- `onnxruntime-aarch64`: the aarch64 onnxruntime wheel in a Debian arm64 sysroot with an aarch64 Python 3.11,
  run under qemu-aarch64 10.x user-mode emulation (bookworm's qemu 7.2 segfaults on onnxruntime);
- `onnxruntime-node`: the bundle's verify.mjs with onnxruntime-node from npm, in a project folder of its own
  (the bundle is copied into it, as a Node team would place it, so `import "onnxruntime-node"` resolves).

Environments come from the registries alone (PyPI, Debian) and are cached under `.cache/runtimes/` beside the
code, so scratch copies and later runs reuse them. A record holds no date or timing: the manifest that carries
it must be the same bytes on every run of the same commit.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from pipeline.errors import GateFailure, PipelineError

CACHE = Path(__file__).resolve().parent.parent / ".cache" / "runtimes"
OPENVINO_EP_PACKAGE = "onnxruntime-openvino==1.24.1"
NODE_PACKAGE = "onnxruntime-node@1.30.0"  # the newest on npm
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


@dataclass(frozen=True)
class Runtime:
    name: str
    package: str
    provider: str
    architecture: str
    emulated: bool
    prepare: Callable[[Path], tuple[list[str], dict[str, str]]]  # env folder -> (interpreter command, extra env)
    script: str = "verify.py"
    # Node resolves packages from the script's folder upwards: the bundle runs from a copy inside the env.
    runs_inside_env: bool = False


def _main_env(_: Path) -> tuple[list[str], dict[str, str]]:
    return [sys.executable], {}


def _openvino_env(root: Path) -> tuple[list[str], dict[str, str]]:
    python = root / "bin" / "python"
    if not (root / ".ready").is_file():
        _run([sys.executable, "-m", "venv", "--clear", str(root)], "create the venv")
        _run([str(python), "-m", "pip", "install", "-q", OPENVINO_EP_PACKAGE, f"numpy=={version('numpy')}"],
             f"pip install {OPENVINO_EP_PACKAGE}")
        (root / ".ready").write_text(OPENVINO_EP_PACKAGE)
    return [str(python)], {}


def _aarch64_env(root: Path) -> tuple[list[str], dict[str, str]]:
    sysroot, site = root / "sysroot", root / "site"
    qemu = root / "qemu-aarch64"
    if not (root / ".ready").is_file():
        suite = _qemu_suite()
        root.mkdir(parents=True, exist_ok=True)
        apt = _apt(root, suite)
        debs = root / "debs"
        debs.mkdir(exist_ok=True)
        _run([*apt, "update", "-q"], "apt-get update (private lists)")
        _run([*apt, "download", f"qemu-user/{suite}", *(f"{p}:arm64" for p in ARM64_PACKAGES)],
             "apt-get download qemu-user and the arm64 packages", cwd=debs)
        for deb in sorted(debs.glob("*.deb")):
            if deb.name.startswith("qemu-user"):
                _unpack_qemu(deb, qemu)
            else:
                _run(["dpkg-deb", "-x", str(deb), str(sysroot)], f"unpack {deb.name}")
        _run([sys.executable, "-m", "pip", "install", "-q", "--target", str(site), "--python-version", "3.11",
              "--platform", "manylinux_2_28_aarch64", "--platform", "manylinux_2_17_aarch64",
              "--only-binary=:all:", f"onnxruntime=={version('onnxruntime')}", f"numpy=={version('numpy')}"],
             "pip install the aarch64 onnxruntime wheel")
        shutil.rmtree(debs)
        (root / ".ready").write_text(suite)
    # neoverse-n1: a real Arm server core (and no cpuid warning from onnxruntime).
    return [str(qemu), "-L", str(sysroot), str(sysroot / "usr/bin/python3.11")], {
        "PYTHONPATH": str(site), "QEMU_CPU": "neoverse-n1"}


def _node_env(root: Path) -> tuple[list[str], dict[str, str]]:
    if not (root / ".ready").is_file():
        root.mkdir(parents=True, exist_ok=True)
        (root / "package.json").write_text('{"private": true}\n')
        env = {**os.environ, "ONNXRUNTIME_NODE_INSTALL": "skip"}  # else its install script fetches CUDA
        _run(["npm", "install", "--no-audit", "--no-fund", "--silent", NODE_PACKAGE], f"npm install {NODE_PACKAGE}",
             cwd=root, env=env)
        (root / ".ready").write_text(NODE_PACKAGE)
    return ["node"], {}


RUNTIMES = {r.name: r for r in (
    Runtime("onnxruntime", f"onnxruntime=={version('onnxruntime')}", "CPUExecutionProvider", "x86_64", False,
            _main_env),
    Runtime("onnxruntime-openvino", OPENVINO_EP_PACKAGE, "OpenVINOExecutionProvider", "x86_64", False,
            _openvino_env),
    Runtime("onnxruntime-aarch64", f"onnxruntime=={version('onnxruntime')} (manylinux aarch64 wheel)",
            "CPUExecutionProvider", "aarch64", True, _aarch64_env),
    Runtime("onnxruntime-node", NODE_PACKAGE, "CPUExecutionProvider", "x86_64", False, _node_env,
            script="verify.mjs", runs_inside_env=True),
)}


def _qemu_suite() -> str:
    release = DEBIAN_VERSION
    major = release.read_text().strip().split(".")[0] if release.is_file() else ""
    if major not in QEMU_SUITES:
        raise RuntimeUnavailable(f"qemu-user 10 comes from Debian {' or '.join(QEMU_SUITES)}; this machine is "
                                 f"{'Debian ' + major if major else 'not Debian'}")
    return QEMU_SUITES[major]


def _apt(root: Path, qemu_suite: str) -> list[str]:
    """apt-get with private sources, lists and cache: the host's dpkg state is never touched."""
    state = root / "apt"
    (state / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (state / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    sources = state / "sources.list"
    sources.write_text(f"deb [arch=arm64 signed-by={KEYRING}] {DEBIAN} bookworm main\n"
                       f"deb [arch=amd64 signed-by={KEYRING}] {DEBIAN} {qemu_suite} main\n")
    options = {"Dir::Etc::SourceList": sources, "Dir::Etc::SourceParts": "/dev/null",
               "Dir::State::Lists": state / "lists", "Dir::Cache": state / "cache", "Debug::NoLocking": "1",
               "APT::Sandbox::User": "root", "APT::Architectures::": "amd64"}
    return ["apt-get", *(f"-o{k}={v}" for k, v in options.items()), "-oAPT::Architectures::=arm64"]


def _unpack_qemu(deb: Path, qemu: Path) -> None:
    """Only the static qemu-aarch64 binary out of qemu-user."""
    scratch = deb.parent / "qemu"
    _run(["dpkg-deb", "-x", str(deb), str(scratch)], f"unpack {deb.name}")
    shutil.move(scratch / "usr" / "bin" / "qemu-aarch64", qemu)


def _run(command: list[str], what: str, cwd: Path | None = None, env: dict | None = None) -> None:
    try:
        done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    except OSError as exc:
        raise RuntimeUnavailable(f"cannot {what}: {exc}") from None
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise RuntimeUnavailable(f"cannot {what}: {last}")


def environment(runtime: Runtime) -> tuple[list[str], dict[str, str]]:
    """The runtime's cached environment, built on first use (a half-built one is rebuilt)."""
    root = CACHE / runtime.name
    if root.exists() and not (root / ".ready").is_file():
        shutil.rmtree(root)
    return runtime.prepare(root)


def check(bundle: Path, name: str, target: str) -> dict:
    """Run the bundle's own verify.py on one runtime. Returns the record for `verified_on`; a runtime this
    machine cannot set up gives a record with `verified: false` and the reason; a failed golden check or a
    provider that did not run raises GateFailure naming target, runtime and cause."""
    runtime = RUNTIMES.get(name)
    if runtime is None:
        raise PipelineError(f"unknown runtime {name!r} (known: {', '.join(RUNTIMES)})")
    listed = json.loads((bundle / "manifest.json").read_text())["target"]["providers"]
    if runtime.provider not in listed:
        raise PipelineError(f"{target} does not run on {runtime.provider} ({runtime.name}); its providers: "
                            f"{', '.join(listed)}")
    cell = {"runtime": runtime.name, "package": runtime.package, "provider": runtime.provider,
            "architecture": runtime.architecture, "emulated": runtime.emulated}
    try:
        interpreter, extra_env = environment(runtime)
    except RuntimeUnavailable as exc:
        print(f"warning: {target} not verified on {runtime.name}: {exc}", file=sys.stderr)
        return {**cell, "verified": False, "reason": str(exc)}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env |= {"PYTHONDONTWRITEBYTECODE": "1", **extra_env}
    if runtime.runs_inside_env:
        place = CACHE / runtime.name / "bundles" / target
        shutil.rmtree(place, ignore_errors=True)
        bundle = Path(shutil.copytree(bundle, place))
    done = subprocess.run([*interpreter, runtime.script, ".", "--provider", runtime.provider, "--json"], cwd=bundle,
                          env=env, capture_output=True, text=True)
    if done.returncode != 0:
        reason = (done.stderr.strip() or done.stdout.strip() or f"exit {done.returncode}").splitlines()[-1]
        raise GateFailure(f"{target}: the bundle's verify.py failed on {runtime.name} ({runtime.provider}): {reason}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return {**cell, "verified": True, "onnxruntime": report["onnxruntime"], "machine": report["machine"],
            "golden_samples": report["golden_samples"], "max_abs_delta": float(f"{report['max_abs_delta']:.2g}"),
            "top1_agreement": float(report["top1_agreement"])}


def verified_on(bundle: Path, target: str, providers: list[str], runtimes: list[str], device_runs: Path) -> list[dict]:
    """The manifest's `verified_on`: one record per runtime cell run here, the runs recorded on hardware this
    machine lacks (metrics/device_runs.json) whose model bytes match the shipped model's, and a `verified:
    false` record, with the reason, for each of the target's providers that nothing proved."""
    from pipeline.io import sha256_file

    records = [check(bundle, name, target) for name in runtimes]
    model = json.loads((bundle / "manifest.json").read_text())["model"]["file"]
    digest = sha256_file(bundle / model)
    recorded = json.loads(device_runs.read_text())["runs"] if device_runs.is_file() else []
    records += [{k: v for k, v in run.items() if k not in ("target", "model_sha256")} for run in recorded
                if run["target"] == target and run["model_sha256"] == digest]
    for provider in providers:
        if not any(r["provider"] == provider for r in records):
            records.append({"provider": provider, "verified": False, "reason": (
                f"no runtime with {provider} runs on this machine, and {device_runs.name} records no run of this "
                f"model (sha256 {digest[:12]}) on it")})
    return records


def summary(record: dict) -> str:
    """One line for model cards, reports and tables."""
    if not record["verified"]:
        return f"{record['provider']}: not verified ({record['reason']})"
    where = record.get("device") or record["architecture"] + (" (emulated)" if record["emulated"] else "")
    return (f"{record['provider']} on {where} with {record['package']}: {record['golden_samples']} golden samples, "
            f"max |Δ| {record['max_abs_delta']:.2g}, top-1 agreement {record['top1_agreement']:.0%}")
