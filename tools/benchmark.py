"""Model size, MACs, CPU latency, training throughput and memory, each as a ratio to the ReLU-without-SE
model measured in the same run; and the DY-ReLU-C elementwise implementations side by side.

Section "models": for each config, parameters, MACs (one 3 x H x W crop), CPU latency at batch 1 and 32
(eval, fp32, channels_last, 2 threads), training-step throughput and memory on --device. Each config's
baseline is its ReLU-without-SE twin (same backbone, width and head; added to the run when it is not
one of the configs), so the Small models compare with Small ReLU and the deconv model with a deconv ReLU.

Section "dyrelu": the DY-ReLU-C deconv model (MobileNetV3-Large, SE removed, 3 x 256 deconv head: the
setting of the DY-ReLU speed issue) trained with each implementation of the elementwise part
(reference = the straightforward graph, autograd = the memory-lean autograd function, triton = the
fused kernels on CUDA; --compile adds torch.compile rows) beside its ReLU twin: throughput and memory
ratios and the speedup over the straightforward version.

Memory: CUDA peak allocated bytes of a training step (model, gradients, Adam state, activations); on
the CPU, whose allocator is not tracked, the bytes of the tensors saved for backward (labelled "saved").
The machine may be noisy: timings interleave the models round by round and report medians.

    python tools/benchmark.py                                   # CPU, all default configs (~5-10 min)
    python tools/benchmark.py --quick                           # smoke run at small sizes (~1 min)
    python tools/benchmark.py --sections dyrelu --batch-size 16 --markdown
    python tools/benchmark.py --configs configs/quickstart.yaml --json outputs/bench.json
    # on a GPU (the issue's setting: bs 256, 256x192, bf16 autocast, channels_last)
    python tools/benchmark.py --device cuda --batch-size 256 --sections dyrelu --compile --markdown
    python tools/benchmark.py --device cuda --batch-size 256 --markdown
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keypoints.benchmark import BenchSettings, format_table, measure_dyrelu_impls, measure_models  # noqa: E402
from keypoints.config import load_config  # noqa: E402
from keypoints.utils.cli import run_cli  # noqa: E402

DEFAULT_CONFIGS = (
    "configs/coco/ablations/mobilenetv3_large_relu_256x192.yaml",
    "configs/coco/ablations/mobilenetv3_large_original_256x192.yaml",
    "configs/coco/ablations/mobilenetv3_large_dyrelu_a_256x192.yaml",
    "configs/coco/ablations/mobilenetv3_large_dyrelu_b_256x192.yaml",
    "configs/coco/mobilenetv3_large_dyrelu_c_256x192.yaml",
    "configs/coco/mobilenetv3_large_dyrelu_c_deconv_256x192.yaml",
    "configs/coco/ablations/mobilenetv3_small_relu_256x192.yaml",
    "configs/coco/mobilenetv3_small_dyrelu_c_256x192.yaml",
)
DYRELU_CONFIG = "configs/coco/mobilenetv3_large_dyrelu_c_deconv_256x192.yaml"
SECTIONS = ("models", "dyrelu")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], add_help=True,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS), help="model configs (section models)")
    parser.add_argument("--dyrelu-config", default=DYRELU_CONFIG, help="the DY-ReLU model of section dyrelu")
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="device of the training steps")
    parser.add_argument("--batch-size", type=int, default=None, help="training batch (default 16 on CPU, 256 on CUDA)")
    parser.add_argument("--latency-batches", type=int, nargs="+", default=[1, 32], help="CPU latency batches")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (default 5; 3 with --quick)")
    parser.add_argument("--compile", action="store_true", help="section dyrelu: add torch.compile rows")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 128x96 input, training batch 4, latency batches 1 and 4, 3 rounds")
    parser.add_argument("--markdown", action="store_true", help="print README-ready markdown tables")
    parser.add_argument("--json", default=None, help="also write all numbers to this JSON file")
    return parser


def _short(path: str) -> str:
    return Path(path).stem.replace("mobilenetv3_", "")


MODEL_COLUMNS = [("config", "config", "s"), ("params_m", "params (M)", ".2f"), ("macs_g", "MACs (G)", ".3f")]


def main(args: argparse.Namespace) -> dict:
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA device is available; use --device cpu")
    if args.device == "cuda":
        torch.backends.cudnn.benchmark = True
    batch = args.batch_size or (4 if args.quick else 256 if args.device == "cuda" else 16)
    settings = BenchSettings(
        device=args.device, batch_size=batch, threads=args.threads, compile=args.compile,
        latency_batches=(1, 4) if args.quick else tuple(args.latency_batches),
        input_size=(96, 128) if args.quick else None,
        repeats=args.repeats or (3 if args.quick else 5), warmup=1 if args.quick else 2,
        train_iters=10 if args.device == "cuda" else 1)
    env = {"torch": torch.__version__, "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
           "threads": args.threads, "batch_size": batch, "quick": args.quick,
           "load_average": os.getloadavg()}
    precision = "bf16 autocast" if args.device == "cuda" else "fp32"
    mem = "peak MiB" if args.device == "cuda" else "saved MiB"
    size = "128x96" if args.quick else "config input size"
    print(f"# benchmark: torch {env['torch']}, training on {env['device']} ({precision}, channels_last, "
          f"batch {batch}), CPU latency with {args.threads} threads, input {size}, medians of "
          f"{settings.repeats} interleaved rounds; load average at start {env['load_average']}\n")
    results: dict = {"env": env}
    start = time.time()
    if "models" in args.sections:
        configs = {_short(p): load_config(p) for p in args.configs}
        rows = measure_models(configs, settings)
        columns = MODEL_COLUMNS + [(f"latency_b{b}_ms", f"CPU b{b} (ms)", ".1f") for b in settings.latency_batches]
        columns += [("train_img_s", f"train img/s ({args.device})", ".1f"),
                    ("peak_mib" if args.device == "cuda" else "saved_mib", mem, ".0f")]
        print("## Models (ratio to the ReLU-without-SE twin in parentheses)\n")
        print(format_table(rows, columns, args.markdown) + "\n")
        print("baselines: " + "; ".join(f"{r['config']} -> {r['baseline']}" for r in rows) + "\n")
        results["models"] = rows
    if "dyrelu" in args.sections:
        rows = measure_dyrelu_impls(load_config(args.dyrelu_config), settings)
        columns = [("implementation", "implementation", "s"), ("train_img_s", f"train img/s ({args.device})", ".1f"),
                   ("peak_mib" if args.device == "cuda" else "saved_mib", mem, ".0f"),
                   ("speedup_vs_reference", "speedup vs reference", ".2f")]
        print(f"## DY-ReLU-C implementations: {_short(args.dyrelu_config)} "
              "(ratio to the ReLU model in parentheses; compiled rows against the compiled ReLU)\n")
        print(format_table(rows, columns, args.markdown) + "\n")
        results["dyrelu"] = rows
    print(f"# {time.time() - start:.0f} s; load average at end {os.getloadavg()}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    run_cli(main, get_args_parser())
