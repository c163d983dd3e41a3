"""Where and when a figure was measured: the CPU, the instruction sets that decide its arithmetic rates, and the
date. The stage runner records it in every stage's observations (metrics/timings/<stage>.json), so each figure
that `pipeline results` shows carries the machine and date of the run that measured it."""

from __future__ import annotations

from pathlib import Path

# The CPU flags (as /proc/cpuinfo spells them) that decide which kernels a runtime picks: fp32 FMA width
# (avx2, avx512f), INT8 dot products (avx_vnni, avx512_vnni, amx_int8), bf16 (avx512_bf16, amx_bf16), and on
# Arm the NEON dot product and int8 matrix multiply.
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_tile",
             "amx_int8", "amx_bf16", "asimd", "asimddp", "i8mm", "bf16", "sve")


def machine() -> dict:
    """CPU model, its ISA flags that matter, logical CPUs this process may use, architecture, date (UTC)."""
    import datetime
    import os
    import platform

    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith(("model name", "Model", "Hardware"))]
    flags = next((set(line.split(":", 1)[1].split()) for line in lines if line.startswith(("flags", "Features"))),
                 set())
    return {"cpu": names[0] if names else platform.processor() or "unknown CPU",
            "isa": [flag for flag in ISA_FLAGS if flag in flags],
            "logical_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "architecture": platform.machine(),
            "measured_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
