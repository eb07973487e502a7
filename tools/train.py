"""Checkout entry of keypoints/cli/train.py (installed as ``keypoints-train``)."""
from keypoints.cli.train import cli, get_args_parser, main  # noqa: F401

if __name__ == "__main__":
    cli()
