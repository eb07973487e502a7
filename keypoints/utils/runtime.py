"""Device choice, seeding, mixed-precision settings and output-folder checks for the scripts."""
from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

AMP_CHOICES = ("auto", "bf16", "fp16", "off")


def select_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto``: the local rank's GPU when CUDA is available, else the CPU; ``cuda`` fails clearly without a GPU."""
    if name not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device={name!r} is not valid; choose one of auto, cpu, cuda")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA device is available; use --device cpu")
    if name != "cpu" and torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = True


def amp_settings(amp: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, whether a GradScaler is needed). Mixed precision runs on CUDA only."""
    if amp not in AMP_CHOICES:
        raise ValueError(f"train.amp={amp!r} is not valid; choose one of {', '.join(AMP_CHOICES)}")
    if device.type != "cuda" or amp == "off":
        return None, False
    if amp == "auto":
        amp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return (torch.bfloat16, False) if amp == "bf16" else (torch.float16, True)


def check_output_dir(path: str | Path, flag: str = "--output-dir") -> Path:
    """Create the folder ``path`` (and its parents) and prove it writable by writing and removing a probe file,
    so that a bad output path fails at once with one line instead of after data loading or a first epoch.

    Raises ValueError naming ``flag`` when ``path`` or one of its parents is a regular file, or when the folder
    cannot be created or written (permissions, read-only file system; as root, permissions are not a limit).
    """
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            what = "is a file" if p == path else f"is under the file {p}"
            raise ValueError(f"{flag} {path} {what}; choose a folder path")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ValueError(f"{flag} {path} cannot be written ({e.strerror or type(e).__name__}); "
                         f"choose a writable folder") from None
    return path
