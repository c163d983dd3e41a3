"""One command per declared stage, from the generated command table (declared.py), and the one-shot `export`
chain. A command loads its stage's module when it runs."""

from __future__ import annotations

import inspect
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from pipeline.commands import declared
from pipeline.commands.common import Overrides, Params, config, guarded
from pipeline.core.errors import ParityGateFailure


class QuantizeChoice(StrEnum):
    none = "none"
    int8 = "int8"
    int8_static = "int8-static"
    int8_dynamic = "int8-dynamic"
    fp16 = "fp16"


# What `export --quantize X` adds after export → optimize: the quantize variant it builds.
QUANTIZE_VARIANT = {"int8": "int8_static", "int8-static": "int8_static", "int8-dynamic": "int8_dynamic"}


def register(app: typer.Typer) -> None:
    for stage in declared.STAGES:
        if stage["name"] != "export":  # export's command adds the one-shot chain below
            app.command(name=stage["name"])(guarded(_stage_command(stage)))
    app.command()(guarded(export))


def _stage_command(stage: dict):
    """A typer command for a declared stage: overrides, --params, --<item> for foreach stages, its flags."""
    def command(overrides=None, params=None, **kwargs):
        from pipeline.core import runner
        from pipeline.core.stage import load

        declaration = load(stage["name"])
        cfg = config(params, overrides)
        only = kwargs.pop(stage["item_arg"], None) if stage["foreach"] else None
        for item in runner.items(declaration, cfg, only):
            runner.execute(declaration, cfg, item, **kwargs)

    P = inspect.Parameter
    parameters = [P("overrides", P.POSITIONAL_OR_KEYWORD, default=None, annotation=Overrides),
                  P("params", P.KEYWORD_ONLY, default=None, annotation=Params)]
    if stage["foreach"]:
        option = typer.Option(f"--{stage['item_arg']}", help=f"Only this {stage['foreach']} entry (default: all).")
        parameters.append(P(stage["item_arg"], P.KEYWORD_ONLY, default=None,
                            annotation=Annotated[str | None, option]))
    for flag, text in stage["flags"].items():
        option = typer.Option(f"--{flag}", help=text)
        parameters.append(P(flag, P.KEYWORD_ONLY, default=False, annotation=Annotated[bool, option]))
    for name, text in stage["file_options"].items():
        option = typer.Option(f"--{name.replace('_', '-')}", help=text)
        parameters.append(P(name, P.KEYWORD_ONLY, default=None, annotation=Annotated[Path | None, option]))
    command.__signature__ = inspect.Signature(parameters)
    command.__doc__ = stage["help"]
    command.__name__ = stage["name"]
    return command


def export(
    overrides: Overrides = None,
    params: Params = None,
    quantize: Annotated[QuantizeChoice, typer.Option(help="Also build this variant after optimizing.")] = (
        QuantizeChoice.none
    ),
    opset: Annotated[int | None, typer.Option(help="ONNX opset (default: export.opset).")] = None,
    stage_only: Annotated[bool, typer.Option("--stage-only", help="Export only (the DVC `export` stage).")] = False,
) -> None:
    """Export to ONNX; by default also optimize, optionally quantize, and print parity vs PyTorch.

    The chain runs the same declared stages DVC runs (export, optimize, quantize), each timed on its own.
    """
    from pipeline.core import runner
    from pipeline.core.stage import load
    from pipeline.model.parity import variants_vs_torch
    from pipeline.present.tables import variant_table

    extra = {"export.opset": opset} if opset is not None else {}
    if quantize is QuantizeChoice.fp16:
        extra["optimize.fp16.enabled"] = True
    cfg = config(params, overrides, **extra)
    written = dict(runner.execute(load("export"), cfg).outputs)
    if stage_only:
        return
    optimized = runner.execute(load("optimize"), cfg)
    written.update(optimized.outputs)
    failed = {"fp16": optimized.metrics["steps"].get("fp16", {}).get("failed_gates_vs_input")} if quantize is \
        QuantizeChoice.fp16 else {}
    if quantize.value in QUANTIZE_VARIANT:
        stage = load("quantize")
        (variant,) = runner.items(stage, cfg, QUANTIZE_VARIANT[quantize.value])
        quantized = runner.execute(stage, cfg, variant)
        written.update(quantized.outputs)
        failed[variant] = quantized.metrics["failed_gates"]

    written = {name: path for name, path in written.items() if Path(path).suffix == ".onnx"}
    samples = cfg.export.parity_samples
    rows = variants_vs_torch(written, Path(cfg.paths.model), Path(cfg.paths.data), samples)
    variant_table(f"variants vs PyTorch on {samples} test images", rows)
    failed = {name: gates for name, gates in failed.items() if gates}
    if failed:  # the variant the user asked for: its failure fails the command (others are only reported)
        raise ParityGateFailure(f"--quantize {quantize.value} asked for " + "; ".join(
            f"{name}, which fails: {'; '.join(gates)}" for name, gates in failed.items())
            + " (the lines above say what gets past it)")
