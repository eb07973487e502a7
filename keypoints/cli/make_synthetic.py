"""Generate a synthetic COCO-format keypoint dataset: people (quickstart, tests) or birds (5 keypoints, not a person).

    python tools/make_synthetic.py --out data/synthetic
    python tools/make_synthetic.py --out /tmp/synth --train-images 40 --val-images 10 --seed 1 --size 320 240
    python tools/make_synthetic.py --kind bird --out data/synthetic_bird     # then configs/synthetic_bird.yaml

Writes ``<out>/{train2017,val2017}/*.jpg``, ``<out>/annotations/person_keypoints_{train,val}2017.json`` and
``<out>/person_detection_results/detections_val2017.json`` (``bird_...`` for --kind bird); the same seed gives the
same files. See ``keypoints/data/synthetic.py`` and ``keypoints/data/synthetic_birds.py`` for what the images
contain. A --out that already holds a dataset (a non-empty annotations/ folder) is written into only with
--overwrite, and even then a file is replaced only by one of its kind (keypoints/outputs.py).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from keypoints.data.synthetic import FIRST_IMAGE_ID, KINDS, make_synthetic_dataset
from keypoints.outputs import check_output
from keypoints.utils.cli import run_cli
from keypoints.utils.runtime import check_number


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="data/synthetic", help="output dataset root")
    parser.add_argument("--kind", default="person", choices=list(KINDS),
                        help="person (17 COCO keypoints) or bird (5 keypoints: beak, head, wings, tail)")
    parser.add_argument("--train-images", type=int, default=500, help="number of training images")
    parser.add_argument("--val-images", type=int, default=100, help="number of validation images")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same dataset)")
    parser.add_argument("--size", type=int, nargs=2, default=(320, 240), metavar=("W", "H"), help="image size")
    parser.add_argument("--overwrite", action="store_true", help="write into --out even if it already holds a dataset")
    return parser


def dataset_files(args: argparse.Namespace) -> list[tuple[Path, str]]:
    """(path, kind) of every file the command writes (keypoints/data/synthetic.py names them)."""
    out = Path(args.out)
    files = [(out / "annotations" / f"{args.kind}_keypoints_{split}2017.json", "json") for split in ("train", "val")]
    files.append((out / f"{args.kind}_detection_results" / "detections_val2017.json", "json"))
    for split, n in (("train", args.train_images), ("val", args.val_images)):
        files += [(out / f"{split}2017" / f"{FIRST_IMAGE_ID[split] + i:012d}.jpg", "image") for i in range(n)]
    return files


def main(args: argparse.Namespace) -> dict:
    check_number("--train-images", args.train_images, 0, integer=True)
    check_number("--val-images", args.val_images, 0, integer=True)
    for flag, value in zip(("--size W", "--size H"), args.size):
        check_number(flag, value, 32, 8192, integer=True, what="pixels")
    annotations = Path(args.out) / "annotations"
    if annotations.is_dir() and any(annotations.iterdir()) and not args.overwrite:
        raise ValueError(f"{args.out} already holds a dataset ({annotations} is not empty); pass --overwrite to "
                         f"replace its files, or another --out")
    check_output(args.out, flag="--out", kind="folder", folder=True)
    for path, kind in dataset_files(args):  # another kind of file in the way is never replaced
        if path.exists() or path.is_symlink():
            check_output(path, flag="--out", kind=kind, overwrite=args.overwrite)
    summary = make_synthetic_dataset(args.out, train_images=args.train_images, val_images=args.val_images,
                                     seed=args.seed, size=tuple(args.size), kind=args.kind)
    print(json.dumps(summary, indent=2))
    return summary


def cli() -> None:
    run_cli(main, get_args_parser())


if __name__ == "__main__":
    cli()
