"""Entry point shared by the tools: user errors become one line on stderr and a non-zero exit status.

- ``ValueError`` / ``FileNotFoundError`` raised by the tools (wrong arguments, missing files) and the
  ``OSError`` of paths that cannot be written (permission denied, a regular file where a folder is
  needed, a folder where a file is needed, a name that already exists): ``error: ...``, exit status 2.
- Ctrl-C (``KeyboardInterrupt``): ``interrupted``, exit status 130 (128 + SIGINT, as shells report it).

Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

# OSErrors that mean "this path cannot be used as given", not "the program is broken".
PATH_ERRORS = (PermissionError, NotADirectoryError, IsADirectoryError, FileExistsError)


def _one_line(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror and e.filename is not None:
        # str() of an OSError is "[Errno 13] Permission denied: 'x'"; say it in words and add what to do.
        hint = "check the path" if isinstance(e, FileNotFoundError) else "choose another path or fix its permissions"
        return f"{e.strerror}: {e.filename}; {hint}"
    return " ".join(str(e).split()) or type(e).__name__  # one line even when a message spans several


def run_cli(main: Callable[[argparse.Namespace], Any], parser: argparse.ArgumentParser) -> None:
    try:
        main(parser.parse_args())
    except (ValueError, FileNotFoundError, *PATH_ERRORS) as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
