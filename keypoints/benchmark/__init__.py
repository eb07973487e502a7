"""The measurements behind ``tools/benchmark.py``, one module per section, all timed by :mod:`.timing`.

    timing.py        interleaved_medians (rounds rotate the order; medians; one device sync) and timed (one-offs)
    models.py        "models": params, MACs, CPU latency, training throughput and memory vs the ReLU twin;
                     "dyrelu": the DY-ReLU-C elementwise implementations side by side
    inference.py     "inference": DY-ReLU-C vs ReLU twin on every runtime (ms/crop, first start), demo FPS
    loader.py        "loader": data loader stages and throughput, data wait of a training step
    postprocess.py   "postprocess": flip-back, decode, rescoring, NMS against the forward pass
    video.py         "video": track ids and One-Euro smoothing vs none on a generated clip with known truth
    report.py        ratios and tables (plain text or markdown)

The machine may be shared and noisy: every section measures its baseline in the same run and reports ratios.
"""
from __future__ import annotations

from .models import (BenchSettings, count_macs, count_params, measure_dyrelu_impls, measure_models, relu_twin,
                     saved_tensor_bytes)
from .report import format_table, ratio
from .timing import interleaved_medians, timed

__all__ = ["BenchSettings", "count_macs", "count_params", "measure_dyrelu_impls", "measure_models", "relu_twin",
           "saved_tensor_bytes", "format_table", "ratio", "interleaved_medians", "timed"]
