"""BatchNorm statistics for short runs: "precise BN" before evaluation (Wu & Johnson, "Rethinking 'Batch' in
BatchNorm", 2021; detectron2's ``PreciseBN`` hook).

A BatchNorm layer evaluates with running statistics that follow the training batches with ``momentum``: they
average over roughly the last ``1 / momentum`` iterations (100 at torchvision's MobileNetV3 momentum 0.01), with
weights that were older than the ones evaluated. In the 210-epoch COCO recipe that lag is nothing (about 4,900 such
time constants per run); in a fine-tuning or overfitting run of a few hundred iterations it is the whole run, and the
model evaluates at AP 0 with its val loss at the untrained level while the training loss falls. Recalibrating means:
reset the running statistics, forward some training batches in train mode with ``momentum=None`` (the running
statistics become the plain average over those batches) and no gradients, restore the momenta; under DDP the
averages are then averaged across ranks.

    from keypoints.bn_stats import recalibrate_batchnorm, recalibration_enabled
    if recalibration_enabled("auto", total_iterations=epochs * iters_per_epoch, model=model):
        recalibrate_batchnorm(model, train_loader, num_batches=50, device=device)   # before evaluate(...)

The config keys are ``train.bn_recalibration`` (auto | always | never) and ``train.bn_recalibration_batches``
(:func:`recalibration_from_config` reads them; the training loop calls it before each evaluation and before the
checkpoint of that epoch is written, so the stored weights evaluate the same).
"""
from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from typing import Iterable

import torch
from torch import nn

from .utils.distributed import all_reduce_mean, is_distributed

__all__ = ["recalibrate_batchnorm", "recalibration_enabled", "smallest_bn_momentum", "batchnorm_layers",
           "BN_RECALIBRATION_MODES", "AUTO_MAX_TIME_CONSTANTS"]

logger = logging.getLogger(__name__)

BN_RECALIBRATION_MODES = ("auto", "always", "never")
# "auto" recalibrates a run that lasts fewer than this many BatchNorm time constants (total iterations x the smallest
# momentum): the 20-instance overfit (~2 at momentum 0.01) and short fine-tuning runs, not the 210-epoch COCO
# recipe (~4,900) nor the quickstart (~98 at its momentum 0.1).
AUTO_MAX_TIME_CONSTANTS = 50.0


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every BatchNorm layer of ``model`` that keeps running statistics (BatchNorm1d/2d/3d, SyncBatchNorm)."""
    return [m for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def smallest_bn_momentum(model: nn.Module) -> float | None:
    """The slowest running-statistics momentum of ``model``'s BatchNorm layers (None: no such layer; a layer with
    ``momentum=None``, already a cumulative average, is left out)."""
    momenta = [m.momentum for m in batchnorm_layers(model) if m.momentum is not None]
    return min(momenta) if momenta else None


def recalibration_enabled(mode: str, *, total_iterations: int, model: nn.Module) -> bool:
    """Whether to recalibrate before evaluation: ``always``, ``never``, or ``auto``: when the run's
    ``total_iterations`` (epochs x iterations per epoch) x the smallest BatchNorm momentum of ``model`` is below
    :data:`AUTO_MAX_TIME_CONSTANTS`, i.e. the run lasts fewer than 50 BatchNorm time constants."""
    if mode not in BN_RECALIBRATION_MODES:
        raise ValueError(f"train.bn_recalibration={mode!r} is not valid; choose one of "
                         f"{', '.join(BN_RECALIBRATION_MODES)}")
    if mode != "auto":
        return mode == "always"
    momentum = smallest_bn_momentum(model)
    return momentum is not None and total_iterations * momentum < AUTO_MAX_TIME_CONSTANTS


def _images(batch) -> torch.Tensor:
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, dict) and "image" in batch:
        return batch["image"]
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0]
    raise ValueError(f"recalibrate_batchnorm needs batches of images: tensors (B, 3, H, W) or the dataset's dicts "
                     f"with 'image', got {type(batch).__name__}")


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Iterable, *, num_batches: int = 50,
                          device: torch.device | str | None = None, channels_last: bool = False,
                          amp_dtype: torch.dtype | None = None) -> int:
    """Recompute the running mean and variance of every BatchNorm layer of ``model`` from training batches.

    Args:
        model: the network itself (unwrapped from DDP / ``torch.compile``; the running buffers are shared anyway).
            Every module's train/eval mode and every layer's momentum are restored afterwards; no parameter changes.
        batches: an iterable of the training loader's dicts (``image`` uint8 ``(B, 3, H, W)``, the model
            normalises) or of image tensors; the training loader with its augmentation is the intended source.
        num_batches: at most this many batches are forwarded (fewer when ``batches`` ends first).
        device: where the images go (default: the model's parameters' device).
        channels_last, amp_dtype: as in training.

    Returns the number of batches used (0: nothing changed, no BatchNorm layer or no batch). Under DDP every rank
    must call it (the statistics are averaged across ranks after the local pass).
    """
    layers = batchnorm_layers(model)
    if not layers or num_batches <= 0:
        return 0
    if device is None:
        device = next(model.parameters()).device
    device = torch.device(device)
    momenta = [m.momentum for m in layers]
    states = {m: m.training for m in model.modules()}
    start = time.perf_counter()
    used = 0
    try:
        model.eval()  # dropout and the like stay off; only the BatchNorm layers run in train mode
        saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m in layers]
        for m in layers:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average: equal weight for every batch below
            m.train()
        for batch in batches:
            if used >= num_batches:
                break
            images = _images(batch).to(device, non_blocking=True)
            if channels_last and images.dim() == 4:
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext():
                model(images)
            used += 1
        if used == 0:  # no batch: keep the statistics as they were
            for m, (mean, var, count) in zip(layers, saved):
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(count)
        elif is_distributed():
            for m in layers:
                m.running_mean.copy_(all_reduce_mean(m.running_mean))
                m.running_var.copy_(all_reduce_mean(m.running_var))
    finally:
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
        for m, training in states.items():
            m.training = training
    logger.info("BatchNorm statistics recalibrated on %d training batches (%d layers, %.1f s)", used, len(layers),
                time.perf_counter() - start)
    return used
