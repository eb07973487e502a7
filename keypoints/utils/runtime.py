"""Device choice, seeding and mixed-precision settings for the scripts."""
from __future__ import annotations

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
