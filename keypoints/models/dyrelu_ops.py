"""Elementwise part of DY-ReLU: y = pi * max_k(a_k * x + b_k).

Shapes: x (B, C, H, W) in any memory format; a, b (B, C, K); pi (B, 1, H, W) or None.
``dyrelu_apply`` dispatches on ``impl``:

- ``reference``: the straightforward PyTorch graph (autograd keeps K full-size
  intermediates alive). The reference for tests and the graph used for ONNX export.
- ``auto``: the fastest implementation available for the tensor's device.
"""
from __future__ import annotations

import torch

IMPLEMENTATIONS = ("auto", "reference")


def dyrelu_reference(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, pi: torch.Tensor | None = None) -> torch.Tensor:
    """Straightforward y = pi * max_k(a_k x + b_k) with broadcasting (the baseline)."""
    a = a[:, :, None, None, :]
    b = b[:, :, None, None, :]
    y = x * a[..., 0] + b[..., 0]
    for i in range(1, a.shape[-1]):
        y = torch.maximum(y, x * a[..., i] + b[..., i])
    return y if pi is None else y * pi


def dyrelu_apply(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, pi: torch.Tensor | None = None,
                 impl: str = "auto") -> torch.Tensor:
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"unknown DyReLU impl {impl!r}; choose one of {', '.join(IMPLEMENTATIONS)}")
    return dyrelu_reference(x, a, b, pi)
