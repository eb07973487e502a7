"""Export the pose network to ONNX, check it against PyTorch on real person crops, and time it in ONNX Runtime.

    python tools/export.py --checkpoint outputs/quickstart/best.pth --output outputs/quickstart/best.onnx
    python tools/export.py --checkpoint best.pth --output model.onnx --batch 1 --opset 17 --input-dtype uint8
    # then: PoseEstimator.from_checkpoint("model.onnx", backend="onnxruntime"), or
    python tools/demo.py --checkpoint model.onnx --input clip.mp4

The graph is the network only: ``images`` (B, 3, H, W) RGB crops in [0, 255] (float32, or uint8 with
--input-dtype uint8; normalisation is inside) -> ``heatmaps`` (B, K, H/4, W/4). Decoding (argmax + sub-pixel
refinement), the flip test, back-projection to the image and OKS-NMS stay outside the graph, in
keypoints/postprocess.py, shared with the PyTorch path; the resolved config is stored in the file's metadata.
The parity check crops the people of --check-data (a COCO-layout root; default tests/data/coco_mini) with
their ground-truth boxes, exactly as the predictor does, and prints the largest heatmap difference.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

import numpy as np  # noqa: E402
import torch  # noqa: E402

from keypoints.config import config_to_dict  # noqa: E402
from keypoints.models import load_pose_model  # noqa: E402
from keypoints.onnx_backend import INPUT_DTYPES, OnnxPoseSession, export_onnx, max_abs_diff  # noqa: E402
from keypoints.predictor import PoseEstimator  # noqa: E402
from keypoints.video import read_image  # noqa: E402
from keypoints.utils.cli import run_cli  # noqa: E402

DEFAULT_CHECK_DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "coco_mini"


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="checkpoint written by tools/train.py")
    p.add_argument("--output", required=True, help="ONNX file to write")
    p.add_argument("--batch", default="dynamic", help="'dynamic' (any batch) or a fixed batch size")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset version")
    p.add_argument("--input-dtype", default="float32", choices=list(INPUT_DTYPES), help="dtype of the graph input")
    p.add_argument("--dynamo", action="store_true", help="use the torch.export-based exporter (slower to export)")
    p.add_argument("--check-data", default=str(DEFAULT_CHECK_DATA),
                   help="COCO root (annotations/person_keypoints_val2017.json, val2017/) for the parity crops")
    p.add_argument("--check-crops", type=int, default=8, help="number of person crops for the parity check")
    p.add_argument("--tolerance", type=float, default=1e-4, help="largest accepted heatmap difference (float32)")
    p.add_argument("--threads", type=int, help="ONNX Runtime threads for the timing (default: every core)")
    p.add_argument("--timing-runs", type=int, default=20, help="batch-1 runs timed in ONNX Runtime (0: no timing)")
    return p


def real_crops(estimator: PoseEstimator, root: Path, count: int) -> tuple[torch.Tensor, str]:
    """Up to ``count`` person crops of a COCO root (ground-truth boxes), and where they came from."""
    ann_file = root / "annotations" / "person_keypoints_val2017.json"
    if not ann_file.is_file():
        raise FileNotFoundError(f"parity data not found: {ann_file}; pass --check-data with a COCO-layout root")
    coco = json.loads(ann_file.read_text())
    files = {im["id"]: im["file_name"] for im in coco["images"]}
    by_image: dict[int, list] = {}
    for a in coco["annotations"]:
        if not a.get("iscrowd") and a.get("num_keypoints", 0) > 0 and len(by_image.get(a["image_id"], [])) < 2:
            by_image.setdefault(a["image_id"], []).append(a["bbox"])
    crops = []
    for image_id, boxes in by_image.items():
        crops.append(estimator.crop_boxes(read_image(root / "val2017" / files[image_id]), np.array(boxes))[0])
        if sum(len(c) for c in crops) >= count:
            break
    return torch.cat(crops)[:count].contiguous(), f"{min(count, sum(len(c) for c in crops))} person crops of {root}"


def time_session(session: OnnxPoseSession, crops: torch.Tensor, repeats: int = 20) -> float:
    """Median milliseconds per crop at batch 1 (after two warm-up runs)."""
    one = crops[:1].numpy()
    for _ in range(2):
        session.run_numpy(one)
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        session.run_numpy(one)
        times.append(time.perf_counter() - tic)
    return float(np.median(times) * 1000)


def main(args: argparse.Namespace) -> dict:
    model, cfg = load_pose_model(args.checkpoint)
    tic = time.perf_counter()
    path = export_onnx(model, args.output, input_size=cfg.data.input_size, batch=args.batch, opset=args.opset,
                       input_dtype=args.input_dtype, config=config_to_dict(cfg), dynamo=args.dynamo)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, opset {args.opset}, batch {args.batch}, input "
          f"{args.input_dtype} (B, 3, {cfg.data.input_size[1]}, {cfg.data.input_size[0]}) RGB 0-255) in "
          f"{time.perf_counter() - tic:.1f} s")
    session = OnnxPoseSession(path, threads=args.threads)
    estimator = PoseEstimator.from_config(model, cfg)
    crops, where = real_crops(estimator, Path(args.check_data), args.check_crops)
    if args.batch != "dynamic":
        crops = crops[: len(crops) // int(args.batch) * int(args.batch)]
    diff = max_abs_diff(model, session, crops)
    ok = diff <= args.tolerance
    print(f"max |PyTorch - ONNX Runtime| on {where}: {diff:.3e} ({'within' if ok else 'ABOVE'} {args.tolerance:g})")
    latency = time_session(session, crops, args.timing_runs) if args.timing_runs > 0 else float("nan")
    print(f"ONNX Runtime ({session.threads} threads): {latency:.2f} ms per crop at batch 1 (median of "
          f"{args.timing_runs}); heatmaps are decoded outside the graph (keypoints.postprocess.decode_to_image)")
    if not ok:
        raise ValueError(f"the exported model differs from PyTorch by {diff:.3e} > {args.tolerance:g}; try another "
                         f"--opset or --dynamo, and report the model config")
    return {"output": str(path), "max_abs_diff": diff, "ort_ms_per_crop": latency, "crops": len(crops)}


if __name__ == "__main__":
    run_cli(main, get_args_parser())
