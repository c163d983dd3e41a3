"""The training stage's config (conf/train/*.yaml), as the loop receives it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DistributedConfig:
    nproc_per_node: int = 1
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    timeout_s: int = 600

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 4
    batch_size: int = 128
    max_lr: float = 0.2
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.05
    augment_shift: int = 2
    threads: int = 2
    subset: int | None = None
    eval_subset: int | None = None
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
