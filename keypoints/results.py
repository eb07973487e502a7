"""Results as data: every measurement the docs report is a row of a CSV file under ``results/``, with where and when it
was measured, and the docs tables are rebuilt from those files (``python tools/docs.py``, ``make docs``).

    rows = [{"runtime": "onnxruntime", "model": "large", "batch": 1, "ms_per_crop": 9.2}, ...]
    append_rows("results/benchmarks/inference.csv", rows)      # + commit, date, machine, load_average columns
    read_rows("results/benchmarks/inference.csv")              # list of dicts (strings), in file order

Provenance columns (added to every row by :func:`append_rows`): ``commit`` (``git describe``-style short hash of the
checkout, ``+dirty`` when it had uncommitted changes), ``date`` (ISO 8601, UTC), ``machine`` (CPU model and core
count, or the GPU's name) and ``load_average`` (1/5/15 minutes at the time of writing: a busy shared machine
explains a slow row). Files are appended to, never rewritten, so earlier measurements stay; a change of columns
rewrites the header with the union of columns (old rows keep empty cells).
"""
from __future__ import annotations

import csv
import datetime
import io
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Iterable

from .outputs import write_text

__all__ = ["provenance", "append_rows", "write_rows", "read_rows", "git_commit", "machine", "PROVENANCE"]

PROVENANCE = ("commit", "date", "machine", "load_average")


def git_commit(root: str | Path | None = None) -> str:
    """Short hash of the checkout of this package (``+dirty`` with uncommitted changes); ``unknown`` outside git."""
    root = Path(root) if root is not None else Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine() -> str:
    """``<CPU model>, <n> cores`` (from /proc/cpuinfo where there is one), plus the CUDA device when present."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    text = f"{model}, {os.cpu_count()} cores"
    try:
        import torch

        if torch.cuda.is_available():
            text += f", {torch.cuda.get_device_name()}"
    except ImportError:
        pass
    return text


def provenance() -> dict[str, str]:
    """The provenance columns; ``commit`` is ``$KEYPOINTS_COMMIT`` when set (a report written by a checkout other
    than the one whose code was measured, e.g. a sweep trained in a worktree of that commit)."""
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = ""
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return {"commit": os.environ.get("KEYPOINTS_COMMIT") or git_commit(), "date": date, "machine": machine(),
            "load_average": load}


def read_rows(path: str | Path) -> list[dict[str, str]]:
    """Rows of a results CSV as dicts of strings (empty cells are ""); [] when the file does not exist."""
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def append_rows(path: str | Path, rows: Iterable[dict[str, Any]], stamp: dict[str, str] | None = None) -> Path:
    """Append ``rows`` to the CSV ``path`` with the provenance columns (``stamp``, default :func:`provenance`),
    atomically; floats are written with 6 significant digits, None as an empty cell."""
    stamp = stamp if stamp is not None else provenance()
    return write_rows(path, read_rows(path) + [{**row, **stamp} for row in rows])


def write_rows(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write ``rows`` as the whole CSV ``path`` (atomically; columns in first-seen order, provenance last)."""
    path = Path(path)
    rows = [{k: _cell(v) for k, v in row.items()} for row in rows]
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns and k not in PROVENANCE]
    columns += [k for k in PROVENANCE if any(k in row for row in rows)]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return write_text(path, text.getvalue())


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
