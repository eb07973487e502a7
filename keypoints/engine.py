"""Training and evaluation loops (torchvision references' ``train_one_epoch`` / ``evaluate`` shape).

Batches are the dicts of :class:`keypoints.data.CocoKeypointDataset`: uint8 RGB crops (the model
normalises), Gaussian target heatmaps, target weights, and the crop ``center``/``scale`` for
back-projection. Nothing here reads a config: the caller passes explicit arguments.
"""
from __future__ import annotations

import logging
import math
import sys
import time
from contextlib import nullcontext
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn
from tqdm import tqdm

from .codec import HeatmapCodec
from .constants import FLIP_INDEX
from .evaluation import CocoKeypointEvaluator
from .postprocess import decode_to_image, flip_back, flip_images, instance_areas
from .utils.distributed import all_reduce_mean, is_main_process

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
    seen = 0
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
    return {"train_loss": loss_sum.item() / iters, "lr": optimizer.param_groups[0]["lr"],
            "samples_per_s": seen / elapsed, "data_wait": data_time / elapsed, "epoch_time_s": elapsed}


def _forward_with_flip(model: nn.Module, images: torch.Tensor, flip: bool, flip_index: Sequence[int],
                       shift_heatmap: bool, amp_dtype: torch.dtype | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(plain heatmaps, flip-averaged heatmaps), float32; the flipped crops share the forward pass."""
    batch = torch.cat([images, flip_images(images)]) if flip else images
    with autocast(images.device, amp_dtype):
        heatmaps = model(batch).float()
    if not flip:
        return heatmaps, heatmaps
    n = images.shape[0]
    plain = heatmaps[:n]
    return plain, 0.5 * (plain + flip_back(heatmaps[n:], flip_index, shift=shift_heatmap))


@torch.no_grad()
def predict_heatmaps(model: nn.Module, images: torch.Tensor, *, flip: bool = True,
                     flip_index: Sequence[int] = FLIP_INDEX, shift_heatmap: bool = True,
                     amp_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Heatmaps ``(B, K, h, w)`` float32 for crops ``(B, 3, H, W)``; with ``flip`` the flipped crops run in the same
    forward pass and their flipped-back heatmaps are averaged in (SPEC section 6)."""
    return _forward_with_flip(model, images, flip, flip_index, shift_heatmap, amp_dtype)[1]


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, codec: HeatmapCodec, evaluator: CocoKeypointEvaluator, *,
             device: torch.device, flip: bool = True, shift_heatmap: bool = True, refine: str = "standard",
             flip_index: Sequence[int] = FLIP_INDEX, amp_dtype: torch.dtype | None = None, channels_last: bool = True,
             loss_fn: Callable[..., torch.Tensor] | None = None, progress: bool = True) -> dict[str, float]:
    """Predict every instance of ``loader``, then COCO keypoint AP from ``evaluator`` (all ranks call this; rank 0
    gets the metrics). With ``loss_fn`` the validation loss on the unflipped heatmaps is added as ``val_loss``."""
    model.eval()
    evaluator.reset()
    loss_sum = torch.zeros((), device=device)
    batches = 0
    start = time.perf_counter()
    for batch in _progress(loader, len(loader), "eval", progress and is_main_process()):
        images = to_device(batch["image"], device, channels_last)
        plain, heatmaps = _forward_with_flip(model, images, flip, flip_index, shift_heatmap, amp_dtype)
        if loss_fn is not None:
            loss_sum += loss_fn(plain, batch["heatmaps"].to(device), batch["target_weight"].to(device))
            batches += 1
        keypoints = decode_to_image(heatmaps, codec, batch["center"], batch["scale"], refine=refine)
        evaluator.process(batch["image_id"], keypoints, batch["box_score"], instance_areas(batch["scale"]),
                          instance_ids=batch["index"])
    metrics = evaluator.evaluate()
    if loss_fn is not None and batches:
        val_loss = all_reduce_mean(loss_sum / batches).item()
        metrics["val_loss"] = val_loss
    metrics["eval_time_s"] = time.perf_counter() - start
    return metrics
