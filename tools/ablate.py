"""Checkout entry of keypoints/cli/ablate.py (installed as ``keypoints-ablate``)."""
from keypoints.cli.ablate import cli, get_args_parser, main  # noqa: F401

if __name__ == "__main__":
    cli()
