"""dvc.yaml, derived from the stage declarations, and the check that holds the file to them.

For each declared stage the expected entry is: `cmd` from its name; `deps` = its input paths plus every
project module it imports, transitively (parsed from the source, function-level imports included), plus
the files it reads without importing (its `code`); `params` = every config key it receives; `outs` = its
outputs; `metrics`/`plots` = the files the runner writes for it. `pipeline dvc --write` writes that file;
`pipeline dvc --check` (run by the tests) names every difference, so a module a stage starts importing, a
key it starts reading or a file it starts writing cannot be missed by `dvc repro`.
"""

from __future__ import annotations

import ast
from pathlib import Path

from pipeline.core.errors import PipelineError
from pipeline.core.io import write_text
from pipeline.core.stage import Stage, all_stages

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pipeline", "training")
# Model classes are named in conf/ (`model._target_`), not imported: a stage that builds a model from a
# checkpoint depends on the module that defines the shipped ones.
MODEL_CODE = "training/models.py"
HEADER = """\
# Generated from the stage declarations (pipeline/stages/*.py: `STAGE = Stage(...)`) by `pipeline dvc --write`;
# `pipeline dvc --check`, run by the tests, fails when this file and the declarations differ. Every stage runs
# `pipeline <stage> --params params.yaml`, so the composed config DVC hashes is exactly the one the stage runs
# with. deps list every project module a stage imports (transitively), params every key it reads; so editing
# pipeline/data/preprocessing.py reruns train and everything after it, and changing train.epochs never reruns prepare.
"""
# `dvc plots show` (rendered offline through .dvc/plots/offline.html): the data files are the stages' plot
# outputs; every plot names its axes. Latency is a ranked bar per runner, named on the axis, with its accuracy
# at the bar's end (16 runners within a few test images of each other overprint as labelled points); the
# epoch plots (.dvc/plots/epochs.json) tick whole epochs and say which loss is which.
TOP_LEVEL_PLOTS = [
    {"pruning_front": {"template": "scatter", "x": "latency_ms", "y": {"metrics/plots/prune_sweep.csv":
                       ["pruned_accuracy", "scratch_accuracy"]},
                       "title": "Pruning front: test accuracy vs batch-1 latency (pruned vs the same net from scratch)",
                       "x_label": "batch-1 p50 latency (ms), ORT CPU EP", "y_label": "test accuracy"}},
    {"accuracy_vs_latency": {"template": "latency_ranked", "x": "latency_ms", "y": {"metrics/plots/bench.csv":
                             "variant"}, "title": "Batch-1 latency, fastest first (test accuracy at each bar's end)",
                             "x_label": "batch-1 p50 latency (ms)", "y_label": "runner / variant"}},
    {"throughput": {"template": "bar_horizontal", "x": "throughput", "y": {"metrics/plots/bench.csv": "variant"},
                    "title": "Throughput at the benchmark batch", "x_label": "images per second",
                    "y_label": "runner / variant"}},
    {"shipped_cpu_model_confusion": {"template": "confusion", "x": "actual",
                                     "y": {"metrics/plots/confusion.csv": "predicted"},
                                     "title": "Confusion matrix of the shipped cpu_x86 model (10k test images)",
                                     "x_label": "actual digit", "y_label": "predicted digit"}},
    {"training_loss": {"template": "epochs", "x": "epoch",
                       "y": {"metrics/plots/train.csv": ["train_loss", "test_loss"]},
                       "title": "Loss per epoch (train: label-smoothed, augmented; test: plain)", "x_label": "epoch",
                       "y_label": "cross-entropy loss"}},
    {"training_accuracy": {"template": "epochs", "x": "epoch",
                           "y": {"metrics/plots/train.csv": ["train_accuracy", "test_accuracy"]},
                           "title": "Accuracy per epoch", "x_label": "epoch", "y_label": "accuracy"}},
]


def module_file(name: str) -> Path | None:
    base = ROOT / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_names(tree: ast.AST) -> set[str]:
    """Module names an AST imports anywhere (top level or inside functions), and dotted strings that name
    a project module (`python -m pipeline.measure.rss_probe`)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith(PACKAGES):
            names.add(node.value)
    return {n for n in names if n.split(".")[0] in PACKAGES}


def closure(module: str) -> set[Path]:
    """Every project source file that importing `module` runs, parent packages' __init__ included."""
    seen: set[Path] = set()
    pending = [module]
    while pending:
        name = pending.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
            file = module_file(".".join(parts[:i]))
            if file is None or file in seen:
                continue
            seen.add(file)
            pending.extend(_imported_names(ast.parse(file.read_text(), str(file))))
    return seen


def code_deps(stage: Stage) -> list[str]:
    """The stage's project files as dvc.yaml deps; a package folder whose every file is a dep is listed once."""
    files = {f.relative_to(ROOT).as_posix() for f in closure(stage.module)}
    files.update(stage.code)
    if "pipeline/model/checkpoint.py" in files:
        files.add(MODEL_CODE)
    return _collapse(files)


def _collapse(paths: set[str]) -> list[str]:
    collapsed = set(paths)
    for package in sorted({p.rsplit("/", 1)[0] for p in paths if "/" in p}, key=lambda d: -d.count("/")):
        members = {f.relative_to(ROOT).as_posix() for f in (ROOT / package).rglob("*.py")
                   if "__pycache__" not in f.parts}
        if members and members <= _expand(collapsed):
            collapsed = {p for p in collapsed if not p.startswith(f"{package}/")} | {package}
    return sorted(collapsed)


def _expand(paths: set[str]) -> set[str]:
    files = set()
    for p in paths:
        folder = ROOT / p
        if folder.is_dir():
            files.update(f.relative_to(ROOT).as_posix() for f in folder.rglob("*.py") if "__pycache__" not in f.parts)
        else:
            files.add(p)
    return files


def entry(stage: Stage) -> dict:
    """The dvc.yaml entry a declaration implies."""
    body: dict = {"cmd": stage.dvc_cmd}
    body["deps"] = list(dict.fromkeys([*stage.inputs.values(), *code_deps(stage)]))
    params = list(dict.fromkeys(stage.config.values()))
    if params:
        body["params"] = params
    # Detailed metrics, timings and plot data are plain outputs; only the headline is a DVC metric, so
    # `dvc metrics show` stays a narrow table, and the plots (with axes) are the top-level ones below.
    uncached = [stage.metrics_file, stage.timings_file, *(stage.plot_file(p) for p in stage.plots)]
    body["outs"] = [*stage.outputs.values(), *({f: {"cache": False}} for f in uncached)]
    if stage.headline is not None:
        body["metrics"] = [{stage.summary_file: {"cache": False}}]
    if stage.foreach:
        return {"foreach": f"${{{stage.foreach}}}", "do": body}
    return body


def expected(params: Path = ROOT / "params.yaml") -> dict:
    return {"stages": {s.name: entry(s) for s in all_stages()}, "plots": TOP_LEVEL_PLOTS,
            "artifacts": artifacts(params)}


def artifacts(params: Path) -> dict:
    """dvc.yaml `artifacts:` from the declarations, for the stage entries params.yaml configures: each one's
    path, type, description, labels and meta (from the stage's metrics where they exist: what a release ships)."""
    import json

    from pipeline.core.config import resolve
    from pipeline.core.runner import items, path

    cfg = resolve(params, []) if Path(params).is_file() else None
    declared = {}
    for stage in (s for s in all_stages() if s.artifacts and cfg is not None):
        for item in items(stage, cfg, None):
            metrics_file = ROOT / path(cfg, stage.metrics_file.replace("${key}", str(item)), item)
            metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
            for name, output in stage.artifacts.items():
                key = artifact_name(name, item)
                declared[key] = {"path": path(cfg, stage.outputs[output], item).as_posix(), "type": "model",
                                 **stage.artifact_meta(item, metrics)}
    return declared


def artifact_name(template: str, item: str | None) -> str:
    return template.replace("${key}", str(item).replace("_", "-"))


def render(params: Path = ROOT / "params.yaml") -> str:
    import yaml

    return HEADER + yaml.safe_dump(expected(params), sort_keys=False, width=120, default_flow_style=False)


def write(file: Path) -> None:
    write_text(file, render(Path(file).parent / "params.yaml"))


def check(file: Path) -> list[str]:
    """Every difference between `file` and the declarations, one line each (empty: they agree)."""
    import yaml

    if not Path(file).is_file():
        raise PipelineError(f"{file} not found (run from the repository root, or `pipeline dvc --write`)")
    loaded = yaml.safe_load(Path(file).read_text()) or {}
    actual, wanted = loaded.get("stages", {}), expected(Path(file).parent / "params.yaml")
    want = wanted["stages"]
    problems = [f"stage {name} is declared but missing" for name in want if name not in actual]
    problems += [f"stage {name} is not declared by any pipeline/stages module" for name in actual if name not in want]
    for name in want.keys() & actual.keys():
        problems += _differences(name, _body(want[name]), _body(actual[name]))
    declared = {n: (a.get("path"), a.get("type")) for n, a in (loaded.get("artifacts") or {}).items()}
    problems += [f"artifact {n} is {declared.get(n)}, the declarations make {(a['path'], a['type'])}"
                 for n, a in wanted["artifacts"].items() if declared.get(n) != (a["path"], a["type"])]
    problems += [f"artifact {n} is not declared by any stage" for n in declared if n not in wanted["artifacts"]]
    return problems


def _body(stage_entry: dict) -> dict:
    return stage_entry.get("do", stage_entry)


def _differences(name: str, want: dict, actual: dict) -> list[str]:
    problems = []
    if want["cmd"] != actual.get("cmd"):
        problems.append(f"stage {name}: cmd is {actual.get('cmd')!r}, the declaration runs {want['cmd']!r}")
    for key in ("deps", "params", "outs", "metrics", "plots"):
        wanted, have = _keys(want.get(key, [])), _keys(actual.get(key, []))
        if wanted - have:
            problems.append(f"stage {name}: {key} misses {', '.join(sorted(wanted - have))}")
        if have - wanted:
            problems.append(f"stage {name}: {key} lists undeclared {', '.join(sorted(have - wanted))}")
    return problems


def _keys(items: list) -> set[str]:
    """List entries as strings: `path` or `{path: {cache: false}}` alike."""
    return {next(iter(i)) if isinstance(i, dict) else str(i) for i in items}
