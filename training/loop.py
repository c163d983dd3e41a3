"""The training loop, readable top to bottom. The same code runs alone or as one DDP rank.

Single-process training is the world-size-1 case: DistributedSampler takes explicit num_replicas/rank,
so the shuffle and the batches are the same code either way, seeded by (seed, epoch).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data.distributed import DistributedSampler

from training import kernels
from training.config import TrainConfig


@dataclass
class Distillation:
    """Knowledge distillation (Hinton et al., 2015): the loss is (1 - weight) × cross-entropy + weight × T² ×
    KL(teacher ‖ student) at temperature T, so a pruned student learns the unpruned model's soft targets."""

    model: nn.Module
    weight: float
    temperature: float

    def mix(self, loss: torch.Tensor, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.weight == 0:
            return loss
        with torch.no_grad():
            target = F.log_softmax(self.model(x) / self.temperature, dim=1)
        soft = F.kl_div(F.log_softmax(logits / self.temperature, dim=1), target, reduction="batchmean", log_target=True)
        return (1 - self.weight) * loss + self.weight * self.temperature**2 * soft


@dataclass
class History:
    epochs: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def seed_everything(seed: int, threads: int, portable_kernels: bool) -> None:
    kernels.apply(portable_kernels)
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.set_num_threads(max(1, threads))
    torch.use_deterministic_algorithms(True)


def fit(
    model: nn.Module,
    cfg: TrainConfig,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    *,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    ddp_model: nn.Module | None = None,
    progress=None,
    teacher: Distillation | None = None,
) -> History:
    """Train `model` in place with one-cycle SGD; evaluate on `test` after every epoch.

    `ddp_model` is the DistributedDataParallel wrapper when running as one rank of several; gradients
    then average across ranks and each rank sees 1/world_size of every epoch. With a `teacher`, the loss
    mixes in its softened predictions (the prune stage's fine-tuning).
    """
    images, labels = train
    net = ddp_model or model
    steps_per_epoch = len(images) // world_size // cfg.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size {cfg.batch_size} exceeds the {len(images)} training images per rank")
    optimizer = torch.optim.SGD(
        net.parameters(), lr=cfg.max_lr, momentum=cfg.momentum, nesterov=True, weight_decay=cfg.weight_decay
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=cfg.max_lr, total_steps=cfg.epochs * steps_per_epoch, pct_start=0.25
    )
    sampler = DistributedSampler(range(len(images)), num_replicas=world_size, rank=rank, seed=seed)
    shifts = torch.Generator().manual_seed(seed * 1000 + rank)
    background = float(images.min())
    history = History()
    start = time.perf_counter()
    task = progress.add_task("train", total=cfg.epochs * steps_per_epoch) if progress else None

    for epoch in range(cfg.epochs):
        sampler.set_epoch(epoch)
        order = torch.tensor(list(sampler))
        net.train()
        loss_sum = correct = seen = 0
        for step in range(steps_per_epoch):
            batch = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            x = _shift(images[batch], cfg.augment_shift, shifts, background)
            y = labels[batch]
            logits = net(x.contiguous(memory_format=kernels.layout()))
            loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            if teacher is not None:
                loss = teacher.mix(loss, logits, x)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += loss.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(y)
            if progress:
                progress.update(task, advance=1, description=f"epoch {epoch + 1}/{cfg.epochs}")
        test_loss, test_acc = evaluate(model, *test)
        history.epochs.append({
            "epoch": epoch + 1,
            "train_loss": loss_sum / seen,
            "train_accuracy": correct / seen,
            "test_loss": test_loss,
            "test_accuracy": test_acc,
        })
    history.seconds = time.perf_counter() - start
    return history


def _shift(x: torch.Tensor, max_shift: int, generator: torch.Generator, background: float) -> torch.Tensor:
    """Translate the whole batch by one random (dx, dy) in [-max_shift, max_shift], padding with background."""
    if max_shift <= 0:
        return x
    padded = F.pad(x, (max_shift,) * 4, value=background)
    dx, dy = torch.randint(0, 2 * max_shift + 1, (2,), generator=generator).tolist()
    return padded[:, :, dy : dy + x.shape[2], dx : dx + x.shape[3]]


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = 1000):
    model.eval()
    loss_sum = correct = 0.0
    for i in range(0, len(images), batch):
        logits = model(images[i : i + batch].contiguous(memory_format=kernels.layout()))
        loss_sum += F.cross_entropy(logits, labels[i : i + batch], reduction="sum").item()
        correct += (logits.argmax(1) == labels[i : i + batch]).sum().item()
    return loss_sum / len(images), correct / len(images)


@torch.no_grad()
def predictions(model: nn.Module, images: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    """The predicted class of every image."""
    model.eval()
    return torch.cat([model(images[i : i + batch].contiguous(memory_format=kernels.layout())).argmax(1)
                      for i in range(0, len(images), batch)])
