"""Benchmarks, each section measuring its baseline in the same run (the machine may be noisy: compare ratios).

Sections (``--sections``, default all; the code is in ``keypoints/benchmark/``, timed by one helper):
  models       params, MACs, CPU latency (batch 1 and 32), training throughput and memory of each config, as
               ratios to its ReLU-without-SE twin (memory: CUDA peak, or on the CPU the bytes saved for backward)
  dyrelu       the DY-ReLU-C deconv model trained with each elementwise implementation beside its ReLU twin
  inference    DY-ReLU-C Large and Small against their ReLU twins on every runtime of the registry (torch, torch on the
               fused model, compiled, onnxruntime, openvino): ms per crop at batch 1 and 8 with the ratio, first
               start seconds, and demo FPS (640x480 video, 2 people, tracking; read, predict, draw, write mp4)
  loader       training data loader on real COCO images: per-stage ms, items/s per worker count, data wait
  postprocess  flip-back, decoding, rescoring and OKS-NMS per 1,000 crops against the forward pass
  video        track ids and One-Euro smoothing against none on a generated clip with known truth (a trained
               model: --video-checkpoint): jitter, error, lag, identity switches, ms per person per frame; rows
               appended to --video-csv (docs/video.md)

    python tools/benchmark.py --markdown                         # everything (~20 min on 2 cores)
    python tools/benchmark.py --quick                            # smoke run at small sizes
    python tools/benchmark.py --sections inference --profile     # + ONNX Runtime time per operator type
    python tools/benchmark.py --sections inference --runtimes torch onnxruntime --inference-batches 1 8
    python tools/benchmark.py --sections loader --loader-config configs/coco/mobilenetv3_large_dyrelu_c_256x192.yaml
    python tools/benchmark.py --sections postprocess --json outputs/bench.json
    python tools/benchmark.py --sections video --markdown       # needs outputs/quickstart/best.pth (make quickstart)
    python tools/benchmark.py --sections video --video-seed 1 --video-min-cutoff 0.5 1 2 --video-beta 0.02 0.05
    # on a GPU (the DY-ReLU issue's setting: bs 256, 256x192, bf16 autocast, channels_last)
    python tools/benchmark.py --device cuda --batch-size 256 --sections dyrelu --compile --markdown
    python tools/benchmark.py --device cuda --batch-size 256 --sections models --markdown
"""
from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import torch

from keypoints.benchmark import BenchSettings, format_table, measure_dyrelu_impls, measure_models
from keypoints.benchmark import inference as bench_inference
from keypoints.benchmark import video as bench_video
from keypoints.benchmark.loader import loader_lines, measure_loader
from keypoints.benchmark.postprocess import measure_postprocess, postprocess_lines
from keypoints.benchmark.report import load_average
from keypoints.backends import runtime_names
from keypoints.config import load_config
from keypoints.outputs import check_output, write_text
from keypoints.utils.cli import run_cli
from keypoints.utils.runtime import check_number, check_threads, check_unique

MODEL_CONFIGS = (
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
INFERENCE_CONFIGS = ("configs/coco/mobilenetv3_large_dyrelu_c_256x192.yaml",
                     "configs/coco/mobilenetv3_small_dyrelu_c_256x192.yaml")
POST_CONFIGS = ("configs/quickstart.yaml", "configs/coco/mobilenetv3_large_dyrelu_c_256x192.yaml")
SECTIONS = ("models", "dyrelu", "inference", "loader", "postprocess", "video")
VIDEO_CHECKPOINT = "outputs/quickstart/best.pth"


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    p.add_argument("--threads", type=int, default=2, help="CPU threads (torch and every runtime)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed interleaved rounds, medians reported (default: models 5, inference 10, others 3)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="training steps and post-processing")
    p.add_argument("--opts", nargs="*", default=[], help="overrides for every config, e.g. model.width_mult=0.25")
    p.add_argument("--quick", action="store_true", help="smoke run: small sizes, few rounds (see each section)")
    p.add_argument("--markdown", action="store_true", help="print README-ready markdown tables")
    p.add_argument("--json", default=None, help="also write all numbers to this JSON file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    g = p.add_argument_group("models and dyrelu (--quick: 128x96 input, training batch 4, latency batches 1 and 4)")
    g.add_argument("--configs", nargs="+", default=list(MODEL_CONFIGS), help="model configs (section models)")
    g.add_argument("--dyrelu-config", default=DYRELU_CONFIG, help="the DY-ReLU model of section dyrelu")
    g.add_argument("--batch-size", type=int, default=None, help="training batch (default 16 on CPU, 256 on CUDA)")
    g.add_argument("--latency-batches", type=int, nargs="+", default=[1, 32], help="CPU latency batches")
    g.add_argument("--compile", action="store_true", help="section dyrelu: add torch.compile rows")
    g = p.add_argument_group("inference (--quick: batches 1 and 2, 2 rounds, 8 video frames, 1 demo round)")
    g.add_argument("--inference-configs", nargs="+", default=list(INFERENCE_CONFIGS),
                   help="DY-ReLU-C configs, each timed against its ReLU twin; the first one is the targets' model")
    g.add_argument("--runtimes", nargs="+", default=runtime_names(), choices=runtime_names(),
                   help="runtimes (registry names); torch adds a row for the fused inference form unless "
                        "--no-fused-eager")
    g.add_argument("--no-fused-eager", action="store_true", help="no 'torch (fused)' row")
    g.add_argument("--inference-batches", type=int, nargs="+", default=None, help="crops per call (default 1 8)")
    g.add_argument("--frames", type=int, default=None, help="frames of the demo video (default 60; 0: no demo)")
    g.add_argument("--demo-rounds", type=int, default=None, help="interleaved rounds of the demo loops (default 3)")
    g.add_argument("--demo-modes", nargs="+", default=list(bench_inference.DEMO_MODES),
                   choices=bench_inference.DEMO_MODES, help="tracking (no boxes given) and/or the true boxes")
    g.add_argument("--inference-csv", default="results/benchmarks/inference.csv",
                   help="CSV the latency rows (and demo rows, beside it as demo.csv) are appended to, with commit, "
                        "date, machine and load; '' for none (docs/benchmarks.md is rebuilt from it)")
    g.add_argument("--profile", action="store_true", help="ONNX Runtime time per operator type (first pair, batch 1)")
    g = p.add_argument_group("loader (--quick: 3 batches, 1 worker)")
    g.add_argument("--loader-config", default="configs/quickstart.yaml", help="config whose data/aug/model are used")
    g.add_argument("--root", default="tests/data/coco_mini", help="COCO root with train2017 (overrides data.root)")
    g.add_argument("--samples", type=int, default=None, help="items per measurement (default 400)")
    g.add_argument("--workers", type=int, nargs="+", default=None, help="DataLoader worker counts (default 1 2)")
    g = p.add_argument_group("postprocess (--quick: 200 instances)")
    g.add_argument("--post-configs", nargs="+", default=list(POST_CONFIGS), help="model configs to time")
    g.add_argument("--instances", type=int, default=None, help="instances timed (default 1000)")
    g.add_argument("--per-image", type=int, default=15, help="instances per image (OKS-NMS groups)")
    g.add_argument("--post-batch", type=int, default=64, help="post-processing batch (test.batch_size)")
    g = p.add_argument_group("video (--quick: 16 frames, 1 round)")
    g.add_argument("--video-checkpoint", default=VIDEO_CHECKPOINT, help="trained model (make quickstart writes it)")
    g.add_argument("--video-frames", type=int, default=None, help="clip length at 30 FPS (default 90)")
    g.add_argument("--video-people", type=int, default=3, help="people in the clip (their paths never cross)")
    g.add_argument("--video-seed", type=int, default=0, help="clip seed (tune on another one than you report)")
    g.add_argument("--video-min-cutoff", type=float, nargs="+", default=None,
                   help="One-Euro min cutoffs in Hz, one row per pair with --video-beta (default: the model's config)")
    g.add_argument("--video-beta", type=float, nargs="+", default=None, help="One-Euro betas in 1/pixel")
    g.add_argument("--video-csv", default="results/video/video_benchmark.csv",
                   help="CSV the rows are appended to (with commit, date, load average); '' for none")
    return p


def _short(path: str) -> str:
    return Path(path).stem.replace("mobilenetv3_", "")


def models_sections(args: argparse.Namespace, results: dict) -> None:
    batch = args.batch_size or (4 if args.quick else 256 if args.device == "cuda" else 16)
    settings = BenchSettings(
        device=args.device, batch_size=batch, threads=args.threads, compile=args.compile,
        latency_batches=(1, 4) if args.quick else tuple(args.latency_batches),
        input_size=(96, 128) if args.quick else None, repeats=args.repeats or (3 if args.quick else 5),
        warmup=1 if args.quick else 2, train_iters=10 if args.device == "cuda" else 1)
    mem = ("peak_mib", "peak MiB") if args.device == "cuda" else ("saved_mib", "saved MiB")
    train = ("train_img_s", f"train img/s ({args.device})", ".1f")
    print(f"## Models and DY-ReLU: training on {args.device} ({'bf16 autocast' if args.device == 'cuda' else 'fp32'},"
          f" channels_last, batch {batch}), input {'128x96' if args.quick else 'of each config'}, medians of "
          f"{settings.repeats} rounds\n")
    if "models" in args.sections:
        rows = measure_models({_short(p): load_config(p, args.opts) for p in args.configs}, settings)
        columns = [("config", "config", "s"), ("params_m", "params (M)", ".2f"), ("macs_g", "MACs (G)", ".3f")]
        columns += [(f"latency_b{b}_ms", f"CPU b{b} (ms)", ".1f") for b in settings.latency_batches]
        print("### Models (ratio to the ReLU-without-SE twin in parentheses)\n")
        print(format_table(rows, columns + [train, (*mem, ".0f")], args.markdown) + "\n")
        print("baselines: " + "; ".join(f"{r['config']} -> {r['baseline']}" for r in rows) + "\n")
        results["models"] = rows
    if "dyrelu" in args.sections:
        rows = measure_dyrelu_impls(load_config(args.dyrelu_config, args.opts), settings)
        columns = [("implementation", "implementation", "s"), train, (*mem, ".0f"),
                   ("speedup_vs_reference", "speedup vs reference", ".2f")]
        print(f"### DY-ReLU-C implementations: {_short(args.dyrelu_config)} (ratio to the ReLU model in "
              "parentheses; compiled rows against the compiled ReLU)\n")
        print(format_table(rows, columns, args.markdown) + "\n")
        results["dyrelu"] = rows


def inference_section(args: argparse.Namespace, results: dict) -> None:
    bi = bench_inference
    settings = bi.InferenceSettings(
        runtimes=bi.runtime_rows(args.runtimes, not args.no_fused_eager), threads=args.threads,
        batches=tuple(args.inference_batches or ((1, 2) if args.quick else (1, 8))),
        rounds=args.repeats or (2 if args.quick else 10), demo_rounds=args.demo_rounds or (1 if args.quick else 3),
        frames=args.frames if args.frames is not None else (8 if args.quick else 60),
        demo_modes=tuple(args.demo_modes), profile=args.profile)
    pairs = {_short(p): load_config(p, args.opts) for p in args.inference_configs}
    models = bi.model_pairs(pairs)
    print(f"(inference: starting {len(models)} models on {', '.join(settings.runtimes)}; cold compiles take minutes)",
          flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        started = bi.start_runtimes(models, settings, Path(tmp))
        latency = bi.measure_latency(started, models, settings)
        demo = bi.measure_demo(started, models, settings, Path(tmp)) if settings.frames else {}
        profile = bi.onnx_profile(started, list(models)[:2], args.threads, Path(tmp)) if settings.profile else {}
    print(f"## Inference: ms per crop (uint8 crops in, fp32, {args.threads} threads, medians of {settings.rounds} "
          f"rounds interleaving every runtime and model); (Nx) = DY-ReLU-C / its ReLU twin, same run\n")
    rows = bi.latency_rows(latency, started, list(pairs), settings)
    print(format_table(rows, bi.latency_columns(settings.batches), args.markdown) + "\n")
    print("first start: build (fuse, compile or export) and load, plus the first call at each batch; openvino "
          "reuses onnxruntime's export\n")
    if demo:
        w, h = settings.frame_size
        print(f"## Demo FPS: {settings.frames}-frame {w}x{h} video, {settings.people} people (read, predict, draw, "
              f"write mp4; flip off; medians of {settings.demo_rounds} interleaved rounds); (Nx) = DY-ReLU-C / its "
              f"ReLU twin\n")
        print(format_table(bi.demo_rows(demo, models, settings), bi.demo_columns(models), args.markdown) + "\n")
    for name, ops in profile.items():
        print(f"ONNX Runtime time by operator type, {name}, batch 1: "
              + ", ".join(f"{op} {share:.0%} ({runs}/run)" for op, share, runs in ops))
    print("\n".join(bi.target_lines(latency, demo, next(iter(pairs)), settings)) + "\n")
    if args.inference_csv:
        write_inference_rows(args, rows, demo, models, settings)
    results["inference"] = {"latency_ms_per_crop": {"/".join(map(str, k)): v for k, v in latency.items()},
                            "first_start_s": {"/".join(k): s.start_s for k, s in started.items()},
                            "notes": {"/".join(k): s.note for k, s in started.items() if s.note},
                            "demo": {"/".join(k): {"fps": v[0], "crops_per_frame": v[1]} for k, v in demo.items()},
                            "profile": profile}


def write_inference_rows(args: argparse.Namespace, rows: list[dict], demo: dict, models: dict, settings) -> None:
    """One CSV row per runtime, model and batch (ms per crop of the model and of its ReLU twin, first starts) and,
    beside it in demo.csv, one per runtime, model and demo mode (FPS)."""
    from keypoints.results import append_rows, provenance

    stamp = {**provenance(), "threads": args.threads, "rounds": settings.rounds}
    latency = [{"runtime": r["runtime"], "model": r["model"], "batch": b, "ms_per_crop": r.get(f"b{b}_ms"),
                "twin_ms_per_crop": r.get(f"b{b}_twin_ms"), "start_s": r.get("start_s"),
                "twin_start_s": r.get("twin_start_s"), "note": r.get("note", "")}
               for r in rows for b in settings.batches]
    append_rows(args.inference_csv, latency, stamp)
    if demo:
        fps = [{"runtime": rt, "model": name, "mode": mode, "fps": v[0], "crops_per_frame": v[1],
                "frames": settings.frames, "size": "x".join(map(str, settings.frame_size))}
               for (rt, name, mode), v in demo.items()]
        append_rows(Path(args.inference_csv).with_name("demo.csv"), fps, stamp)
    print(f"appended {len(latency)} rows to {args.inference_csv}")


def loader_section(args: argparse.Namespace, results: dict) -> None:
    cfg = load_config(args.loader_config, [f"data.root={args.root}", *args.opts])
    print(f"## Data loader: {args.loader_config} on {args.root}: input {cfg.data.input_size} (w, h), batch "
          f"{cfg.data.batch_size}, photometric {cfg.aug.photometric}\n")
    result = measure_loader(cfg, samples=args.samples or (3 * cfg.data.batch_size if args.quick else 400),
                            workers=tuple(args.workers or ((1,) if args.quick else (1, 2))),
                            steps=args.repeats or (2 if args.quick else 5), repeats=args.repeats or 3)
    print("\n".join(loader_lines(result, cfg)) + "\n")
    results["loader"] = result


def postprocess_section(args: argparse.Namespace, results: dict) -> None:
    instances = args.instances or (200 if args.quick else 1000)
    results["postprocess"] = {}
    for path in args.post_configs:
        cfg = load_config(path, args.opts)
        result = measure_postprocess(cfg, instances=instances, per_image=args.per_image, batch_size=args.post_batch,
                                     device=args.device, repeats=args.repeats or 3)
        print(f"## Post-processing: {path}\n")
        print("\n".join(postprocess_lines(result, cfg, instances)) + "\n")
        results["postprocess"][path] = result


def check_video_args(args: argparse.Namespace) -> None:
    """The video section's inputs, before any section runs: a trained model and sensible clip settings."""
    if not Path(args.video_checkpoint).is_file():
        raise FileNotFoundError(f"--video-checkpoint {args.video_checkpoint} not found; train one with `make "
                                f"quickstart` (about 4 min on a CPU) or pass a trained checkpoint")
    if (args.video_frames is not None and args.video_frames < 8) or args.video_people < 1:
        raise ValueError(f"the video section needs at least 8 frames and 1 person, got --video-frames "
                         f"{args.video_frames} and --video-people {args.video_people}")
    if any(not (math.isfinite(v) and v > 0) for v in args.video_min_cutoff or ()):
        raise ValueError(f"--video-min-cutoff takes finite, positive frequencies (Hz), got {args.video_min_cutoff}")
    if any(not (math.isfinite(v) and v >= 0) for v in args.video_beta or ()):
        raise ValueError(f"--video-beta takes finite values >= 0 (1/pixel), got {args.video_beta}")


def video_section(args: argparse.Namespace, results: dict) -> None:
    from keypoints.predictor import PoseEstimator

    estimator = PoseEstimator.from_checkpoint(args.video_checkpoint, device="cpu", flip=False)
    video = estimator.backend.config.video
    variants: dict[str, dict] = {"none": {"smoothing": "none"}}
    for fc in args.video_min_cutoff or [video.min_cutoff]:
        for beta in args.video_beta or [video.beta]:
            variants[f"one-euro {fc:g} Hz, beta {beta:g}"] = {"smoothing": "one-euro", "min_cutoff": fc, "beta": beta}
    common = {"match_thr": video.track_thr, "max_missed": video.max_missed, "kpt_thr": video.kpt_thr,
              "d_cutoff": video.d_cutoff}
    settings = bench_video.VideoSettings(frames=args.video_frames or (16 if args.quick else 90),
                                         people=args.video_people, seed=args.video_seed,
                                         rounds=args.repeats or (1 if args.quick else 5))
    result = bench_video.measure_video(estimator, {k: {**common, **v} for k, v in variants.items()}, settings)
    w, h = result["size"]
    print(f"## Video: {args.video_checkpoint} on a {result['frames']}-frame {w}x{h} clip at {result['fps']:g} FPS "
          f"(seed {settings.seed}, {result['people']} people, paths not crossing, truth moving "
          f"{result['truth_speed_px_per_frame']:.1f} px/frame on average), detector-like boxes (noisy true boxes, "
          f"shuffled), flip off; pixels over the joints visible in the truth; tracker ms: medians of "
          f"{settings.rounds} interleaved rounds\n")
    print(format_table(result["rows"], bench_video.VIDEO_COLUMNS, args.markdown) + "\n")
    print("\n".join(bench_video.target_lines(result["rows"])) + "\n")
    if args.video_csv:
        path = bench_video.append_csv(args.video_csv, result, args.video_checkpoint, settings.seed)
        print(f"rows appended to {path}\n")
    results["video"] = result


def check_args(args: argparse.Namespace) -> None:
    """Every count, size and file of the selected sections, before any section runs (a wrong value never becomes a
    default: 0 is refused, not read as 'not given'), and --json against the output policy (keypoints.outputs)."""
    check_threads(args.threads, "--threads")
    counts = (("--repeats", args.repeats, 1), ("--batch-size", args.batch_size, 1), ("--frames", args.frames, 0),
              ("--demo-rounds", args.demo_rounds, 1), ("--samples", args.samples, 1),
              ("--instances", args.instances, 1), ("--per-image", args.per_image, 1),
              ("--post-batch", args.post_batch, 1))
    for flag, value, low in counts:
        check_number(flag, value, low, integer=True)
    for flag, values, low in (("--latency-batches", args.latency_batches, 1),
                              ("--inference-batches", args.inference_batches, 1), ("--workers", args.workers, 0)):
        for value in values or ():
            check_number(flag, value, low, integer=True)
        check_unique(flag, values)
    for flag in ("--sections", "--configs", "--inference-configs", "--post-configs", "--runtimes", "--demo-modes"):
        check_unique(flag, getattr(args, flag[2:].replace("-", "_")))
    used = {"models": args.configs, "dyrelu": [args.dyrelu_config], "inference": args.inference_configs,
            "loader": [args.loader_config], "postprocess": args.post_configs}
    configs = [path for section, paths in used.items() if section in args.sections for path in paths]
    for path in configs:
        if not Path(path).is_file():
            raise FileNotFoundError(f"config not found: {path}")
    if "loader" in args.sections:
        if not Path(args.root).is_dir():
            raise FileNotFoundError(f"--root folder not found: {args.root}")
        batch = load_config(args.loader_config, [f"data.root={args.root}", *args.opts]).data.batch_size
        if args.samples is not None and args.samples < 2 * batch:
            raise ValueError(f"--samples {args.samples} is less than 2 batches of {args.loader_config} ({2 * batch}); "
                             f"the first batch (worker start-up) is not timed: pass at least {2 * batch}")
    if args.json:
        check_output(args.json, flag="--json", kind="json", inputs=configs, overwrite=args.overwrite)


def main(args: argparse.Namespace) -> dict:
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA device is available; use --device cpu")
    if args.device == "cuda":
        torch.backends.cudnn.benchmark = True
    check_args(args)
    if "video" in args.sections:
        check_video_args(args)
    torch.set_num_threads(args.threads)
    env = {"torch": torch.__version__, "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
           "threads": args.threads, "quick": args.quick, "load_average_start": load_average()}
    print(f"# benchmark: torch {env['torch']}, {env['device']}, {args.threads} threads, sections "
          f"{' '.join(args.sections)}; load average at start {env['load_average_start']}\n")
    results: dict = {"env": env}
    start = time.time()
    if {"models", "dyrelu"} & set(args.sections):
        models_sections(args, results)
    for name, section in (("inference", inference_section), ("loader", loader_section),
                          ("postprocess", postprocess_section), ("video", video_section)):
        if name in args.sections:
            section(args, results)
    env["load_average_end"] = load_average()
    print(f"# {time.time() - start:.0f} s; load average at end {env['load_average_end']}")
    if args.json:
        write_text(args.json, json.dumps(results, indent=2, default=str))  # atomic (NaN kept: unmeasured cells)
    return results


def cli() -> None:
    run_cli(main, get_args_parser())


if __name__ == "__main__":
    cli()
