"""MobileNetV3 backbone (Howard et al., "Searching for MobileNetV3", 2019) with pluggable activation.

The block tables are the paper's (and torchvision's). By default the SE modules
are removed and every ReLU and h-swish is replaced by DY-ReLU-C (the DY-ReLU
paper's setting). ``se=True, act="original"`` builds the original network; its
module names and parameters then match torchvision's ``mobilenet_v3_*().features``
key for key, so ImageNet weights load directly (see ``pretrained.py``). Without
SE, a ``nn.Identity`` keeps the SE slot so that the remaining keys still line up.

``forward`` returns the features at strides 4, 8, 16 and 32 (the last one after
the final 1x1 conv, 960 channels for Large at width 1.0).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .layers import BatchNorm2d, ConvBNAct, get_act_layer, make_divisible


@dataclass(frozen=True)
class BlockSpec:
    """One inverted-residual row of the paper's table."""

    kernel: int
    expanded: int  # expansion width ("exp size")
    out: int  # output channels
    se: bool  # squeeze-and-excitation in the original network
    act: str  # "RE" (ReLU) or "HS" (h-swish) in the original network
    stride: int


#                 k  exp  out   SE     act  s        output stride
LARGE = (
    BlockSpec(3, 16, 16, False, "RE", 1),  # 2
    BlockSpec(3, 64, 24, False, "RE", 2),  # 4
    BlockSpec(3, 72, 24, False, "RE", 1),
    BlockSpec(5, 72, 40, True, "RE", 2),  # 8
    BlockSpec(5, 120, 40, True, "RE", 1),
    BlockSpec(5, 120, 40, True, "RE", 1),
    BlockSpec(3, 240, 80, False, "HS", 2),  # 16
    BlockSpec(3, 200, 80, False, "HS", 1),
    BlockSpec(3, 184, 80, False, "HS", 1),
    BlockSpec(3, 184, 80, False, "HS", 1),
    BlockSpec(3, 480, 112, True, "HS", 1),
    BlockSpec(3, 672, 112, True, "HS", 1),
    BlockSpec(5, 672, 160, True, "HS", 2),  # 32
    BlockSpec(5, 960, 160, True, "HS", 1),
    BlockSpec(5, 960, 160, True, "HS", 1),
)
SMALL = (
    BlockSpec(3, 16, 16, True, "RE", 2),  # 4
    BlockSpec(3, 72, 24, False, "RE", 2),  # 8
    BlockSpec(3, 88, 24, False, "RE", 1),
    BlockSpec(5, 96, 40, True, "HS", 2),  # 16
    BlockSpec(5, 240, 40, True, "HS", 1),
    BlockSpec(5, 240, 40, True, "HS", 1),
    BlockSpec(5, 120, 48, True, "HS", 1),
    BlockSpec(5, 144, 48, True, "HS", 1),
    BlockSpec(5, 288, 96, True, "HS", 2),  # 32
    BlockSpec(5, 576, 96, True, "HS", 1),
    BlockSpec(5, 576, 96, True, "HS", 1),
)
STEM_CHANNELS = 16
LAST_CONV_EXPANSION = 6  # final 1x1 conv: 6x the last block's output (960 for Large, 576 for Small)


class SqueezeExcitation(nn.Module):
    """torchvision's SE: pool -> 1x1 conv -> ReLU -> 1x1 conv -> hard-sigmoid -> scale."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.fc2(torch.relu(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * nn.functional.hardsigmoid(s)


class InvertedResidual(nn.Module):
    """Expand 1x1 -> depthwise kxk -> [SE] -> project 1x1 (linear), residual when shapes allow."""

    def __init__(self, in_channels: int, spec: BlockSpec, width_mult: float, se: bool, act: str,
                 act_kwargs: dict[str, Any]) -> None:
        super().__init__()
        expanded = make_divisible(spec.expanded * width_mult)
        out = make_divisible(spec.out * width_mult)
        act_layer = get_act_layer(act, original=spec.act, **act_kwargs)
        layers: list[nn.Module] = []
        if expanded != in_channels:
            layers.append(ConvBNAct(in_channels, expanded, 1, act_layer=act_layer))
        layers.append(ConvBNAct(expanded, expanded, spec.kernel, spec.stride, groups=expanded, act_layer=act_layer))
        if spec.se:
            # Keep the slot (Identity without SE) so module indices match torchvision's.
            layers.append(SqueezeExcitation(expanded, make_divisible(expanded // 4)) if se else nn.Identity())
        layers.append(ConvBNAct(expanded, out, 1, act_layer=None))
        self.block = nn.Sequential(*layers)
        self.use_residual = spec.stride == 1 and in_channels == out
        self.out_channels = out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.use_residual else y


class MobileNetV3(nn.Module):
    """MobileNetV3 feature extractor returning [C4, C8, C16, C32] (strides 4, 8, 16, 32)."""

    def __init__(self, specs: tuple[BlockSpec, ...], width_mult: float = 1.0, se: bool = False,
                 act: str = "dyrelu_c", act_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult must be positive, got {width_mult}")
        act_kwargs = act_kwargs or {}
        channels = make_divisible(STEM_CHANNELS * width_mult)
        layers: list[nn.Module] = [
            ConvBNAct(3, channels, 3, 2, act_layer=get_act_layer(act, original="HS", **act_kwargs))]
        strides = [2]
        for spec in specs:
            block = InvertedResidual(channels, spec, width_mult, se, act, act_kwargs)
            layers.append(block)
            channels = block.out_channels
            strides.append(strides[-1] * spec.stride)
        last = LAST_CONV_EXPANSION * channels
        layers.append(ConvBNAct(channels, last, 1, act_layer=get_act_layer(act, original="HS", **act_kwargs)))
        strides.append(strides[-1])
        self.features = nn.Sequential(*layers)
        # Tap the last layer of each output stride 4, 8, 16, 32.
        self.tap_indices = tuple(max(i for i, s in enumerate(strides) if s == stride) for stride in (4, 8, 16, 32))
        self.out_channels = tuple(_out_channels(self.features[i]) for i in self.tap_indices)
        self.strides = (4, 8, 16, 32)
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's MobileNetV3 initialisation; DyReLU's own layers keep PyTorch defaults.
        for name, m in self.named_modules():
            if isinstance(m, nn.Conv2d) and ".spatial" not in name:
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"MobileNetV3 expects images (B, 3, H, W), got {tuple(x.shape)}")
        outs = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.tap_indices:
                outs.append(x)
        return outs


def _out_channels(layer: nn.Module) -> int:
    return layer.out_channels


def mobilenet_v3_large(*, width_mult: float = 1.0, se: bool = False, act: str = "dyrelu_c",
                       act_kwargs: dict[str, Any] | None = None) -> MobileNetV3:
    """MobileNetV3-Large features; ``se=True, act="original"`` is torchvision's network."""
    return MobileNetV3(LARGE, width_mult, se, act, act_kwargs)


def mobilenet_v3_small(*, width_mult: float = 1.0, se: bool = False, act: str = "dyrelu_c",
                       act_kwargs: dict[str, Any] | None = None) -> MobileNetV3:
    """MobileNetV3-Small features; ``se=True, act="original"`` is torchvision's network."""
    return MobileNetV3(SMALL, width_mult, se, act, act_kwargs)


BACKBONES = {"mobilenet_v3_large": mobilenet_v3_large, "mobilenet_v3_small": mobilenet_v3_small}

__all__ = ["BlockSpec", "MobileNetV3", "mobilenet_v3_large", "mobilenet_v3_small", "BACKBONES", "BatchNorm2d"]
