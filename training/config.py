"""The training and prune stages' config schemas (values in conf/train/ and conf/prune/), as the loops receive them."""

from __future__ import annotations

from typing import Literal

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


class FinetuneConfig(Schema):
    """The prune stage's fine-tuning: the training loop above with these epochs and peak learning rate."""

    epochs: PositiveInt
    max_lr: PositiveFloat
    # Knowledge distillation from the unpruned model: 0 trains on the labels alone.
    distill_weight: float = Field(ge=0, le=1)
    temperature: PositiveFloat


class AccuracyGateConfig(Schema):
    """Pruned vs unpruned on the same test images: pass only if, with this confidence, the pruned model is at
    most max_drop_pt percentage points less accurate (pipeline/model/accuracy_gate.py)."""

    max_drop_pt: float = Field(ge=0, le=100)
    confidence: float = Field(gt=0.5, lt=1.0)


class PruneConfig(Schema):
    flops_budget: float = Field(gt=0, le=1)
    importance: Literal["l1", "l2", "lamp", "fpgm", "bn_scale"]
    global_pruning: bool
    round_to: PositiveInt | None
    max_layer_ratio: float = Field(gt=0, lt=1)
    steps: PositiveInt
    ignore: list[str]
    finetune: FinetuneConfig
    gate: AccuracyGateConfig
