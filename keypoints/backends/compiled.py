"""Compiled PyTorch: the fused network (:func:`keypoints.models.fuse_for_inference`) through inductor, the fastest
CPU runtime of the DY-ReLU models. Two forms behind the one backend interface:

- :class:`CompiledBackend` ``(model, info)``: ``torch.compile`` in this process, inductor with freezing (weights
  become constants: the BatchNorm-free convolutions pre-packed for oneDNN with ReLU fused in, the DY-ReLU hyper
  functions and elementwise chain generated as a few fused loops per site) and the C++ wrapper. The first call
  compiles; later calls of other batch sizes reuse a dynamic-batch graph (PyTorch's automatic dynamic shapes: one
  recompile on the second distinct batch size). Frozen graphs skip inductor's FX graph cache, so every process
  compiles again (its C++ kernel cache, ``TORCHINDUCTOR_CACHE_DIR``, default ``/tmp/torchinductor_$USER``, still
  saves most of the C++ compilation).
- A deployable AOTInductor package (``.pt2``): :func:`export_compiled` writes it once (``torch.export`` and
  AOTInductor with freezing, one static graph per batch size), with the :class:`ModelInfo` in its metadata;
  :class:`AotBackend` / ``load_backend("model.pt2")`` loads it in about a second, with no compilation at all.

    backend = CompiledBackend(model, ModelInfo.from_config(cfg))        # compiles on the first call
    export_compiled(model, "model.pt2", info=ModelInfo.from_config(cfg))
    backend = load_backend("model.pt2", trust_code=True)             # AotBackend, no compile (runs its code)
    backend = load_backend("best.pth", "compiled")                     # CompiledBackend of a checkpoint

The first start compiles (about a minute for the Large DY-ReLU-C model on 2 CPU cores; its ReLU twin takes a
fraction of that) and building a ``.pt2`` takes minutes; loading one takes about a second. Measured speeds and
first-start times: docs/benchmarks.md (``python tools/benchmark.py --sections inference``).

Inputs are uint8 (or float) RGB crops in [0, 255]; they are made channels_last (the memory format the network is
compiled for) before the call. ``threads`` sets PyTorch's intra-op threads, which are process-wide.
"""
from __future__ import annotations

import copy
import json
import re
import zipfile
from pathlib import Path

import torch
from torch import nn
from torch._inductor import config as inductor_config

from ..config import Config
from ..outputs import atomic_path
from ..utils.runtime import check_threads
from .base import Backend, ModelInfo
from .registry import Runtime, register

COMPILED_SUFFIX = ".pt2"
_MODEL_DIR = re.compile(r"data/aotinductor/([^/]+)/")


def _set_threads(threads: int | None) -> None:
    if check_threads(threads) is not None:
        torch.set_num_threads(threads)


def _inference_network(model: nn.Module, fuse: bool, device: torch.device) -> nn.Module:
    """A fused (or plain) eval-mode copy of ``model`` in channels_last on ``device``; ``model`` is left as it is."""
    from ..models.fused import fuse_for_inference

    net = fuse_for_inference(model) if fuse else copy.deepcopy(model).eval()
    return net.to(device).to(memory_format=torch.channels_last)


class CompiledBackend(Backend):
    """``torch.compile`` (inductor, freezing) of the fused ``model``; ``model`` itself is not modified.

    ``fuse``: apply :func:`~keypoints.models.fuse_for_inference` first (default; False compiles the network as it
    is, for comparisons). ``max_autotune``: inductor's autotuning (longer compile, a little faster on CPU).
    ``dynamic``: ``torch.compile``'s ``dynamic`` (None: static first, dynamic batch after a second batch size).
    """

    name = "compiled"

    def __init__(self, model: nn.Module, info: ModelInfo, *, threads: int | None = None, fuse: bool = True,
                 max_autotune: bool = False, dynamic: bool | None = None, device: str | torch.device = "cpu") -> None:
        _set_threads(threads)
        self.device, self.info = torch.device(device), info
        self.network = _inference_network(model, fuse, self.device)
        self.model = torch.compile(self.network, options={"max_autotune": bool(max_autotune)}, dynamic=dynamic)
        self.fused, self.max_autotune = fuse, max_autotune

    @classmethod
    def from_checkpoint(cls, path: str | Path, cfg: Config | None = None, **kwargs) -> "CompiledBackend":
        """Backend of a training checkpoint (``cfg`` replaces the stored config; the weights must still fit); its
        info carries the checkpoint's dataset metadata."""
        from .pytorch import checkpoint_model

        model, info = checkpoint_model(path, cfg)
        return cls(model, info, **kwargs)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        x = crops.to(self.device).contiguous(memory_format=torch.channels_last)
        # Inductor reads these when a call compiles (the first one, a new batch size), so they are set around each
        # call: freezing passed in torch.compile's options is not applied (torch 2.14: the convolutions stayed
        # unpacked aten calls, 1.5x slower at batch 1), and setting them process-wide would change other compiles.
        # cpp_wrapper: the graph's kernel calls in C++ instead of Python (~0.8 ms less per batch-1 call of the
        # Large models, +10 s compile).
        with inductor_config.patch(freezing=True, cpp_wrapper=True):
            return self.model(x).float()

    def describe(self) -> dict:
        return {**super().describe(), "fused": self.fused, "max_autotune": self.max_autotune}


def export_compiled(model: nn.Module, path: str | Path, *, info: ModelInfo, batch_sizes: tuple[int, ...] = (1, 8),
                    fuse: bool = True, max_autotune: bool = False) -> Path:
    """Write an AOTInductor package of the fused ``model`` (CPU, float32) to ``path`` (``.pt2``): one compiled graph
    per batch size in ``batch_sizes`` (static shapes, each specialised by inductor), ``info`` in the metadata.
    :class:`AotBackend` runs any batch with them (see :func:`plan_batches`). Compiling takes minutes per batch size
    for the Large model on 2 cores; loading the package takes about a second. A failed compile leaves no file."""
    from torch._inductor.package import package_aoti

    path = Path(path)
    if path.suffix != COMPILED_SUFFIX:
        raise ValueError(f"an AOTInductor package must be named *{COMPILED_SUFFIX}, got {path}")
    sizes = sorted({int(b) for b in batch_sizes})
    if not sizes or sizes[0] < 1:
        raise ValueError(f"batch_sizes must be positive integers, got {tuple(batch_sizes)}")
    width, height = info.input_size
    net = _inference_network(model, fuse, torch.device("cpu"))
    meta = {**info.to_metadata(), "batch_sizes": json.dumps(sizes), "fused": str(bool(fuse)),
            "input": "RGB crops (B, 3, H, W) float32 in [0, 255], channels_last; heatmaps (B, K, H/4, W/4) float32"}
    configs = {"freezing": True, "max_autotune": bool(max_autotune), "aot_inductor.metadata": meta,
               "aot_inductor.package": True}
    with atomic_path(path) as tmp:
        files = {}
        with torch.no_grad():
            for n in sizes:
                # float32 input: uint8 crops convert exactly, float ones pass unchanged
                example = (torch.randint(0, 256, (n, 3, height, width)).float().contiguous(
                    memory_format=torch.channels_last),)
                program = torch.export.export(net, example)
                files[f"batch{n}"] = torch._inductor.aot_compile(program.module(), example, options=dict(configs))
        package_aoti(str(tmp), files)
    return path


def plan_batches(n: int, sizes: tuple[int, ...]) -> list[tuple[int, int]]:
    """(crops, compiled batch size) chunks that run ``n`` crops with graphs of ``sizes`` (sorted, 1 included or
    not): the largest size while it fits, then for the rest the smallest size that holds it when that wastes at
    most half of it (padding), else the largest size that fits."""
    plan, left = [], n
    while left > 0:
        fits = [s for s in sizes if s <= left]
        holds = [s for s in sizes if s >= left]
        if holds and (not fits or holds[0] <= 2 * left):
            plan.append((left, holds[0]))
            break
        plan.append((fits[-1], fits[-1]))
        left -= fits[-1]
    return plan


class AotBackend(Backend):
    """Runs an AOTInductor package written by :func:`export_compiled` (no compilation at load time)."""

    name = "compiled"

    def __init__(self, path: str | Path, *, threads: int | None = None) -> None:
        from torch._inductor.package import load_package

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"compiled model not found: {path}; write one with "
                                    f"keypoints.backends.compiled.export_compiled (tools/export.py)")
        _set_threads(threads)
        try:
            with zipfile.ZipFile(path) as archive:
                names = {m.group(1) for m in map(_MODEL_DIR.search, archive.namelist()) if m}
            self.graphs = {int(name[len("batch"):]): load_package(str(path), model_name=name)
                           for name in sorted(names) if name[len("batch"):].isdigit()}
            if not self.graphs:
                raise ValueError("no batchN graphs in the package")
        except Exception as e:  # noqa: BLE001 - the loader raises RuntimeError/zipfile errors for foreign files
            raise ValueError(f"cannot load {path} as an AOTInductor package ({str(e).splitlines()[0][:160]}); "
                             f"write it again with export_compiled of this PyTorch version") from None
        self.sizes = tuple(sorted(self.graphs))
        self.path, self.metadata = path, dict(self.graphs[self.sizes[-1]].get_metadata())
        self.info = ModelInfo.from_metadata(self.metadata, str(path))
        self.device = torch.device("cpu")

    def __repr__(self) -> str:
        return f"AotBackend({self.path.name}, batch sizes {self.sizes})"

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        x = crops.to(torch.float32).contiguous(memory_format=torch.channels_last)
        outs, start = [], 0
        for count, size in plan_batches(x.shape[0], self.sizes):
            chunk = x[start:start + count]
            if size > count:  # pad with copies of the last crop; their heatmaps are dropped
                chunk = torch.cat([chunk, chunk[-1:].expand(size - count, -1, -1, -1)]).contiguous(
                    memory_format=torch.channels_last)
            outs.append(self.graphs[size](chunk)[:count])
            start += count
        return (outs[0] if len(outs) == 1 else torch.cat(outs)).float()


def _load(path: Path, *, kind: str, device: str | torch.device, threads: int | None, cfg: Config | None,
          **_) -> Backend:
    if kind == "aoti":  # a package loads without compiling; a checkpoint compiles on its first call
        return AotBackend(path, threads=threads)
    from ..utils.runtime import select_device

    device = device if isinstance(device, torch.device) else select_device(device)
    return CompiledBackend.from_checkpoint(path, cfg, threads=threads, device=device)


def _export(model: nn.Module, path: str | Path, *, info: ModelInfo, batch: str | int = "dynamic", **_) -> Path:
    """tools/export.py's call: ``batch`` "dynamic" compiles graphs for batch sizes 1 and 8, a number for that
    size only."""
    return export_compiled(model, path, info=info, batch_sizes=(1, 8) if batch == "dynamic" else (int(batch),))


register(Runtime("compiled", reads=("checkpoint", "aoti"), default_for=("aoti",), load=_load,
                 wrap=lambda model, info, *, threads=None, **_: CompiledBackend(model, info, threads=threads),
                 export=_export, writes="aoti",
                 summary="torch.compile of the fused network (a checkpoint compiles at start), or a .pt2 package "
                         "(compiled once by tools/export.py; loading runs its native code: --trust-code)"))
