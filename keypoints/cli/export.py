"""Export the pose network (ONNX, or a compiled AOTInductor package) and prove the export scores the same COCO AP.

    python tools/export.py --checkpoint outputs/quickstart/best.pth --output outputs/quickstart/best.onnx
    python tools/export.py --checkpoint best.pth --output model.onnx --batch 1 --opset 17 --input-dtype uint8
    python tools/export.py --checkpoint best.pth --output model.onnx --runtime openvino   # checked in OpenVINO
    # the fastest CPU runtime, compiled once (minutes for the Large model) and loaded in about a second after that
    python tools/export.py --checkpoint best.pth --output model.pt2            # batch sizes 1 and 8 (--batch N: N)
    # then score it, or run it, like any checkpoint (a .pt2 holds native code: loading it needs --trust-code)
    python tools/test.py --checkpoint model.onnx --data-root data/coco
    python tools/demo.py --checkpoint model.pt2 --trust-code --input clip.mp4

The output's suffix chooses the format (``.onnx``: ONNX, ``.pt2``: AOTInductor package); the runtime that checks it
is that format's default (onnxruntime, compiled) or ``--runtime``. Both hold the fused inference form of the
network (keypoints/models/fused.py: BatchNorm folded, DY-ReLU rewritten exactly). The ONNX graph is the network
only: ``images`` (B, 3, H, W) RGB crops in [0, 255] (float32, or uint8 with --input-dtype uint8; normalisation is
inside) -> ``heatmaps`` (B, K, H/4, W/4); cropping, the flip test, decoding, rescoring and OKS-NMS stay outside and
are shared with every runtime, and the file stores what they need (sizes, flip index, config, dataset metadata).

The export is written to a temporary file and checked before it replaces ``--output`` (an existing output is
replaced only with --overwrite, and a failed check leaves it as it was): (1) heatmaps of the export and of the
checkpoint on smooth random crops must agree (max |difference| <= --heatmap-tolerance), (2) COCO keypoint AP of both on
a labelled val set must agree within --ap-tolerance: --check-data, else the model's own validation set (its config's
data.root and data.val_ann), else, for COCO person models in a source checkout, tests/data/coco_mini; without
labelled data the command says so and checks the heatmaps only.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import torch

from keypoints.backends import RUNTIMES, ModelInfo, exporter_for, runtime_names
from keypoints.backends.onnx import INPUT_DTYPES, OPSETS
from keypoints.backends.pytorch import TorchBackend, checkpoint_model
from keypoints.benchmark.timing import interleaved_medians
from keypoints.config import config_from_dict
from keypoints.data import build_dataloader, build_dataset
from keypoints.engine import evaluate
from keypoints.evaluation import CocoKeypointEvaluator
from keypoints.inference import TopDownInference
from keypoints.modelfile import KINDS, check_suffix, identify, kind_of_suffix
from keypoints.outputs import atomic_path, check_output
from keypoints.utils.cli import run_cli

BUNDLED_CHECK_DATA = Path(__file__).resolve().parents[2] / "tests" / "data" / "coco_mini"  # source checkouts
BUNDLED_VAL = dict(val_ann="annotations/person_keypoints_val2017.json", val_images="val2017")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="checkpoint written by tools/train.py")
    p.add_argument("--output", required=True, help="file to write: NAME.onnx (ONNX) or NAME.pt2 (AOTInductor)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output (after its checks pass)")
    p.add_argument("--runtime", choices=runtime_names(), help="runtime that checks the export (default: the "
                   "format's: onnxruntime for .onnx, compiled for .pt2)")
    p.add_argument("--batch", default="dynamic", help="'dynamic' (any batch) or a fixed batch size")
    p.add_argument("--opset", type=int, help=f"ONNX opset version ({OPSETS[0]}-{OPSETS[1]}; default 17)")
    p.add_argument("--input-dtype", choices=list(INPUT_DTYPES), help="dtype of the ONNX graph input (default "
                   "float32)")
    p.add_argument("--dynamo", action="store_true", help="ONNX: the torch.export-based exporter (slower)")
    p.add_argument("--check-data", help="COCO root with the val annotation file and images (data.val_ann, "
                   "data.val_images) for the AP check (default: the model's own data.root)")
    p.add_argument("--ap-tolerance", type=float, default=0.002, help="largest accepted |AP(torch) - AP(export)|")
    p.add_argument("--heatmap-tolerance", type=float, default=1e-3,
                   help="largest accepted |heatmap(torch) - heatmap(export)| on random crops")
    p.add_argument("--threads", type=int, help="CPU threads of the checking runtime (default: every core)")
    p.add_argument("--timing-runs", type=int, default=20, help="batch-1 runs timed in the export's runtime (0: no "
                   "timing)")
    return p


def check_args(args: argparse.Namespace) -> str:
    """Every argument, before any work; returns the format (model-file kind) to write."""
    kind = kind_of_suffix(args.output)
    writable = [k for k in KINDS if any(r.writes == k for r in RUNTIMES.values())]
    if kind not in writable:
        raise ValueError(f"--output {args.output}: export writes " + " or ".join(
            f"{KINDS[k].description} ({KINDS[k].suffixes[0]})" for k in writable) + "; name the file accordingly")
    check_suffix(args.output, kind, output=True, flag="--output")
    if args.batch != "dynamic" and (not str(args.batch).isdigit() or int(args.batch) < 1):
        raise ValueError(f"--batch must be 'dynamic' or a positive integer, got {args.batch!r}")
    if kind != "onnx" and (args.opset is not None or args.input_dtype is not None or args.dynamo):
        raise ValueError("--opset, --input-dtype and --dynamo apply to ONNX exports (.onnx) only")
    if args.opset is not None and not OPSETS[0] <= args.opset <= OPSETS[1]:
        raise ValueError(f"--opset {args.opset} is not supported; choose an ONNX opset from {OPSETS[0]} to "
                         f"{OPSETS[1]}")
    for flag, value in (("--ap-tolerance", args.ap_tolerance), ("--heatmap-tolerance", args.heatmap_tolerance)):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{flag} must be a finite number >= 0, got {value}")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be at least 1, got {args.threads}")
    if args.timing_runs < 0:
        raise ValueError(f"--timing-runs must be 0 (no timing) or more, got {args.timing_runs}")
    if args.check_data is not None and not Path(args.check_data).is_dir():
        raise FileNotFoundError(f"--check-data folder not found: {args.check_data}")
    return kind


def check_data_for(args: argparse.Namespace, cfg, info: ModelInfo) -> tuple[Path | None, dict, str]:
    """(dataset root, data overrides, why) of the AP check: --check-data, the model's own val set, the bundled
    COCO sample for person models, or (None, {}, why not)."""
    if args.check_data:
        return Path(args.check_data), {}, "--check-data"
    own = Path(cfg.data.root)
    if (own / cfg.data.val_ann).is_file() and (own / cfg.data.val_images).is_dir():
        return own, {}, "the model's validation set"
    if info.metadata.is_coco_person and (BUNDLED_CHECK_DATA / BUNDLED_VAL["val_ann"]).is_file():
        return BUNDLED_CHECK_DATA, BUNDLED_VAL, f"the model's validation set {own / cfg.data.val_ann} is not here; " \
                                                "the bundled COCO person sample"
    return None, {}, f"no labelled data: the model's validation set {own / cfg.data.val_ann} is not here and " \
                     f"--check-data was not given"


def coco_ap(backend, cfg, root: Path, data_overrides: dict) -> tuple[dict, np.ndarray]:
    """COCO keypoint metrics of ``backend`` on the val split of ``root`` (ground-truth boxes, flip test) and the
    decoded keypoints of every instance ``(N, K, 3)``, through the one evaluation path."""
    data = dataclasses.replace(cfg.data, root=str(root), workers=0, **data_overrides)
    cfg = dataclasses.replace(cfg, data=data, test=dataclasses.replace(cfg.test, boxes="gt", flip=True))
    meta = backend.info.metadata
    dataset = build_dataset(cfg, "val", metadata=meta)
    loader = build_dataloader(dataset, cfg, train=False)
    evaluator = CocoKeypointEvaluator(dataset.ann_file, box_source="ground-truth boxes",
                                      oks_nms_thr=cfg.test.oks_nms_thr, kpt_score_thr=cfg.test.kpt_score_thr,
                                      sigmas=meta.sigmas, category_id=meta.category_ids)
    metrics = evaluate(TopDownInference.from_config(backend, cfg), loader, evaluator, progress=False)
    return metrics, evaluator.predictions()["keypoints"]


def random_crops(info: ModelInfo, batch: int, seed: int = 0) -> torch.Tensor:
    """``batch`` smooth random uint8 RGB crops (bilinear upsampling of 16x coarser noise): image-like statistics.
    (On white noise a trained network's heatmaps explode to hundreds and float rounding grows with them.)"""
    width, height = info.input_size
    coarse = torch.rand(batch, 3, max(1, height // 16), max(1, width // 16),
                        generator=torch.Generator().manual_seed(seed)) * 255
    return torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear",
                                           align_corners=False).round().to(torch.uint8)


def heatmap_difference(reference, exported, info: ModelInfo, batch: int) -> float:
    """Max |heatmap difference| of the two backends on ``batch`` random crops."""
    crops = random_crops(info, batch)
    return float((reference(crops).float() - exported(crops).float()).abs().max())


def time_backend(backend, info: ModelInfo, repeats: int) -> float:
    """Median milliseconds per call with one crop (after two warm-up runs), timed by the benchmarks' helper."""
    one = random_crops(info, 1)
    return interleaved_medians({"export": lambda: backend(one)}, repeats, warmup=2)["export"] * 1e3


def main(args: argparse.Namespace) -> dict:
    kind = check_args(args)
    runtime = exporter_for(kind, args.runtime)
    runtime.check_available()
    source_kind = identify(args.checkpoint, "--checkpoint")
    if source_kind != "checkpoint":
        raise ValueError(f"--checkpoint {args.checkpoint} is {KINDS[source_kind].description}, already an export; "
                         f"pass the training checkpoint (.pth) it came from")
    check_suffix(args.checkpoint, source_kind, flag="--checkpoint")
    output = check_output(args.output, flag="--output", kind=kind, inputs=[args.checkpoint, args.check_data],
                          overwrite=args.overwrite)
    model, info = checkpoint_model(args.checkpoint)
    cfg = config_from_dict(info.config)
    check_root, data_overrides, why = check_data_for(args, cfg, info)
    reference = TorchBackend(model, info, "cpu")
    batch = 2 if args.batch == "dynamic" else int(args.batch)
    if args.batch != "dynamic":
        cfg = dataclasses.replace(cfg, test=dataclasses.replace(cfg.test, batch_size=int(args.batch)))
    options = {"batch": args.batch}
    if kind == "onnx":
        options.update(opset=args.opset or 17, input_dtype=args.input_dtype or "float32", dynamo=args.dynamo)
    tic = time.perf_counter()
    with atomic_path(output) as tmp:  # checked before it replaces --output; a failure leaves --output as it was
        runtime.export(model, tmp, info=info, **options)
        size_mb = tmp.stat().st_size / 1e6
        print(f"exported {KINDS[kind].description} ({size_mb:.1f} MB, batch {args.batch}, "
              f"{', '.join(f'{k} {v}' for k, v in options.items() if k != 'batch')}) in "
              f"{time.perf_counter() - tic:.1f} s; checking it in {runtime.name}")
        exported = runtime.load(tmp, kind=kind, device="cpu", threads=args.threads, cfg=None, amp_dtype=None)
        diff = heatmap_difference(reference, exported, info, batch)
        print(f"heatmaps on {batch} random crops: max |PyTorch - {runtime.name}| = {diff:.2e} "
              f"(tolerance {args.heatmap_tolerance:g})")
        if not diff <= args.heatmap_tolerance:
            raise ValueError(f"the export's heatmaps differ from the checkpoint's by {diff:.3g} > "
                             f"{args.heatmap_tolerance:g}; {output} was not written; try another --opset or --dynamo, "
                             f"and report the model config")
        result = {"output": str(output), "heatmap_max_diff": diff, "check_data": None}
        if check_root is None:
            print(f"AP parity not checked ({why}); pass --check-data ROOT with a COCO-format val set of this model's "
                  f"keypoints")
        else:
            ref, ref_kpts = coco_ap(reference, cfg, check_root, data_overrides)
            exp, exp_kpts = coco_ap(exported, cfg, check_root, data_overrides)
            delta = abs(ref["AP"] - exp["AP"])
            moved = float(np.abs(ref_kpts[..., :2] - exp_kpts[..., :2]).max()) if len(ref_kpts) else 0.0
            ok = delta <= args.ap_tolerance
            print(f"COCO AP on {check_root} val ({why}; {ref['num_predictions']} instances, ground-truth boxes, "
                  f"flip test): PyTorch {ref['AP']:.4f}, export ({runtime.name}) {exp['AP']:.4f}, |delta| "
                  f"{delta:.4f} ({'within' if ok else 'ABOVE'} {args.ap_tolerance:g}); keypoints differ by at most "
                  f"{moved:.3f} px")
            if not ok:
                raise ValueError(f"the export scores AP {exp['AP']:.4f} against {ref['AP']:.4f} for the checkpoint "
                                 f"(|delta| {delta:.4f} > {args.ap_tolerance:g}); {output} was not written; try "
                                 f"another --opset or --dynamo, and report the model config")
            result.update(check_data=str(check_root), ap_torch=ref["AP"], ap_export=exp["AP"], ap_delta=delta,
                          max_keypoint_diff_px=moved, instances=ref["num_predictions"])
        latency = time_backend(exported, info, args.timing_runs) if args.timing_runs else float("nan")
    print(f"wrote {output}" + (f"; {runtime.name}: {latency:.2f} ms for a call with one crop (median of "
                               f"{args.timing_runs})" if args.timing_runs else ""))
    result["ms_per_crop"] = latency
    return result


def cli() -> None:
    run_cli(main, get_args_parser())


if __name__ == "__main__":
    cli()
