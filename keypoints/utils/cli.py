"""Entry point shared by the tools: user errors become one line on stderr and exit status 2."""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable


def run_cli(main: Callable[[argparse.Namespace], Any], parser: argparse.ArgumentParser) -> None:
    try:
        main(parser.parse_args())
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
