"""Backends: one small interface in front of every runtime of the pose network.

    backend = load_backend("outputs/run/best.pth")        # a checkpoint: PyTorch (device auto: CUDA when available)
    backend = load_backend("model.onnx")                  # an ONNX export: ONNX Runtime
    backend = load_backend("model.onnx", "openvino")      # the same file in OpenVINO
    backend = load_backend("model.pt2", trust_code=True)  # a compiled AOTInductor package (runs its native code)
    heatmaps = backend(crops)        # uint8 RGB crops (N, 3, H, W) -> float32 heatmaps (N, K, H/4, W/4)
    backend.info                     # ModelInfo: input/heatmap size, flip index, normalisation, config, metadata
    backend.config                   # the resolved training config

Everything at test time (:mod:`keypoints.inference`: crop, flip test, decode; :mod:`keypoints.postprocess`:
rescoring, OKS-NMS) works on any backend, so ``tools/test.py`` scores an exported file exactly as a checkpoint.
Files are known by their content (:func:`keypoints.modelfile.identify`); runtimes are looked up in
:mod:`keypoints.backends.registry`, filled by the modules of this package, each registering itself when imported
(every module here is imported with the package: a new runtime is one new module).
"""
from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import torch

from ..config import Config
from ..modelfile import KINDS, check_suffix, describe_kind, identify, require_trust
from .base import CONFIG_KEY, Backend, ModelInfo
from .pytorch import TorchBackend
from .registry import (RUNTIMES, Runtime, default_runtime, exporter_for, get_runtime, register, runtime_names,
                       runtimes_reading)

for _module in pkgutil.iter_modules(__path__):  # each runtime module registers itself
    importlib.import_module(f"{__name__}.{_module.name}")

BACKENDS = ("auto", *runtime_names())  # the choices of the tools' --backend


def load_backend(path: str | Path, backend: str = "auto", *, trust_code: bool = False,
                 device: str | torch.device = "auto", threads: int | None = None, cfg: Config | None = None,
                 amp_dtype: torch.dtype | None = None) -> Backend:
    """The one loader of model files: a training checkpoint, an ONNX export or an AOTInductor package.

    ``backend``: ``auto`` (the default runtime of the file's kind: torch for checkpoints, onnxruntime for ONNX,
    compiled for ``.pt2`` packages) or a runtime name (:func:`~keypoints.backends.registry.runtime_names`), which
    must read that kind (the compiled runtime also compiles a checkpoint in this process; openvino runs the ONNX
    file). ``trust_code``: required for kinds whose loading runs code from the file (AOTInductor packages).
    ``device``: auto | cpu | cuda (torch runtimes); ``threads``: CPU threads of the runtime; ``cfg`` replaces a
    checkpoint's stored config (the weights must still fit; other kinds ignore it); ``amp_dtype`` runs a torch
    model under autocast (CUDA). Every refusal is a one-line ``ValueError`` / ``FileNotFoundError``.
    """
    if backend != "auto" and backend not in RUNTIMES:
        raise ValueError(f"backend={backend!r} is not valid; choose one of {', '.join(BACKENDS)}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive integer (or None: every core), got {threads!r}")
    path = Path(path)
    kind = identify(path)
    check_suffix(path, kind)
    runtime = default_runtime(kind) if backend == "auto" else get_runtime(backend)
    if kind not in runtime.reads:
        hint = f"use --backend {' or '.join(runtimes_reading(kind))}"
        if kind == "checkpoint" and runtime.writes is not None:
            hint = (f"export it first (python tools/export.py --checkpoint {path} --output "
                    f"model{KINDS[runtime.writes].suffixes[0]}) or {hint}")
        raise ValueError(f"the {runtime.name} runtime runs {' or '.join(describe_kind(k) for k in runtime.reads)}, "
                         f"but {path} is {describe_kind(kind)}: {hint}")
    require_trust(path, kind, trust_code)
    runtime.check_available()
    return runtime.load(path, kind=kind, device=device, threads=threads, cfg=cfg, amp_dtype=amp_dtype)


__all__ = ["Backend", "ModelInfo", "TorchBackend", "load_backend", "BACKENDS", "CONFIG_KEY", "Runtime", "register",
           "get_runtime", "runtime_names", "default_runtime", "runtimes_reading", "exporter_for", "RUNTIMES"]
