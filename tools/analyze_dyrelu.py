"""Checkout entry of keypoints/cli/analyze_dyrelu.py (installed as ``keypoints-analyze-dyrelu``)."""
from keypoints.cli.analyze_dyrelu import cli, get_args_parser, main  # noqa: F401

if __name__ == "__main__":
    cli()
