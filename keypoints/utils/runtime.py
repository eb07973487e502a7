"""Device choice, seeding, mixed-precision settings and argument range checks for the scripts (output paths:
:mod:`keypoints.outputs`)."""
from __future__ import annotations

import math
import random

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


def check_threads(threads: object, flag: str = "threads") -> int | None:
    """``threads`` as given when it is None (every core) or a positive int; else a one-line ValueError naming
    ``flag`` (0, negative numbers, floats and booleans are refused, never replaced by a default)."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"{flag} must be a positive integer, got {threads!r}")
    return threads


def check_number(flag: str, value: float | int | None, low: float | None = None, high: float | None = None,
                 integer: bool = False, what: str = "") -> None:
    """One argument's range, before any work: finite, ``low <= value <= high`` (bounds optional), an int when
    ``integer``; None (not given: the documented default) passes. ``what`` says what the value means."""
    if value is None:
        return
    if integer and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"{flag} must be an integer, got {value!r}")
    if not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high):
        bounds = (f"from {low:g} to {high:g}" if low is not None and high is not None else
                  f"at least {low:g}" if low is not None else f"at most {high:g}")
        raise ValueError(f"{flag} must be {'an integer' if integer else 'a finite number'} {bounds}"
                         f"{f' ({what})' if what else ''}, got {value}")


def check_unique(flag: str, values: list | tuple | None) -> None:
    """A list argument without repeats (a repeated seed or batch size would count, or time, one thing twice)."""
    if values:
        repeated = sorted({v for v in values if list(values).count(v) > 1}, key=str)
        if repeated:
            raise ValueError(f"{flag} lists {', '.join(map(str, repeated))} more than once; give each value once")
