"""Export the pose network (ONNX, or a compiled AOTInductor package) and prove the export scores the same COCO AP.

    python tools/export.py --checkpoint outputs/quickstart/best.pth --output outputs/quickstart/best.onnx
    python tools/export.py --checkpoint best.pth --output model.onnx --batch 1 --opset 17 --input-dtype uint8
    # the fastest CPU runtime, compiled once (minutes for the Large model) and loaded in about a second after that
    python tools/export.py --checkpoint best.pth --output model.pt2            # batch sizes 1 and 8 (--batch N: N)
    # then score it, or run it, like any checkpoint
    python tools/test.py --checkpoint model.onnx --data-root data/coco
    python tools/demo.py --checkpoint model.onnx --input clip.mp4

Both hold the fused inference form of the network (keypoints/models/fused.py: BatchNorm folded, DY-ReLU
rewritten exactly). The ONNX graph is the network only: ``images`` (B, 3, H, W) RGB crops in [0, 255] (float32, or uint8 with
--input-dtype uint8; normalisation is inside) -> ``heatmaps`` (B, K, H/4, W/4). Cropping, the flip test and
decoding (keypoints/inference.py) and rescoring and OKS-NMS (keypoints/postprocess.py) stay outside the graph and
are shared with every backend; the model metadata they need (input and heatmap size, flip index, normalisation,
the resolved config) is stored in the file. Parity is checked the way users compare models: COCO keypoint AP of
the checkpoint and of the export on the --check-data val set (default tests/data/coco_mini for person models, the
model's own data.root for other keypoints; the file stores the dataset metadata too), ground-truth boxes,
flip test, the same crops; the export is refused (and deleted) when |delta AP| exceeds --ap-tolerance.
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from keypoints.backends import ModelInfo, TorchBackend, load_backend
from keypoints.backends.compiled import COMPILED_SUFFIX, AotBackend, export_compiled
from keypoints.backends.onnx import INPUT_DTYPES, OnnxBackend, export_onnx
from keypoints.benchmark.timing import interleaved_medians
from keypoints.data import build_dataloader, build_dataset
from keypoints.engine import evaluate
from keypoints.evaluation import CocoKeypointEvaluator
from keypoints.inference import TopDownInference
from keypoints.utils.cli import run_cli
from keypoints.utils.io import check_writable

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
    p.add_argument("--check-data", help="COCO root with the val annotation file and images (data.val_ann, "
                   "data.val_images) for the AP parity check (default: tests/data/coco_mini for person models, else "
                   "the model's data.root)")
    p.add_argument("--ap-tolerance", type=float, default=0.002, help="largest accepted |AP(torch) - AP(ONNX)|")
    p.add_argument("--threads", type=int, help="ONNX Runtime threads (default: every core)")
    p.add_argument("--timing-runs", type=int, default=20, help="batch-1 runs timed in ONNX Runtime (0: no timing)")
    return p


def coco_ap(backend, cfg, root: Path) -> tuple[dict, np.ndarray]:
    """COCO keypoint metrics of ``backend`` on the val split of ``root`` (ground-truth boxes, flip test) and the
    decoded keypoints of every instance ``(N, K, 3)``, through the one evaluation path."""
    data = dataclasses.replace(cfg.data, root=str(root), workers=0)
    cfg = dataclasses.replace(cfg, data=data, test=dataclasses.replace(cfg.test, boxes="gt", flip=True))
    meta = backend.info.metadata
    if meta.is_coco_person and Path(root) == DEFAULT_CHECK_DATA:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(
            cfg.data, val_ann="annotations/person_keypoints_val2017.json", val_images="val2017"))
    dataset = build_dataset(cfg, "val", metadata=meta)
    loader = build_dataloader(dataset, cfg, train=False)
    evaluator = CocoKeypointEvaluator(dataset.ann_file, box_source="ground-truth boxes",
                                      oks_nms_thr=cfg.test.oks_nms_thr, kpt_score_thr=cfg.test.kpt_score_thr,
                                      sigmas=meta.sigmas, category_id=meta.category_id)
    metrics = evaluate(TopDownInference.from_config(backend, cfg), loader, evaluator, progress=False)
    return metrics, evaluator.predictions()["keypoints"]


def time_backend(backend, input_size: tuple[int, int], repeats: int) -> float:
    """Median milliseconds per crop at batch 1 (after two warm-up runs), timed by the benchmarks' helper."""
    width, height = input_size
    one = torch.randint(0, 256, (1, 3, height, width), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return interleaved_medians({"export": lambda: backend(one)}, repeats, warmup=2)["export"] * 1e3


def main(args: argparse.Namespace) -> dict:
    check_writable(args.output, "--output file")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be at least 1, got {args.threads}")
    torch_backend = load_backend(args.checkpoint, "torch", device="cpu")
    if not isinstance(torch_backend, TorchBackend):
        raise ValueError(f"{args.checkpoint} is not a training checkpoint")
    cfg = torch_backend.config
    tic = time.perf_counter()
    info = ModelInfo.from_config(cfg, torch_backend.info.config, torch_backend.info.metadata)
    if Path(args.output).suffix == COMPILED_SUFFIX:  # AOTInductor: compiled once here, loaded without compiling
        sizes = (1, 8) if args.batch == "dynamic" else (int(args.batch),)
        path = export_compiled(torch_backend.model, args.output, info=info, batch_sizes=sizes)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, AOTInductor package of the fused network for "
              f"batch sizes {sizes}, input (B, 3, {info.input_size[1]}, {info.input_size[0]}) RGB 0-255) in "
              f"{time.perf_counter() - tic:.1f} s")
        exported_backend = AotBackend(path, threads=args.threads)
    else:
        path = export_onnx(torch_backend.model, args.output, info=info, batch=args.batch, opset=args.opset,
                           input_dtype=args.input_dtype, dynamo=args.dynamo)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, opset {args.opset}, batch {args.batch}, input "
              f"{args.input_dtype} (B, 3, {info.input_size[1]}, {info.input_size[0]}) RGB 0-255) in "
              f"{time.perf_counter() - tic:.1f} s")
        exported_backend = OnnxBackend(path, threads=args.threads)
    try:
        if args.batch != "dynamic":
            cfg = dataclasses.replace(cfg, test=dataclasses.replace(cfg.test, batch_size=int(args.batch)))
        check_data = Path(args.check_data) if args.check_data else \
            DEFAULT_CHECK_DATA if info.metadata.is_coco_person else Path(cfg.data.root)
        reference, ref_kpts = coco_ap(torch_backend, cfg, check_data)
        exported, ort_kpts = coco_ap(exported_backend, cfg, check_data)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    delta = abs(reference["AP"] - exported["AP"])
    moved = float(np.abs(ref_kpts[..., :2] - ort_kpts[..., :2]).max()) if len(ref_kpts) else 0.0
    ok = delta <= args.ap_tolerance
    print(f"COCO AP on {check_data} val ({reference['num_predictions']} instances, ground-truth boxes, flip "
          f"test): PyTorch {reference['AP']:.4f}, export ({exported_backend.name}) {exported['AP']:.4f}, "
          f"|delta| {delta:.4f} "
          f"({'within' if ok else 'ABOVE'} {args.ap_tolerance:g}); keypoints differ by at most {moved:.3f} px")
    if not ok:
        path.unlink(missing_ok=True)
        raise ValueError(f"the export scores AP {exported['AP']:.4f} against {reference['AP']:.4f} for the checkpoint "
                         f"(|delta| {delta:.4f} > {args.ap_tolerance:g}); {path} was removed; try another --opset or "
                         f"--dynamo, and report the model config")
    latency = time_backend(exported_backend, info.input_size, args.timing_runs) if args.timing_runs > 0 \
        else float("nan")
    if args.timing_runs > 0:
        print(f"{exported_backend.name}: {latency:.2f} ms for a call with one crop (median of {args.timing_runs})")
    return {"output": str(path), "ap_torch": reference["AP"], "ap_export": exported["AP"], "ap_delta": delta,
            "max_keypoint_diff_px": moved, "instances": reference["num_predictions"], "ms_per_crop": latency}


def cli() -> None:
    run_cli(main, get_args_parser())


if __name__ == "__main__":
    cli()
