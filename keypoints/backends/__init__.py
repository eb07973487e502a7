"""Backends: one small interface in front of every runtime of the pose network.

    backend = load_backend("outputs/run/best.pth")        # PyTorch (device auto: CUDA when available)
    backend = load_backend("model.onnx")                  # ONNX Runtime (file written by tools/export.py)
    heatmaps = backend(crops)        # uint8 RGB crops (N, 3, H, W) -> float32 heatmaps (N, K, H/4, W/4)
    backend.info                     # ModelInfo: input/heatmap size, flip index, normalisation, config
    backend.config                   # the resolved training config

Everything at test time (:mod:`keypoints.inference`: crop, flip test, decode; :mod:`keypoints.postprocess`:
rescoring, OKS-NMS) works on any backend, so ``tools/test.py`` scores an exported file exactly as a checkpoint.
The backend is chosen by the file (``.onnx``: onnxruntime; anything else: a torch checkpoint) unless named.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..config import Config
from .base import CONFIG_KEY, Backend, ModelInfo
from .pytorch import TorchBackend

BACKENDS = ("auto", "torch", "compiled", "onnxruntime", "openvino")


def backend_for(path: str | Path) -> str:
    """The backend a model file needs, from its suffix (``.onnx``, ``.pt2``: an AOTInductor package, else torch)."""
    suffix = Path(path).suffix.lower()
    return {".onnx": "onnxruntime", ".pt2": "compiled"}.get(suffix, "torch")


def load_backend(path: str | Path, backend: str = "auto", *, device: str | torch.device = "auto",
                 threads: int | None = None, cfg: Config | None = None, onnx_path: str | Path | None = None,
                 amp_dtype: torch.dtype | None = None) -> Backend:
    """The one loader of model files: a training checkpoint (``.pth``) or an exported model (``.onnx``).

    ``backend``: auto (by the file's suffix) | torch | compiled (the fused network through inductor: a checkpoint is
    compiled on the first call, a ``.pt2`` package written by :func:`~keypoints.backends.compiled.export_compiled`
    loads without compiling) | onnxruntime | openvino (optional package; runs the same ONNX file). ``device``:
    auto | cpu | cuda (torch);
    ``threads``: ONNX Runtime intra-op threads (default: every core); ``cfg`` replaces a checkpoint's stored config
    (torch; the weights must still fit); ``amp_dtype`` runs a torch model under autocast (CUDA). ``backend="onnxruntime"`` with a checkpoint runs ``onnx_path`` (default:
    the checkpoint's name with ``.onnx``), so both files of one model can be named by the checkpoint.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not valid; choose one of {', '.join(BACKENDS)}")
    path = Path(path)
    kind = backend_for(path)
    backend = kind if backend == "auto" else backend
    if backend == "compiled":  # a .pt2 package loads without compiling; a checkpoint compiles on its first call
        from .compiled import AotBackend, CompiledBackend

        if kind == "compiled":
            return AotBackend(path, threads=threads)
        if kind == "onnxruntime":
            raise ValueError(f"{path} is an ONNX model; use backend 'onnxruntime' (or auto), or the .pth checkpoint")
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        from ..utils.runtime import select_device

        device = device if isinstance(device, torch.device) else select_device(device)
        return CompiledBackend.from_checkpoint(path, cfg, threads=threads, device=device)
    if kind == "compiled":
        raise ValueError(f"{path} is an AOTInductor package; use backend 'compiled' (or auto)")
    if backend == "torch":
        if kind == "onnxruntime":
            raise ValueError(f"{path} is an ONNX model; use backend 'onnxruntime' (or auto) or pass the .pth checkpoint")
        from ..utils.runtime import select_device

        device = device if isinstance(device, torch.device) else select_device(device)
        return TorchBackend.from_checkpoint(path, device, cfg, amp_dtype=amp_dtype)
    from .onnx import OnnxBackend

    if kind != "onnxruntime":
        onnx_file = Path(onnx_path) if onnx_path is not None else path.with_suffix(".onnx")
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        if not onnx_file.is_file():
            raise FileNotFoundError(f"ONNX model not found: {onnx_file}; export it first: python tools/export.py "
                                    f"--checkpoint {path} --output {onnx_file}")
        path = onnx_file
    if backend == "openvino":  # optional runtime, same ONNX file
        from .openvino import OpenVinoBackend

        return OpenVinoBackend(path, threads=threads)
    return OnnxBackend(path, threads=threads)


__all__ = ["Backend", "ModelInfo", "TorchBackend", "load_backend", "backend_for", "BACKENDS", "CONFIG_KEY"]
