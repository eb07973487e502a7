"""Dynamic ReLU (Chen et al., "Dynamic ReLU", ECCV 2020), variants A, B and C.

For an input x of shape (B, C, H, W) and each channel c:

    y_c = max_k ( a_c^k(x) * x_c + b_c^k(x) ),   k = 1..K

The coefficients come from a hyper function theta(x): global average pool ->
Linear(C, C/R) -> ReLU -> Linear(C/R, 2K*C) -> 2*sigmoid(z) - 1, giving
residuals in (-1, 1) around the initial values:

    a^k = init_a^k + lambda_a * delta_a^k,     b^k = init_b^k + lambda_b * delta_b^k

With zero residual and the default init (a = (1, 0), b = (0, 0)) the function
is exactly ReLU.

- A: one set of 2K coefficients per sample, shared by all channels and positions.
- B: 2K coefficients per sample and channel, shared by all positions.
- C: B's coefficients scaled at every position by a spatial attention

      pi = min(gamma * softmax_HW(conv1x1(x) / tau), 1),  gamma = gamma_frac * H * W

  and since pi >= 0, y = pi * max_k(a^k x + b^k). ``gamma=1/3`` means gamma = HW/3,
  so a uniform attention gives pi = 1/3 everywhere. The authors' code adds a
  BatchNorm on the spatial logits; ``spatial_bn=True`` enables it (off by default,
  as in the paper's equations).

The elementwise part (the max over pieces and the attention product) is done by
:func:`keypoints.models.dyrelu_ops.dyrelu_apply`, which picks a memory-lean
implementation (``impl``); all implementations compute the same function.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .dyrelu_ops import IMPLEMENTATIONS, dyrelu_apply

VARIANTS = ("A", "B", "C")


def hidden_width(channels: int, reduction: int) -> int:
    """Width of the hyper function's hidden layer: C/R rounded to a multiple of 4, at least 4."""
    return max(4, int(channels / reduction / 4 + 0.5) * 4)


class DyReLU(nn.Module):
    """Dynamic ReLU activation; input and output (B, C, H, W), C == ``channels``."""

    def __init__(
        self,
        channels: int,
        variant: str = "C",
        reduction: int = 4,
        k: int = 2,
        lambda_a: float = 1.0,
        lambda_b: float = 0.5,
        init_a: Sequence[float] = (1.0, 0.0),
        init_b: Sequence[float] = (0.0, 0.0),
        tau: float = 10.0,
        gamma: float = 1.0 / 3.0,
        spatial_bn: bool = False,
        impl: str = "auto",
    ) -> None:
        super().__init__()
        variant = str(variant).upper()
        if variant not in VARIANTS:
            raise ValueError(f"unknown DyReLU variant {variant!r}; choose one of {', '.join(VARIANTS)}")
        if not isinstance(channels, int) or channels <= 0:
            raise ValueError(f"DyReLU channels must be a positive integer, got {channels!r}")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"DyReLU k (number of pieces) must be a positive integer, got {k!r}")
        if len(init_a) != k or len(init_b) != k:
            raise ValueError(f"DyReLU init_a and init_b need k={k} values each, "
                             f"got {tuple(init_a)} and {tuple(init_b)}")
        if reduction <= 0 or tau <= 0 or gamma <= 0:
            raise ValueError(f"DyReLU reduction, tau and gamma must be positive, got {reduction}, {tau}, {gamma}")
        if impl not in IMPLEMENTATIONS:
            raise ValueError(f"unknown DyReLU impl {impl!r}; choose one of {', '.join(IMPLEMENTATIONS)}")
        self.channels, self.variant, self.k = channels, variant, k
        self.lambda_a, self.lambda_b = float(lambda_a), float(lambda_b)
        self.tau, self.gamma = float(tau), float(gamma)
        self.impl = impl
        coef_channels = 1 if variant == "A" else channels
        self.fc1 = nn.Linear(channels, hidden_width(channels, reduction))
        self.fc2 = nn.Linear(self.fc1.out_features, 2 * k * coef_channels)
        if variant == "C":
            self.spatial = nn.Conv2d(channels, 1, kernel_size=1)
            self.spatial_bn = nn.BatchNorm2d(1) if spatial_bn else None
        self.register_buffer("init_a", torch.tensor(list(init_a), dtype=torch.float32), persistent=False)
        self.register_buffer("init_b", torch.tensor(list(init_b), dtype=torch.float32), persistent=False)

    def extra_repr(self) -> str:
        return f"{self.channels}, variant={self.variant}, k={self.k}, hidden={self.fc1.out_features}, impl={self.impl}"

    def coefficients(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Slopes and intercepts, each (B, C', K) with C' = 1 for variant A, else C."""
        theta = self.fc2(torch.relu(self.fc1(x.mean(dim=(2, 3)))))
        theta = 2.0 * torch.sigmoid(theta) - 1.0
        theta = theta.view(x.shape[0], -1, 2 * self.k)
        a = self.init_a.to(theta.dtype) + self.lambda_a * theta[..., : self.k]
        b = self.init_b.to(theta.dtype) + self.lambda_b * theta[..., self.k:]
        return a, b

    def spatial_attention(self, x: torch.Tensor) -> torch.Tensor:
        """Variant C's attention pi, (B, 1, H, W), in [0, 1]."""
        z = self.spatial(x)
        if self.spatial_bn is not None:
            z = self.spatial_bn(z)
        n, _, h, w = z.shape
        soft = torch.softmax(z.reshape(n, 1, h * w).float() / self.tau, dim=-1).reshape(n, 1, h, w)
        return torch.clamp(soft * (self.gamma * h * w), max=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"DyReLU({self.channels}) expects input (B, {self.channels}, H, W), got {tuple(x.shape)}")
        a, b = self.coefficients(x)
        if self.variant == "A":
            a, b = a.expand(-1, self.channels, -1), b.expand(-1, self.channels, -1)
        pi = self.spatial_attention(x) if self.variant == "C" else None
        # Coefficients in the activation's dtype: under autocast the linear layers give bf16/fp16 and
        # the softmax fp32; mixing them with x would promote the full-size output.
        a, b = a.to(x.dtype), b.to(x.dtype)
        pi = pi.to(x.dtype) if pi is not None else None
        return dyrelu_apply(x, a, b, pi, impl=self.impl)
