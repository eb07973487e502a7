"""OpenVINO (optional: ``pip install openvino`` or the ``openvino`` extra): runs the ONNX file written by
:func:`keypoints.backends.onnx.export_onnx` (read directly, no conversion step), on the CPU.

OpenVINO fuses elementwise chains that ONNX Runtime runs one operator at a time, so the DY-ReLU models run faster
here than in ONNX Runtime from the same file (numbers in docs/benchmarks.md). ``precision="f32"`` (the
default) keeps float32 math (heatmaps within ~1e-5 of PyTorch); ``"bf16"`` lets a CPU with bf16 units trade
accuracy for speed (check the AP before using it).

    backend = OpenVinoBackend("model.onnx", threads=2)     # or load_backend("model.onnx", "openvino")
"""
from __future__ import annotations

import contextlib
import ctypes
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..utils.runtime import check_threads
from .base import Backend, ModelInfo, run_fixed_batch
from .onnx import export_onnx
from .registry import Runtime, register

PRECISIONS = ("f32", "bf16")


class _SignalStack(ctypes.Structure):
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


@contextlib.contextmanager
def _keep_signal_stack() -> Iterator[None]:
    """Give the calling thread its own alternate signal stack back after the block (Linux).

    OpenVINO's CPU plugin installs a signal stack of its own on the thread that compiles a model and puts the
    previous one back when its Core is destroyed. With two Cores destroyed in the order they were made (two
    backends, a benchmark over several models), the thread is left with the freed stack of the first one, and the
    next signal Python handles there (Ctrl-C, SIGTERM, or SIGCHLD once a DataLoader has set a handler) kills the
    process with SIGSEGV. Python installs its handlers with SA_ONSTACK, so they need a live stack or none.
    """
    if not sys.platform.startswith("linux"):
        yield
        return
    libc = ctypes.CDLL(None, use_errno=True)
    saved = _SignalStack()
    if libc.sigaltstack(None, ctypes.byref(saved)) != 0:
        yield
        return
    try:
        yield
    finally:
        libc.sigaltstack(ctypes.byref(saved), None)


class OpenVinoBackend(Backend):
    """OpenVINO CPU inference of an exported ONNX file; ``threads``: inference threads (default: OpenVINO's)."""

    name = "openvino"

    def __init__(self, path: str | Path, *, threads: int | None = None, precision: str = "f32") -> None:
        try:
            import openvino as ov
        except ImportError:
            raise ValueError("the openvino backend needs the openvino package: pip install openvino "
                             "(or pip install -e .[openvino])") from None
        import onnx

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {path}; write one with tools/export.py")
        if precision not in PRECISIONS:
            raise ValueError(f"precision={precision!r} is not valid; choose one of {', '.join(PRECISIONS)}")
        self.ov_config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
        if check_threads(threads) is not None:
            self.ov_config["INFERENCE_NUM_THREADS"] = threads
        try:
            meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
            self.core = ov.Core()
            self.model = self.core.read_model(str(path))
        except Exception as e:  # noqa: BLE001 - onnx and OpenVINO raise their own exception types for invalid files
            raise ValueError(f"cannot load {path} with OpenVINO ({str(e).splitlines()[0][:160]}); "
                             f"export it again with tools/export.py") from None
        self.info = ModelInfo.from_metadata(meta, str(path))
        self.requests: dict[int, object] = {}
        first = self.model.inputs[0].get_partial_shape()[0]
        self.batch = None if first.is_dynamic else first.get_length()  # None: dynamic (compiled per batch size)
        self.input_dtype = np.uint8 if meta.get("input_dtype") == "uint8" else np.float32
        self.path, self.precision, self.threads = path, precision, threads
        self.device = torch.device("cpu")

    def _request(self, batch: int):
        """An inference request of the model compiled for ``batch`` crops. Static shapes: with the file's dynamic
        batch, OpenVINO ran the DY-ReLU-C model about 2x slower (shape-dependent reshapes resolved at every call);
        compiling a batch size takes a second or two, once."""
        if batch not in self.requests:
            model = self.model.clone()
            width, height = self.info.input_size
            if self.batch is None:
                model.reshape([batch, 3, height, width])
            with _keep_signal_stack():
                compiled = self.core.compile_model(model, "CPU", self.ov_config)
            self.requests[batch] = compiled.create_infer_request()
        return self.requests[batch]

    def __repr__(self) -> str:
        return f"OpenVinoBackend({self.path.name}, {self.precision}, threads={self.threads or 'default'})"

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        images = np.ascontiguousarray(crops.detach().cpu().numpy(), dtype=self.input_dtype)
        out = run_fixed_batch(images, self.batch, lambda x: np.array(self._request(x.shape[0]).infer({0: x})[0],
                                                                     dtype=np.float32, copy=True), self.path.name)
        return torch.from_numpy(out)


register(Runtime("openvino", reads=("onnx",), requires=("openvino", "onnx"),
                 install="pip install openvino onnx (or pip install -e .[openvino])",
                 load=lambda path, *, threads=None, **_: OpenVinoBackend(path, threads=threads),
                 wrap=lambda model, info, *, threads=None, exported, **_: OpenVinoBackend(exported("onnx"),
                                                                                          threads=threads),
                 export=export_onnx, writes="onnx",
                 summary="OpenVINO on the CPU; runs the same .onnx files (optional package)"))
