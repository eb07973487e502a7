"""Checkpoints: atomic writes, clear errors, strict model loading.

A training checkpoint is a dict with ``model`` (state dict of the unwrapped model), ``optimizer``,
``scheduler``, ``scaler``, ``epoch`` (epochs completed), ``best_metric``, ``best_metric_name`` and
``config`` (the resolved config as a plain dict), written by ``save_checkpoint`` to a temporary file
in the same folder (``<name>.<random>.tmp``) and renamed over the target, so an interruption never
leaves a half-written file. A process killed outright (``kill -9``, power loss) can leave that
temporary file behind; ``remove_stale_temporaries`` deletes them when the next run starts.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def remove_stale_temporaries(folder: str | Path, names: tuple[str, ...] = ("last.pth", "best.pth")) -> list[Path]:
    """Delete ``<name>.*.tmp`` left in ``folder`` by interrupted ``save_checkpoint`` calls of these ``names``
    (only ours: other files are never touched). Call it before this run writes checkpoints there."""
    removed = []
    for name in names:
        for tmp in Path(folder).glob(f"{name}.*.tmp"):
            if tmp.is_file():
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
    return removed


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by tools/train.py; raises a one-line error when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - unpickling errors of every kind mean "not a checkpoint"
        raise ValueError(f"cannot read {path} as a checkpoint ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise ValueError(f"{path} is not a pose checkpoint of this project (no 'model' and 'config' entries); "
                         f"pass a file written by tools/train.py (last.pth or best.pth)")
    return state


def load_model_state(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Strict load with a one-line summary of missing, unexpected and mis-shaped keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [k for k in own if k in state_dict and tuple(own[k].shape) != tuple(state_dict[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if shapes:
            k = shapes[0]
            parts.append(f"{len(shapes)} with other shapes (e.g. {k}: {tuple(state_dict[k].shape)} vs "
                         f"{tuple(own[k].shape)})")
        raise ValueError(f"{source} does not match the model built from the config: {'; '.join(parts)}; "
                         f"use the config the checkpoint was trained with")
    model.load_state_dict(state_dict)
