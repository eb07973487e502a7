"""Fine-tuning: start a model for one dataset from a checkpoint trained on another (``tools/train.py --init-from``).

    source = read_checkpoint("outputs/coco/best.pth")
    report = init_from_checkpoint(model, source, target_metadata, source_name="outputs/coco/best.pth")
    report.summary()   # "backbone and head: 312 tensors; heatmaps: 3 copied by name, 2 new (beak, tail)"

Every tensor except the final heatmap layer (``head.final``: one output channel per keypoint) is copied and must
have the same shape: the model config's architecture (backbone, width, activations, head) must be the source's.
The heatmap layer's rows are matched by keypoint name: a keypoint of the new dataset whose name the source has gets
the source's row (weights and bias), the others keep their fresh initialisation. Optimiser, scheduler and epoch are
not carried (that is ``--resume``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .metadata import DatasetMeta
from .modelfile import Checkpoint, load_weights

__all__ = ["init_from_checkpoint", "TransferReport", "HEATMAP_KEYS"]

HEATMAP_KEYS = ("head.final.weight", "head.final.bias")  # the layer with one output channel per keypoint


@dataclass
class TransferReport:
    """What :func:`init_from_checkpoint` copied: tensors outside the heatmap layer, and the heatmap keypoints
    copied by name (``(new index, source index, name)``) or left new (names)."""

    tensors: int
    copied: list[tuple[int, int, str]] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # source keypoints the new dataset does not have

    def summary(self) -> str:
        new = f" ({', '.join(self.new)})" if self.new else ""
        return (f"backbone and head: {self.tensors} tensors copied; heatmaps: {len(self.copied)} keypoints copied "
                f"by name, {len(self.new)} new{new}, {len(self.dropped)} of the source not used")

    def to_dict(self) -> dict:
        return {"tensors": self.tensors, "copied": [name for _, _, name in self.copied], "new": self.new,
                "dropped": self.dropped}


def _model_differences(source: dict, target: dict) -> list[str]:
    keys = sorted((set(source) | set(target)) - {"num_keypoints", "pretrained"})
    return [f"model.{k} {source.get(k)!r} vs {target.get(k)!r}" for k in keys if source.get(k) != target.get(k)]


@torch.no_grad()
def init_from_checkpoint(model: nn.Module, source: Checkpoint, metadata: DatasetMeta, *, source_name: str,
                         target_model_config: dict | None = None) -> TransferReport:
    """Copy ``source``'s weights into ``model`` (built for the keypoints of ``metadata``) as the module docstring
    says; a one-line ``ValueError`` naming ``source_name`` when the architectures differ (with the differing
    ``model.*`` keys when ``target_model_config``, the new run's ``config["model"]``, is given)."""
    own = model.state_dict()
    missing = [k for k in HEATMAP_KEYS if k not in own or k not in source.weights]
    if missing:
        raise ValueError(f"--init-from {source_name}: no heatmap layer {missing[0]} in the model or the checkpoint")
    differences = _model_differences(source.config.get("model", {}), target_model_config or {})
    hint = ("the new run must use the source's architecture: " + "; ".join(differences[:4])) if differences else \
        "the new run must use the source's model section (copy it from the source's config.yaml)"
    body = {k: v for k, v in source.weights.items() if k not in HEATMAP_KEYS}
    report = load_weights(model, body, f"--init-from {source_name}", keep=lambda k: k in HEATMAP_KEYS, hint=hint)
    source_names = list(source.metadata.keypoint_names)
    weight, bias = own[HEATMAP_KEYS[0]], own[HEATMAP_KEYS[1]]
    src_weight, src_bias = source.weights[HEATMAP_KEYS[0]], source.weights[HEATMAP_KEYS[1]]
    if tuple(src_weight.shape[1:]) != tuple(weight.shape[1:]):
        raise ValueError(f"--init-from {source_name}: heatmap layer input {tuple(src_weight.shape[1:])} vs "
                         f"{tuple(weight.shape[1:])}; {hint}")
    out = TransferReport(tensors=len(report.loaded))
    for i, name in enumerate(metadata.keypoint_names):
        if name in source_names:
            j = source_names.index(name)
            weight[i].copy_(src_weight[j])
            bias[i].copy_(src_bias[j])
            out.copied.append((i, j, name))
        else:
            out.new.append(name)
    out.dropped = [n for n in source_names if n not in metadata.keypoint_names]
    model.load_state_dict({HEATMAP_KEYS[0]: weight, HEATMAP_KEYS[1]: bias}, strict=False)
    return out
