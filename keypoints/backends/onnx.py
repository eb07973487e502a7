"""ONNX: export of the pose network (with its :class:`~keypoints.backends.base.ModelInfo` in the file's metadata)
and the ONNX Runtime backend that runs it.

The graph holds the network only: input ``images`` ``(B, 3, H, W)`` RGB crops in [0, 255] (float32 by default,
or uint8), output ``heatmaps`` ``(B, K, H/4, W/4)`` float32. ImageNet normalisation is inside (it is the model's
first step). Cropping, the flip test, decoding and back-projection (:mod:`keypoints.inference`) and rescoring and
NMS (:mod:`keypoints.postprocess`) stay outside the graph and are shared with every other backend. DY-ReLU exports
its reference graph (standard operators only; see :mod:`keypoints.models.dyrelu_ops`).

    export_onnx(model, "model.onnx", info=ModelInfo.from_config(cfg), batch="dynamic")
    backend = OnnxBackend("model.onnx")              # info read back from the metadata
    heatmaps = backend(crops)                         # (B, 3, 256, 192) uint8 -> (B, 17, 64, 48) float32
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..outputs import atomic_path
from ..utils.runtime import check_threads
from .base import Backend, ModelInfo, run_fixed_batch
from .registry import Runtime, register

INPUT_DTYPES = {"float32": torch.float32, "uint8": torch.uint8}
OPSETS = (13, 20)  # ONNX opsets the exported graph is valid in (13: ReduceSum with axes as an input)


def export_onnx(model: nn.Module, path: str | Path, *, info: ModelInfo, batch: str | int = "dynamic",
                opset: int = 17, input_dtype: str = "float32", dynamo: bool = False, fuse: bool = True) -> Path:
    """Write ``model`` (eval mode, CPU) to ``path`` with ``info`` in its metadata. ``batch`` is ``"dynamic"`` or a
    fixed batch size. ``fuse`` exports the inference form (:func:`keypoints.models.fuse_for_inference`: BatchNorm
    folded, DY-ReLU rewritten into fewer passes; a copy, ``model`` is not modified); the same function up to float
    rounding, still standard operators only. The TorchScript-based exporter (``dynamo=False``) is the default: it
    takes seconds where the dynamo exporter takes about a minute on 2 cores, and gives the same operators. The
    written file is checked (``onnx.checker``) before it replaces ``path`` atomically; a failed export or check leaves
    ``path`` as it was."""
    import onnx

    if input_dtype not in INPUT_DTYPES:
        raise ValueError(f"input_dtype={input_dtype!r} is not valid; choose one of {', '.join(INPUT_DTYPES)}")
    dynamic = batch == "dynamic"
    if not dynamic and (not str(batch).isdigit() or int(batch) < 1):
        raise ValueError(f"batch must be 'dynamic' or a positive integer, got {batch!r}")
    width, height = info.input_size
    n = 2 if dynamic else int(batch)
    dummy = torch.randint(0, 256, (n, 3, height, width), dtype=torch.uint8).to(INPUT_DTYPES[input_dtype])
    if isinstance(opset, bool) or not isinstance(opset, int) or not OPSETS[0] <= opset <= OPSETS[-1]:
        raise ValueError(f"opset {opset!r} is not supported; choose an ONNX opset from {OPSETS[0]} to {OPSETS[-1]} "
                         f"(default 17)")
    path = Path(path)
    if fuse:
        from ..models.fused import fuse_for_inference

        model = fuse_for_inference(model)
    model = model.eval().cpu()
    kwargs = dict(input_names=["images"], output_names=["heatmaps"], opset_version=opset, dynamo=dynamo)
    if dynamic:
        if dynamo:
            kwargs["dynamic_shapes"] = {"images": {0: torch.export.Dim("batch", min=1, max=1024)}}
        else:
            kwargs["dynamic_axes"] = {"images": {0: "batch"}, "heatmaps": {0: "batch"}}
    with atomic_path(path) as tmp:
        with warnings.catch_warnings(), torch.no_grad():
            # The legacy exporter's deprecation notice and the tracer's notes on shape checks (constant at a fixed
            # input size) say nothing actionable here.
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (dummy,), str(tmp), **kwargs)
        proto = onnx.load(str(tmp))
        meta = {**info.to_metadata(), "input_dtype": input_dtype,
                "outputs": "heatmaps (B, K, H/4, W/4); crop, flip and decode outside the graph (keypoints.inference)"}
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
    return path


class OnnxBackend(Backend):
    """ONNX Runtime inference of a file written by :func:`export_onnx` (CPU provider by default).

    ``threads`` sets ORT's intra-op threads (default: every core). ``spinning=False`` (the default here, not ORT's)
    lets those threads sleep as soon as a run ends instead of busy-waiting for the next one: the post-processing,
    video decoding and drawing between runs then get the cores (on 2 cores that made the demo loop 1.5x faster
    for the ReLU model, for a few percent of pure network latency). A graph exported with a fixed batch runs larger
    batches in chunks of that size. ``profile_prefix`` turns on ORT's per-node profiling (:meth:`end_profiling`).
    """

    name = "onnxruntime"

    def __init__(self, path: str | Path, threads: int | None = None, providers: list[str] | None = None,
                 profile_prefix: str | None = None, spinning: bool = False) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {path}; write one with tools/export.py")
        options = ort.SessionOptions()
        options.intra_op_num_threads = check_threads(threads) or os.cpu_count() or 1  # 0 is refused, not 'all'
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        if profile_prefix:
            options.enable_profiling = True
            options.profile_file_prefix = profile_prefix
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - ORT raises its own exception types for invalid files
            raise ValueError(f"cannot load {path} with ONNX Runtime ({str(e).splitlines()[0][:160]}); "
                             f"export it again with tools/export.py") from None
        first = self.session.get_inputs()[0]
        self.path, self.input_name = path, first.name
        self.input_dtype = np.uint8 if first.type == "tensor(uint8)" else np.float32
        self.batch = first.shape[0] if isinstance(first.shape[0], int) else None  # None: dynamic
        self.threads = options.intra_op_num_threads
        self.metadata = self.session.get_modelmeta().custom_metadata_map
        self.info = ModelInfo.from_metadata(self.metadata, str(path))
        self.device = torch.device("cpu")

    def __repr__(self) -> str:
        return (f"OnnxBackend({self.path.name}, input {np.dtype(self.input_dtype).name}, "
                f"batch {self.batch or 'dynamic'}, {self.threads} threads)")

    def run_numpy(self, images: np.ndarray) -> np.ndarray:
        """Crops ``(B, 3, H, W)`` (any numeric dtype, values in [0, 255]) -> heatmaps ``(B, K, h, w)`` float32."""
        images = np.ascontiguousarray(images, dtype=self.input_dtype)
        return run_fixed_batch(images, self.batch, lambda x: self.session.run(None, {self.input_name: x})[0],
                               self.path.name)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.run_numpy(crops.detach().cpu().numpy()))

    def end_profiling(self) -> str:
        """Stop profiling; returns the path of ORT's JSON trace (one event per node run)."""
        return self.session.end_profiling()


def node_time_summary(profile_json: str | Path, top: int = 10) -> list[tuple[str, float, int]]:
    """(operator type, share of the node time, node runs) of the ``top`` operator types in an ORT profile."""
    events = json.loads(Path(profile_json).read_text())
    totals: dict[str, list[float]] = {}
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            op = e.get("args", {}).get("op_name", "?")
            entry = totals.setdefault(op, [0.0, 0])
            entry[0] += float(e.get("dur", 0))
            entry[1] += 1
    total = sum(v[0] for v in totals.values()) or 1.0
    ranked = sorted(totals.items(), key=lambda kv: -kv[1][0])[:top]
    return [(op, v[0] / total, int(v[1])) for op, v in ranked]


register(Runtime("onnxruntime", reads=("onnx",), default_for=("onnx",), requires=("onnxruntime",),
                 install="pip install onnxruntime (or pip install -e .[onnx])",
                 load=lambda path, *, threads=None, **_: OnnxBackend(path, threads=threads),
                 wrap=lambda model, info, *, threads=None, exported, **_: OnnxBackend(exported("onnx"),
                                                                                      threads=threads),
                 export=export_onnx, writes="onnx",
                 summary="ONNX Runtime on the CPU; runs .onnx files written by tools/export.py"))
