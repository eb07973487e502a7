"""Checkout entry of keypoints/cli/make_synthetic.py (installed as ``keypoints-make-synthetic``)."""
from keypoints.cli.make_synthetic import cli, get_args_parser, main  # noqa: F401

if __name__ == "__main__":
    cli()
