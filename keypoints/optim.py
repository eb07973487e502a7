"""Optimizer and per-iteration learning-rate schedule (builders: the only readers of ``cfg.train`` here).

The reference recipe (SPEC section 8): Adam, lr 5e-4 at a total batch of 512 scaled linearly with the
actual total batch, no weight decay, linear warm-up over 500 iterations from 0.001 x lr, then x0.1 at
epochs 170 and 200 of 210. ``schedule: cosine`` decays from the end of the warm-up to
``min_lr_ratio`` x lr at the last iteration instead.
"""
from __future__ import annotations

import bisect
import math

import torch
from torch import nn

from .config import TrainConfig

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("step", "cosine")


def scaled_lr(cfg: TrainConfig, total_batch: int) -> float:
    return cfg.lr * total_batch / cfg.base_batch_size


def build_optimizer(model: nn.Module, cfg: TrainConfig, total_batch: int) -> torch.optim.Optimizer:
    lr = scaled_lr(cfg, total_batch)
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True)
    raise ValueError(f"train.optimizer={cfg.optimizer!r} is not valid; choose one of {', '.join(OPTIMIZERS)}")


def lr_factor(iteration: int, cfg: TrainConfig, iters_per_epoch: int) -> float:
    """Multiplier of the base lr at a global iteration (0-based)."""
    if cfg.schedule not in SCHEDULES:
        raise ValueError(f"train.schedule={cfg.schedule!r} is not valid; choose one of {', '.join(SCHEDULES)}")
    warm = 1.0
    if iteration < cfg.warmup_iters:
        alpha = iteration / cfg.warmup_iters
        warm = cfg.warmup_factor * (1 - alpha) + alpha
    if cfg.schedule == "step":
        epoch = iteration // max(1, iters_per_epoch)
        return warm * cfg.lr_gamma ** bisect.bisect_right(sorted(cfg.milestones), epoch)
    total = max(1, cfg.epochs * iters_per_epoch - cfg.warmup_iters)
    progress = min(1.0, max(0, iteration - cfg.warmup_iters) / total)
    return warm * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig,
                    iters_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Stepped once per iteration."""
    lr_factor(0, cfg, iters_per_epoch)  # validate the names early
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(it, cfg, iters_per_epoch))
