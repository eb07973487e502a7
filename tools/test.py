"""Checkout entry of keypoints/cli/test.py (installed as ``keypoints-test``)."""
from keypoints.cli.test import cli, get_args_parser, main  # noqa: F401

if __name__ == "__main__":
    cli()
