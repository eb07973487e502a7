"""Building blocks shared by backbone and heads, and the one activation lookup.

``get_act_layer(name)`` turns one config word into an activation factory
``channels -> nn.Module``, so "replace every ReLU/h-swish with DY-ReLU-C" is the
single word ``dyrelu_c`` (timm's ``get_act_layer`` idea; DY-ReLU needs the
channel count, hence a factory rather than a class).
"""
from __future__ import annotations

from functools import partial
from typing import Any, Callable

from torch import nn

from .dyrelu import DyReLU

ActFactory = Callable[[int], nn.Module]

ACTIVATIONS = ("relu", "hardswish", "dyrelu_a", "dyrelu_b", "dyrelu_c", "original")
# The paper table's activation codes, used when the activation is "original".
PAPER_ACTS = {"RE": "relu", "HS": "hardswish"}


def _relu(channels: int) -> nn.Module:
    return nn.ReLU(inplace=True)


def _hardswish(channels: int) -> nn.Module:
    return nn.Hardswish(inplace=True)


def get_act_layer(name: str, original: str = "relu", **dyrelu_kwargs: Any) -> ActFactory:
    """Activation factory for ``name``; ``original`` is what "original" resolves to (RE/HS of the paper table).

    ``dyrelu_kwargs`` are passed to :class:`DyReLU` (reduction, k, lambda_a, ...) and ignored otherwise.
    """
    if name == "original":
        name = PAPER_ACTS.get(original, original)
    if name == "relu":
        return _relu
    if name == "hardswish":
        return _hardswish
    if name in ("dyrelu_a", "dyrelu_b", "dyrelu_c"):
        return partial(DyReLU, variant=name[-1].upper(), **dyrelu_kwargs)
    raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to a multiple of ``divisor`` without going more than 10% below it (MobileNet rule)."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


# BatchNorm as torchvision's MobileNetV3 (eps 0.001, momentum 0.01).
BatchNorm2d = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm -> activation; children named 0, 1, 2 as torchvision's Conv2dNormActivation."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, groups: int = 1,
                 act_layer: ActFactory | None = _relu, norm_layer: Callable[[int], nn.Module] = BatchNorm2d) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2, groups=groups,
                      bias=False),
            norm_layer(out_channels),
        ]
        if act_layer is not None:
            layers.append(act_layer(out_channels))
        super().__init__(*layers)
        self.out_channels = out_channels
