"""Heatmap heads: stride-32 (or multi-stride) features -> (B, K, H/4, W/4) heatmaps.

- ``DeconvHead``: SimpleBaseline's head (Xiao et al. 2018): n x [ConvTranspose2d(k4, s2, p1, no bias),
  BN, act] then a 1x1 conv to K heatmaps; conv/deconv weights ~ N(0, 0.001), biases 0.
- ``LightHead``: the light keypoint head of the DY-ReLU / Dynamic Convolution papers: from stride 32
  down to stride 4, each stage reduces channels (1x1 conv), upsamples x2 bilinearly, adds a 1x1
  projection of the backbone feature of the same stride (skip) and applies an inverted-residual
  block (1x1 expand, 3x3 depthwise, 1x1 project, residual); a 1x1 conv gives K heatmaps. Widths
  are a config choice (default 128, 64, 32 at strides 16, 8, 4; expansion 4: about 0.1 GMACs at 256x192).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .layers import ActFactory, ConvBNAct


def _init_normal(layers: Sequence[nn.Module], std: float = 0.001) -> None:
    """SimpleBaseline init for the given layers; activations (DyReLU's hyper function) keep their own."""
    for m in layers:
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class DeconvHead(nn.Module):
    """SimpleBaseline head on the last (stride-32) feature; output stride 32 / 2**len(channels)."""

    def __init__(self, in_channels: int, num_keypoints: int, act_layer: ActFactory,
                 channels: Sequence[int] = (256, 256, 256)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_channels
        for c in channels:
            layers += [nn.ConvTranspose2d(prev, c, 4, 2, 1, bias=False), nn.BatchNorm2d(c), act_layer(c)]
            prev = c
        self.deconv = nn.Sequential(*layers)
        self.final = nn.Conv2d(prev, num_keypoints, 1)
        _init_normal([*self.deconv, self.final])

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.final(self.deconv(features[-1]))


class InvertedResidualBlock(nn.Module):
    """1x1 expand -> 3x3 depthwise -> 1x1 linear project, with identity residual (same width in and out)."""

    def __init__(self, channels: int, expansion: int, act_layer: ActFactory) -> None:
        super().__init__()
        hidden = channels * expansion
        self.block = nn.Sequential(
            ConvBNAct(channels, hidden, 1, act_layer=act_layer),
            ConvBNAct(hidden, hidden, 3, groups=hidden, act_layer=act_layer),
            ConvBNAct(hidden, channels, 1, act_layer=None),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class LightHead(nn.Module):
    """Bilinear-upsampling head with skips; takes backbone features at strides (4, 8, 16, 32)."""

    def __init__(self, in_channels: Sequence[int], num_keypoints: int, act_layer: ActFactory,
                 channels: Sequence[int] = (128, 64, 32), expansion: int = 4) -> None:
        super().__init__()
        if len(in_channels) != 4 or len(channels) != 3:
            raise ValueError(f"LightHead needs 4 backbone features and 3 stage widths, got {len(in_channels)} "
                             f"features and widths {tuple(channels)}")
        prev = in_channels[3]
        self.reduce = nn.ModuleList()
        self.skip = nn.ModuleList()
        self.blocks = nn.ModuleList()
        for c, skip_channels in zip(channels, (in_channels[2], in_channels[1], in_channels[0])):
            self.reduce.append(ConvBNAct(prev, c, 1, act_layer=None))
            self.skip.append(ConvBNAct(skip_channels, c, 1, act_layer=None))
            self.blocks.append(InvertedResidualBlock(c, expansion, act_layer))
            prev = c
        self.final = nn.Conv2d(prev, num_keypoints, 1)
        _init_normal([self.final])

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        x = features[3]
        for reduce, skip, block, feat in zip(self.reduce, self.skip, self.blocks,
                                             (features[2], features[1], features[0])):
            x = F.interpolate(reduce(x), size=feat.shape[-2:], mode="bilinear", align_corners=False)
            x = block(x + skip(feat))
        return self.final(x)
