"""Train a top-down pose model.

    # one process (GPU if present, else CPU)
    python tools/train.py --config configs/coco/mobilenetv3_large_dyrelu_c_256x192.yaml --output-dir outputs/mnv3l
    # quick CPU run on the synthetic data of the quickstart
    python tools/train.py --config configs/quickstart.yaml --output-dir outputs/quickstart --device cpu
    # any COCO-format keypoint dataset (here the synthetic 5-keypoint birds of tools/make_synthetic.py --kind bird)
    python tools/train.py --config configs/synthetic_bird.yaml --output-dir outputs/bird --device cpu
    # fine-tune on another dataset from a trained model (heatmaps matched by keypoint name; a new run, epoch 0)
    python tools/train.py --config configs/synthetic_bird.yaml --output-dir outputs/bird_ft --init-from best.pth
    # 8 GPUs on one node; add --nnodes/--node_rank/--master_addr for several nodes
    torchrun --nproc_per_node 8 tools/train.py --config CFG --output-dir DIR --opts train.sync_bn=true
    # continue an interrupted run from DIR/last.pth (or name a checkpoint), exactly as it was configured
    python tools/train.py --output-dir DIR --resume
    # ... with more epochs (only keys that change neither model, data nor optimisation may change)
    python tools/train.py --output-dir DIR --resume --epochs 300 --allow-change train.epochs
    # start again in a folder that holds an earlier run, deleting that run's files first
    python tools/train.py --config CFG --output-dir DIR --overwrite

Writes to the output directory: config.yaml (resolved), last.pth (every epoch), best.pth (best validation AP),
metrics.csv, tensorboard/, train.log, curves.png and coco_keypoint_results.json. The run folder, resume, fine-tuning
and the loop are keypoints/training.py's (its docstring has the rules: one process per folder, exact resumes,
what --overwrite deletes). Arguments, the config and the output folder are checked before any data is read; their
errors are one line on stderr with exit status 2; a training loss that becomes NaN stops with exit status 1.
"""
from __future__ import annotations

import argparse
import sys

from keypoints.engine import NonFiniteLossError
from keypoints.training import SAFE_CHANGES, TrainRequest, train
from keypoints.utils.cli import run_cli


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Train a top-down keypoint model", add_help=True)
    p.add_argument("--config", help="YAML config (overrides of the schema defaults); optional with --resume")
    p.add_argument("--output-dir", required=True, help="folder for checkpoints, logs and curves")
    p.add_argument("--data-root", help="dataset root (sets data.root)")
    p.add_argument("--epochs", type=int, help="total epochs (sets train.epochs)")
    p.add_argument("--batch-size", type=int, help="batch per process (sets data.batch_size)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto: cuda when available")
    p.add_argument("--resume", nargs="?", const="last", help="continue from CKPT (default: OUTPUT_DIR/last.pth)")
    p.add_argument("--allow-change", nargs="+", default=[], metavar="KEY",
                   help=f"with --resume: config keys allowed to differ from the run's ({', '.join(SAFE_CHANGES)})")
    p.add_argument("--init-from", metavar="CKPT", help="start a new run from this checkpoint's weights (fine-tuning; "
                   "sets train.init_from)")
    p.add_argument("--overwrite", action="store_true",
                   help="delete the run already in OUTPUT_DIR (checkpoints, logs, metrics) and start a new one")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars (log lines only)")
    p.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides, e.g. train.lr=1e-3")
    return p


def request_from_args(args: argparse.Namespace) -> TrainRequest:
    for flag, value in (("--epochs", args.epochs), ("--batch-size", args.batch_size)):
        if value is not None and value < 1:
            raise ValueError(f"{flag} {value} is not valid; it must be at least 1")
    overrides = list(args.opts)
    for flag, key in ((args.data_root, "data.root"), (args.epochs, "train.epochs"),
                      (args.batch_size, "data.batch_size")):
        if flag is not None:
            overrides.append(f"{key}={flag}")
    return TrainRequest(output_dir=args.output_dir, config=args.config, overrides=overrides, resume=args.resume,
                        overwrite=args.overwrite, init_from=args.init_from, allow_changes=tuple(args.allow_change),
                        device=args.device, progress=not args.no_progress)


def main(args: argparse.Namespace) -> dict:
    try:
        return train(request_from_args(args))
    except NonFiniteLossError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        sys.exit(1)


def cli() -> None:
    run_cli(main, get_args_parser())


if __name__ == "__main__":
    cli()
