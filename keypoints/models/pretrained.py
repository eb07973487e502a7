"""Load torchvision ImageNet weights into the MobileNetV3 backbone, never downloading.

``model.pretrained`` is ``none``, ``torchvision`` (a file already in the torch hub cache,
``$TORCH_HOME/hub/checkpoints/``) or a path to a state dict saved from
``torchvision.models.mobilenet_v3_{large,small}()`` (keys ``features.*`` and ``classifier.*``).

Rules: classifier keys and SE keys (when the backbone has SE removed) are skipped
and reported; the parameters of DY-ReLU activations, which torchvision has no
counterpart for, keep their initialisation and are reported; any other missing
or unexpected key, or any shape mismatch, is an error.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..modelfile import load_weights, read_state_dict, strip_prefixes
from .dyrelu import DyReLU

# Published ImageNet weights (torchvision's IMAGENET1K_V1 first, then V2) by their cache file names.
TORCHVISION_FILES = {
    "mobilenet_v3_large": ("mobilenet_v3_large-8738ca79.pth", "mobilenet_v3_large-5c1a4163.pth"),
    "mobilenet_v3_small": ("mobilenet_v3_small-047dcff4.pth",),
}


@dataclass
class LoadReport:
    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # in the checkpoint, not used (classifier, SE)
    initialized: list[str] = field(default_factory=list)  # in the model, kept at init (DY-ReLU parameters)

    def summary(self) -> str:
        return (f"loaded {len(self.loaded)} tensors; skipped {len(self.skipped)} checkpoint keys "
                f"(classifier/SE); kept {len(self.initialized)} DY-ReLU tensors at their initialisation")


def resolve_pretrained(spec: str, backbone: str) -> Path:
    """Path of the weights file named by ``spec`` (``torchvision`` or a path)."""
    if spec == "torchvision":
        if backbone not in TORCHVISION_FILES:
            raise ValueError(f"no torchvision weights known for backbone {backbone!r}")
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        for name in TORCHVISION_FILES[backbone]:
            if (cache / name).is_file():
                return cache / name
        raise FileNotFoundError(
            f"model.pretrained=torchvision: {TORCHVISION_FILES[backbone][0]} is not in {cache}; copy the file there "
            f"(from a machine with internet: torchvision.models.{backbone}(weights='IMAGENET1K_V1')) "
            f"or set model.pretrained to its path")
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"model.pretrained: weights file not found: {path}")
    return path


def _dyrelu_prefixes(module: nn.Module) -> tuple[str, ...]:
    return tuple(name + "." for name, m in module.named_modules() if isinstance(m, DyReLU))


def load_backbone_weights(backbone: nn.Module, state_dict: dict[str, torch.Tensor],
                          source: str = "pretrained weights") -> LoadReport:
    """Copy torchvision ``features.*`` tensors into ``backbone`` (a MobileNetV3); strict except as documented."""
    state_dict = strip_prefixes(state_dict, ("module.", "backbone."))
    act_prefixes = _dyrelu_prefixes(backbone)
    report = load_weights(backbone, state_dict, source,
                          skip=lambda k: k.startswith("classifier.") or ".fc1." in k or ".fc2." in k,
                          keep=lambda k: k.startswith(act_prefixes),
                          hint="check model.backbone and model.width_mult against the weights file")
    return LoadReport(loaded=report.loaded, skipped=report.skipped, initialized=report.kept)


def load_pretrained_backbone(backbone: nn.Module, spec: str, backbone_name: str) -> LoadReport:
    path = resolve_pretrained(spec, backbone_name)
    return load_backbone_weights(backbone, read_state_dict(path, "model.pretrained weights file"),
                                 f"model.pretrained {path}")
