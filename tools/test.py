"""Evaluate a checkpoint with COCO keypoint AP (pycocotools), or score an existing results file.

    # ground-truth boxes, flip test (the config's test section decides the defaults)
    python tools/test.py --config configs/coco/mobilenetv3_large_dyrelu_c_256x192.yaml --checkpoint best.pth
    # detector boxes (the published protocol), results and metrics written out
    python tools/test.py --checkpoint best.pth --boxes data/coco/person_detection_results/\
COCO_val2017_detections_AP_H_56_person.json --out results.json --metrics-json metrics.json
    # any model's COCO keypoint results file
    python tools/test.py --results-in results.json --ann-file data/coco/annotations/person_keypoints_val2017.json

Without --config the checkpoint's own config is used. Under torchrun every rank predicts a share
of the instances and rank 0 evaluates.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import torch  # noqa: E402

from keypoints.config import apply_overrides, config_from_dict, load_config  # noqa: E402
from keypoints.constants import COCO_STAT_NAMES  # noqa: E402
from keypoints.data import build_codec, build_dataloader, build_dataset  # noqa: E402
from keypoints.engine import evaluate  # noqa: E402
from keypoints.evaluation import CocoKeypointEvaluator, evaluate_results_file  # noqa: E402
from keypoints.models import build_model  # noqa: E402
from keypoints.utils import distributed as dist  # noqa: E402
from keypoints.utils.checkpoint import load_checkpoint, load_model_state  # noqa: E402
from keypoints.utils.logging import setup_logging  # noqa: E402
from keypoints.utils.runtime import amp_settings, select_device  # noqa: E402
from keypoints.utils.cli import run_cli  # noqa: E402

logger = logging.getLogger("keypoints.test")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="COCO keypoint evaluation")
    p.add_argument("--config", help="YAML config; default: the config stored in the checkpoint")
    p.add_argument("--checkpoint", help="checkpoint written by tools/train.py")
    p.add_argument("--data-root", help="dataset root (sets data.root)")
    p.add_argument("--boxes", help="'gt' or a detections JSON (sets test.boxes)")
    p.add_argument("--no-flip", action="store_true", help="disable the flip test (sets test.flip=false)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--out", help="write the COCO keypoint results JSON here")
    p.add_argument("--metrics-json", help="write the metrics (10 stats, box source, settings) here")
    p.add_argument("--results-in", help="evaluate this existing COCO keypoint results file instead of a model")
    p.add_argument("--ann-file", help="ground-truth annotation file for --results-in")
    p.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    return p


def print_table(metrics: dict, box_source: str) -> None:
    print(f"\nCOCO keypoint AP (boxes: {box_source})")
    print(" | ".join(f"{name:>6}" for name in COCO_STAT_NAMES))
    print(" | ".join(f"{metrics.get(name, 0.0):6.4f}" for name in COCO_STAT_NAMES))


def write_json(path: str | None, data: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(data, indent=2))
        print(f"wrote {path}")


def evaluate_file(args: argparse.Namespace) -> dict:
    if not args.ann_file:
        raise ValueError("--results-in needs --ann-file (the ground-truth person_keypoints_*.json)")
    box_source = f"as in {args.results_in}"
    metrics = evaluate_results_file(args.results_in, args.ann_file, box_source=box_source)
    print_table(metrics, box_source)
    write_json(args.metrics_json, {**metrics, "box_source": box_source, "results": args.results_in})
    return metrics


def main(args: argparse.Namespace) -> dict:
    if args.results_in:
        return evaluate_file(args)
    if not args.checkpoint:
        raise ValueError("pass --checkpoint (a model to evaluate) or --results-in (a results file)")
    rank, local_rank, world = dist.init_distributed(args.device)
    setup_logging(None, rank)
    state = load_checkpoint(args.checkpoint)
    overrides = list(args.opts)
    for flag, key in ((args.data_root, "data.root"), (args.boxes, "test.boxes")):
        if flag is not None:
            overrides.append(f"{key}={flag}")
    if args.no_flip:
        overrides.append("test.flip=false")
    cfg = load_config(args.config, overrides) if args.config else \
        config_from_dict(apply_overrides(state["config"], overrides))
    device = select_device(args.device, local_rank)
    amp_dtype, _ = amp_settings(cfg.train.amp, device)

    model = build_model(cfg.model)
    load_model_state(model, state["model"], f"checkpoint {args.checkpoint}")
    model = model.to(device).eval()
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    dataset = build_dataset(cfg, "val")
    loader = build_dataloader(dataset, cfg, train=False, distributed=world > 1)
    with tempfile.TemporaryDirectory() as tmp:
        evaluator = CocoKeypointEvaluator(dataset.ann_file, output_dir=tmp, box_source=dataset.box_source,
                                          oks_nms_thr=cfg.test.oks_nms_thr, soft_nms=cfg.test.soft_nms,
                                          kpt_score_thr=cfg.test.kpt_score_thr)
        metrics = evaluate(model, loader, build_codec(cfg), evaluator, device=device, flip=cfg.test.flip,
                           shift_heatmap=cfg.test.shift_heatmap, refine=cfg.test.refine, amp_dtype=amp_dtype,
                           channels_last=cfg.train.channels_last)
        if dist.is_main_process():
            if args.out and evaluator.results_path is not None:
                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(evaluator.results_path, args.out)
                print(f"wrote {args.out}")
            print_table(metrics, dataset.box_source)
            write_json(args.metrics_json, {
                **metrics, "box_source": dataset.box_source, "checkpoint": str(args.checkpoint),
                "flip_test": cfg.test.flip, "refine": cfg.test.refine, "input_size": list(cfg.data.input_size),
                "instances": len(dataset)})
    dist.cleanup()
    return metrics


if __name__ == "__main__":
    run_cli(main, get_args_parser())
