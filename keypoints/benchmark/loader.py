"""Section "loader": the training data loader on real COCO images, per stage, and how long a training step
would wait for it.

1. per-stage cost of one item in ms (decode, warp + keypoints, albumentations, encode, the rest) and of
   collation, with one torch thread as in a worker (medians of interleaved rounds, each over the same items);
2. items/s of ``dataset[i]`` in this process (what one worker process delivers);
3. items/s through a DataLoader with N workers (decode ... collation, batches of ``data.batch_size``; the first
   batch, i.e. the workers' start-up, excluded);
4. a forward + backward + Adam step of the config's model on one batch, and the share of the step time spent
   waiting for data (a) with loading overlapped in workers, (b) with loading in the training process.
"""
from __future__ import annotations

import os
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, default_collate

from ..config import Config
from ..data import build_dataset, seed_worker
from ..losses import KeypointMSELoss
from ..models import build_model
from .timing import interleaved_medians, timed


def _over_items(fn: Callable[[int], object], n: int) -> Callable[[], None]:
    def run() -> None:
        for i in range(n):
            fn(i)
    return run


def stage_breakdown(ds, n: int, batch_size: int, repeats: int = 3) -> dict[str, float]:
    """Median ms per item of each stage, each stage timed over the same ``n`` instances."""
    t = ds.transform
    inst = [ds.instance(i % len(ds)) for i in range(n)]
    images: dict[int, np.ndarray] = {}
    warped: dict[int, dict] = {}
    photometric = t.photometric

    def warp(i: int) -> None:
        t.photometric = None  # the geometric part alone; albumentations is its own stage
        try:
            k = inst[i]["keypoints"]
            warped[i] = t(images[i], inst[i]["center"], inst[i]["scale"], k[:, :2], k[:, 2], bgr=True)
        finally:
            t.photometric = photometric

    stages = {"decode": _over_items(lambda i: images.__setitem__(i, ds.read_image(inst[i]["path"])), n),
              "warp": _over_items(warp, n)}
    if photometric is not None:
        stages["albumentations"] = _over_items(lambda i: photometric(image=warped[i]["image"]), n)
    stages["encode"] = _over_items(lambda i: ds.codec.encode(warped[i]["keypoints"], warped[i]["visibility"]), n)
    stages["item total"] = _over_items(lambda i: ds[(i % len(ds), i)], n)  # as SeededSampler feeds it: (index, seed)
    items = [ds[i % len(ds)] for i in range(batch_size)]
    stages["collate"] = lambda: default_collate(items)
    # warmup=1 runs the stages once in order: warp finds the decoded images, encode the warped ones.
    seconds = interleaved_medians(stages, repeats, warmup=1)
    out = {k: v * 1e3 / n for k, v in seconds.items() if k != "collate"}
    out.setdefault("albumentations", 0.0)
    out["reseed/tensors/other"] = out["item total"] - sum(
        out[k] for k in ("decode", "warp", "albumentations", "encode"))
    out["collate"] = seconds["collate"] * 1e3 / batch_size
    return out


def loader_rate(ds, workers: int, batch_size: int, samples: int, seed: int) -> float:
    """Items/s through a DataLoader fed ``(index, seed)`` pairs as by ``SeededSampler`` (drawn with replacement, so
    a small dataset serves many batches); the first batch, i.e. worker start-up, is excluded."""
    if samples < 2 * batch_size:
        raise ValueError(f"loader_rate needs at least 2 batches ({2 * batch_size} samples), got {samples}; the first "
                         f"batch is not timed")
    rng = np.random.default_rng(seed)
    pairs = [(int(i), int(s)) for i, s in zip(rng.integers(0, len(ds), samples), rng.integers(0, 2 ** 31, samples))]
    loader = DataLoader(ds, batch_size=batch_size, sampler=pairs, num_workers=workers, worker_init_fn=seed_worker,
                        drop_last=True, persistent_workers=False)
    it = iter(loader)
    next(it)
    count, seconds = timed(lambda: sum(batch["image"].shape[0] for batch in it))
    return count / seconds


def step_time(cfg: Config, repeats: int) -> float:
    """Seconds of one forward + backward + Adam step of the config's model on a random batch (median)."""
    model = build_model(cfg.model).train()
    b = cfg.data.batch_size
    w, h = cfg.data.input_size
    hw, hh = cfg.data.heatmap_size
    images = torch.randint(0, 256, (b, 3, h, w), dtype=torch.uint8)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    target, weight = torch.rand(b, cfg.model.num_keypoints, hh, hw), torch.ones(b, cfg.model.num_keypoints)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = KeypointMSELoss()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(model(images), target, weight).backward()
        opt.step()
    return interleaved_medians({"step": step}, repeats, warmup=1)["step"]


def measure_loader(cfg: Config, *, samples: int = 400, workers: tuple[int, ...] = (1, 2), steps: int = 5,
                   repeats: int = 3) -> dict:
    """All four measurements for ``cfg`` (its training transform on ``cfg.data.root``/train2017). Torch runs
    with one thread for the stages (as in a worker) and every core for the training step."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker (collation with 2 threads on a busy machine is ~50x slower)
    try:
        ds = build_dataset(cfg, "train")
        b = cfg.data.batch_size
        stages = stage_breakdown(ds, min(samples, 300), b, repeats)
        single = 1e3 / stages["item total"]
        rates = {n: loader_rate(ds, n, b, samples, cfg.train.seed) for n in workers}
    finally:
        torch.set_num_threads(threads)
    torch.set_num_threads(os.cpu_count() or 1)
    try:
        t_step = step_time(cfg, steps)
    finally:
        torch.set_num_threads(threads)
    best = max(rates, key=rates.get) if rates else None
    t_data = b / rates[best] if best is not None else float("nan")
    overlapped = max(0.0, t_data - t_step) / max(t_data, t_step) if best is not None else None
    serial = (b / single) / (b / single + t_step)
    return {"stages_ms": stages, "single": single, "workers": rates, "best_workers": best, "batch": b,
            "step_s": t_step, "data_s": t_data, "wait_overlapped": overlapped, "wait_serial": serial}


def loader_lines(result: dict, cfg: Config) -> list[str]:
    """The report of :func:`measure_loader` as text lines."""
    b = result["batch"]
    lines = ["per item, ms: " + ", ".join(f"{k} {v:.2f}" for k, v in result["stages_ms"].items()),
             f"single process (one worker's share): {result['single']:.0f} items/s"]
    lines += [f"DataLoader, {n} workers, batch {b}: {r:.0f} items/s ({r / n:.0f} per worker)"
              for n, r in result["workers"].items()]
    t_step = result["step_s"]
    lines.append(f"training step ({cfg.model.backbone} x{cfg.model.width_mult}, {cfg.model.head} head, batch {b}): "
                 f"{t_step * 1e3:.0f} ms = {b / t_step:.0f} items/s")
    if result["wait_overlapped"] is not None:
        lines.append(f"waiting for data: {result['wait_overlapped']:.0%} of the step with {result['best_workers']} "
                     f"workers overlapped (batch ready every {result['data_s'] * 1e3:.0f} ms; assumes spare cores), "
                     f"{result['wait_serial']:.0%} loading in-process")
    return lines
