"""Section "postprocess": the test-time post-processing against the model's forward pass, per 1,000 crops.

Post-processing = flip-back + average with the unflipped heatmaps, decoding (standard or DARK) with
back-projection to image pixels, rescoring and OKS-NMS per image, plus the evaluator's formatting into COCO
results. Inputs are realistic: heatmaps with one Gaussian peak per joint (plus noise), about 15 instances per
image clustered around a few people so that OKS-NMS removes duplicates. The forward pass (the PyTorch eager
backend) is measured in the same run: compare the share, not the absolute times.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..backends import ModelInfo, TorchBackend
from ..codec import HeatmapCodec
from ..config import Config
from ..evaluation import predictions_to_results
from ..inference import decode_to_image, flip_back
from ..models import build_model
from ..postprocess import instance_areas, nms_per_image, rescore
from .timing import interleaved_medians


def make_inputs(codec: HeatmapCodec, n: int, per_image: int, flip_index: Sequence[int], seed: int = 0
                ) -> dict[str, np.ndarray]:
    """n crops of n / per_image images: heatmaps (unflipped and as the flipped crop would give), crop boxes."""
    rng = np.random.default_rng(seed)
    k, flip = len(flip_index), list(flip_index)
    w_in, h_in = codec.input_size
    n_images = -(-n // per_image)
    image_ids = np.repeat(np.arange(n_images), per_image)[:n]
    # A few people per image; every instance is a jittered detection of one of them (duplicates for NMS).
    people_center = rng.uniform(100, 500, (n_images, 5, 2))
    people_scale = rng.uniform(60, 250, (n_images, 5, 1)) * np.array([1.0, 1 / 0.75])
    who = rng.integers(0, 5, n)
    center = people_center[image_ids, who] + rng.normal(0, 4, (n, 2))
    scale = people_scale[image_ids, who] * rng.uniform(0.95, 1.05, (n, 1))
    pose = rng.uniform([0.2 * w_in, 0.1 * h_in], [0.8 * w_in, 0.9 * h_in], (n_images, 5, k, 2))
    crop_xy = pose[image_ids, who] + rng.normal(0, 2, (n, k, 2))
    heatmaps = np.empty((n, k, codec.heatmap_size[1], codec.heatmap_size[0]), dtype=np.float32)
    flipped = np.empty_like(heatmaps)
    for i in range(n):
        amplitude = rng.uniform(0.2, 0.9, (k, 1, 1)).astype(np.float32)
        hm, _ = codec.encode(crop_xy[i], np.ones(k))
        heatmaps[i] = hm * amplitude
        mirrored = crop_xy[i].copy()
        mirrored[:, 0] = w_in - 1 - mirrored[:, 0]
        hm, _ = codec.encode(mirrored[flip], np.ones(k))
        flipped[i] = hm * amplitude[flip]
    noise = rng.normal(0, 0.01, heatmaps.shape).astype(np.float32)
    return {"heatmaps": heatmaps + noise, "flipped": flipped + noise, "center": center.astype(np.float32),
            "scale": scale.astype(np.float32), "image_ids": image_ids,
            "box_scores": rng.uniform(0.5, 1.0, n).astype(np.float32)}


def time_postprocess(codec: HeatmapCodec, inputs: dict, refine: str, batch_size: int, device: torch.device,
                     repeats: int, flip_index: Sequence[int]) -> tuple[dict[str, float], int]:
    """(median seconds of each stage over all the instances in ``inputs``, instances NMS kept)."""
    n = len(inputs["heatmaps"])
    hm = torch.from_numpy(inputs["heatmaps"]).to(device)
    hm_flip = torch.from_numpy(inputs["flipped"]).to(device)
    center = torch.from_numpy(inputs["center"]).to(device)
    scale = torch.from_numpy(inputs["scale"]).to(device)
    box_scores = torch.from_numpy(inputs["box_scores"]).to(device)
    batches = [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
    averaged: list = [None] * len(batches)
    decoded: list = [None] * len(batches)
    areas = instance_areas(inputs["scale"])

    def flip_stage() -> None:
        for j, b in enumerate(batches):
            averaged[j] = (hm[b] + flip_back(hm_flip[b], flip_index, shift=True)) * 0.5

    def decode_stage() -> None:
        for j, b in enumerate(batches):
            decoded[j] = decode_to_image(averaged[j], codec, center[b], scale[b], refine=refine)

    def rescore_stage() -> None:
        for j, b in enumerate(batches):
            rescore(box_scores[b], decoded[j][..., 2], thr=0.2)

    flip_stage()
    decode_stage()
    kpts = torch.cat(decoded).cpu().numpy()  # the host-side stages' input
    scores = rescore(inputs["box_scores"], kpts[..., 2], thr=0.2)
    stages = {"flip-back + average": flip_stage, f"decode ({refine}) + back-projection": decode_stage,
              "rescoring": rescore_stage,
              "OKS-NMS per image": lambda: nms_per_image(inputs["image_ids"], kpts, scores, areas, thr=0.9),
              # The evaluator's own pass: rescoring + NMS + formatting as COCO results (host side).
              "evaluator formatting (rescore + NMS + COCO dicts)": lambda: predictions_to_results(
                  inputs["image_ids"], kpts, inputs["box_scores"], areas)}
    times = interleaved_medians(stages, repeats, warmup=1, device=device)
    kept = len(nms_per_image(inputs["image_ids"], kpts, scores, areas, thr=0.9))
    return times, kept


def forward_seconds_per_crop(cfg: Config, device: torch.device, repeats: int, batch: int | None = None) -> float:
    """Seconds per crop of the model's forward pass through the PyTorch eager backend (uint8 crops as the loaders
    ship them); ``batch`` default 32 for inputs up to 128x96, 8 for larger ones."""
    w, h = cfg.data.input_size
    batch = batch or (32 if w * h <= 128 * 96 else 8)
    backend = TorchBackend(build_model(cfg.model).eval(), ModelInfo.from_config(cfg), device)
    crops = torch.randint(0, 256, (batch, 3, h, w), dtype=torch.uint8, device=device)
    return interleaved_medians({"forward": lambda: backend(crops)}, repeats, warmup=1, device=device)["forward"] / batch


def measure_postprocess(cfg: Config, *, instances: int = 1000, per_image: int = 15, batch_size: int = 64,
                        device: str | torch.device = "cpu", repeats: int = 3, forward_batch: int | None = None) -> dict:
    """Forward ms and every post-processing stage's ms per 1,000 crops, for standard and DARK decoding
    (``forward_batch``: see :func:`forward_seconds_per_crop`)."""
    device = torch.device(device)
    codec = HeatmapCodec(input_size=cfg.data.input_size, heatmap_size=cfg.data.heatmap_size, sigma=cfg.data.sigma)
    forward_1k = forward_seconds_per_crop(cfg, device, repeats, forward_batch) * 1e6
    flip_index = ModelInfo.from_config(cfg).flip_index
    inputs = make_inputs(codec, instances, per_image, flip_index)
    per_1k = 1000 / instances * 1e3  # seconds over all instances -> ms per 1,000
    out = {"forward_ms": forward_1k, "images": int(len(np.unique(inputs["image_ids"]))), "refine": {}}
    for refine in ("standard", "dark"):
        times, kept = time_postprocess(codec, inputs, refine, batch_size, device, repeats, flip_index)
        stages = {k: v * per_1k for k, v in times.items()}
        total = sum(v for k, v in stages.items() if not k.startswith("evaluator"))
        out["refine"][refine] = {"stages_ms": stages, "kept": kept, "total_ms": total,
                                 "share_forward": total / forward_1k, "share_flip_forward": total / (2 * forward_1k)}
    return out


def postprocess_lines(result: dict, cfg: Config, instances: int) -> list[str]:
    """The report of :func:`measure_postprocess` as text lines (ms per 1,000 crops or instances)."""
    w, h = cfg.data.input_size
    hw, hh = cfg.data.heatmap_size
    fwd = result["forward_ms"]
    lines = [f"input {w}x{h}, heatmaps {hw}x{hh}, {instances} instances in {result['images']} images",
             f"forward: {fwd:8.1f} ms per 1,000 crops; with flip test (2 passes) {2 * fwd:8.1f} ms"]
    for refine, r in result["refine"].items():
        lines.append(f"-- post-processing with {refine} decoding (ms per 1,000 instances; NMS kept {r['kept']}):")
        lines += [f"   {name:52s} {ms:8.2f}" for name, ms in r["stages_ms"].items()]
        lines.append(f"   {'total (flip + decode + rescore + NMS)':52s} {r['total_ms']:8.2f}  = "
                     f"{100 * r['share_forward']:5.2f}% of one forward pass, "
                     f"{100 * r['share_flip_forward']:5.2f}% of the flip-test forward (target < 10%)")
    return lines
