"""Is DY-ReLU dynamic? Input/output scatter and slope gap |a1 - a2| per DY-ReLU layer.

    # a trained checkpoint and a folder of images (each image is resized to the model input)
    python tools/analyze_dyrelu.py --checkpoint outputs/quickstart/best.pth --images data/synthetic/val2017 \
        --output-dir outputs/quickstart/dyrelu
    # an untrained model from a config
    python tools/analyze_dyrelu.py --config configs/quickstart.yaml --images tests/data/coco_mini/val2017 \
        --output-dir outputs/dyrelu_init

Writes scatter.png, slope_gap.png and slope_gap.csv (layer, variant, channels, mean gap, spread across images),
each atomically; --output-dir may not be or hold an input (the images, the model file), and existing files there
are replaced only with --overwrite (keypoints/outputs.py).
"""
from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

import cv2
import numpy as np
import torch

from keypoints.dyrelu_inspection import collect_dyrelu_stats, plot_scatter, plot_slope_gap
from keypoints.config import load_config
from keypoints.models import build_model, load_pose_model
from keypoints.outputs import atomic_path, check_output, write_text
from keypoints.utils.cli import run_cli
from keypoints.utils.io import BadImageError, read_image
from keypoints.utils.runtime import check_number

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="DY-ReLU inspection: input/output scatter and slope gap per layer")
    p.add_argument("--checkpoint", help="trained checkpoint (tools/train.py)")
    p.add_argument("--config", help="config of an untrained model (used when no checkpoint is given)")
    p.add_argument("--images", required=True, help="folder of images")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--max-images", type=int, default=16)
    p.add_argument("--points", type=int, default=2000, help="sampled points per layer and batch")
    p.add_argument("--overwrite", action="store_true", help="replace existing figures and CSV in --output-dir")
    return p


OUTPUTS = (("scatter.png", "image"), ("slope_gap.png", "image"), ("slope_gap.csv", "csv"))


def check_args(args: argparse.Namespace) -> None:
    """The arguments, before a model is built."""
    if args.checkpoint and args.config:
        raise ValueError("pass --checkpoint (a trained model) or --config (an untrained one), not both")
    for flag, path in (("--checkpoint", args.checkpoint), ("--config", args.config)):
        if path and not Path(path).is_file():
            raise FileNotFoundError(f"{flag} file not found: {path}")
    check_number("--max-images", args.max_images, 1, integer=True)
    check_number("--points", args.points, 1, integer=True)


def check_outputs(args: argparse.Namespace) -> list[Path]:
    """--output-dir and the files written there against the output policy (keypoints.outputs)."""
    inputs = [args.images, args.checkpoint, args.config]
    out = check_output(args.output_dir, flag="--output-dir", kind="folder", inputs=inputs, folder=True)
    return [check_output(out / name, flag="--output-dir", kind=kind, inputs=inputs, overwrite=args.overwrite)
            for name, kind in OUTPUTS]


def load_images(folder: str, size: tuple[int, int], limit: int) -> torch.Tensor:
    """RGB uint8 batch (B, 3, H, W), each image resized to ``size`` (width, height)."""
    path = Path(folder)
    if not path.is_dir():
        raise FileNotFoundError(f"image folder not found: {path}")
    files = sorted(f for f in path.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    images = []
    for f in files:
        try:
            images.append(cv2.cvtColor(cv2.resize(read_image(f), size), cv2.COLOR_BGR2RGB))
        except BadImageError as e:
            print(f"warning: skipping {e}")
    if not images:
        raise ValueError(f"no readable image ({', '.join(IMAGE_SUFFIXES)}) in {path}")
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


def main(args: argparse.Namespace) -> list:
    check_args(args)
    if args.checkpoint:
        model, cfg = load_pose_model(args.checkpoint)
    elif args.config:
        cfg = load_config(args.config)
        model = build_model(cfg.model).eval()
    else:
        raise ValueError("pass --checkpoint (trained model) or --config (untrained model)")
    images = load_images(args.images, cfg.data.input_size, args.max_images)
    scatter, slope_gap, table = check_outputs(args)  # before the work: the inputs are known to be readable
    stats = collect_dyrelu_stats(model, images, points_per_layer=args.points)
    out = Path(args.output_dir)
    for path, plot in ((scatter, plot_scatter), (slope_gap, plot_slope_gap)):
        with atomic_path(path) as tmp:  # same suffix: matplotlib picks the format by it
            plot(stats, tmp)
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["layer", "variant", "channels", "slope_gap", "spread_across_images"])
    for s in stats:
        writer.writerow([s.name, s.variant, s.channels, f"{s.slope_gap:.4f}", f"{s.slope_gap_std:.4f}"])
    write_text(table, text.getvalue())
    print(f"{len(stats)} DY-ReLU layers on {images.shape[0]} images; mean slope gap "
          f"{np.mean([s.slope_gap for s in stats]):.3f}; wrote {out}/scatter.png, slope_gap.png, slope_gap.csv")
    return stats


def cli() -> None:
    run_cli(main, get_args_parser())


if __name__ == "__main__":
    cli()
