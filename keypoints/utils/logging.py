"""Logging for training runs: console + file on rank 0, a CSV of per-epoch metrics, TensorBoard scalars."""
from __future__ import annotations

import csv
import io
import logging
import sys
from pathlib import Path
from typing import Any

from ..outputs import write_text

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(output_dir: str | Path | None = None, rank: int = 0, filename: str = "train.log") -> logging.Logger:
    """Configure the root logger: INFO on rank 0 (console and ``output_dir/filename``), WARNING elsewhere."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(logging.Formatter(LOG_FORMAT, "%H:%M:%S"))
    root.addHandler(console)
    if output_dir is not None and rank == 0:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(Path(output_dir) / filename)
        fh.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(fh)
    return logging.getLogger("keypoints")


class MetricWriter:
    """One row per epoch in ``metrics.csv`` (columns grow as new metrics appear) and TensorBoard scalars.

    ``resume_epoch``: epochs already completed by the run being continued. Their rows of an existing
    ``metrics.csv`` are kept and later ones dropped (they belong to epochs that will run again), and
    TensorBoard events from step ``resume_epoch + 1`` on are purged. 0 (a new run) starts an empty table.
    The CSV is rewritten atomically (:func:`keypoints.outputs.write_text`), so it is never half-written.
    """

    def __init__(self, output_dir: str | Path, tensorboard: bool = True, resume_epoch: int = 0) -> None:
        self.path = Path(output_dir) / "metrics.csv"
        self.rows: list[dict[str, Any]] = []
        if resume_epoch > 0 and self.path.is_file():
            with self.path.open() as f:
                self.rows = [r for r in csv.DictReader(f) if int(float(r["epoch"])) <= resume_epoch]
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(str(Path(output_dir) / "tensorboard"),
                                        purge_step=resume_epoch + 1 if resume_epoch > 0 else None)
            except ImportError:  # tensorboard is optional at run time
                logging.getLogger(__name__).warning("tensorboard is not installed; writing the CSV log only")

    def write(self, epoch: int, metrics: dict[str, float]) -> None:
        self.rows = [r for r in self.rows if int(float(r["epoch"])) != epoch] + [{"epoch": epoch, **metrics}]
        columns = ["epoch"] + sorted({k for r in self.rows for k in r if k != "epoch"})
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns)
        writer.writeheader()
        writer.writerows(self.rows)
        write_text(self.path, text.getvalue())
        if self.tb is not None:
            for k, v in metrics.items():
                self.tb.add_scalar(k, v, epoch)
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
