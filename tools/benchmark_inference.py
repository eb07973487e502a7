"""CPU inference speed: latency per crop (PyTorch eager, channels_last, torch.compile, ONNX Runtime) and demo FPS
on a synthetic 640x480 video with 1-3 people, for the DY-ReLU-C models and the static baseline, all in one run.

    python tools/benchmark_inference.py                         # 4 models, ~10-15 min on 2 cores
    python tools/benchmark_inference.py --no-compile --rounds 5 # quicker (no cold compiles)
    python tools/benchmark_inference.py --models dyrelu_c_large baseline --profile --json outputs/bench_inf.json

Models (256x192 input, untrained weights: speed does not depend on them): ``dyrelu_c_large`` and
``dyrelu_c_small`` (configs/coco/*_dyrelu_c_256x192.yaml: SE removed, DY-ReLU-C everywhere, light head);
``relu_large``, the same Large model with ReLU in place of DY-ReLU-C (the cost of DY-ReLU itself); and
``baseline`` = torchvision ``mobilenet_v3_large().features`` + this repo's DeconvHead with ReLU (the standard
static SimpleBaseline-style model). Ratios are to the baseline measured in the same run: the machine is shared
and noisy, so compare ratios.

Latency: eval, fp32, ``torch.set_num_threads(--threads)`` and as many ORT intra-op threads (spinning on, ORT's
default: the best pure latency); rounds interleave the variants and the median is reported. torch.compile's
cold compile is excluded and printed separately (much shorter when inductor's on-disk cache holds the kernels).

Demo FPS: the demo loop (read the video, predict, draw, write an mp4) with the predictor's settings (ORT
threads not spinning between runs), flip test off. ``tracking`` is the demo default without a detector (full
frame, then boxes from the keypoints; untrained models score too low to keep a track, so it stays on one
full-frame crop per frame, see crops/frame); ``given`` feeds the true boxes (1-3 crops a frame: the work of
tracking those people).

Targets (not tests): ONNX Runtime <= 4 ms per crop for dyrelu_c_large; demo >= 30 FPS with tracking.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

import torch  # noqa: E402
from torch import nn  # noqa: E402

from keypoints.config import load_config  # noqa: E402
from keypoints.models import DeconvHead, TopDownPoseModel, build_model, get_act_layer  # noqa: E402
from keypoints.onnx_backend import OnnxPoseSession, export_onnx, node_time_summary  # noqa: E402
from keypoints.predictor import PoseEstimator  # noqa: E402
from keypoints.video import draw_prediction, open_source, open_video_writer, write_synthetic_video  # noqa: E402
from keypoints.utils.cli import run_cli  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"dyrelu_c_large": "configs/coco/mobilenetv3_large_dyrelu_c_256x192.yaml",
           "dyrelu_c_small": "configs/coco/mobilenetv3_small_dyrelu_c_256x192.yaml",
           "relu_large": "configs/coco/ablations/mobilenetv3_large_relu_256x192.yaml",
           "baseline": "configs/coco/mobilenetv3_large_dyrelu_c_256x192.yaml"}  # baseline: geometry only
VARIANTS = ("eager", "channels_last", "compile", "onnxruntime")


class TorchvisionFeatures(nn.Module):
    """torchvision's MobileNetV3-Large feature extractor as a one-feature backbone for the DeconvHead."""

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models import mobilenet_v3_large

        self.features = mobilenet_v3_large(weights=None).features

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.features(x)]


def build(name: str):
    cfg = load_config(ROOT / CONFIGS[name])
    if name == "baseline":
        return TopDownPoseModel(TorchvisionFeatures(), DeconvHead(960, 17, get_act_layer("relu"))).eval(), cfg
    return build_model(cfg.model).eval(), cfg


def onnx_file(name: str, model: nn.Module, input_size: tuple[int, int], tmp: Path) -> Path:
    """The model exported once per run (dynamic batch, float32 input)."""
    path = tmp / f"{name}.onnx"
    return path if path.is_file() else export_onnx(model, path, input_size=input_size)


def runner(name: str, model: nn.Module, variant: str, batch: int, hw: tuple[int, int], tmp: Path, threads: int):
    """(callable running one batch, seconds spent compiling, or exporting and loading)."""
    x = torch.randint(0, 256, (batch, 3, *hw), dtype=torch.uint8).float()
    tic = time.perf_counter()
    if variant == "onnxruntime":
        session = OnnxPoseSession(onnx_file(name, model, (hw[1], hw[0]), tmp), threads=threads, spinning=True)
        xn = x.numpy()
        return (lambda: session.run_numpy(xn)), time.perf_counter() - tic
    m = copy.deepcopy(model)
    if variant != "eager":
        m, x = m.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    if variant == "compile":
        # One static graph per model and batch (3 models x 2 batches share TopDownPoseModel.forward's code object).
        torch._dynamo.config.recompile_limit = 64
        m = torch.compile(m, dynamic=False)
    with torch.no_grad():
        m(x)  # warm-up (and the cold compile)
    return (lambda: m(x)), time.perf_counter() - tic


@torch.no_grad()
def measure_latency(models: dict, batches: list[int], variants: list[str], rounds: int, threads: int,
                    tmp: Path) -> tuple[dict, dict]:
    """ms per crop {(model, variant, batch): median} and setup seconds {(model, variant, batch): s}."""
    runs, setup = {}, {}
    for name, (model, cfg) in models.items():
        hw = (cfg.data.input_size[1], cfg.data.input_size[0])
        for variant in variants:
            for b in batches:
                try:
                    runs[name, variant, b], setup[name, variant, b] = runner(name, model, variant, b, hw, tmp, threads)
                except Exception as e:  # noqa: BLE001 - a failing variant is reported in the table, not fatal
                    print(f"  {name} {variant} bs{b} failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
    times: dict = {key: [] for key in runs}
    for _ in range(rounds):  # interleaved: every configuration sees the same machine load
        for key, fn in runs.items():
            fn()
            tic = time.perf_counter()
            fn()
            times[key].append((time.perf_counter() - tic) * 1000 / key[2])
    return {k: statistics.median(v) for k, v in times.items()}, setup


def demo_fps(estimator: PoseEstimator, video: Path, boxes: list, mode: str, tmp: Path) -> tuple[float, float]:
    """(frames per second of the demo loop, crops per frame) on ``video``."""
    estimator.reset()
    source = open_source(video)
    writer, crops, n = None, 0, 0
    tic = time.perf_counter()
    for frame in source:
        prediction = estimator(frame.image, boxes=boxes[frame.index] if mode == "given" else None)
        canvas = draw_prediction(frame.image, prediction, fps=0.0)
        if writer is None:
            writer, _ = open_video_writer(tmp / "bench.mp4", source.fps, (canvas.shape[1], canvas.shape[0]))
        writer.write(canvas)
        crops, n = crops + prediction.crops, n + 1
    elapsed = time.perf_counter() - tic
    writer.release()
    source.close()
    return n / elapsed, crops / n


def cell(value: float | None, base: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" + (f" ({value / base:.1f}x)" if base else "")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--batches", nargs="+", type=int, default=[1, 4], help="crops per forward pass")
    p.add_argument("--threads", type=int, default=2, help="PyTorch and ONNX Runtime threads")
    p.add_argument("--rounds", type=int, default=15, help="timed rounds (medians are reported)")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile (cold compiles take 20-60 s each)")
    p.add_argument("--frames", type=int, default=60, help="frames of the synthetic demo video")
    p.add_argument("--skip-latency", action="store_true", help="only the demo FPS (and --profile) sections")
    p.add_argument("--profile", action="store_true", help="ONNX Runtime time per operator type (batch 1)")
    p.add_argument("--json", help="write all numbers here")
    return p


def latency_section(models: dict, args: argparse.Namespace, tmp: Path) -> dict:
    variants = [v for v in VARIANTS if not (v == "compile" and args.no_compile)]
    print(f"latency: {len(models)} models x {variants} x batches {args.batches}, {args.threads} threads ...")
    latency, setup = measure_latency(models, args.batches, variants, args.rounds, args.threads, tmp)
    print(f"\nCPU latency, ms per crop (256x192, fp32, {args.threads} threads, median of {args.rounds}); "
          f"(Nx) = ratio to the baseline in the same run")
    print("| model | batch | " + " | ".join(variants) + " |\n|---|---|" + "---|" * len(variants))
    for name in models:
        for b in args.batches:
            base = {v: latency.get(("baseline", v, b)) if name != "baseline" else None for v in variants}
            print(f"| {name} | {b} | " + " | ".join(cell(latency.get((name, v, b)), base[v]) for v in variants) + " |")
    if "compile" in variants:
        print("cold torch.compile (excluded above): " + ", ".join(
            f"{k[0]} bs{k[2]} {s:.0f} s" for k, s in setup.items() if k[1] == "compile"))
    return {f"{k[0]}/{k[1]}/bs{k[2]}": v for k, v in latency.items()}


def demo_section(models: dict, args: argparse.Namespace, tmp: Path) -> dict:
    video, boxes = write_synthetic_video(tmp / "people.mp4", num_frames=args.frames, seed=1)
    print(f"\nDemo FPS on a {args.frames}-frame 640x480 video with {len(boxes[0])} people (read, predict, draw, "
          f"write mp4; flip off)\n| model | backend | boxes | FPS | crops/frame |\n|---|---|---|---|---|")
    result = {}
    for name, (model, cfg) in models.items():
        onnx_path = onnx_file(name, model, cfg.data.input_size, tmp)
        for backend in ("torch", "onnxruntime"):
            net = copy.deepcopy(model) if backend == "torch" else OnnxPoseSession(onnx_path, threads=args.threads)
            estimator = PoseEstimator.from_config(net, cfg, backend=backend, flip=False)
            for mode in ("tracking", "given"):
                fps, crops = demo_fps(estimator, video, boxes, mode, tmp)
                result[f"{name}/{backend}/{mode}"] = {"fps": fps, "crops_per_frame": crops}
                print(f"| {name} | {backend} | {mode} | {fps:.1f} | {crops:.1f} |")
    return result


def profile_section(models: dict, args: argparse.Namespace, tmp: Path) -> dict:
    result = {}
    for name in [n for n in ("dyrelu_c_large", "relu_large", "baseline") if n in models]:
        model, cfg = models[name]
        session = OnnxPoseSession(onnx_file(name, model, cfg.data.input_size, tmp), threads=args.threads,
                                  profile_prefix=str(tmp / name), spinning=True)
        x = torch.randint(0, 256, (1, 3, 256, 192), dtype=torch.uint8).float().numpy()
        for _ in range(20):
            session.run_numpy(x)
        result[name] = node_time_summary(session.end_profiling(), top=10)
        print(f"\nONNX Runtime time by operator type, {name}, batch 1: " +
              ", ".join(f"{op} {share:.0%} ({runs // 20}/run)" for op, share, runs in result[name]))
    return result


def main(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    models = {name: build(name) for name in args.models}
    out: dict = {"threads": args.threads, "latency_ms_per_crop": {}, "demo_fps": {}, "profile": {}}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if not args.skip_latency:
            out["latency_ms_per_crop"] = latency_section(models, args, tmp)
        out["demo_fps"] = demo_section(models, args, tmp)
        if args.profile:
            out["profile"] = profile_section(models, args, tmp)
    large = out["latency_ms_per_crop"].get("dyrelu_c_large/onnxruntime/bs1")
    fps = out["demo_fps"].get("dyrelu_c_large/onnxruntime/tracking", {}).get("fps")
    if large is not None:
        print(f"\ntarget ORT <= 4 ms/crop (dyrelu_c_large, bs1): {large:.2f} ms -> "
              f"{'met' if large <= 4 else 'NOT met'}")
    if fps is not None:
        print(f"target demo >= 30 FPS with tracking (dyrelu_c_large, ORT): {fps:.1f} -> "
              f"{'met' if fps >= 30 else 'NOT met'}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    run_cli(main, get_args_parser())
