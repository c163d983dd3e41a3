"""`pipeline`: one command per declared stage, plus the one-shot `export` and the consumer-side commands.

The stage commands are derived from the stage declarations (pipeline/stages): each takes trailing Hydra
overrides (`pipeline train train.epochs=1 model=tiny`) or, as DVC runs it, `--params params.yaml`; foreach
stages take `--variant`/`--target` for one entry. Project modules are imported at the top; torch,
onnxruntime, onnx and the other heavy libraries load only inside the functions that use them, so
`pipeline --help` starts without them (a test holds this).
"""

from __future__ import annotations

import functools
import inspect
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from pipeline.core import dvcfile, params_file, runner
from pipeline.core.config import resolve
from pipeline.core.errors import GateFailure, ParityGateFailure, PipelineError
from pipeline.core.io import write_text
from pipeline.core.runner import noop_repro_seconds, stage_timings
from pipeline.core.stage import Stage, all_stages, load
from pipeline.deploy.authenticity import opened_bundle
from pipeline.deploy.contents import BundleError, load_manifest, safe_extract
from pipeline.deploy.infer import InputError, NpyScale, classify
from pipeline.deploy.verify import GoldenMismatch, ProviderMissing, summary_lines
from pipeline.deploy.verify import verify as verify_bundle
from pipeline.model.parity import variants_vs_torch
from pipeline.packaging.release import VERSION
from pipeline.present.tables import prediction_table, timing_table, variant_table
from pipeline.runtimes import cells

app = typer.Typer(
    help="Train → export → optimize → quantize → validate → package, for ONNX Runtime deployment.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

Overrides = Annotated[list[str] | None, typer.Argument(help="Hydra overrides, e.g. train.epochs=1 model=tiny")]
Params = Annotated[
    Path | None, typer.Option("--params", help="Run with this composed params file (as DVC does) instead of conf/.")
]


class QuantizeChoice(StrEnum):
    none = "none"
    int8 = "int8"
    int8_static = "int8-static"
    int8_dynamic = "int8-dynamic"
    fp16 = "fp16"


# What `export --quantize X` adds after export → optimize: the quantize variant it builds.
QUANTIZE_VARIANT = {"int8": "int8_static", "int8-static": "int8_static", "int8-dynamic": "int8_dynamic"}


def guarded(fn):
    """Bad input: one line on stderr, exit 2. A failed gate: exit 1. A bundle whose provider is missing here:
    exit 3. Never a traceback for any."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (PipelineError, GateFailure) as exc:  # each kind: its word and exit code (core/errors.py)
            typer.echo(f"{exc.label}: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except (BundleError, InputError) as exc:  # the deploy code ships standalone: its own types
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        except GoldenMismatch as exc:
            typer.echo(f"verification failed: {exc}", err=True)
            raise typer.Exit(1) from None
        except ProviderMissing as exc:
            typer.echo(f"not verified: {exc}", err=True)
            raise typer.Exit(3) from None

    return wrapper


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pipeline {VERSION}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")]
    = False,
    verbose: Annotated[bool, typer.Option("--verbose", help="Show library output (else in .cache/logs/).")] = False,
) -> None:
    """Train → export → optimize → quantize → validate → package, for ONNX Runtime deployment."""
    if verbose:
        import os

        os.environ["PIPELINE_VERBOSE"] = "1"


def _config(params: Path | None, overrides: list[str] | None, **extra):
    return resolve(params, list(overrides or []), extra=extra)


def _stage_command(stage: Stage):
    """A typer command for a declared stage: overrides, --params, --<item> for foreach stages, its flags."""
    def command(overrides=None, params=None, **kwargs):
        cfg = _config(params, overrides)
        only = kwargs.pop(stage.item_arg, None) if stage.foreach else None
        for item in runner.items(stage, cfg, only):
            runner.execute(stage, cfg, item, **kwargs)

    P = inspect.Parameter
    parameters = [P("overrides", P.POSITIONAL_OR_KEYWORD, default=None, annotation=Overrides),
                  P("params", P.KEYWORD_ONLY, default=None, annotation=Params)]
    if stage.foreach:
        option = typer.Option(f"--{stage.item_arg}", help=f"Only this {stage.foreach} entry (default: all).")
        parameters.append(P(stage.item_arg, P.KEYWORD_ONLY, default=None, annotation=Annotated[str | None, option]))
    for flag, text in stage.flags.items():
        option = typer.Option(f"--{flag}", help=text)
        parameters.append(P(flag, P.KEYWORD_ONLY, default=False, annotation=Annotated[bool, option]))
    for name, text in stage.file_options.items():
        option = typer.Option(f"--{name.replace('_', '-')}", help=text)
        parameters.append(P(name, P.KEYWORD_ONLY, default=None, annotation=Annotated[Path | None, option]))
    command.__signature__ = inspect.Signature(parameters)
    command.__doc__ = stage.help
    command.__name__ = stage.name
    app.command(name=stage.name)(guarded(command))


for _stage in all_stages():
    if _stage.name != "export":  # export's command adds the one-shot chain below
        _stage_command(_stage)


@app.command()
@guarded
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
    extra = {"export.opset": opset} if opset is not None else {}
    if quantize is QuantizeChoice.fp16:
        extra["optimize.fp16.enabled"] = True
    cfg = _config(params, overrides, **extra)
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


@app.command()
@guarded
def params(
    overrides: Overrides = None,
    check: Annotated[bool, typer.Option("--check", help="Exit 1 if params.yaml is not conf/ plus its recorded "
                                                         "overrides; name every key that differs and why.")] = False,
    reset: Annotated[bool, typer.Option("--reset", help="Drop the recorded overrides: params.yaml = conf/.")] = False,
    output: Annotated[Path, typer.Option("--output", help="Where to write the composition.")] = Path("params.yaml"),
) -> None:
    """Compose conf/ (+ overrides, recorded and kept until --reset) into params.yaml, which DVC tracks."""
    kept = [] if reset else params_file.merge(params_file.recorded(output), list(overrides or []))
    text = params_file.render(kept)
    current = output.read_text() if output.is_file() else None
    if check and current is None:

        raise PipelineError(f"{output.resolve()} not found: run from the repository root, or pass --output")
    if check:
        differs = current != text
        for line in params_file.explain(output) if current is not None else []:
            typer.echo(f"  {line}", err=differs)
        if differs:
            typer.echo(f"{output} differs from conf/ (+ its recorded overrides): `pipeline params` recomposes it, "
                       f"`pipeline params --reset` drops every override", err=True)
            raise typer.Exit(1)
        typer.echo(f"{output} matches conf/" + (f" with the overrides {' '.join(kept)}" if kept else ""))
        return
    if current != text:
        write_text(output, text)
    typer.echo(f"{'wrote' if current != text else 'up to date:'} {output} from conf/"
               + (f" with the overrides {' '.join(kept)} (kept until `pipeline params --reset`)" if kept else ""))


@app.command()
@guarded
def dvc(
    check: Annotated[bool, typer.Option("--check", help="Exit 1 if dvc.yaml differs from the declarations.")] = False,
    write: Annotated[bool, typer.Option("--write", help="Regenerate dvc.yaml from the declarations.")] = False,
    file: Annotated[Path, typer.Option("--file", help="The dvc.yaml to check or write.")] = Path("dvc.yaml"),
) -> None:
    """Hold dvc.yaml against the stage declarations: deps (inputs and every project module each stage
    imports), params (every key it reads), outs, metrics and plots."""
    if write:
        dvcfile.write(file)
        typer.echo(f"wrote {file} from the stage declarations")
        return
    problems = dvcfile.check(file)
    if problems:
        for problem in problems:
            typer.echo(f"{file}: {problem}", err=True)
        typer.echo(f"{file} is out of date: run `pipeline dvc --write`", err=True)
        raise typer.Exit(1)
    if check:
        typer.echo(f"{file} matches the stage declarations")


@app.command()
@guarded
def timings(
    overrides: Overrides = None,
    params: Params = None,
    noop_repro: Annotated[bool, typer.Option(
        "--noop-repro", help="Also time one `dvc repro` with nothing to do (DVC's own cost: hashing every dep, "
                             "reading dvc.lock and params.yaml); run it right after a `dvc repro`.")] = False,
) -> None:
    """Per-stage wall time of the last run of each stage (from metrics/timings/), in pipeline order."""
    timing_table(stage_timings(_config(params, overrides)))
    if noop_repro:
        seconds = noop_repro_seconds()
        typer.echo("dvc repro had work to do (or failed): no no-op time to report" if seconds is None else
                   f"a no-op dvc repro takes {seconds:.1f} s")


@app.command()
@guarded
def results(
    check: Annotated[bool, typer.Option("--check", help="Exit 1, showing the difference, if the file is not what "
                                                         "metrics/ gives (a test holds the committed one).")] = False,
    output: Annotated[Path, typer.Option("--output", help="The generated page.")] = Path("docs/results.md"),
    metrics: Annotated[Path, typer.Option("--metrics", help="The metrics folder to read.")] = Path("metrics"),
) -> None:
    """The results page from metrics/: accuracy, parity gates, what each target ships, the shipped bundles'
    speed-ups, the GEMM peaks and each runner's share, each with its machine and date."""
    from pipeline.present import results as results_page  # light (rich); here to keep this command one block

    if not metrics.is_dir():
        raise PipelineError(f"{metrics.resolve()} not found: run from the repository root, or pass --metrics")
    text = results_page.markdown(metrics)
    current = output.read_text() if output.is_file() else None
    if check:
        changed = results_page.difference(current, text, str(output))
        if changed:
            typer.echo("\n".join(changed), err=True)
            typer.echo(f"{output} differs from what {metrics}/ gives: `pipeline results` rewrites it", err=True)
            raise typer.Exit(1)
        typer.echo(f"{output} matches {metrics}/")
        return
    results_page.show(metrics)
    if current != text:
        write_text(output, text)
    typer.echo(f"{'wrote' if current != text else 'up to date:'} {output} from {metrics}/")


@app.command()
@guarded
def verify(
    bundle: Annotated[Path, typer.Argument(help="A bundle directory or .tar.gz")],
    runtime: Annotated[str | None, typer.Option(
        help=f"Run the bundle's own checker on this runtime of the matrix ({', '.join(cells.RUNTIMES)}), set up "
             "under .cache/runtimes/ on first use.")] = None,
    sha256: Annotated[str | None, typer.Option(
        help="The published sha256 of the .tar.gz (hex, or its .sha256 file).")] = None,
    public_key: Annotated[Path | None, typer.Option(
        help="The producer's public key (PEM): model.sig must be its OpenSSF model signature of every file.")]
    = None,
    provider: Annotated[str | None, typer.Option(
        help="Run the golden check on this provider alone (default: the target's first).")] = None,
    allow_fallback: Annotated[bool, typer.Option(
        "--allow-fallback", help="Where the provider is missing here, check on what onnxruntime has (and say "
        "it is not verified on it) instead of exit 3.")] = False,
) -> None:
    """Check a bundle's sha256s and manifest, then run its golden inputs on its target's provider."""
    if runtime is not None:
        return _verify_on(bundle, runtime, sha256, public_key)
    report = verify_bundle(bundle, provider, sha256, public_key, allow_fallback)
    typer.echo("\n".join(summary_lines(report)))


def _verify_on(bundle: Path, runtime: str, sha256: str | None, public_key: Path | None) -> None:
    """One cell of the runtime matrix, after the checks that need something from outside the bundle."""
    with opened_bundle(bundle, sha256, public_key) as folder:
        record = cells.check(folder, runtime, load_manifest(folder)["target"].get("name", bundle.name))
    if not record["verified"]:
        raise PipelineError(f"cannot set up {runtime} here: {record['reason']}")
    typer.echo(f"verified: {cells.summary(record)}")


@app.command()
@guarded
def predict(
    images: Annotated[list[Path], typer.Argument(
        help="Images (PNG, JPEG, ...), .npy arrays, or folders (every file directly in one, in name order).")],
    target: Annotated[str, typer.Option(help="Use artifacts/deploy/<target>.")] = "cpu_x86",
    bundle: Annotated[Path | None, typer.Option(help="Use this bundle (folder or .tar.gz), not --target.")] = None,
    npy_scale: Annotated[NpyScale, typer.Option(
        "--npy-scale", help="How .npy values are read. auto: integer dtypes (uint8) are pixels 0-255, floats all "
        "in [0, 1] are pixels 0-1, floats with a negative value are already normalized ((pixel/255 - mean) / std, "
        "the model's input), floats above 1 with nothing negative are refused as ambiguous; or name the scale.")]
    = NpyScale.auto,
) -> None:
    """Classify digit pictures with a deployment bundle: one line for one input, a table for several.

    Every input gets its label and probability, flagged "not a digit?" with the reasons when the picture looks
    like no digit (bounds calibrated on the bundle's model, in its manifest.json `ood`), or its own error.
    Exit 0: every input classified; 2: at least one could not be (every other result is still shown).
    A .npy array holds prepared digits (white on black, centred), one per row: (N, 28, 28), (28, 28) or
    (N, 1, 28, 28).
    """
    import tempfile

    chosen = bundle or Path("artifacts/deploy") / target
    if bundle is None and not chosen.is_dir():
        known = sorted(p.name for p in chosen.parent.glob("*") if (p / "manifest.json").is_file())
        raise PipelineError(f"no bundle for target {target!r} in {chosen.parent} (built: {', '.join(known) or 'none'};"
                            f" run `make repro`)")
    with tempfile.TemporaryDirectory(prefix="predict-") as scratch:
        if chosen.is_file():  # a .tar.gz, as `verify` takes it; extracted with the same checks
            chosen = safe_extract(chosen, Path(scratch))
        results = classify(chosen, images, npy_scale)
    failed = [r for r in results if r.error is not None]
    if len(results) == 1:
        (result,) = results
        if result.error is not None:
            raise InputError(result.error)
        guess = f"{result.label} ({result.probability:.2%})"
        typer.echo(f"{result.name}: not a digit? {'; '.join(result.not_a_digit)} — closest label {guess}"
                   if result.not_a_digit else f"{result.name}: {guess}")
        return
    prediction_table(results)
    if failed:
        typer.echo(f"error: {len(failed)} of {len(results)} inputs could not be classified (see the table)", err=True)
        raise typer.Exit(2)


@app.command()
@guarded
def release(
    version: Annotated[str, typer.Argument(help="The semantic version to register, e.g. v1.2.0.")],
    stage: Annotated[str | None, typer.Option(help="Also assign this stage: dev, staging or prod.")] = None,
    accept_regression: Annotated[str | None, typer.Option(
        "--accept-regression", help="Release although the regression gate failed; the reason is recorded.")] = None,
    no_push: Annotated[bool, typer.Option("--no-push", help="Do not push to the DVC remote (a local release).")]
    = False,
    rounds: Annotated[int, typer.Option(help="Interleaved rounds of the regression gate's timings (8 or more).")] = 8,
    per_round: Annotated[int, typer.Option(help="Batch-1 calls per round (a tenth as many batch calls).")] = 40,
    data: Annotated[Path, typer.Option(help="The MNIST folder the accuracy check reads.")] = Path("artifacts/data"),
) -> None:
    """Version every artifact dvc.yaml declares (GTO), after the contract diff and the regression gate against
    the previous release; push what it needs to the DVC remote. Exit 2: a version below what the diff needs;
    1: the regression gate failed."""
    from pipeline.handoff import publish, regression

    settings = regression.GateSettings(rounds=rounds, per_round=per_round)
    record = publish.release(Path.cwd(), version, stage, data, accept_regression=accept_regression,
                               settings=settings, push=not no_push)
    typer.echo(f"released {version} ({record['bump']}) of {', '.join(record['artifacts'])}"
               + (f", assigned to {stage}" if stage else ""))


@app.command()
@guarded
def promote(
    version: Annotated[str, typer.Argument(help="A released version, e.g. v1.1.0 (an earlier one rolls back).")],
    stage: Annotated[str, typer.Option(help="The stage: dev, staging or prod.")],
) -> None:
    """Assign a released version of every artifact to a stage (GTO); rolling back is promoting an earlier one."""
    from pipeline.handoff import publish

    names = publish.promote(Path.cwd(), version, stage)
    typer.echo(f"{stage} is now {version} for {', '.join(names)}")


def main() -> None:
    app(prog_name="pipeline")


if __name__ == "__main__":
    sys.exit(main())
