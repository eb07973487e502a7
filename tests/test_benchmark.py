"""Smoke test of the benchmark's functions on a tiny config at tiny sizes (no timing assertions)."""
from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import torch

from keypoints.benchmark import (BenchSettings, count_macs, format_table, measure_dyrelu_impls, measure_models,
                                 relu_twin, saved_tensor_bytes)
from keypoints.config import load_config
from keypoints.models import build_model

ROOT = Path(__file__).resolve().parents[1]
TINY = BenchSettings(batch_size=2, latency_batches=(1, 2), input_size=(48, 64), threads=1, repeats=1, warmup=0)


def _tiny_config():
    cfg = load_config(ROOT / "configs" / "quickstart.yaml")
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, width_mult=0.25))


def test_measure_models_rows_and_ratios() -> None:
    threads = torch.get_num_threads()
    try:
        rows = measure_models({"tiny": _tiny_config()}, TINY)
    finally:
        torch.set_num_threads(threads)
    assert [r["config"] for r in rows] == ["tiny", "tiny [ReLU twin]"]
    tiny, twin = rows
    assert twin["params_m_x"] == 1.0 and tiny["baseline"] == "tiny [ReLU twin]"
    for key in ("params_m", "macs_g", "latency_b1_ms", "latency_b2_ms", "train_img_s", "saved_mib"):
        assert tiny[key] > 0 and tiny[key + "_x"] > 0
    assert tiny["params_m_x"] > 1  # the hyper functions add parameters
    table = format_table(rows, [("config", "config", "s"), ("params_m", "params", ".2f")], markdown=True)
    assert table.count("\n") == 3 and "(1.00x)" in table


def test_measure_dyrelu_impls() -> None:
    threads = torch.get_num_threads()
    try:
        rows = measure_dyrelu_impls(_tiny_config(), TINY)
    finally:
        torch.set_num_threads(threads)
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


def test_cli_quick_parses() -> None:
    spec = importlib.util.spec_from_file_location("benchmark_cli", ROOT / "tools" / "benchmark.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    args = cli.get_args_parser().parse_args(["--quick", "--sections", "dyrelu", "--markdown"])
    assert args.quick and args.sections == ["dyrelu"]
    assert all((ROOT / p).is_file() for p in cli.DEFAULT_CONFIGS)
