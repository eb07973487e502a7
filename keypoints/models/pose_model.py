"""Top-down pose model: person crop (B, 3, H, W) -> heatmaps (B, K, H/4, W/4)."""
from __future__ import annotations

import torch
from torch import nn

from ..constants import IMAGENET_MEAN, IMAGENET_STD


class TopDownPoseModel(nn.Module):
    """ImageNet normalisation, backbone (multi-stride features), heatmap head.

    Input: RGB crops ``(B, 3, H, W)`` with values in [0, 255], uint8 or float (256x192 in the
    standard setting). Normalisation is the model's first step, so data loaders ship uint8
    (4x less host-to-device traffic) and exported ONNX graphs take raw pixels.
    Output: float heatmaps ``(B, K, H/4, W/4)``, trained by MSE against Gaussians of peak 1.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"pose model expects RGB crops (B, 3, H, W), got {tuple(images.shape)}")
        x = (images.to(self.mean.dtype) - self.mean) / self.std
        return self.head(self.backbone(x))
