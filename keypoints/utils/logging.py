"""Logging for training runs: console + file on rank 0, a CSV of per-epoch metrics, TensorBoard scalars."""
from __future__ import annotations

import csv
import logging
import sys
from pathlib import Path
from typing import Any

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
    """Appends one row per epoch to ``metrics.csv`` (columns grow as new metrics appear) and to TensorBoard."""

    def __init__(self, output_dir: str | Path, tensorboard: bool = True) -> None:
        self.path = Path(output_dir) / "metrics.csv"
        self.rows: list[dict[str, Any]] = []
        if self.path.is_file():  # resumed run: keep the history
            with self.path.open() as f:
                self.rows = list(csv.DictReader(f))
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(str(Path(output_dir) / "tensorboard"))
            except ImportError:  # tensorboard is optional at run time
                logging.getLogger(__name__).warning("tensorboard is not installed; writing the CSV log only")

    def write(self, epoch: int, metrics: dict[str, float]) -> None:
        self.rows = [r for r in self.rows if int(float(r["epoch"])) != epoch] + [{"epoch": epoch, **metrics}]
        columns = ["epoch"] + sorted({k for r in self.rows for k in r if k != "epoch"})
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.rows)
        tmp.replace(self.path)
        if self.tb is not None:
            for k, v in metrics.items():
                self.tb.add_scalar(k, v, epoch)
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
