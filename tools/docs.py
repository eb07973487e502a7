"""Checkout entry of keypoints/cli/docs.py (installed as ``keypoints-docs``)."""
from keypoints.cli.docs import cli, get_args_parser, main  # noqa: F401

if __name__ == "__main__":
    cli()
