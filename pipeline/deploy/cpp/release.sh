#!/bin/sh
# Make an ONNX Runtime release folder (include/ and lib/, the layout of onnxruntime-linux-*.tgz) from the package
# registries alone, to build this consumer against:
#   sh cpp/release.sh DIR [ONNXRUNTIME_VERSION]    (default: the version that packaged the bundle, its manifest says)
# The C/C++ headers come from Debian trixie's libonnxruntime-dev (apt-get with private lists: nothing is installed,
# no root needed; the C API is versioned, so a newer library serves these headers), the library from the
# onnxruntime wheel on PyPI for this machine (python3 -m pip download). Needs apt-get, dpkg-deb and Debian's
# archive keyring (any Debian or Ubuntu), and python3 with pip.
set -eu
dest=${1:?usage: sh cpp/release.sh DIR [ONNXRUNTIME_VERSION]}
manifest="$(dirname "$0")/../manifest.json"
version=${2:-$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["provenance"]["packaged_with"].split()[-1])' "$manifest")}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
arch=$(dpkg --print-architecture)
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs"
echo "deb [arch=$arch signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
  > "$work/sources.list"
apt() {
  apt-get -q -o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null \
    -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o Debug::NoLocking=1 \
    -o APT::Sandbox::User=root "$@"
}
apt update >/dev/null
(cd "$work/debs" && apt download libonnxruntime-dev >/dev/null)
dpkg-deb -x "$work"/debs/libonnxruntime-dev_*.deb "$work/headers"
python3 -m pip download -q --no-deps --only-binary=:all: "onnxruntime==$version" -d "$work/wheel"
python3 -m zipfile -e "$work"/wheel/onnxruntime-*.whl "$work/unzipped"
mkdir -p "$dest/include" "$dest/lib"
cp -R "$work/headers/usr/include/onnxruntime/." "$dest/include/"
library=$(ls "$work"/unzipped/onnxruntime/capi/libonnxruntime.so.1.*)
cp "$library" "$dest/lib/"
ln -sf "$(basename "$library")" "$dest/lib/libonnxruntime.so.1"
ln -sf libonnxruntime.so.1 "$dest/lib/libonnxruntime.so"
echo "ONNX Runtime $version (headers: Debian trixie libonnxruntime-dev; library: the onnxruntime wheel) in $dest"
