"""The consumer side, on this machine: check a bundle (`verify`, or one cell of the runtime matrix) and classify
pictures with it (`predict`), the way the bundle's own verify.py and infer.py do."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from pipeline.commands import declared
from pipeline.commands.common import guarded
from pipeline.core.errors import PipelineError

# pipeline/deploy/arrays.py's NpyScale, by value (the command table holds them): the CLI starts without numpy.
NpyChoice = StrEnum("NpyChoice", {value: value for value in declared.NPY_SCALES})


def register(app: typer.Typer) -> None:
    for command in (verify, predict):
        app.command()(guarded(command))


def verify(
    bundle: Annotated[Path, typer.Argument(help="A bundle directory or .tar.gz")],
    runtime: Annotated[str | None, typer.Option(
        help=f"Run the bundle's own checker on this runtime of the matrix ({', '.join(declared.RUNTIME_CELLS)}), "
             "set up under .cache/runtimes/ on first use.")] = None,
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
    from pipeline.deploy.verify import summary_lines
    from pipeline.deploy.verify import verify as verify_bundle

    if runtime is not None:
        return _verify_on(bundle, runtime, sha256, public_key)
    report = verify_bundle(bundle, provider, sha256, public_key, allow_fallback)
    typer.echo("\n".join(summary_lines(report)))


def _verify_on(bundle: Path, runtime: str, sha256: str | None, public_key: Path | None) -> None:
    """One cell of the runtime matrix, after the checks that need something from outside the bundle."""
    from pipeline.deploy.authenticity import opened_bundle
    from pipeline.deploy.contents import load_manifest
    from pipeline.runtimes import cells

    with opened_bundle(bundle, sha256, public_key) as folder:
        manifest = load_manifest(folder)
        record = cells.check(folder, manifest, runtime, manifest["target"].get("name", bundle.name))
    if not record["verified"]:
        raise PipelineError(f"cannot set up {runtime} here: {record['reason']}")
    typer.echo(f"verified: {cells.summary(record)}")


def predict(
    images: Annotated[list[Path], typer.Argument(
        help="Images (PNG, JPEG, ...), .npy arrays, or folders (every file directly in one, in name order).")],
    target: Annotated[str | None, typer.Option(
        help="Use artifacts/deploy/<target> (default: the target bench times as shipped, bench.shipped_target).")]
    = None,
    bundle: Annotated[Path | None, typer.Option(help="Use this bundle (folder or .tar.gz), not --target.")] = None,
    npy_scale: Annotated[NpyChoice, typer.Option(
        "--npy-scale", help="How .npy values are read. auto: integer dtypes (uint8) are pixels 0-255, floats all "
        "in [0, 1] are pixels 0-1, floats with a negative value are already normalized ((pixel/255 - mean) / std, "
        "the model's input), floats above 1 with nothing negative are refused as ambiguous; or name the scale.")]
    = declared.NPY_SCALES[0],
    allow_fallback: Annotated[bool, typer.Option(
        help="Run on the target's providers this onnxruntime has (CPU last) when its own is missing here.")]
    = False,
) -> None:
    """Classify digit pictures with a deployment bundle: one line for one input, a table for several.

    Every input gets its label and probability, flagged "not a digit?" with the reasons when the picture looks
    like no digit (bounds calibrated on the bundle's model, in its manifest.json `ood`), or its own error.
    The bundle is checked first, as verify checks it, on the target's own provider (--allow-fallback: on what this
    onnxruntime has). Exit 0: every input classified; 2: at least one could not be (every other result is still
    shown), or the bundle is bad; 1: the bundle fails its golden check; 3: its provider is not here.
    A .npy array holds prepared digits (white on black, centred), one per row: (N, 28, 28), (28, 28) or
    (N, 1, 28, 28).
    """
    import tempfile

    from pipeline.deploy.arrays import NpyScale
    from pipeline.deploy.contents import safe_extract
    from pipeline.deploy.infer import InputError, classify
    from pipeline.present.tables import prediction_table

    chosen = bundle or Path("artifacts/deploy") / (target or _shipped_target())
    if bundle is None and not chosen.is_dir():
        known = sorted(p.name for p in chosen.parent.glob("*") if (p / "manifest.json").is_file())
        raise PipelineError(f"no bundle for target {chosen.name!r} in {chosen.parent} (built: "
                            f"{', '.join(known) or 'none'}; run `make repro`)")
    with tempfile.TemporaryDirectory(prefix="predict-") as scratch:
        if chosen.is_file():  # a .tar.gz, as `verify` takes it; extracted with the same checks
            chosen = safe_extract(chosen, Path(scratch))
        results = classify(chosen, images, NpyScale(getattr(npy_scale, "value", npy_scale)),
                           allow_fallback=allow_fallback)
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
        typer.echo(f"error: {len(failed)} of {len(results)} inputs could not be classified", err=True)
        raise typer.Exit(2)


def _shipped_target() -> str:
    """The target bench times as shipped (conf/bench/: bench.shipped_target)."""
    from pipeline.core.config import compose

    return compose([]).bench.shipped_target
