"""Time the test-time post-processing against the model's forward pass, per 1,000 person crops (CPU by default).

Post-processing = flip-back + average with the unflipped heatmaps, decoding (standard or DARK) with back-projection
to image pixels, rescoring and OKS-NMS per image, plus the evaluator's formatting into COCO results. Inputs are
realistic: heatmaps with one Gaussian peak per joint (plus noise), about 15 instances per image clustered around a
few people so that OKS-NMS removes duplicates. The forward time is measured in the same run (the machine may be
shared: compare the ratio, not the absolute times).

    python tools/benchmark_postprocess.py
    python tools/benchmark_postprocess.py --threads 2 --instances 1000 --paper-crops 32
    python tools/benchmark_postprocess.py --configs configs/quickstart.yaml --device cuda
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keypoints.codec import HeatmapCodec  # noqa: E402
from keypoints.config import load_config  # noqa: E402
from keypoints.constants import FLIP_INDEX  # noqa: E402
from keypoints.evaluation import predictions_to_results  # noqa: E402
from keypoints.models import build_model  # noqa: E402
from keypoints.postprocess import decode_to_image, flip_back, instance_areas, nms_per_image, rescore  # noqa: E402
from keypoints.utils.cli import run_cli  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIGS = ("configs/quickstart.yaml", "configs/coco/mobilenetv3_large_dyrelu_c_256x192.yaml")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS), help="model configs to time")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--instances", type=int, default=1000, help="instances for the post-processing timing")
    parser.add_argument("--per-image", type=int, default=15, help="instances per image (OKS-NMS groups)")
    parser.add_argument("--batch-size", type=int, default=64, help="post-processing batch (test.batch_size)")
    parser.add_argument("--forward-crops", type=int, default=256, help="crops timed for inputs up to 128x96")
    parser.add_argument("--paper-crops", type=int, default=32, help="crops timed for larger inputs")
    parser.add_argument("--forward-batch", type=int, default=32, help="forward batch for inputs up to 128x96")
    parser.add_argument("--paper-batch", type=int, default=8, help="forward batch for larger inputs")
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats (the minimum is reported)")
    return parser


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_time(fn, repeats: int, device: torch.device) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def make_inputs(codec: HeatmapCodec, n: int, per_image: int, seed: int = 0) -> dict[str, np.ndarray]:
    """n crops of n / per_image images: heatmaps (unflipped and as the flipped crop would give), crop boxes."""
    rng = np.random.default_rng(seed)
    w_in, h_in = codec.input_size
    n_images = -(-n // per_image)
    image_ids = np.repeat(np.arange(n_images), per_image)[:n]
    # A few people per image; every instance is a jittered detection of one of them (duplicates for NMS).
    people_center = rng.uniform(100, 500, (n_images, 5, 2))
    people_scale = rng.uniform(60, 250, (n_images, 5, 1)) * np.array([1.0, 1 / 0.75])
    who = rng.integers(0, 5, n)
    center = people_center[image_ids, who] + rng.normal(0, 4, (n, 2))
    scale = people_scale[image_ids, who] * rng.uniform(0.95, 1.05, (n, 1))
    pose = rng.uniform([0.2 * w_in, 0.1 * h_in], [0.8 * w_in, 0.9 * h_in], (n_images, 5, 17, 2))
    crop_xy = pose[image_ids, who] + rng.normal(0, 2, (n, 17, 2))
    heatmaps = np.empty((n, 17, codec.heatmap_size[1], codec.heatmap_size[0]), dtype=np.float32)
    flipped = np.empty_like(heatmaps)
    for i in range(n):
        amplitude = rng.uniform(0.2, 0.9, (17, 1, 1)).astype(np.float32)
        hm, _ = codec.encode(crop_xy[i], np.ones(17))
        heatmaps[i] = hm * amplitude
        mirrored = crop_xy[i].copy()
        mirrored[:, 0] = w_in - 1 - mirrored[:, 0]
        hm, _ = codec.encode(mirrored[list(FLIP_INDEX)], np.ones(17))
        flipped[i] = hm * amplitude[list(FLIP_INDEX)]
    noise = rng.normal(0, 0.01, heatmaps.shape).astype(np.float32)
    return {"heatmaps": heatmaps + noise, "flipped": flipped + noise, "center": center.astype(np.float32),
            "scale": scale.astype(np.float32), "image_ids": image_ids,
            "box_scores": rng.uniform(0.5, 1.0, n).astype(np.float32)}


def time_postprocess(codec: HeatmapCodec, inputs: dict, refine: str, batch_size: int, device: torch.device,
                     repeats: int) -> dict[str, float]:
    """Seconds for each stage over all the instances in ``inputs``."""
    n = len(inputs["heatmaps"])
    hm = torch.from_numpy(inputs["heatmaps"]).to(device)
    hm_flip = torch.from_numpy(inputs["flipped"]).to(device)
    center = torch.from_numpy(inputs["center"]).to(device)
    scale = torch.from_numpy(inputs["scale"]).to(device)
    box_scores = torch.from_numpy(inputs["box_scores"]).to(device)
    batches = [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
    averaged = [None] * len(batches)
    decoded = [None] * len(batches)

    def flip_stage():
        for j, b in enumerate(batches):
            averaged[j] = (hm[b] + flip_back(hm_flip[b], FLIP_INDEX, shift=True)) * 0.5

    def decode_stage():
        for j, b in enumerate(batches):
            decoded[j] = decode_to_image(averaged[j], codec, center[b], scale[b], refine=refine)

    def rescore_stage():
        for j, b in enumerate(batches):
            rescore(box_scores[b], decoded[j][..., 2], thr=0.2)

    times = {"flip-back + average": _best_time(flip_stage, repeats, device),
             f"decode ({refine}) + back-projection": _best_time(decode_stage, repeats, device),
             "rescoring": _best_time(rescore_stage, repeats, device)}
    kpts = torch.cat(decoded).cpu().numpy()
    scores = rescore(inputs["box_scores"], kpts[..., 2], thr=0.2)
    areas = instance_areas(inputs["scale"])
    keep = nms_per_image(inputs["image_ids"], kpts, scores, areas, thr=0.9)
    times["OKS-NMS per image"] = _best_time(
        lambda: nms_per_image(inputs["image_ids"], kpts, scores, areas, thr=0.9), repeats, device)
    times["_kept"] = len(keep)
    # The evaluator's own pass: rescoring + NMS + formatting as COCO results (host side).
    times["evaluator formatting (rescore + NMS + COCO dicts)"] = _best_time(
        lambda: predictions_to_results(inputs["image_ids"], kpts, inputs["box_scores"], areas), repeats, device)
    return times


def time_forward(model: torch.nn.Module, input_size: tuple[int, int], crops: int, batch: int,
                 device: torch.device, repeats: int) -> float:
    """Seconds per crop of the model's forward pass (uint8 input as the loaders ship it)."""
    w, h = input_size
    x = torch.randint(0, 256, (batch, 3, h, w), dtype=torch.uint8, device=device)
    iters = max(1, crops // batch)

    def run():
        with torch.inference_mode():
            for _ in range(iters):
                model(x)

    return _best_time(run, max(1, repeats - 1), device) / (iters * batch)


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    load = os.getloadavg()
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (before)")
    for config_path in args.configs:
        cfg = load_config(ROOT / config_path if not Path(config_path).is_absolute() else config_path)
        w, h = cfg.data.input_size
        codec = HeatmapCodec(input_size=cfg.data.input_size, heatmap_size=cfg.data.heatmap_size,
                             sigma=cfg.data.sigma)
        model = build_model(cfg.model).eval().to(device)
        small = w * h <= 128 * 96
        crops, batch = (args.forward_crops, args.forward_batch) if small else (args.paper_crops, args.paper_batch)
        forward_1k = time_forward(model, (w, h), crops, batch, device, args.repeats) * 1e6  # ms per 1,000 crops
        inputs = make_inputs(codec, args.instances, args.per_image)
        scale_1k = 1000 / args.instances
        print(f"\n== {config_path}: input {w}x{h}, heatmaps {codec.heatmap_size[0]}x{codec.heatmap_size[1]}, "
              f"{args.instances} instances in {len(np.unique(inputs['image_ids']))} images ==")
        print(f"forward (batch {batch}, {max(1, crops // batch) * batch} crops timed): {forward_1k:8.1f} ms per 1,000 "
              f"crops; with flip test (2 passes) {2 * forward_1k:8.1f} ms")
        for refine in ("standard", "dark"):
            times = time_postprocess(codec, inputs, refine, args.batch_size, device, args.repeats)
            kept = times.pop("_kept")
            pipeline = sum(v for k, v in times.items() if not k.startswith("evaluator")) * 1000 * scale_1k
            print(f"-- post-processing with {refine} decoding (ms per 1,000 instances; NMS kept {kept}):")
            for name, seconds in times.items():
                print(f"   {name:52s} {seconds * 1000 * scale_1k:8.2f}")
            print(f"   {'total (flip + decode + rescore + NMS)':52s} {pipeline:8.2f}  = "
                  f"{100 * pipeline / forward_1k:5.2f}% of one forward pass, "
                  f"{100 * pipeline / (2 * forward_1k):5.2f}% of the flip-test forward (target < 10%)")
    load = os.getloadavg()
    print(f"\nload average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (after)")


if __name__ == "__main__":
    run_cli(main, get_args_parser())
