"""Every consumer of a bundle, run as a deployment team runs it, over many copies of a bundle: each gives an
Outcome (its exit code and the line it ended with).

The Python consumers (the bundle's own verify.py and infer.py) run in one interpreter that imports them from an
intact copy of the bundle, as the scripts import their sibling modules, and calls their `main` per folder: the
same code path as `python verify.py FOLDER`, without paying numpy's and onnxruntime's import per case. Node, the
C++ consumers and the page run as separate programs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from pipeline.runtimes import browser

DOCUMENTED_EXITS = {0, 1, 2, 3}
DRIVER = """
import contextlib, io, json, sys, traceback
sys.path.insert(0, sys.argv[1])
import {module} as consumer
for line in sys.stdin:
    argv = json.loads(line)
    err, out = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            code = consumer.main(argv)
    except SystemExit as exc:
        code = exc.code
    except BaseException:
        code, err = "crash", io.StringIO(traceback.format_exc())
    print(json.dumps([code, err.getvalue(), out.getvalue()]), flush=True)
"""


@dataclass(frozen=True)
class Outcome:
    """What a consumer said about one bundle: its exit code ("crash" for an escaped exception or a signal), the
    last line it wrote to stderr (or what the page reported), and its stdout."""
    code: int | str
    message: str
    stdout: str = ""

    @property
    def documented(self) -> bool:
        return self.code in DOCUMENTED_EXITS and "Traceback" not in self.message and "runtime error" not in self.message


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def python_main(module: str, code_dir: Path, argvs: list[list[str]]) -> list[Outcome]:
    """`module`.main(argv) for each argv, in one interpreter importing the module from `code_dir`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")} | {"PYTHONDONTWRITEBYTECODE": "1"}
    stdin = "".join(json.dumps(argv) + "\n" for argv in argvs)
    done = subprocess.run([sys.executable, "-c", DRIVER.format(module=module), str(code_dir)], input=stdin,
                          capture_output=True, text=True, env=env, timeout=1800)
    assert done.returncode == 0, done.stderr
    results = [json.loads(line) for line in done.stdout.splitlines()]
    return [Outcome(code, _last_line(err) if code != "crash" else err, out) for code, err, out in results]


def program(argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> Outcome:
    """One run of a consumer program; a death by a signal (a crash) is code "crash"."""
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})},
                          timeout=300)
    code = done.returncode if done.returncode >= 0 else "crash"
    message = done.stderr if code == "crash" or "Sanitizer" in done.stderr else _last_line(done.stderr)
    return Outcome(code, message, done.stdout)


def node_ready(folders_parent: Path, node_env: Path) -> None:
    """Node resolves onnxruntime-node from the script's folder upwards: a node_modules link beside the copies
    (outside every bundle, so no checker sees it as a file of the bundle)."""
    link = folders_parent / "node_modules"
    if not link.exists():
        link.symlink_to(node_env / "node_modules", target_is_directory=True)


def page_verdicts(parent: Path, names: list[str]) -> list[Outcome]:
    """The web page's own check (window.digitApp.verdict, made as it starts) of each bundle folder under
    `parent`, in one Chromium."""
    from playwright.sync_api import sync_playwright

    outcomes = []
    with browser.serve(parent) as url, sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(browser.CHROMIUM), args=browser.FLAGS, headless=True)
        try:
            for name in names:
                page = chromium.new_page()
                page.goto(f"{url}{name}/index.html")
                page.wait_for_function(browser.READY, timeout=60_000)
                verdict = page.evaluate("window.digitApp.verdict || {exit: 'crash', message: window.digitApp.error}")
                outcomes.append(Outcome(verdict["exit"], verdict.get("message") or ""))
                page.close()
        finally:
            chromium.close()
    return outcomes
