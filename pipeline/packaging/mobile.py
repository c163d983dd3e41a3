"""ORT Mobile packaging: fixed batch, the mobile-usability verdict, and ORT format (.ort) conversion.

NNAPI and CoreML take no nodes while a dimension is symbolic, so the batch is fixed first. The ORT
format model is converted with the 'Runtime' optimization style, which ORT recommends when NNAPI or
CoreML may run it ('Fixed' bakes in CPU-EP fusions those EPs cannot take).
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.core.errors import PipelineError
from pipeline.present.chatter import captured

if TYPE_CHECKING:  # annotations only: onnx and onnxruntime load inside the functions
    pass


def usability(model_path: Path) -> dict:
    """onnxruntime's check_onnx_model_mobile_usability, as a verdict per EP plus the full report text."""
    from onnxruntime.tools.mobile_helpers.usability_checker import analyze_model

    stream = io.StringIO()
    logger = logging.getLogger("pipeline.mobile_usability")
    logger.propagate = False
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            analyze_model(Path(model_path), logger=logger)
    finally:
        logger.removeHandler(handler)
    # The checker names the file it read, a scratch path that differs every run (the bundle must be
    # reproducible), and a model.onnx the bundle does not ship: say which model it is.
    report = stream.getvalue().replace(f"Checking {model_path} ", "Checking the fixed-batch ONNX model that model.ort "
                                       "was converted from ")
    report = report.replace(str(Path(model_path).parent), ".")
    verdicts = dict(re.findall(r"Model should perform well with (.+?) as is: (YES|NO)", report))
    partitions = re.findall(
        r"(\d+) partitions with a total of (\d+)/(\d+) nodes can be handled by the (.+?) EP", report)
    return {
        "verdicts": verdicts,
        "coverage": {ep: f"{nodes}/{total} nodes in {parts} partitions" for parts, nodes, total, ep in partitions},
        "report": report,
    }


# The usability checker's names for the execution providers it judges.
CHECKED_AS = {"NNAPI": "NnapiExecutionProvider", "CoreML NeuralNetwork": "CoreMLExecutionProvider",
              "CoreML MLProgram": "CoreMLExecutionProvider"}


def usable_providers(block: dict, verdicts: dict[str, str]) -> dict:
    """The manifest's target block without the providers the usability check says will not perform well (every
    form of it says NO), which move to `not_usable` with the reason: what a team may list is what can work."""
    judged: dict[str, list[str]] = {}
    for checked, verdict in verdicts.items():
        judged.setdefault(CHECKED_AS.get(checked, checked), []).append(verdict)
    rejected = {p for p, said in judged.items() if "YES" not in said}
    kept = [(p, o) for p, o in zip(block["providers"], block["provider_options"], strict=True) if p not in rejected]
    return {**block, "providers": [p for p, _ in kept], "provider_options": [o for _, o in kept],
            "install": {p: needs for p, needs in block.get("install", {}).items() if p not in rejected},
            "not_usable": {p: "ORT's mobile usability check: should not perform well as is (mobile_usability.txt)"
                           for p in block["providers"] if p in rejected}}


def to_ort_format(model_path: Path, out_dir: Path, target_platform: str = "arm") -> tuple[Path, Path]:
    """Convert to model.ort plus the required-operators config for a reduced (minimal) ORT build."""
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    with tempfile.TemporaryDirectory(prefix="ort-format-") as scratch:
        source = Path(scratch) / "model.onnx"
        shutil.copy(model_path, source)
        converted = Path(scratch) / "out"
        with captured("ort_format"):  # the converter logs and prints a line per step
            convert_onnx_models_to_ort(source, converted, [OptimizationStyle.Runtime], target_platform=target_platform)
        ort_files = list(converted.glob("*.ort"))
        configs = list(converted.glob("*.config"))
        if len(ort_files) != 1 or len(configs) != 1:
            raise PipelineError(f"ORT format conversion of {model_path} produced {len(ort_files)} .ort files")
        ort_model = Path(out_dir) / "model.ort"
        ops_config = Path(out_dir) / "required_operators.config"
        shutil.move(ort_files[0], ort_model)
        # The converter lists the scratch files it read in comments: drop them, the bundle must not name a temp path.
        lines = configs[0].read_text().splitlines()
        ops_config.write_text("".join(f"{line}\n" for line in lines if not line.startswith("# - ")))
    return ort_model, ops_config
