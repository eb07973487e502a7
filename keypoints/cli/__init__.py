"""The command-line tools, one module each (``python -m keypoints.cli.train``, the ``keypoints-train`` console
script, or ``python tools/train.py`` in a checkout): a parser (``get_args_parser``), ``main(args)`` and ``cli()``.
Each is a thin layer over the package: argument checks, then calls into it."""
