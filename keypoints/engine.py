"""Training and evaluation loops (torchvision references' ``train_one_epoch`` / ``evaluate`` shape).

Batches are the dicts of :class:`keypoints.data.CocoKeypointDataset`: uint8 RGB crops (the model
normalises), Gaussian target heatmaps, target weights, and the crop ``center``/``scale`` for
back-projection. The test-time forward (flip test, decoding) is :mod:`keypoints.inference`'s; ``evaluate``
only feeds it the validation batches. Nothing here reads a config: the caller passes explicit arguments.
"""
from __future__ import annotations

import logging
import math
import sys
import time
from contextlib import nullcontext
from typing import Any, Callable, Iterable

import torch
from torch import nn
from tqdm import tqdm

from .evaluation import CocoKeypointEvaluator
from .inference import TopDownInference
from .postprocess import instance_areas
from .utils.distributed import all_reduce_mean, get_world_size, is_main_process

logger = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


def autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def to_device(images: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    images = images.to(device, non_blocking=True)
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


def _progress(iterable: Iterable, total: int, desc: str, enabled: bool) -> Any:
    interactive = sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, disable=not enabled, dynamic_ncols=True, leave=interactive,
                mininterval=0.5 if interactive else 30.0)


def count_skipped(batch: dict) -> int:
    """Items of a batch that stand in for an instance whose image could not be read (the dataset returns the next
    readable one: its ``index`` differs from the ``requested`` one)."""
    if "requested" not in batch:
        return 0
    return int((torch.as_tensor(batch["requested"]) != torch.as_tensor(batch["index"])).sum())


def train_one_epoch(model: nn.Module, loader: Iterable, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, loss_fn: Callable[..., torch.Tensor], *,
                    device: torch.device, epoch: int, scaler: torch.amp.GradScaler | None = None,
                    amp_dtype: torch.dtype | None = None, channels_last: bool = True, grad_clip: float = 0.0,
                    max_iters: int = 0, log_interval: int = 50, progress: bool = True) -> dict[str, float]:
    """One pass over ``loader``; returns mean loss, last lr, samples/s and the data-wait share of the time.

    The loss is read back from the device only every ``log_interval`` iterations (no per-step sync); a
    non-finite value raises :class:`NonFiniteLossError` before anything is saved.
    """
    model.train()
    total = len(loader) if max_iters <= 0 else min(len(loader), max_iters)
    loss_sum = torch.zeros((), device=device)
    seen = skipped = 0
    data_time = 0.0
    start = end = time.perf_counter()
    bar = _progress(loader, total, f"epoch {epoch}", progress and is_main_process())
    it = -1
    for it, batch in enumerate(bar):
        if it >= total:
            break
        data_time += time.perf_counter() - end
        images = to_device(batch["image"], device, channels_last)
        targets = batch["heatmaps"].to(device, non_blocking=True)
        weights = batch["target_weight"].to(device, non_blocking=True)
        with autocast(device, amp_dtype):
            heatmaps = model(images)
        loss = loss_fn(heatmaps, targets, weights)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            if grad_clip > 0:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            if grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
        scheduler.step()
        loss_sum += loss.detach()
        seen += images.shape[0]
        skipped += count_skipped(batch)
        end = time.perf_counter()
        if (it + 1) % log_interval == 0 or it + 1 == total:
            mean_loss = loss_sum.item() / (it + 1)
            if not math.isfinite(mean_loss):
                raise NonFiniteLossError(f"training loss became {mean_loss} at epoch {epoch}, iteration {it + 1}; "
                                         f"lower train.lr, enable train.grad_clip or set train.amp=off")
            elapsed = end - start
            bar.set_postfix(loss=f"{mean_loss:.3e}", lr=f"{optimizer.param_groups[0]['lr']:.2e}",
                            data=f"{data_time / elapsed:.0%}", img_s=f"{seen / elapsed:.0f}")
    if it < 0:
        raise ValueError("the training loader produced no batch; the dataset is smaller than one batch "
                         "(lower data.batch_size)")
    elapsed = time.perf_counter() - start
    iters = min(it + 1, total)
    stats = {"train_loss": loss_sum.item() / iters, "lr": optimizer.param_groups[0]["lr"],
             "samples_per_s": seen / elapsed, "data_wait": data_time / elapsed, "epoch_time_s": elapsed}
    skipped = int(all_reduce_mean(torch.tensor(float(skipped), device=device)).item() * get_world_size() + 0.5)
    if skipped:
        stats["skipped_instances"] = skipped
        logger.warning("epoch %d: %d instances on unreadable images were replaced by readable ones (see the "
                       "warnings above; data.bad_images=error stops instead)", epoch, skipped)
    return stats


@torch.no_grad()
def evaluate(inference: TopDownInference, loader: Iterable, evaluator: CocoKeypointEvaluator, *,
             loss_fn: Callable[..., torch.Tensor] | None = None, progress: bool = True) -> dict[str, float]:
    """Predict every instance of ``loader`` through ``inference`` (crops of the validation dataset, the backend's
    forward with the flip test, decoding), then COCO keypoint AP from ``evaluator`` (all ranks call this; rank 0
    gets the metrics). With ``loss_fn`` the validation loss on the unflipped heatmaps is added as ``val_loss``."""
    evaluator.reset()
    device = inference.backend.device
    loss_sum = torch.zeros((), device=device)
    batches = skipped = 0
    start = time.perf_counter()
    for batch in _progress(loader, len(loader), "eval", progress and is_main_process()):
        keypoints, plain = inference.predict_crops(batch["image"], batch["center"], batch["scale"])
        if loss_fn is not None:
            loss_sum += loss_fn(plain, batch["heatmaps"].to(device), batch["target_weight"].to(device))
            batches += 1
        evaluator.process(batch["image_id"], keypoints, batch["box_score"], instance_areas(batch["scale"]),
                          instance_ids=batch["index"], category_ids=batch.get("category_id"))
        skipped += count_skipped(batch)
    metrics = evaluator.evaluate()
    skipped = int(all_reduce_mean(torch.tensor(float(skipped), device=device)).item() * get_world_size() + 0.5)
    if skipped:
        metrics["skipped_instances"] = skipped
        logger.warning("%d instances were on unreadable images and got no prediction: their people count as missed "
                       "in the AP", skipped)
    if loss_fn is not None and batches:
        metrics["val_loss"] = all_reduce_mean(loss_sum / batches).item()
    metrics["eval_time_s"] = time.perf_counter() - start
    return metrics
