"""PyTorch eager backend: an ``nn.Module`` (a model being trained, DDP-wrapped or compiled, or one loaded from a
checkpoint) behind the :class:`~keypoints.backends.base.Backend` interface."""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn

from ..config import Config
from .base import Backend, ModelInfo
from .registry import Runtime, register


class TorchBackend(Backend):
    """Runs ``model`` in eval mode without gradients on ``device``.

    ``amp_dtype`` (bf16/fp16, CUDA only) runs the forward under autocast; heatmaps come back as float32 either
    way. ``channels_last`` moves the model to that memory format once (crops are NHWC in memory already, as the
    crop writes them) and the input follows.
    """

    name = "torch"

    def __init__(self, model: nn.Module, info: ModelInfo, device: str | torch.device = "cpu", *,
                 amp_dtype: torch.dtype | None = None, channels_last: bool = True, move: bool = True) -> None:
        self.device = torch.device(device)
        if move:
            model = model.to(self.device)
            if channels_last:
                model = model.to(memory_format=torch.channels_last)
        self.model, self.info = model, info
        self.amp_dtype, self.channels_last = amp_dtype, channels_last

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu", cfg: Config | None = None,
                        **kwargs) -> "TorchBackend":
        """Backend of a training checkpoint (``cfg`` replaces the stored config; the weights must still fit); its
        info carries the checkpoint's dataset metadata."""
        model, info = checkpoint_model(path, cfg)
        return cls(model, info, device, **kwargs)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        if self.model.training:  # a model in training hands over to evaluation between epochs
            self.model.eval()
        x = crops.to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        autocast = torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype is not None \
            else nullcontext()
        with autocast:
            return self.model(x).float()


def checkpoint_model(path: str | Path, cfg: Config | None = None) -> tuple[nn.Module, ModelInfo]:
    """The eval-mode model of the training checkpoint at ``path`` and its :class:`ModelInfo` (``cfg`` replaces the
    stored config), for every runtime that runs a checkpoint."""
    from ..config import config_to_dict
    from ..models import model_from_checkpoint
    from ..modelfile import read_checkpoint

    checkpoint = read_checkpoint(path)
    model, cfg = model_from_checkpoint(checkpoint, cfg)
    return model, ModelInfo.from_config(cfg, config_to_dict(cfg), checkpoint.metadata)


def _load(path: Path, *, device: str | torch.device, cfg: Config | None, amp_dtype: torch.dtype | None,
          **_) -> TorchBackend:
    from ..utils.runtime import select_device

    device = device if isinstance(device, torch.device) else select_device(device)
    return TorchBackend.from_checkpoint(path, device, cfg, amp_dtype=amp_dtype)


def _wrap(model: nn.Module, info: ModelInfo, *, fused: bool = False, **_) -> TorchBackend:
    """Eager PyTorch on the CPU of a copy of ``model`` (``fused``: its inference form, keypoints.models.fused)."""
    import copy

    from ..models.fused import fuse_for_inference

    net = fuse_for_inference(model) if fused else copy.deepcopy(model).eval()
    return TorchBackend(net, info, "cpu", channels_last=True)


register(Runtime("torch", reads=("checkpoint",), default_for=("checkpoint",), load=_load, wrap=_wrap,
                 summary="PyTorch eager (CPU or CUDA); runs training checkpoints"))
