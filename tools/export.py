"""Checkout entry of keypoints/cli/export.py (installed as ``keypoints-export``)."""
from keypoints.cli.export import cli, get_args_parser, main  # noqa: F401

if __name__ == "__main__":
    cli()
