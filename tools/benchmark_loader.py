"""Training data loader throughput on real COCO images, per stage, and how long a training step would wait for it.

    python tools/benchmark_loader.py
    python tools/benchmark_loader.py --config configs/coco/mobilenetv3_large_dyrelu_c_256x192.yaml --workers 2 4
    python tools/benchmark_loader.py --root tests/data/coco_mini --samples 600 --opts aug.photometric=false

Measures (with the training transform of the config, on ``<root>/train2017``):
  1. per-stage cost of one item in ms (decode, warp + keypoints, albumentations, encode, the rest) and of collation,
     with one torch thread as in a worker;
  2. items/s of ``dataset[i]`` in this process (what one worker process delivers);
  3. items/s through a DataLoader with N workers (decode ... collation, batches of ``data.batch_size``);
  4. a forward + backward + Adam step of the config's model on one batch, and the share of the step time spent
     waiting for data, (a) with loading overlapped in workers, (b) with loading in the training process.
The machine is shared and noisy: the load average is printed before and after.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, default_collate  # noqa: E402

from keypoints.config import load_config  # noqa: E402
from keypoints.data import build_dataset, seed_worker  # noqa: E402
from keypoints.losses import KeypointMSELoss  # noqa: E402
from keypoints.models import build_model  # noqa: E402
from keypoints.utils.cli import run_cli  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/quickstart.yaml", help="config whose data/aug/model are used")
    parser.add_argument("--root", default="tests/data/coco_mini", help="COCO root (overrides data.root)")
    parser.add_argument("--samples", type=int, default=400, help="items per measurement")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="DataLoader worker counts to try")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps (after one warm-up)")
    parser.add_argument("--opts", nargs="*", default=[], help="config overrides, e.g. aug.photometric=false")
    return parser


def _ms(fn, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - start) / n * 1e3


def stage_breakdown(ds, n: int, batch_size: int) -> dict:
    """Mean ms per item of each stage, timed separately on the same instances."""
    t = ds.transform
    inst = [ds.instance(i % len(ds)) for i in range(n)]
    images = {}
    stages = {"decode": _ms(lambda i: images.__setitem__(i, ds.read_image(inst[i]["path"])), n)}
    photometric, t.photometric = t.photometric, None
    outs = {}
    stages["warp"] = _ms(lambda i: outs.__setitem__(i, t(images[i], inst[i]["center"], inst[i]["scale"],
                                                          inst[i]["keypoints"][:, :2], inst[i]["keypoints"][:, 2],
                                                          bgr=True)), n)
    t.photometric = photometric
    stages["albumentations"] = _ms(lambda i: photometric(image=outs[i]["image"]), n) if photometric else 0.0
    stages["encode"] = _ms(lambda i: ds.codec.encode(outs[i]["keypoints"], outs[i]["visibility"]), n)
    stages["item total"] = _ms(lambda i: ds[(i % len(ds), i)], n)  # as SeededSampler feeds it: (index, seed)
    stages["reseed/tensors/other"] = stages["item total"] - sum(stages[k] for k in ("decode", "warp", "albumentations",
                                                                              "encode"))
    items = [ds[i % len(ds)] for i in range(batch_size)]
    reps = max(1, n // batch_size)
    stages["collate"] = _ms(lambda i: default_collate(items), reps) / batch_size
    return stages


def loader_rate(ds, workers: int, batch_size: int, samples: int, seed: int) -> float:
    """Items/s through a DataLoader fed ``(index, seed)`` pairs as by ``SeededSampler`` (drawn with replacement, so
    a small dataset serves many batches); the first batch, i.e. worker start-up, is excluded."""
    rng = np.random.default_rng(seed)
    pairs = [(int(i), int(s)) for i, s in zip(rng.integers(0, len(ds), samples), rng.integers(0, 2 ** 31, samples))]
    loader = DataLoader(ds, batch_size=batch_size, sampler=pairs, num_workers=workers, worker_init_fn=seed_worker,
                        drop_last=True, persistent_workers=False)
    it = iter(loader)
    next(it)
    start, count = time.perf_counter(), 0
    for batch in it:
        count += batch["image"].shape[0]
    return count / (time.perf_counter() - start)


def step_time(cfg, steps: int) -> float:
    """Seconds of one forward + backward + Adam step of the config's model on a random batch."""
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

    def step(_):
        opt.zero_grad(set_to_none=True)
        loss_fn(model(images), target, weight).backward()
        opt.step()
    step(0)
    return _ms(step, steps) / 1e3


def main(args: argparse.Namespace) -> dict:
    cfg = load_config(args.config, [f"data.root={args.root}", *args.opts])
    torch.set_num_threads(1)  # as in a DataLoader worker (collation with 2 threads on a busy machine is ~50x slower)
    print(f"config {args.config} on {args.root}: input {cfg.data.input_size} (w, h), batch {cfg.data.batch_size}, "
          f"photometric {cfg.aug.photometric}; cores {os.cpu_count()}, cv2 threads {cv2.getNumThreads()}, "
          f"load average before {os.getloadavg()[0]:.2f}")
    ds = build_dataset(cfg, "train")
    b = cfg.data.batch_size
    stages = stage_breakdown(ds, min(args.samples, 300), b)
    print("per item, ms: " + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()))
    single = 1e3 / _ms(lambda i: ds[(i % len(ds), i)], args.samples)
    print(f"single process (one worker's share): {single:.0f} items/s")
    rates = {}
    for n in args.workers:
        rates[n] = loader_rate(ds, n, b, args.samples, cfg.train.seed)
        print(f"DataLoader, {n} workers, batch {b}: {rates[n]:.0f} items/s ({rates[n] / n:.0f} per worker)")
    torch.set_num_threads(os.cpu_count() or 1)
    t_step = step_time(cfg, args.steps)
    best = max(rates.values())
    t_data = b / best
    overlapped = max(0.0, t_data - t_step) / max(t_data, t_step)
    serial = (b / single) / (b / single + t_step)
    print(f"training step ({cfg.model.backbone} x{cfg.model.width_mult}, {cfg.model.head} head, batch {b}): "
          f"{t_step * 1e3:.0f} ms = {b / t_step:.0f} items/s")
    print(f"waiting for data: {overlapped:.0%} of the step with {max(rates, key=rates.get)} workers overlapped "
          f"(batch ready every {t_data * 1e3:.0f} ms; assumes spare cores), {serial:.0%} loading in-process")
    print(f"load average after {os.getloadavg()[0]:.2f}")
    return {"stages_ms": stages, "single": single, "workers": rates, "step_s": t_step, "wait_overlapped": overlapped,
            "wait_serial": serial}


if __name__ == "__main__":
    run_cli(main, get_args_parser())
