"""The bundle's README.md: a short model card a deployment team reads first."""

from __future__ import annotations

from pipeline.runtimes import envs
from pipeline.runtimes.cells import PROVIDER_PACKAGES, SYSTEM_LIBRARIES, provider_package, provider_requirement, summary


def _web_lines(name: str) -> list[str]:
    return ["A static page: serve this folder and open it in a browser, then draw a digit.",
            "```bash", f"python3 -m http.server -b 127.0.0.1 8000 -d {name}   # then open http://127.0.0.1:8000/",
            "```",
            "Everything runs in the browser with onnxruntime-web on WebAssembly (ort.wasm.min.mjs and "
            "ort-wasm-simd-threaded.*); the drawing is prepared by digits.mjs exactly as infer.py prepares an image, "
            "and flagged \"Not a digit?\" by the same bounds.",
            "The Python and C++ tools below check the same model on the CPU EP.", ""]


CPU = "CPUExecutionProvider"


def _pinned(m: dict, provider: str) -> str:
    """The provider's package at the version a runtime cell verified this bundle with (`onnxruntime==1.32.0`);
    where no cell ran that package here, the pinned requirement the cells declare (cells.PINNED)."""
    package = provider_package(provider)
    for record in m["verified_on"]:
        if record.get("verified") and record.get("package", "").startswith(f"{package}=="):
            return record["package"].split()[0]
    return provider_requirement(provider)


def _consumer_lines(m: dict) -> list[str]:
    """How to check and run the bundle from Python, Node.js and C++: commands run from the folder that holds the
    bundle, so nothing lands inside it (every checker refuses files the manifest does not list)."""
    name, primary = m["target"]["name"], m["target"]["providers"][0]
    # A provider no Python wheel (or no standard C++ release) has is checked on the CPU EP, and the command says so.
    in_wheel = primary in PROVIDER_PACKAGES
    python_package = _pinned(m, primary if in_wheel else CPU)
    needs = SYSTEM_LIBRARIES.get(primary)
    cpu_flag = "" if in_wheel else f" --provider {CPU}"
    on_cpu = f"{cpu_flag}  # {primary} is not in a Python wheel" if not in_wheel else (
        "  # every file's sha256, the manifest, golden outputs and pictures")
    lines = [f"Run these from the folder that holds this bundle (`{name}/`): nothing is written inside it. Each "
             f"checker runs the golden check on {primary} (exit 3 where this machine lacks it) unless told another "
             "provider.", "",
             f"Python 3.11 or newer (the runtime matrix checks it on Debian 12's own 3.11.2) with "
             f"`{python_package.strip(chr(39))}`" + (f", and {needs}" if needs else "") + ":",
             "```bash",
             "python3 -m venv consumer-venv && . consumer-venv/bin/activate",
             f"pip install {python_package} numpy pillow",
             f"python {name}/verify.py {name}{on_cpu}",
             f"python {name}/infer.py {name}/digit.png{cpu_flag}  # checks the bundle, then: label and probability "
             "(and \"not a digit?\" if none fits)",
             "```"]
    # Official C++ releases: the CPU build, and the GPU build with CUDA and TensorRT.
    cpp_flag = "" if primary in (CPU, "CUDAExecutionProvider", "TensorrtExecutionProvider") else f" --provider {CPU}"
    if primary == CPU:
        lines += ["", f"Node.js {envs.NODE_MAJOR} or newer with `{envs.NODE_PACKAGE}` (its CPU build; the install "
                  "script would fetch GPU binaries):", "```bash",
                  f"ONNXRUNTIME_NODE_INSTALL=skip npm install {envs.NODE_PACKAGE}", f"node {name}/verify.mjs {name}",
                  "```"]
    compiler, compiler_major, _, (cmake_major, cmake_minor) = envs.CXX_TOOLS
    lines += ["", f"C++17 ({compiler} {compiler_major} or newer) with CMake {cmake_major}.{cmake_minor} or newer and "
              "an ONNX Runtime release at `$ORT` (its `include/` and `lib/`, "
              "as in onnxruntime-linux-x64-*.tgz); where `$ORT` is not set, `cpp/release.sh` makes one from the "
              "registries (Debian's libonnxruntime-dev headers, the onnxruntime wheel's library; needs apt-get and "
              "pip, no root). The consumer checks the bundle as verify.py does and classifies a picture (netpbm: "
              "PGM, PPM or PAM) prepared as infer.py prepares it, or a prepared .npy digit:",
              "```bash",
              'ORT="${ORT:-$PWD/onnxruntime-release}"',
              f'[ -d "$ORT/include" ] || sh {name}/cpp/release.sh "$ORT"',
              f'cmake -S {name}/cpp -B consumer-build -DONNXRUNTIME_ROOT="$ORT"',
              "cmake --build consumer-build",
              f"consumer-build/consumer {name}{cpp_flag}",
              f"consumer-build/consumer {name} --classify {name}/digit.pgm{cpp_flag}",
              "```"]
    return lines


OOD_BOUNDS = {"ink_fraction_min": "ink share < {:g}", "ink_fraction_max": "ink share > {:g}",
              "components_max": "more than {:g} separate pieces", "aspect_max": "width/height > {:g}",
              "solid_max": "solid share > {:g}", "energy_min": "energy (logsumexp of the logits) < {:g}"}


def _ood_lines(m: dict) -> list[str]:
    """The "not a digit?" flag: its bounds and the rates the packager measured on this model."""
    block = m.get("ood")
    if not block:
        return []
    rejected, detected = block["measured"]["false_rejection"], block["measured"]["detection"]
    bounds = [OOD_BOUNDS.get(k, k + " {:g}").format(v) for k, v in block["thresholds"].items()]
    kinds = ", ".join(f"{kind.replace('_', ' ')} {n}" for kind, n in detected["by_kind"].items())
    return ["## Not a digit?",
            "`infer.py`, the C++ consumer's `--classify`, `pipeline predict` and the web page flag a picture as "
            "**not a digit?** (and give its closest "
            "label only as a guess) when any bound is crossed; the ink statistics are of the prepared 28x28 (ink: "
            "pixels at least half as bright as the brightest; solid: ink pixels whose four neighbours are ink):",
            f"- flagged when: {'; '.join(bounds)} (manifest.json `ood.thresholds`)",
            f"- false rejections, measured on CPUExecutionProvider by the packager "
            f"({m['provenance']['packaged_with']}): {rejected['rejected']} of {rejected['samples']} {rejected['data']} "
            f"({rejected['rate']:.2%})",
            f"- detection: {detected['detected']} of {detected['samples']} {detected['data']} "
            f"({detected['rate']:.1%}; {detected['refused_blank']} more refused as blank, never labelled): {kinds}",
            f"- calibrated on {block['calibration']['digits']} and {block['calibration']['non_digits']}: the "
            f"bounds reject at most {block['calibration']['budget']:.1%} of those digits", ""]


def render(m: dict) -> str:
    model, target, parity, golden = m["model"], m["target"], m["parity"], m["golden"]
    quant = m.get("quantization")
    lines = [
        f"# {model['name']} {model['version']} — {target['name']}",
        "",
        f"Handwritten digit classifier (MNIST, 10 classes), variant **{model['variant']}** ({model['kind']}), "
        f"file `{model['file']}` ({model['bytes'] / 1024:.1f} KB, opset {model['opset']}).",
        "",
        "## Run it",
        *(_web_lines(target["name"]) if target.get("format") == "web" else []),
        *_consumer_lines(m),
        "",
        f"Execution providers, in order: {', '.join(target['providers'])}. "
        f"Session: {target['session']['graph_optimization_level']}, "
        f"{target['session']['intra_op_num_threads']} intra-op threads.",
        *(f"Not listed: {provider}: {why}." for provider, why in target.get("not_usable", {}).items()),
        "",
        "## Input and output",
        f"- input `{m['io']['inputs'][0]['name']}`: {m['io']['inputs'][0]['dtype']} "
        f"{m['io']['inputs'][0]['shape']} ({m['preprocessing']['layout']})",
        f"- preprocessing: `{m['preprocessing']['formula']}` with scale {m['preprocessing']['scale']:.6g}, "
        f"mean {m['preprocessing']['mean'][0]}, std {m['preprocessing']['std'][0]}; "
        f"{m['preprocessing']['color']}",
        "- images (`python infer.py digit.png`) are first prepared as MNIST's digits were: "
        + "; ".join(m["preprocessing"].get("image_steps", [])),
        f"- output `{m['io']['outputs'][0]['name']}`: {m['io']['outputs'][0]['dtype']} "
        f"{m['io']['outputs'][0]['shape']}, logits for labels {', '.join(m['class_labels'])}",
        "",
        "## Quality (vs PyTorch on the MNIST test set)",
        f"- accuracy {parity['accuracy']:.2%} (Δ {parity['accuracy_delta_pt']:+.2f} pt), "
        f"top-1 agreement {parity['agreement']:.2%}, max |Δlogit| {parity['max_abs_logit']:.3g}, "
        f"min cosine {parity['cosine_min']:.4f}",
        f"- golden check: {golden['samples']} real test images, atol {golden['tolerance']['atol']} (expected "
        f"values rounded to {golden.get('grid', 0):g}), top-1 must match; "
        f"{len(golden.get('pictures', []))} raw PAM pictures (golden_pictures/) through each consumer's preparation",
        "- verified on (each by this bundle's own checker):",
        *(f"  - {summary(record)}" for record in m["verified_on"]),
        "",
        *_ood_lines(m),
        "## Why this variant",
        f"- {m['selection']['reason']}",
        *(f"- uses {domain} operators ({', '.join(ops)}): it needs an ONNX Runtime build with them (the standard "
          "builds have them; minimal and other runtimes may not)" for domain, ops in model.get("nonstandard_ops",
                                                                                                {}).items()),
    ]
    if quant:
        lines += ["", "## Quantization",
                  f"- {quant['mode']} {quant['format']}, activations {quant['activation_type']}, weights "
                  f"{quant['weight_type']}, per-channel {quant['per_channel']}, reduce_range {quant['reduce_range']}"]
        lines += [f"- kept fp32: {e['node']} ({e['reason']})" for e in quant.get("excluded_nodes", [])]
    if "mobile" in m:
        verdicts = ", ".join(f"{ep}: {v}" for ep, v in m["mobile"]["usability"]["verdicts"].items())
        lines += ["", "## Mobile",
                  f"- batch fixed to {m['mobile']['fixed_batch']} (NNAPI/CoreML need static shapes)",
                  f"- ORT mobile usability: {verdicts} (details: mobile_usability.txt)",
                  f"- minimal ORT build: `--include_ops_by_config {m['mobile']['reduced_build_config']}`"]
    lines += ["", "## Provenance",
              f"- checkpoint sha256 {str(m['provenance'].get('checkpoint_sha256'))[:16]}…, dataset sha256 "
              f"{str(m['provenance'].get('dataset_sha256'))[:16]}…", ""]
    return "\n".join(lines)
