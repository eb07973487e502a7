"""Smoke tests of the benchmark sections on a tiny config at tiny sizes, and of the one timing helper (no timing
assertions: the numbers only have to exist and be positive)."""
from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

import pytest
import torch

from keypoints.benchmark import (BenchSettings, count_macs, format_table, interleaved_medians, measure_dyrelu_impls,
                                 measure_models, relu_twin, saved_tensor_bytes, timed)
from keypoints.benchmark import inference as bench_inference
from keypoints.benchmark.postprocess import measure_postprocess, postprocess_lines
from keypoints.benchmark.timing import rotated
from keypoints.config import load_config
from keypoints.models import build_model

ROOT = Path(__file__).resolve().parents[1]
TINY = BenchSettings(batch_size=2, latency_batches=(1, 2), input_size=(48, 64), threads=1, repeats=1, warmup=0)


def _tiny_config():
    cfg = load_config(ROOT / "configs" / "quickstart.yaml")
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, width_mult=0.25))


@pytest.fixture
def keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- the timing helper


class FakeClock:
    """A clock that moves only when a timed function says how long it took."""

    def __init__(self) -> None:
        self.now, self.calls = 0.0, []

    def __call__(self) -> float:
        return self.now

    def work(self, name: str, durations: list[float]):
        def run() -> None:
            self.calls.append(name)
            self.now += durations[min(len(durations) - 1, sum(c == name for c in self.calls) - 1)]
        return run


def test_interleaved_medians_rotates_and_takes_medians() -> None:
    clock = FakeClock()
    fns = {"a": clock.work("a", [9.0, 1.0, 5.0, 3.0]), "b": clock.work("b", [0.0, 2.0, 2.0, 7.0]),
           "c": clock.work("c", [0.0, 4.0, 4.0, 4.0])}
    medians = interleaved_medians(fns, repeats=3, warmup=1, clock=clock)
    # warm-up in the given order, then each round rotated by one more place
    assert clock.calls == ["a", "b", "c", "a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert medians == {"a": 3.0, "b": 2.0, "c": 4.0}  # the warm-up call (9 s for a) is not counted
    assert rotated(["a", "b", "c"], 4) == ["b", "c", "a"] and rotated([], 3) == []
    with pytest.raises(ValueError, match="repeats"):
        interleaved_medians(fns, repeats=0)


def test_interleaved_medians_real_clock_and_timed() -> None:
    out = interleaved_medians({"sum": lambda: sum(range(1000)), "noop": lambda: None}, repeats=3, warmup=0)
    assert set(out) == {"sum", "noop"} and all(v >= 0 for v in out.values())
    clock = FakeClock()
    value, seconds = timed(lambda: clock.work("x", [2.5])() or 42, clock=clock)
    assert value == 42 and seconds == 2.5


# ----------------------------------------------------------------------------- sections models and dyrelu


def test_measure_models_rows_and_ratios(keep_threads) -> None:
    rows = measure_models({"tiny": _tiny_config()}, TINY)
    assert [r["config"] for r in rows] == ["tiny", "tiny [ReLU twin]"]
    tiny, twin = rows
    assert twin["params_m_x"] == 1.0 and tiny["baseline"] == "tiny [ReLU twin]"
    for key in ("params_m", "macs_g", "latency_b1_ms", "latency_b2_ms", "train_img_s", "saved_mib"):
        assert tiny[key] > 0 and tiny[key + "_x"] > 0
    assert tiny["params_m_x"] > 1  # the hyper functions add parameters
    table = format_table(rows, [("config", "config", "s"), ("params_m", "params", ".2f")], markdown=True)
    assert table.count("\n") == 3 and "(1.00x)" in table


def test_measure_dyrelu_impls(keep_threads) -> None:
    rows = measure_dyrelu_impls(_tiny_config(), TINY)
    names = [r["implementation"] for r in rows]
    assert names == ["ReLU (no SE)", "DY-ReLU impl=reference", "DY-ReLU impl=autograd"]
    assert rows[1]["speedup_vs_reference"] == 1.0 and rows[0]["speedup_vs_reference"] is None
    # Deterministic part: the lean function keeps fewer tensors for backward than the straightforward graph.
    assert rows[2]["saved_mib"] < rows[1]["saved_mib"]


def test_macs_and_saved_bytes() -> None:
    cfg = _tiny_config()
    model, twin = build_model(cfg.model), build_model(relu_twin(cfg).model)
    assert count_macs(model, (64, 48)) > count_macs(twin, (64, 48)) > 0
    assert saved_tensor_bytes(model, 2, (64, 48)) > saved_tensor_bytes(twin, 2, (64, 48)) > 0


# ----------------------------------------------------------------------------- section inference


def test_inference_section_torch_and_onnxruntime(tmp_path, monkeypatch, keep_threads) -> None:
    pytest.importorskip("onnxruntime")
    start_backend = bench_inference.start_backend

    def without_openvino(runtime, *args, **kwargs):
        if runtime == "openvino":
            raise ImportError("No module named 'openvino'")
        return start_backend(runtime, *args, **kwargs)
    monkeypatch.setattr(bench_inference, "start_backend", without_openvino)
    torch.set_num_threads(1)
    settings = bench_inference.InferenceSettings(runtimes=("torch", "onnxruntime", "openvino"), batches=(1, 2),
                                                 threads=1, rounds=1, warmup=0, frames=2, frame_size=(320, 240),
                                                 demo_rounds=1)
    models = bench_inference.model_pairs({"tiny": _tiny_config()})
    assert list(models) == ["tiny", "tiny ReLU twin"] and models["tiny ReLU twin"].model.act == "relu"
    started = bench_inference.start_runtimes(models, settings, tmp_path)
    assert started["openvino", "tiny"].backend is None and "not available" in started["openvino", "tiny"].note
    assert started["onnxruntime", "tiny"].note in ("fused graph", "reference graph")
    latency = bench_inference.measure_latency(started, models, settings)
    assert set(latency) == {(r, m, b) for r in ("torch", "onnxruntime") for m in models for b in (1, 2)}
    assert all(v > 0 for v in latency.values())
    rows = bench_inference.latency_rows(latency, started, ["tiny"], settings)
    assert [r["runtime"] for r in rows] == ["torch", "onnxruntime", "openvino"]
    assert rows[0]["b2_ms_x"] > 0 and rows[0]["start_s"] > 0 and rows[2]["b1_ms"] is None
    table = format_table(rows, bench_inference.latency_columns(settings.batches), markdown=True)
    assert table.count("\n") == 4 and "not available" in table

    demo = bench_inference.measure_demo(started, models, settings, tmp_path)
    assert set(demo) == {(r, m, mode) for r in ("torch", "onnxruntime") for m in models for mode in settings.demo_modes}
    fps, crops = demo["onnxruntime", "tiny", "given"]
    assert fps > 0 and crops == 2.0  # the true boxes of both people
    assert demo["torch", "tiny", "tracking"][1] >= 1
    demo_table = format_table(bench_inference.demo_rows(demo, models, settings), bench_inference.demo_columns(models))
    assert demo_table.count("\n") == 6
    lines = bench_inference.target_lines(latency, demo, "tiny", settings)
    assert len(lines) == 2 and "batch 1" in lines[0] and "30 FPS" in lines[1]  # no batch 8 here
    assert "every runtime" in lines[0] and "torch" in lines[0] and "onnxruntime" in lines[0]
    profile = bench_inference.onnx_profile(started, ["tiny"], 1, tmp_path, runs=2)
    assert profile["tiny"] and all(0 <= share <= 1 for _, share, _ in profile["tiny"])


# ----------------------------------------------------------------------------- section postprocess and the CLI


def test_postprocess_section() -> None:
    cfg = _tiny_config()
    result = measure_postprocess(cfg, instances=30, per_image=10, batch_size=16, repeats=1, forward_batch=2)
    assert result["forward_ms"] > 0 and set(result["refine"]) == {"standard", "dark"}
    standard = result["refine"]["standard"]
    assert 0 < standard["kept"] <= 30 and standard["total_ms"] > 0
    assert len(postprocess_lines(result, cfg, 30)) == 2 + 2 * 7


def test_cli_parses() -> None:
    cli = importlib.import_module("keypoints.cli.benchmark")
    args = cli.get_args_parser().parse_args(["--quick", "--sections", "dyrelu", "inference", "--markdown",
                                             "--runtimes", "torch", "onnxruntime"])
    assert args.quick and args.sections == ["dyrelu", "inference"] and args.runtimes == ["torch", "onnxruntime"]
    paths = [*cli.MODEL_CONFIGS, cli.DYRELU_CONFIG, *cli.INFERENCE_CONFIGS, *cli.POST_CONFIGS, args.loader_config]
    assert all((ROOT / p).is_file() for p in paths)
