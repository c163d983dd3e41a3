"""Multi-process training with PyTorch's own stack: torchrun launches, DDP averages gradients.

`launch` (in the CLI process) writes a job file and runs `torchrun ... -m training.distributed JOB`;
each worker (`main`) joins the process group, trains its shard, and rank 0 alone writes the
checkpoint, atomically, in the same format as single-process training.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

from pipeline.core.io import atomic_dir, write_json
from pipeline.model import checkpoint
from training import kernels
from training.config import DistributedConfig, TrainConfig


class LaunchError(RuntimeError):
    """torchrun failed or timed out; the message is one line for the user."""


def launch(cfg: TrainConfig, model_spec: dict, data_dir: Path, out_dir: Path, seed: int) -> dict:
    """Run the training under torchrun on this node; return rank 0's history (on node_rank 0)."""
    dist = cfg.distributed
    with tempfile.TemporaryDirectory(prefix="ddp-job-") as scratch:
        job = Path(scratch) / "job.json"
        result = Path(scratch) / "result.json"
        job.write_text(json.dumps({
            "train": cfg.model_dump(), "model": model_spec, "data_dir": str(data_dir),
            "out_dir": str(out_dir), "seed": seed, "result": str(result),
        }))
        with kernels.environment(cfg.portable_kernels):  # the workers start with the pins
            _run_torchrun(dist, job)
        return json.loads(result.read_text()) if result.exists() else {}


def _run_torchrun(dist: DistributedConfig, job: Path) -> None:
    cmd = [
        sys.executable, "-m", "torch.distributed.run",
        f"--nproc-per-node={dist.nproc_per_node}", f"--nnodes={dist.nnodes}", f"--node-rank={dist.node_rank}",
        f"--master-addr={dist.master_addr}", f"--master-port={dist.master_port}",
        "--max-restarts=0", "-m", "training.distributed", str(job),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=dist.timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise LaunchError(f"distributed training did not finish within {dist.timeout_s}s; all workers killed") from None
    if proc.returncode != 0:
        raise LaunchError(f"distributed training failed: {_failure_summary(output)}")


def _failure_summary(output: str) -> str:
    """torchrun's root cause as one line: which rank died, on which host, with which exit code."""
    import re

    root = output.split("Root Cause", 1)[-1] if "Root Cause" in output else output
    rank = re.search(r"rank\s*:\s*(\d+)", root)
    host = re.search(r"host\s*:\s*(\S+)", root)
    code = re.search(r"exitcode\s*:\s*(-?\d+)", root)
    if rank and code:
        where = f" on {host.group(1)}" if host else ""
        return (f"rank {rank.group(1)}{where} exited with exit code {code.group(1)} (root cause); "
                f"torchrun stopped the other workers")
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return (lines[-1] if lines else "torchrun exited non-zero")[:300]


def main(job_path: str) -> None:
    import torch
    import torch.distributed as torch_dist
    from torch.nn.parallel import DistributedDataParallel

    from training.data import mnist_tensors
    from training.loop import fit, seed_everything

    job = json.loads(Path(job_path).read_text())
    cfg = TrainConfig.model_validate(job["train"])
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    torch_dist.init_process_group(backend, timeout=timedelta(seconds=cfg.distributed.timeout_s))
    try:
        seed_everything(job["seed"], max(1, cfg.threads // cfg.distributed.nproc_per_node), cfg.portable_kernels)
        model = checkpoint.build(job["model"]).to(memory_format=kernels.layout())
        train, test = mnist_tensors(Path(job["data_dir"]), cfg.subset, cfg.eval_subset)
        ddp = DistributedDataParallel(model)
        history = fit(model, cfg, train, test, seed=job["seed"], rank=rank, world_size=world, ddp_model=ddp)
        if rank == 0:
            with atomic_dir(Path(job["out_dir"])) as staging:
                checkpoint.save(model, job["model"], staging, {"world_size": world, "backend": backend})
            write_json(Path(job["result"]), {"epochs": history.epochs, "seconds": history.seconds,
                                             "world_size": world, "backend": backend})
        torch_dist.barrier()
    finally:
        torch_dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
