"""Which variant and session options a target ships, measured on its own provider, decided with confidence.

Candidates are (variant × session options): the variants that passed their gates, in the target's order,
each with the target's own session options first and then every combination of the alternatives in
`search` (graph optimization level applied at load, intra-op threads, spinning). All are timed at batch 1
in interleaved rounds; per-round medians give each candidate's latency ratio to the preferred candidate
(the first variant with the target's own options) with a bootstrap confidence interval. A candidate replaces
the preferred one only when it is faster with `confidence` by more than `min_effect`; among those, the first
in preference order that is not significantly slower than the fastest wins. So noise never flips the choice:
three runs ship the same variant and options, and the bundle stays byte-identical.
"""

from __future__ import annotations

import functools
import itertools
from pathlib import Path

import numpy as np

from pipeline import preprocessing
from pipeline.deploy.session import SPINNING, open_session


def session_block(session) -> dict:
    """A target's session options as the manifest (and deploy/session.py) read them."""
    return {"graph_optimization_level": session.graph_optimization_level,
            "intra_op_num_threads": session.intra_op_num_threads,
            "execution_mode": session.execution_mode,
            "config_entries": dict(session.config_entries)}


def grid(cfg) -> list[dict]:
    """Session option sets in preference order: the target's own first, then each alternative combination."""
    base = session_block(cfg.session)
    levels = [base["graph_optimization_level"], *cfg.search.graph_optimization_level]
    threads = [base["intra_op_num_threads"], *cfg.search.intra_op_num_threads]
    spinning = [base["config_entries"].get(SPINNING, "1"), *cfg.search.allow_spinning]
    options = []
    for level, thread_count, spin in itertools.product(*(list(dict.fromkeys(axis)) for axis in (levels, threads,
                                                                                                  spinning))):
        entries = {**base["config_entries"], SPINNING: spin} if spin != "1" else dict(base["config_entries"])
        options.append({**base, "graph_optimization_level": level, "intra_op_num_threads": thread_count,
                        "config_entries": entries})
    return options


def label(variant: str, session: dict) -> str:
    spin = "off" if session["config_entries"].get(SPINNING, "1") == "0" else "on"
    return (f"{variant} @ {session['graph_optimization_level']}, {session['intra_op_num_threads']} threads, "
            f"spinning {spin}")


def measure(candidates: list[tuple[str, Path, dict]], provider: str, selection) -> dict[str, list[float]]:
    """Per-round median batch-1 latency of each (variant, path, session) on `provider`, interleaved."""
    from pipeline.timing import interleaved_rounds

    x = np.zeros((1, 1, preprocessing.HEIGHT, preprocessing.WIDTH), np.float32)
    runs = {}
    for variant, path, session in candidates:
        opened = open_session(path, session, [(provider, {})])
        runs[label(variant, session)] = functools.partial(opened.run, None, {opened.get_inputs()[0].name: x})
    return interleaved_rounds(runs, rounds=selection.rounds, per_round=selection.per_round, warmup=20)


def decide(rounds: dict[str, list[float]], *, min_effect: float, confidence: float) -> tuple[str, dict]:
    """The candidate to ship (keys of `rounds` are in preference order; the first is the preferred one) and
    the evidence: each candidate's median latency and latency ratio to the preferred one with its interval."""
    from pipeline.timing import ratio_interval

    names = list(rounds)
    preferred = names[0]
    versus = {n: ratio_interval(rounds[n], rounds[preferred], confidence=confidence) for n in names}
    faster = [n for n in names[1:] if versus[n]["high"] < 1 - min_effect]
    chosen = preferred
    if faster:
        fastest = min(faster, key=lambda n: float(np.median(rounds[n])))
        chosen = next(n for n in faster
                      if ratio_interval(rounds[n], rounds[fastest], confidence=confidence)["low"] <= 1 + min_effect)
    evidence = {n: {"median_ms": float(np.median(rounds[n])), "vs_preferred": versus[n]} for n in names}
    return chosen, {"preferred": preferred, "chosen": chosen, "candidates": evidence,
                    "significantly_faster": faster, "min_effect": min_effect}
