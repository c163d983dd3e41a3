"""The runtime matrix: each bundle proven by its own consumer code on the runtime it will run on.

A deployment team runs a bundle with only its runtime installed, so each cell runs the bundle's shipped
checker (verify.py, verify.mjs, the C++ consumer, the web page) in an environment that holds that runtime
(envs.py and cpp.py build them). The cells are the `Runtime(...)` declarations in RUNTIMES below, one each, and
nothing else lists them: docs/handoff.md's table of cells is tested against RUNTIMES.

Environments are cached under `.cache/runtimes/` beside the code, so scratch copies and later runs reuse them.
A record holds no date or timing: the manifest that carries it must be the same bytes on every run of the
same commit.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from pipeline.core.errors import PipelineError, RuntimeCellFailure
from pipeline.core.io import exclusive, sha256_file
from pipeline.deploy.contents import content_digest
from pipeline.present import log as logs
from pipeline.runtimes import browser, cpp, device_records, envs
from pipeline.runtimes.envs import RuntimeUnavailable

CACHE = Path(__file__).resolve().parents[2] / ".cache" / "runtimes"
log = logs.get(__name__)


# The PyPI package that gives each execution provider (each installs the `onnxruntime` module): what a model
# card tells a deployment team to install. The one map of provider to package.
PROVIDER_PACKAGES = {"CPUExecutionProvider": "onnxruntime", "CUDAExecutionProvider": "onnxruntime-gpu",
                     "TensorrtExecutionProvider": "onnxruntime-gpu",
                     "OpenVINOExecutionProvider": "onnxruntime-openvino"}
# The pip requirement a card gives for each package when no runtime cell verified the bundle with one: this
# environment's onnxruntime; the newest onnxruntime-gpu on PyPI, whose `cuda` and `cudnn` extras bring the CUDA 13
# and cuDNN 9 libraries it was built for as wheels (1.32.0 is not published for GPUs); the OpenVINO cell's.
PINNED = {"onnxruntime": f"onnxruntime=={version('onnxruntime')}",
          "onnxruntime-gpu": "onnxruntime-gpu[cuda,cudnn]==1.31.1",
          "onnxruntime-openvino": envs.OPENVINO_EP_PACKAGE}


# What each GPU provider needs beside the Python package: what ONNX Runtime loads at run time that no wheel has.
SYSTEM_LIBRARIES = {
    "CUDAExecutionProvider": "an NVIDIA driver for CUDA 13 (the CUDA and cuDNN libraries come with the extras)",
    "TensorrtExecutionProvider": "TensorRT 10 (libnvinfer) and an NVIDIA driver for CUDA 13",
}
# Providers no wheel has: those of mobile ORT builds (Android, iOS), and onnxruntime-web's WebAssembly.
NOT_IN_A_WHEEL = {
    "NnapiExecutionProvider": "an Android app with ONNX Runtime Mobile (onnxruntime-android)",
    "CoreMLExecutionProvider": "an iOS/macOS app with ONNX Runtime (onnxruntime-c / onnxruntime-objc)",
    "wasm": "a web browser: serve the folder and open index.html, which checks the bundle itself",
}


def provider_package(provider: str) -> str:
    return PROVIDER_PACKAGES.get(provider, "onnxruntime")


def provider_requirement(provider: str) -> str:
    """The pinned pip requirement of the provider's package (quoted where a shell would expand its brackets)."""
    requirement = PINNED[provider_package(provider)]
    return f"'{requirement}'" if "[" in requirement else requirement


def provider_needs(provider: str) -> dict[str, str]:
    """What a consumer installs for `provider`: the manifest's target.install entry, read by every checker."""
    if provider in NOT_IN_A_WHEEL:
        return {"package": NOT_IN_A_WHEEL[provider]}
    needs = {"package": f"pip install {provider_requirement(provider)}"}
    return needs | ({"system": SYSTEM_LIBRARIES[provider]} if provider in SYSTEM_LIBRARIES else {})


@dataclass(frozen=True, kw_only=True)
class Runtime:
    """One cell of the runtime matrix, declared once: what it is, how its environment is set up, how the
    bundle's checker runs in it. A target lists cells by name (conf/target/*.yaml `runtimes:`)."""
    name: str
    package: str                                  # what runs the model, pinned (recorded in verified_on)
    provider: str                                 # the execution provider the checker must run on
    architecture: str
    emulated: bool = False
    spec: Callable[[], str] | None = None         # what the cached environment holds; None: nothing to build
    build: Callable[[Path], None] | None = None   # fills an empty folder with that environment
    command: Callable[[Path], tuple[list[str], dict[str, str]]] = lambda _: ([sys.executable], {})
    script: str = "verify.py"                     # the bundle's checker this cell runs
    # How the checker runs when it is not `script` under `command`'s interpreter: (env root, bundle) -> (argv,
    # env); the C++ consumer is first built from the bundle's own sources.
    checker: Callable[[Path, Path], tuple[list[str], dict[str, str]]] | None = None
    # Node resolves packages from the script's folder upwards: the bundle runs from a copy inside the env.
    runs_inside_env: bool = False
    in_browser: bool = False                      # the bundle's own page in Chromium, not a script
    can_run_here: bool = True                     # False: no registry this pipeline builds from has it


ORT = f"onnxruntime=={version('onnxruntime')}"
RUNTIMES = {r.name: r for r in (
    Runtime(name="onnxruntime", package=f"{ORT} on Debian 12's Python 3.11.2", provider="CPUExecutionProvider",
            architecture="x86_64", spec=envs.debian_python_spec, build=envs.build_debian_python,
            command=envs.debian_python_command),
    Runtime(name="onnxruntime-openvino", package=envs.OPENVINO_EP_PACKAGE, provider="OpenVINOExecutionProvider",
            architecture="x86_64", spec=envs.openvino_spec, build=envs.build_openvino,
            command=lambda root: ([str(root / "bin" / "python")], {})),
    Runtime(name="onnxruntime-aarch64", package=f"{ORT} (manylinux aarch64 wheel)", provider="CPUExecutionProvider",
            architecture="aarch64", emulated=True, spec=envs.aarch64_spec, build=envs.build_aarch64,
            command=envs.aarch64_command),
    Runtime(name="onnxruntime-node", package=envs.NODE_PACKAGE, provider="CPUExecutionProvider",
            architecture="x86_64", spec=lambda: envs.NODE_PACKAGE, build=envs.build_npm(envs.NODE_PACKAGE),
            command=lambda _: (["node"], {}), script="verify.mjs", runs_inside_env=True),
    Runtime(name="onnxruntime-web", package=f"{envs.WEB_PACKAGE} in Chromium", provider="wasm",
            architecture="wasm32", spec=lambda: envs.WEB_PACKAGE, build=envs.build_npm(envs.WEB_PACKAGE),
            in_browser=True),
    Runtime(name="onnxruntime-cpp", package=f"{ORT} library, libonnxruntime-dev (trixie) headers, C++ API",
            provider="CPUExecutionProvider", architecture="x86_64", spec=cpp.native_spec, build=cpp.build_native,
            script="cpp/consumer.cpp", checker=cpp.native_command),
    Runtime(name="onnxruntime-cpp-aarch64", package=f"{ORT} (manylinux aarch64 wheel) library, C++ API",
            provider="CPUExecutionProvider", architecture="aarch64", emulated=True, spec=cpp.cross_spec,
            build=cpp.build_cross(lambda: environment(RUNTIMES["onnxruntime-aarch64"])),
            script="cpp/consumer.cpp", checker=cpp.cross_command(lambda: environment(RUNTIMES["onnxruntime-aarch64"]))),
    # Declared so that the matrix says so: Java cannot be proven from the registries runtimes are built from.
    Runtime(name="onnxruntime-java", package="com.microsoft.onnxruntime:onnxruntime (Maven Central)",
            provider="CPUExecutionProvider", architecture="x86_64", spec=lambda: "java", build=envs.no_java,
            can_run_here=False),
)}


# Not a cell of the matrix (no bundle checker runs there): the environment in which the model package's OpenVINO
# variant is opened through ORT's package API, with OpenVINO's EP as a plugin of this onnxruntime.
OPENVINO_PLUGIN = Runtime(name="onnxruntime-ep-openvino", package=f"{ORT} + {envs.OPENVINO_PLUGIN_PACKAGE}",
                          provider="OpenVINOExecutionProvider", architecture="x86_64", spec=envs.openvino_plugin_spec,
                          build=envs.build_openvino_plugin, command=lambda root: ([str(root / "bin" / "python")], {}))


def package_interpreter(provider: str) -> tuple[list[str], str]:
    """The interpreter that opens a model package variant on `provider`, and what it is: this environment's for
    the providers its onnxruntime has, the plugin environment for OpenVINO's; RuntimeUnavailable otherwise."""
    import onnxruntime as ort

    if provider in ort.get_available_providers():
        return [sys.executable], ORT
    if provider == OPENVINO_PLUGIN.provider:
        return OPENVINO_PLUGIN.command(environment(OPENVINO_PLUGIN))[0], OPENVINO_PLUGIN.package
    raise RuntimeUnavailable(f"{provider} is not in this onnxruntime ({', '.join(ort.get_available_providers())}), "
                             "and no environment here has it")


def environment(runtime: Runtime) -> Path:
    """The runtime's cached folder, (re)built when what it holds is not what is wanted."""
    root = CACHE / runtime.name
    if runtime.spec is None:
        return root
    wanted = runtime.spec()
    ready = root / ".ready"
    with exclusive(root):  # another process may be building it: wait, then find it ready
        if ready.is_file() and ready.read_text() == wanted:
            return root
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        runtime.build(root)
        ready.write_text(wanted)
    return root


def ready(runtime: Runtime) -> Path:
    """The runtime's environment, built if need be, and Chromium where it runs in a browser; raises
    RuntimeUnavailable with the reason this machine cannot run it."""
    root = environment(runtime)
    if runtime.in_browser:
        envs.check_browser()
    return root


def web_runtime_files() -> list[Path]:
    """onnxruntime-web's WebAssembly build, which the web bundle ships."""
    try:
        root = environment(RUNTIMES["onnxruntime-web"])
    except RuntimeUnavailable as exc:
        raise PipelineError(f"cannot build the web bundle: {exc}") from None
    return [root / "node_modules" / "onnxruntime-web" / "dist" / name for name in envs.WEB_RUNTIME_FILES]


def timer_for(provider: str, runtime_names: list[str]) -> str | None:
    """The target's runtime that runs `provider` and can be set up here, to time candidates on; else None."""
    for name in runtime_names:
        runtime = RUNTIMES[name]
        if runtime.provider != provider:
            continue
        try:
            ready(runtime)
        except RuntimeUnavailable as exc:
            log.warning(f"not timing on {name}: {exc}")
            continue
        return name
    return None


def check(bundle: Path, manifest: dict, name: str, target: str) -> dict:
    """Run the bundle's own checker on one runtime (the checker reads the bundle's manifest.json; this side is
    handed `manifest`, the same, in memory). Returns the record for `verified_on`; a runtime this
    machine cannot set up gives a record with `verified: false` and the reason (and a warning line); a failed
    golden check or a provider that did not run raises RuntimeCellFailure naming target, runtime and cause."""
    runtime = RUNTIMES.get(name)
    if runtime is None:
        raise PipelineError(f"unknown runtime {name!r} (known: {', '.join(RUNTIMES)})")
    listed = manifest["target"]["providers"]
    if runtime.provider not in listed:
        raise PipelineError(f"{target} does not run on {runtime.provider} ({runtime.name}); its providers: "
                            f"{', '.join(listed)}")
    cell = {"runtime": runtime.name, "package": runtime.package, "provider": runtime.provider,
            "architecture": runtime.architecture, "emulated": runtime.emulated}
    try:
        root = ready(runtime)
    except RuntimeUnavailable as exc:
        log.warning(f"{target} not verified on {runtime.name}: {exc}")
        return {**cell, "verified": False, "reason": str(exc)}
    report = _browser(bundle, target) if runtime.in_browser else _script(bundle, runtime, root, target)
    return {**cell, "verified": True, "onnxruntime": report["onnxruntime"], "machine": report["machine"],
            "golden_samples": report["golden_samples"], "golden_pictures": report.get("golden_pictures", 0),
            "max_abs_delta": quoted_delta(report["max_abs_delta"], manifest["golden"].get("grid")),
            "top1_agreement": float(report["top1_agreement"]),
            **({"browser": report["browser"], "drawn": report["drawn"]} if "drawn" in report else {})}


def quoted_delta(delta: float, grid: float | None) -> float:
    """A checker's max |Δ| from the golden outputs, rounded up to their grid (bundle.golden_grid): the
    runtime's own kernel rounding (~1e-6, by CPU) would otherwise change the manifest's bytes from CPU to CPU.
    It reads "within this many grid steps of the golden values"."""
    return math.ceil(delta / grid) * grid if grid else float(f"{delta:.2g}")


def _script(bundle: Path, runtime: Runtime, root: Path, target: str) -> dict:
    """verify.py / verify.mjs --provider P --json, with nothing of this environment's Python leaking in. One
    process at a time per environment: the bundle's copy and the C++ builds live in its folder."""
    with exclusive(root):
        return _run_checker(bundle, runtime, root, target)


def _run_checker(bundle: Path, runtime: Runtime, root: Path, target: str) -> dict:
    if runtime.runs_inside_env:
        place = root / "bundles" / target
        shutil.rmtree(place, ignore_errors=True)
        bundle = Path(shutil.copytree(bundle, place))
    if runtime.checker is not None:
        checker, extra_env = runtime.checker(root, bundle)
    else:
        interpreter, extra_env = runtime.command(root)
        checker = [*interpreter, runtime.script]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env |= {"PYTHONDONTWRITEBYTECODE": "1", **extra_env}
    done = subprocess.run([*checker, ".", "--provider", runtime.provider, "--json"], cwd=bundle, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        reason = (done.stderr.strip() or done.stdout.strip() or f"exit {done.returncode}").splitlines()[-1]
        raise RuntimeCellFailure(f"{target}: the bundle's {runtime.script} failed on {runtime.name} "
                                 f"({runtime.provider}): {reason}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _browser(bundle: Path, target: str) -> dict:
    """The page's verify(), then each golden picture's digit (as the bundle prepares it) drawn on its canvas:
    the page must show the label recorded for that picture."""
    try:
        report = browser.check_page(bundle, browser.golden_digits(bundle))
    except Exception as exc:  # the page's own errors come back as playwright errors
        raise RuntimeCellFailure(f"{target}: the web page failed in Chromium (onnxruntime-web, wasm): "
                                 f"{str(exc).splitlines()[0]}") from None
    drawn = report["drawn"]
    if drawn["read_correctly"] != drawn["digits"]:
        raise RuntimeCellFailure(f"{target}: the web page read {drawn['read_correctly']} of {drawn['digits']} drawn "
                                 f"digits as recorded (it showed {drawn['labels']})")
    return report


def verified_on(bundle: Path, manifest: dict, target: str, providers: list[str], runtimes: list[str],
                device_runs: Path, trusted_verifiers: dict[str, str]) -> list[dict]:
    """The manifest's `verified_on`: one record per runtime cell run here, the facts of each signed record in
    `device_runs` that a trusted verifier made of this very bundle and checker (device_records.py), and a
    `verified: false` record, with the reason, for each provider nothing proved."""
    records = [check(bundle, manifest, name, target) for name in runtimes]
    content, checker = content_digest(manifest["files"]), sha256_file(bundle / "verify.py")
    judged = device_records.judge(Path(device_runs), target, content, checker, trusted_verifiers)
    records += judged.accepted
    for provider in providers:
        if not any(r["provider"] == provider for r in records):
            records.append({"provider": provider, "verified": False,
                            "reason": _unproved(provider, target, content, judged.refused.get(provider, []),
                                                Path(device_runs))})
    return records


def _unproved(provider: str, target: str, content: str, refused: list[str], device_runs: Path) -> str:
    """Why nothing proved `provider`, and the one command that would, run where the provider is."""
    why = f"; not counted: {'; '.join(refused)}" if refused else ""
    return (f"no runtime with {provider} runs on this machine, and {device_runs} holds no trusted record of this "
            f"bundle (content sha256 {content[:12]}) on it{why}: on a machine with {provider}, run `python {target}/"
            f"verify.py {target} --record {target}.{provider}.json --record-key VERIFIER.pem` and commit that file to "
            f"{device_runs}/")


def require_ran(records: list[dict], target: str) -> None:
    """A gate cannot pass on nothing: every cell that this pipeline can set up must have run; a RuntimeCellFailure
    names the ones that did not, and why."""
    missing = [r for r in records if r.get("runtime") in RUNTIMES and not r["verified"]
               and RUNTIMES[r["runtime"]].can_run_here]
    if missing:
        raise RuntimeCellFailure(f"{target}: runtime cell(s) that this machine should run did not: "
                                 + "; ".join(f"{r['runtime']} ({r['reason']})" for r in missing)
                                 + f" (set them up, or drop them from target.{target}.runtimes)")


def where(record: dict) -> str:
    """Where a record's run happened: the device, or the architecture and whether it was emulated."""
    if record.get("device"):
        return record["device"]
    return record.get("architecture", "—") + (" (emulated)" if record.get("emulated") else "")


def summary(record: dict) -> str:
    """One line for model cards, reports and tables."""
    if not record["verified"]:
        return f"{record['provider']}: not verified ({record['reason']})"
    return (f"{record['provider']} on {where(record)} with {record['package']}: {record['golden_samples']} golden "
            f"samples, max |Δ| {record['max_abs_delta']:.2g}, top-1 agreement {record['top1_agreement']:.0%}")
