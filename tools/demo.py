"""Checkout entry of keypoints/cli/demo.py (installed as ``keypoints-demo``)."""
from keypoints.cli.demo import cli, get_args_parser, main  # noqa: F401

if __name__ == "__main__":
    cli()
