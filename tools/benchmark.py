"""Checkout entry of keypoints/cli/benchmark.py (installed as ``keypoints-benchmark``)."""
from keypoints.cli.benchmark import cli, get_args_parser, main  # noqa: F401

if __name__ == "__main__":
    cli()
