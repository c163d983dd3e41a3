"""The training stage's config schema (values in conf/train/*.yaml), as the loop receives it."""

from __future__ import annotations

from pydantic import Field, PositiveFloat, PositiveInt

from pipeline.core.stage import Schema


class DistributedConfig(Schema):
    nproc_per_node: PositiveInt
    nnodes: PositiveInt
    node_rank: int = Field(ge=0)
    master_addr: str
    master_port: int = Field(ge=1, le=65535)
    timeout_s: PositiveInt

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes


class TrainConfig(Schema):
    epochs: PositiveInt
    batch_size: PositiveInt
    max_lr: PositiveFloat
    momentum: float = Field(ge=0, lt=1)
    weight_decay: float = Field(ge=0)
    label_smoothing: float = Field(ge=0, lt=1)
    augment_shift: int = Field(ge=0, le=13)
    threads: PositiveInt
    portable_kernels: bool
    subset: PositiveInt | None
    eval_subset: PositiveInt | None
    distributed: DistributedConfig
