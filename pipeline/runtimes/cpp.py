"""The C++ cells: each bundle's own cpp/ consumer, built with its own CMakeLists.txt, run on the golden check.

A deployment team builds it against an ONNX Runtime release (include/ + lib/, the layout of the
onnxruntime-linux-*.tgz archives). The cells make that folder from the registries alone: the C/C++ headers
from Debian trixie's libonnxruntime-dev (1.21; the C API is versioned, so a newer library serves them) and
the library of this environment's onnxruntime wheel (x86-64), or of the same version's manylinux aarch64 wheel,
built with Debian bookworm's aarch64 cross g++ (unpacked, never installed) and run under the aarch64 cell's
qemu. Each check builds the consumer afresh from the bundle's copy of the sources, outside the bundle.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

from pipeline.core.errors import BuildFailure
from pipeline.runtimes.envs import RuntimeUnavailable, apt_get, run, unpack_packages

HEADERS = ("trixie", "libonnxruntime-dev")  # the only registry package with ONNX Runtime's C/C++ headers
CROSS_PACKAGES = (  # bookworm's aarch64 cross g++ and the arm64 C/C++ runtime it links against
    "binutils-aarch64-linux-gnu", "cpp-12-aarch64-linux-gnu", "gcc-12-aarch64-linux-gnu", "g++-12-aarch64-linux-gnu",
    "libgcc-12-dev-arm64-cross", "libstdc++-12-dev-arm64-cross", "libc6-dev-arm64-cross", "libc6-arm64-cross",
    "linux-libc-dev-arm64-cross", "libgcc-s1-arm64-cross", "libstdc++6-arm64-cross",
)
CROSS_CXX = "usr/bin/aarch64-linux-gnu-g++-12"


def native_spec() -> str:
    return f"{'/'.join(HEADERS)} headers, onnxruntime=={version('onnxruntime')} x86_64 library"


RELEASE_SCRIPT = Path(__file__).resolve().parents[1] / "deploy" / "cpp" / "release.sh"


def build_native(root: Path) -> None:
    """root/release, made by the bundle's own cpp/release.sh as a deployment team makes it: trixie's headers and
    the library of the onnxruntime wheel of this environment's version, under the names a release uses."""
    _require("cmake", "g++", "dpkg-deb")
    run(["sh", str(RELEASE_SCRIPT), str(root / "release"), version("onnxruntime")], "make the ONNX Runtime release "
        "(cpp/release.sh)")


def cross_spec() -> str:
    return f"{native_spec()}, bookworm cross g++ ({len(CROSS_PACKAGES)} packages), aarch64 wheel library"


def build_cross(aarch64_env: Callable[[], Path]):
    """The aarch64 release folder (library from the aarch64 cell's wheel) and the cross toolchain in `xgcc/`."""
    def build(root: Path) -> None:
        _require("cmake")
        _headers(root)
        _library(root, aarch64_env() / "site" / "onnxruntime" / "capi")
        unpack_packages(root, ["deb [arch=amd64] {debian} bookworm main"], ["amd64"], CROSS_PACKAGES, root / "xgcc",
                        "the aarch64 cross g++ (bookworm)")
    return build


def _require(*tools: str) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        raise RuntimeUnavailable(f"{', '.join(missing)} not installed (apt-get install {' '.join(missing)})")


def _headers(root: Path) -> None:
    suite, package = HEADERS
    apt = apt_get(root / "apt-headers", [f"deb [arch=amd64] {{debian}} {suite} main"], ["amd64"])
    debs = root / "debs-headers"
    debs.mkdir()
    run([*apt, "update", "-q"], f"apt-get update (private lists, {suite})")
    run([*apt, "download", package], f"apt-get download {package} ({suite})", cwd=debs)
    unpacked = root / "unpacked"
    for deb in debs.glob("*.deb"):
        run(["dpkg-deb", "-x", str(deb), str(unpacked)], f"unpack {deb.name}")
    shutil.copytree(unpacked / "usr" / "include" / "onnxruntime", root / "release" / "include")
    for scratch in (debs, unpacked, root / "apt-headers"):
        shutil.rmtree(scratch)


def _library(root: Path, capi: Path) -> None:
    """lib/libonnxruntime.so.1.x.y as the wheel ships it, with the .so.1 (its SONAME) and .so names."""
    lib = root / "release" / "lib"
    lib.mkdir(parents=True)
    found = sorted(capi.glob("libonnxruntime.so.1.*"))
    if not found:
        raise RuntimeUnavailable(f"no libonnxruntime.so.1.* in {capi}")
    shutil.copy(found[0], lib / found[0].name)
    (lib / "libonnxruntime.so.1").symlink_to(found[0].name)
    (lib / "libonnxruntime.so").symlink_to("libonnxruntime.so.1")


def native_command(root: Path, bundle: Path) -> tuple[list[str], dict[str, str]]:
    return [str(_build(root, bundle, []))], {}


SANITIZERS = "-fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all -fno-omit-frame-pointer"


def sanitized_command(root: Path, bundle: Path) -> tuple[list[str], dict[str, str]]:
    """The consumer built with AddressSanitizer and UBSan (any finding ends the run with a report on stderr), for
    the hostile-bundle pass; ONNX Runtime's own allocations at exit are not this consumer's leaks."""
    binary = _build(root, bundle, [f"-DCMAKE_CXX_FLAGS={SANITIZERS}"], build_name=f"{bundle.name}-sanitized")
    return [str(binary)], {"ASAN_OPTIONS": "detect_leaks=0", "UBSAN_OPTIONS": "print_stacktrace=1"}


def cross_command(aarch64_env: Callable[[], Path]):
    def command(root: Path, bundle: Path) -> tuple[list[str], dict[str, str]]:
        xgcc = root / "xgcc"
        toolchain = ["-DCMAKE_SYSTEM_NAME=Linux", "-DCMAKE_SYSTEM_PROCESSOR=aarch64",
                     f"-DCMAKE_CXX_COMPILER={xgcc / CROSS_CXX}", f"-DCMAKE_SYSROOT={xgcc}"]
        binary = _build(root, bundle, toolchain, {"LD_LIBRARY_PATH": str(xgcc / "usr/lib/x86_64-linux-gnu")})
        qemu = aarch64_env() / "qemu-aarch64"
        return [str(qemu), "-L", str(xgcc / "usr/aarch64-linux-gnu"), str(binary)], {"QEMU_CPU": "neoverse-n1"}
    return command


def _build(root: Path, bundle: Path, toolchain: list[str], env: dict[str, str] | None = None,
           build_name: str | None = None) -> Path:
    """cmake + build of the bundle's cpp/ (as its README says), in a folder of the cell's, never the bundle's: a
    bundle that does not build fails its cell."""
    build = root / "build" / (build_name or bundle.name)
    shutil.rmtree(build, ignore_errors=True)
    environ = {**os.environ, **(env or {})}
    for step, command in (("configure", ["cmake", "-S", str(bundle / "cpp"), "-B", str(build),
                                         f"-DONNXRUNTIME_ROOT={root / 'release'}", *toolchain]),
                          ("build", ["cmake", "--build", str(build)])):
        try:
            done = subprocess.run(command, capture_output=True, text=True, env=environ)
        except OSError as exc:
            raise RuntimeUnavailable(f"cannot run cmake: {exc}") from None
        if done.returncode != 0:
            last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
            raise BuildFailure(f"{bundle.name}: cannot {step} the bundle's C++ consumer (cpp/): {last}")
    return build / "consumer"

