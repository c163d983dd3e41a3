"""Which variant and session options a target ships, measured on its own provider, decided with confidence
(`choose`, for package).

Candidates are (variant × session options): the variants that passed their gates, in the target's order,
each with the target's own session options first and then every combination of the alternatives in
`search` (graph optimization level applied at load, intra-op threads, spinning). All are timed at batch 1
in interleaved rounds; per-round medians give each candidate's latency ratio to the preferred candidate
(the first variant with the target's own options) and to the fastest, with bootstrap confidence intervals.
The first candidate in preference order that is not slower than the fastest by more than `min_effect` with
`confidence` ships: the preferred one unless something is faster with that confidence by more than that
effect. Only large, certain differences (ORT_ENABLE_ALL vs EXTENDED: ~2×) decide; differences near the noise
(±12 % here) fall to the preference order, so repeated runs ship the same variant and options and the bundle
stays byte-identical.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from pipeline.core.errors import ParityGateFailure
from pipeline.deploy.session import SPINNING
from pipeline.measure.candidates import label, measure
from pipeline.measure.timing import ratio_interval
from pipeline.runtimes import browser, cells
from pipeline.runtimes.remote import measure_there


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


def decide(rounds: dict[str, list[float]], *, min_effect: float, confidence: float,
           portable: set[str] | None = None) -> tuple[str, dict]:
    """The candidate to ship (keys of `rounds` are in preference order; the first is the preferred one) and
    the evidence: each candidate's median latency and latency ratio to the preferred one with its interval.
    Contenders are the candidates not shown (at `confidence`) to be more than `min_effect` slower than the
    fastest; the first contender in `portable` (standard ONNX operators only) ships, else the first contender."""
    names = list(rounds)
    preferred = names[0]
    fastest = min(names, key=lambda n: float(np.median(rounds[n])))
    versus = {n: {"vs_preferred": ratio_interval(rounds[n], rounds[preferred], confidence=confidence),
                  "vs_fastest": ratio_interval(rounds[n], rounds[fastest], confidence=confidence)} for n in names}
    contenders = [n for n in names if versus[n]["vs_fastest"]["low"] <= 1 + min_effect]
    standard = [n for n in contenders if portable is not None and n in portable]
    chosen = (standard or contenders)[0]  # the fastest itself is always a contender
    evidence = {n: {"median_ms": float(np.median(rounds[n])), **versus[n]} for n in names}
    return chosen, {"preferred": preferred, "fastest": fastest, "chosen": chosen, "candidates": evidence,
                    "not_slower_than_fastest": contenders, "min_effect": min_effect,
                    "chosen_is_standard": chosen in standard}


def choose(cfg, candidates: list[dict], timer: str | None) -> tuple[dict, dict, dict, str, dict]:
    """(variant, session options, first provider's options, reason, evidence). Timed on the target's first
    provider in the runtime `timer` (runtimes.timer_for) when there is one; the reason holds no number, since
    it ships in the bundle (the evidence goes to metrics/timings/). `cfg` is the target's config."""
    eligible = [c for c in candidates if c["passed_gates"]]
    if not eligible:
        detail = "; ".join(f"{c['name']}: {_why_not(c)}" for c in candidates)
        raise ParityGateFailure(f"no candidate passes its parity gates ({detail})")
    skipped = "; ".join(f"{c['name']} {_why_not(c)}" for c in candidates if not c["passed_gates"])
    skipped = f" (skipped: {skipped})" if skipped else ""
    primary, own_options = cfg.providers[0], dict(cfg.provider_options[0])
    if timer is None:
        portable = [c for c in eligible if not c["nonstandard"]]
        return (portable or eligible)[0], session_block(cfg.session), own_options, (
            f"no runtime on this machine has {primary}, so nothing could be timed on it: shipped the first "
            f"candidate in the target's order that passes its parity gates"
            f"{' and uses only standard ONNX operators' if portable else ''}, with the target's own session "
            f"options{skipped}"), {}
    candidate_grid = [(c["name"], c["path"], session, options) for c in eligible for session in grid(cfg)
            for options in [own_options, *(dict(o) for o in cfg.search.provider_options)]]
    rounds = _time_candidates(timer, primary, candidate_grid, cfg.selection)
    by_name = {c["name"]: c for c in eligible}
    portable = {_label(g) for g in candidate_grid if not by_name[g[0]]["nonstandard"]}
    chosen_label, evidence = decide(rounds, min_effect=cfg.selection.min_effect,
                                    confidence=cfg.selection.confidence, portable=portable)
    if not cfg.selection.decide:  # the order decides; the timings advise (`advice`)
        evidence["measured_choice"] = chosen_label
        chosen_label = evidence["chosen"] = _first_in_order(candidate_grid, eligible)
    evidence["regret"] = _regret(timer, primary, candidate_grid, rounds, chosen_label, cfg.selection)
    variant, _, session, options = next(g for g in candidate_grid if _label(g) == chosen_label)
    chosen = next(c for c in eligible if c["name"] == variant)
    return chosen, session, options, f"{chosen_label}: {_why(evidence, cfg, primary, timer, len(rounds))}{skipped}", \
        evidence


def _first_in_order(candidate_grid: list[tuple], eligible: list[dict]) -> str:
    """The first eligible variant that uses only standard ONNX operators (else the first), with the target's
    own session and provider options: what ships when timings do not decide."""
    pick = next((c for c in eligible if not c["nonstandard"]), eligible[0])
    return _label(next(g for g in candidate_grid if g[0] == pick["name"]))


def advice(evidence: dict, target: str) -> list[str]:
    """A notice when this machine's timings would have shipped another candidate than the order did."""
    measured, chosen = evidence.get("measured_choice"), evidence.get("chosen")
    if measured is None or measured == chosen:
        return []
    ratio = evidence["candidates"][chosen]["vs_fastest"]
    return [f"{target}: on this machine {measured} was measured faster than the shipped {chosen} (which took "
            f"{ratio['ratio']:.2f}x the fastest's latency, {ratio['low']:.2f}-{ratio['high']:.2f}); to ship what "
            f"this machine measures fastest, set target.{target}.selection.decide=true (the bundle then depends "
            f"on the machine that builds it), or reorder target.{target}.candidates"]


def _label(candidate: tuple) -> str:
    """A (variant, path, session, provider options) candidate by its label."""
    variant, _, session, options = candidate
    return label(variant, session, options)


def _why(evidence: dict, cfg, primary: str, timer: str, tried: int) -> str:
    """The decision in words, exactly as `decide` (or the order) makes it; nothing that changes between runs
    or machines."""
    effect, confidence = f"{cfg.selection.min_effect:.0%}", f"{cfg.selection.confidence:.0%}"
    on = f"at batch 1 on {primary} ({timer}), {tried} candidates (variant × session options) in interleaved rounds"
    if not cfg.selection.decide:
        return ("the first candidate in the target's order that passes its parity gates and uses only standard "
                "ONNX operators where one does, with the target's own session options; timings advise and do not "
                f"decide (selection.decide=false), so any CPU builds this same bundle (timed {on}: "
                "metrics/timings/, and the regret)")
    shown = f"shown (bootstrap, {confidence} confidence) to be more than {effect} slower than the fastest"
    contenders, chosen = evidence["not_slower_than_fastest"], evidence["chosen"]
    passed_over = contenders[:contenders.index(chosen)]
    if chosen == evidence["preferred"]:
        return f"the target's preferred candidate; timed {on}, it was not {shown}"
    portable = f"; {', '.join(passed_over)} came earlier but use{'s' if len(passed_over) == 1 else ''} operators " \
        "outside standard ONNX, and at equal speed a portable model ships" if passed_over else ""
    first = "the first candidate in the target's preference order not so shown"
    standard = " that uses only standard ONNX operators" if evidence.get("chosen_is_standard") else ""
    if evidence["preferred"] in contenders:
        return f"timed {on}: {first}{standard}{portable}"
    return f"timed {on}, the preferred {evidence['preferred']} was {shown}; this is {first}{standard}{portable}"


def _regret(timer: str, provider: str, candidate_grid: list[tuple], rounds: dict[str, list[float]], chosen: str,
            selection) -> dict:
    """What the rule cost: the chosen candidate's latency against the best one, in a separate measurement twice
    as long as the decision's (the chosen one and the two fastest of the decision's rounds, timed afresh), so
    the decision's own noise does not grade itself. An observation: it feeds no decision and no shipped byte."""
    by_speed = sorted(rounds, key=lambda n: float(np.median(rounds[n])))
    contenders = list(dict.fromkeys([chosen, *by_speed[:2]]))
    if len(contenders) < 2:
        return {"chosen": chosen, "best": chosen, "ratio": 1.0, "low": 1.0, "high": 1.0, "rounds": 0,
                "note": "a single candidate: nothing to regret"}
    longer = selection.model_copy(update={"rounds": 2 * selection.rounds})
    again = _time_candidates(timer, provider, [g for g in candidate_grid if _label(g) in contenders], longer)
    best = min(again, key=lambda n: float(np.median(again[n])))
    regret = ratio_interval(again[chosen], again[best], confidence=selection.confidence)
    return {"chosen": chosen, "best": best, **regret, "rounds": longer.rounds, "compared": contenders}


def _time_candidates(timer: str, provider: str, grid: list[tuple[str, Path, dict, dict]], selection) -> dict:
    """Per-round median batch-1 latencies of (variant, path, session, provider options) on `timer`."""
    if timer == "onnxruntime":
        return measure(grid, provider, selection.rounds, selection.per_round)
    if cells.RUNTIMES[timer].in_browser:
        return browser.time_on_wasm([(_label(g), g[1], g[2]) for g in grid], selection,
                                    cells.web_runtime_files())
    return measure_there(timer, {"provider": provider, "rounds": selection.rounds, "per_round": selection.per_round,
                                 "candidates": [{"variant": v, "path": str(p), "session": s, "provider_options": o}
                                                for v, p, s, o in grid]})


def _why_not(candidate: dict) -> str:
    if not candidate.get("built", True):
        return "not built (not in the quantize/optimize config)"
    if candidate.get("stale"):
        return f"stale ({candidate['stale']})"
    return "not validated" if not candidate["validated"] else f"failed {', '.join(candidate['failed_gates'])}"
