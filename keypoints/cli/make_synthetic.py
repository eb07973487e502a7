"""Generate a synthetic COCO-format keypoint dataset: people (quickstart, tests) or birds (5 keypoints, not a person).

    python tools/make_synthetic.py --out data/synthetic
    python tools/make_synthetic.py --out /tmp/synth --train-images 40 --val-images 10 --seed 1 --size 320 240
    python tools/make_synthetic.py --kind bird --out data/synthetic_bird     # then configs/synthetic_bird.yaml

Writes ``<out>/{train2017,val2017}/*.jpg``, ``<out>/annotations/person_keypoints_{train,val}2017.json`` and
``<out>/person_detection_results/detections_val2017.json`` (``bird_...`` for --kind bird); the same seed gives the
same files. See ``keypoints/data/synthetic.py`` and ``keypoints/data/synthetic_birds.py`` for what the images
contain.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from keypoints.data.synthetic import KINDS, make_synthetic_dataset
from keypoints.utils.cli import run_cli
from keypoints.utils.io import check_writable


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


def main(args: argparse.Namespace) -> dict:
    annotations = Path(args.out) / "annotations"
    if annotations.is_dir() and any(annotations.iterdir()) and not args.overwrite:
        raise ValueError(f"{args.out} already holds a dataset ({annotations} is not empty); pass --overwrite to "
                         f"replace its files, or another --out")
    check_writable(args.out, "--out", folder=True)
    summary = make_synthetic_dataset(args.out, train_images=args.train_images, val_images=args.val_images,
                                     seed=args.seed, size=tuple(args.size), kind=args.kind)
    print(json.dumps(summary, indent=2))
    return summary


def cli() -> None:
    run_cli(main, get_args_parser())


if __name__ == "__main__":
    cli()
