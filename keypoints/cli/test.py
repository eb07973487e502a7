"""Evaluate a model with COCO keypoint AP (pycocotools), or score an existing results file.

    # ground-truth boxes, flip test (the config's test section decides the defaults)
    python tools/test.py --checkpoint outputs/run/best.pth --data-root data/coco
    # detector boxes (the published protocol), results and metrics written out
    python tools/test.py --checkpoint best.pth --boxes data/coco/person_detection_results/\
COCO_val2017_detections_AP_H_56_person.json --out results.json --metrics-json metrics.json
    # an exported model, scored by exactly the same crops, decoding, rescoring and NMS
    python tools/test.py --checkpoint model.onnx --data-root data/coco
    # any model's COCO keypoint results file
    python tools/test.py --results-in results.json --ann-file data/coco/annotations/person_keypoints_val2017.json

Outputs follow keypoints/outputs.py: --out and --metrics-json are never an input of the command (the model file, the
annotation file, --results-in, the detections, the config), never each other, never a file of another kind, and an
existing one is replaced only with --overwrite; both are written atomically.

--checkpoint takes any model file keypoints.backends.load_backend reads (a training checkpoint, an .onnx
export, ...); its stored config is used unless --config names another. The model file's dataset metadata decides
the keypoints, the categories scored and the OKS sigmas (COCOeval.params.kpt_oks_sigmas): a model of another dataset
(python tools/test.py --checkpoint outputs/bird/best.pth) needs no extra flag, and a val file whose category lists
other keypoints is refused. --results-in takes the sigmas of --ann-file's keypoint category (COCO's for person, else
data.oks_sigmas / data.default_sigma of --config). Under torchrun every rank predicts a share of the instances and
rank 0 evaluates.
"""
from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
from pathlib import Path

from keypoints.backends import BACKENDS, TorchBackend, load_backend
from keypoints.modelfile import identify
from keypoints.config import apply_overrides, config_from_dict, load_config
from keypoints.constants import COCO_STAT_NAMES
from keypoints.coco_files import load_coco
from keypoints.data import build_dataloader, build_dataset, metadata_from_coco
from keypoints.engine import evaluate
from keypoints.evaluation import CocoKeypointEvaluator, evaluate_results_file
from keypoints.inference import TopDownInference
from keypoints.utils import distributed as dist
from keypoints.utils.cli import run_cli
from keypoints.outputs import atomic_path, check_output, distinct_outputs, write_json
from keypoints.utils.logging import setup_logging
from keypoints.utils.runtime import amp_settings, check_threads, select_device

logger = logging.getLogger("keypoints.test")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="COCO keypoint evaluation")
    p.add_argument("--config", help="YAML config; default: the config stored in the model file")
    p.add_argument("--checkpoint", help="model file: a checkpoint written by tools/train.py, or an exported model")
    p.add_argument("--backend", default="auto", choices=list(BACKENDS),
                   help="runtime of the model (auto: by the file's content: checkpoint -> torch, ONNX -> onnxruntime, "
                        ".pt2 package -> compiled)")
    p.add_argument("--trust-code", action="store_true",
                   help="allow loading a model file that holds native code (an AOTInductor .pt2 package runs it)")
    p.add_argument("--data-root", help="dataset root (sets data.root)")
    p.add_argument("--boxes", help="'gt' or a detections JSON (sets test.boxes)")
    p.add_argument("--no-flip", action="store_true", help="disable the flip test (sets test.flip=false)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="torch backends' device")
    p.add_argument("--threads", type=int, help="threads of CPU runtimes (default: every core)")
    p.add_argument("--out", help="write the COCO keypoint results JSON here")
    p.add_argument("--metrics-json", help="write the metrics (10 stats, box source, settings) here")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out / --metrics-json")
    p.add_argument("--results-in", help="evaluate this existing COCO keypoint results file instead of a model")
    p.add_argument("--ann-file", help="ground-truth annotation file for --results-in")
    p.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    return p


def print_table(metrics: dict, box_source: str) -> None:
    print(f"\nCOCO keypoint AP (boxes: {box_source})")
    print(" | ".join(f"{name:>6}" for name in COCO_STAT_NAMES))
    print(" | ".join(f"{metrics.get(name, 0.0):6.4f}" for name in COCO_STAT_NAMES))
    if metrics.get("skipped_instances"):
        print(f"note: {metrics['skipped_instances']} instances were on unreadable images and got no prediction; "
              f"their people count as missed in the AP above")


def check_outputs(args: argparse.Namespace, *more_inputs: str | Path | None) -> None:
    """--out and --metrics-json against the output policy (keypoints.outputs), before any work: an evaluation can
    take minutes, and neither may replace an input (the model file, the annotation files, the results or detections,
    the config; ``more_inputs``: those the config names)."""
    inputs = [args.checkpoint, args.config, args.results_in, args.ann_file, *more_inputs]
    for flag, path in (("--out", args.out), ("--metrics-json", args.metrics_json)):
        if path:
            check_output(path, flag=flag, kind="json", inputs=inputs, overwrite=args.overwrite)
    distinct_outputs({"--out": args.out, "--metrics-json": args.metrics_json})


def detections_file(boxes: str, root: str) -> Path | None:
    """The detections file ``boxes`` names as build_dataset finds it (as given, else under the data root)."""
    return next((p for p in (Path(boxes), Path(root) / boxes) if p.is_file()), None)


def save_json(path: str | None, data: dict) -> None:
    if path:
        write_json(path, data)
        print(f"wrote {path}")


def evaluate_file(args: argparse.Namespace) -> dict:
    box_source = f"as in {args.results_in}"
    check_outputs(args)
    cfg = load_config(args.config, args.opts)
    meta = metadata_from_coco(cfg, load_coco(args.ann_file, hint="pass the ground-truth annotation file"),
                              f"annotation file {args.ann_file}")
    metrics = evaluate_results_file(args.results_in, args.ann_file, box_source=box_source, sigmas=meta.sigmas,
                                    category_id=meta.category_ids)
    print_table(metrics, box_source)
    save_json(args.metrics_json, {**metrics, "box_source": box_source, "results": args.results_in})
    return metrics


def main(args: argparse.Namespace) -> dict:
    check_threads(args.threads, "--threads")
    if args.results_in and not args.ann_file:
        raise ValueError("--results-in needs --ann-file (the ground-truth person_keypoints_*.json)")
    for flag, path in (("--results-in", args.results_in), ("--ann-file", args.ann_file), ("--config", args.config)):
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"{flag} file not found: {path}")
    if args.boxes not in (None, "gt") and args.data_root and not detections_file(args.boxes, args.data_root):
        raise FileNotFoundError(f"--boxes file not found: {args.boxes} (as given, or under --data-root "
                                f"{args.data_root})")
    if args.results_in and args.checkpoint:
        raise ValueError("pass --checkpoint (evaluate a model) or --results-in (score a results file), not both")
    if args.results_in and args.out:
        raise ValueError("--out writes a model's results; with --results-in there are none to write (use "
                         "--metrics-json)")
    if args.results_in:
        return evaluate_file(args)
    if not args.checkpoint:
        raise ValueError("pass --checkpoint (a model to evaluate) or --results-in (a results file)")
    rank, local_rank, world = dist.init_distributed(args.device)
    setup_logging(None, rank)
    overrides = list(args.opts)
    for flag, key in ((args.data_root, "data.root"), (args.boxes, "test.boxes")):
        if flag is not None:
            overrides.append(f"{key}={flag}")
    if args.no_flip:
        overrides.append("test.flip=false")
    cfg = load_config(args.config, overrides) if args.config else None
    device = select_device(args.device, local_rank)
    backend = load_backend(args.checkpoint, args.backend, trust_code=args.trust_code, device=device,
                           threads=args.threads, cfg=cfg if identify(args.checkpoint) == "checkpoint" else None)
    if cfg is None:
        cfg = config_from_dict(apply_overrides(backend.info.config or {}, overrides))
    if isinstance(backend, TorchBackend):
        backend.amp_dtype = amp_settings(cfg.train.amp, device)[0]
    metadata = backend.info.metadata
    boxes = detections_file(cfg.test.boxes, cfg.data.root) if cfg.test.boxes != "gt" else None
    check_outputs(args, Path(cfg.data.root) / cfg.data.val_ann, boxes)  # the files the config names, too
    dataset = build_dataset(cfg, "val", metadata=metadata)
    loader = build_dataloader(dataset, cfg, train=False, distributed=world > 1)
    inference = TopDownInference.from_config(backend, cfg)
    logger.info("model %s through %r", args.checkpoint, backend)
    with tempfile.TemporaryDirectory() as tmp:
        evaluator = CocoKeypointEvaluator(dataset.ann_file, output_dir=tmp, box_source=dataset.box_source,
                                          oks_nms_thr=cfg.test.oks_nms_thr, soft_nms=cfg.test.soft_nms,
                                          kpt_score_thr=cfg.test.kpt_score_thr, sigmas=metadata.sigmas,
                                          category_id=metadata.category_ids)
        metrics = evaluate(inference, loader, evaluator)
        if dist.is_main_process():
            if args.out and evaluator.results_path is not None:
                with atomic_path(args.out) as tmp:
                    shutil.copyfile(evaluator.results_path, tmp)
                print(f"wrote {args.out}")
            print_table(metrics, dataset.box_source)
            save_json(args.metrics_json, {
                **metrics, "box_source": dataset.box_source, "checkpoint": str(args.checkpoint),
                "backend": backend.name, "flip_test": cfg.test.flip, "refine": cfg.test.refine,
                "input_size": list(cfg.data.input_size), "instances": len(dataset),
                "category": metadata.category_name, "category_ids": list(metadata.category_ids),
                "num_keypoints": metadata.num_keypoints})
    dist.cleanup()
    return metrics


def cli() -> None:
    run_cli(main, get_args_parser())


if __name__ == "__main__":
    cli()
