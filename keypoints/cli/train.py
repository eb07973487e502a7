"""Train a top-down pose model.

    # one process (GPU if present, else CPU)
    python tools/train.py --config configs/coco/mobilenetv3_large_dyrelu_c_256x192.yaml --output-dir outputs/mnv3l
    # quick CPU run on the synthetic data of the quickstart
    python tools/train.py --config configs/quickstart.yaml --output-dir outputs/quickstart --device cpu
    # any COCO-format keypoint dataset (here the synthetic 5-keypoint birds of tools/make_synthetic.py --kind bird)
    python tools/train.py --config configs/synthetic_bird.yaml --output-dir outputs/bird --device cpu
    # 8 GPUs on one node; add --nnodes/--node_rank/--master_addr for several nodes
    torchrun --nproc_per_node 8 tools/train.py --config CFG --output-dir DIR --opts train.sync_bn=true
    # continue an interrupted run from DIR/last.pth (or name a checkpoint)
    python tools/train.py --config CFG --output-dir DIR --resume
    # start again in a folder that holds an earlier run, deleting that run's files first
    python tools/train.py --config CFG --output-dir DIR --overwrite

Writes to the output directory: config.yaml (resolved), last.pth (every epoch), best.pth (best
validation AP), metrics.csv, tensorboard/, train.log, curves.png and coco_keypoint_results.json.

The keypoints come from the training annotation file's category (names, skeleton) and the config's data.flip_pairs,
data.oks_sigmas, data.upper_body and data.category_id (keypoints/metadata.py); the model gets one heatmap per
keypoint, and the checkpoints carry that metadata, so tools/test.py, tools/demo.py, tools/export.py and the Python
API need no further setting for a model of another dataset.

An output folder that already holds a run (last.pth, best.pth or metrics.csv: at least one finished
epoch) is never written over silently: the script stops with one line unless it is told what to do,
``--resume`` (continue that run) or ``--overwrite`` (delete that run's files, the names above and
nothing else in the folder, then start a new run there). The folder name never changes by itself (no
``exp2``-style numbering), because the Makefile and scripts read outputs from the path they passed.
A folder with only config.yaml / train.log (an earlier attempt that stopped before its first epoch
ended) is reused as is. Stale ``*.tmp`` files of our checkpoints and metrics.csv, left by a killed
process, are removed when a run starts or resumes. Arguments, the config and the output folder are
checked before any data is read; their errors are one line on stderr with exit status 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import shutil
import sys
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from keypoints.config import (apply_overrides, config_from_dict, config_to_dict, load_config, read_config_data,
                              save_config)
from keypoints.data import build_dataloader, build_dataset
from keypoints.backends import ModelInfo, TorchBackend
from keypoints.engine import NonFiniteLossError, evaluate, train_one_epoch
from keypoints.evaluation import RESULTS_FILENAME, CocoKeypointEvaluator
from keypoints.inference import TopDownInference
from keypoints.losses import KeypointMSELoss
from keypoints.models import build_model
from keypoints.optim import build_optimizer, build_scheduler, scaled_lr
from keypoints.utils import distributed as dist
from keypoints.utils.checkpoint import (load_checkpoint, load_model_state, remove_stale_temporaries,
                                       save_checkpoint)
from keypoints.utils.logging import MetricWriter, setup_logging
from keypoints.utils.runtime import amp_settings, check_output_dir, seed_everything, select_device
from keypoints.visualize import plot_training_curves
from keypoints.utils.cli import run_cli

logger = logging.getLogger("keypoints.train")

RUN_MARKERS = ("last.pth", "best.pth", "metrics.csv")  # a folder holding one of these holds a run
RUN_OUTPUTS = ("config.yaml", *RUN_MARKERS, "train.log", "curves.png", RESULTS_FILENAME, "tensorboard")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Train a top-down keypoint model", add_help=True)
    p.add_argument("--config", help="YAML config (overrides of the schema defaults); optional with --resume")
    p.add_argument("--output-dir", required=True, help="folder for checkpoints, logs and curves")
    p.add_argument("--data-root", help="dataset root (sets data.root)")
    p.add_argument("--epochs", type=int, help="total epochs (sets train.epochs)")
    p.add_argument("--batch-size", type=int, help="batch per process (sets data.batch_size)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto: cuda when available")
    p.add_argument("--resume", nargs="?", const="last", help="continue from CKPT (default: OUTPUT_DIR/last.pth)")
    p.add_argument("--overwrite", action="store_true",
                   help="delete the run already in OUTPUT_DIR (checkpoints, logs, metrics) and start a new one")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars (log lines only)")
    p.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides, e.g. train.lr=1e-3")
    return p


def _overrides(args: argparse.Namespace) -> list[str]:
    overrides = list(args.opts)
    for flag, key in ((args.data_root, "data.root"), (args.epochs, "train.epochs"),
                      (args.batch_size, "data.batch_size")):
        if flag is not None:
            overrides.append(f"{key}={flag}")
    return overrides


def resolve_config(args: argparse.Namespace, resume_state: dict | None):
    overrides = _overrides(args)
    if args.config:
        return load_config(args.config, overrides)
    if resume_state is None:
        raise ValueError("--config is required (it may be left out only with --resume)")
    return config_from_dict(apply_overrides(resume_state["config"], overrides))


def fit_to_dataset(cfg, metadata, args: argparse.Namespace):
    """``cfg`` with ``model.num_keypoints`` = the dataset's keypoint count; a one-line error when the config file or
    ``--opts`` set another count (a resumed run's stored config sets it)."""
    k = metadata.num_keypoints
    if cfg.model.num_keypoints == k:
        return cfg
    given = "num_keypoints" in read_config_data(args.config, _overrides(args)).get("model", {}) if args.config \
        else True
    if given:
        raise ValueError(f"model.num_keypoints={cfg.model.num_keypoints} but the dataset has {k} keypoints "
                         f"({metadata.describe()}); leave model.num_keypoints out (it follows the dataset) or set it "
                         f"to {k}")
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, num_keypoints=k))


def check_arguments(args: argparse.Namespace) -> None:
    for flag, value in (("--epochs", args.epochs), ("--batch-size", args.batch_size)):
        if value is not None and value < 1:
            raise ValueError(f"{flag} {value} is not valid; it must be at least 1")
    if args.resume and args.overwrite:
        raise ValueError("--resume and --overwrite exclude each other: continue the run in the output folder "
                         "(--resume) or replace it (--overwrite)")


def check_config(cfg) -> None:
    for key, value in (("train.epochs", cfg.train.epochs), ("data.batch_size", cfg.data.batch_size),
                       ("train.val_interval", cfg.train.val_interval), ("train.log_interval", cfg.train.log_interval)):
        if value < 1:
            raise ValueError(f"{key}={value} is not valid; it must be at least 1")


def check_run_folder(out: Path, resume: str | None, overwrite: bool) -> Path | None:
    """The checkpoint to resume from (None for a new run); refuses to start a new run over an earlier one."""
    if resume:
        path = out / "last.pth" if resume == "last" else Path(resume)
        if resume == "last" and not path.is_file():
            raise FileNotFoundError(f"--resume: {path} not found, so there is no run to continue in {out}; "
                                    f"leave out --resume to start one, or pass --resume CKPT")
        return path
    found = [name for name in RUN_MARKERS if (out / name).exists()]
    if found and not overwrite:
        raise ValueError(f"{out} already holds a run ({', '.join(found)}); continue it with --resume, replace it "
                         f"with --overwrite, or choose another --output-dir")
    return None


def clear_run(out: Path) -> list[str]:
    """--overwrite: delete the files an earlier run of this script wrote in ``out`` (only those)."""
    removed = []
    for name in RUN_OUTPUTS:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            continue
        removed.append(name)
    return removed


def main(args: argparse.Namespace) -> dict:
    # Everything that can be checked without reading data is checked first, and nothing is written before.
    check_arguments(args)
    out = check_output_dir(args.output_dir)
    resume_path = check_run_folder(out, args.resume, args.overwrite)
    resume_state = load_checkpoint(resume_path) if resume_path else None
    cfg = resolve_config(args, resume_state)
    check_config(cfg)
    rank, local_rank, world = dist.init_distributed(args.device)
    device = select_device(args.device, local_rank)
    removed, stale = [], []
    if dist.is_main_process():
        removed = clear_run(out) if args.overwrite else []
        stale = remove_stale_temporaries(out)  # (MetricWriter removes its own metrics.tmp)
    dist.barrier()
    setup_logging(out, rank)
    if removed:
        logger.info("--overwrite: deleted the earlier run's %s in %s", ", ".join(removed), out)
    if stale:
        logger.info("removed temporary files left by an interrupted run: %s", ", ".join(p.name for p in stale))
    seed_everything(cfg.train.seed + rank, cfg.train.deterministic)
    amp_dtype, use_scaler = amp_settings(cfg.train.amp, device)
    logger.info("device %s, world size %d, amp %s, output %s", device, world, amp_dtype, out)

    train_set = build_dataset(cfg, "train")
    metadata = train_set.metadata  # the keypoints of the training file's category (+ config), for every step below
    cfg = fit_to_dataset(cfg, metadata, args)
    val_set = build_dataset(cfg, "val", metadata=metadata)
    if dist.is_main_process():
        save_config(cfg, out / "config.yaml")
    logger.info("keypoints: %s", metadata.describe())
    train_loader = build_dataloader(train_set, cfg, train=True, distributed=world > 1)
    val_loader = build_dataloader(val_set, cfg, train=False, distributed=world > 1)
    if len(train_loader) == 0:
        raise ValueError(f"{len(train_set)} training instances make no full batch of {cfg.data.batch_size} per "
                         f"process; lower data.batch_size")
    logger.info("train: %d instances, %d iterations/epoch; val: %d instances (%s)", len(train_set),
                len(train_loader), len(val_set), val_set.box_source)

    model = build_model(cfg.model, metadata.num_keypoints).to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if world > 1 and cfg.train.sync_bn:
        if device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            logger.warning("train.sync_bn needs CUDA (SyncBatchNorm has no CPU kernels); keeping per-process BatchNorm")
    total_batch = cfg.data.batch_size * world
    optimizer = build_optimizer(model, cfg.train, total_batch)
    iters_per_epoch = len(train_loader) if cfg.train.max_iters_per_epoch <= 0 else \
        min(len(train_loader), cfg.train.max_iters_per_epoch)
    scheduler = build_scheduler(optimizer, cfg.train, iters_per_epoch)
    scaler = torch.amp.GradScaler(device.type) if use_scaler else None
    start_epoch, best_ap = 0, -1.0
    if resume_state is not None:
        load_model_state(model, resume_state["model"], f"checkpoint {resume_path}")
        optimizer.load_state_dict(resume_state["optimizer"])
        scheduler.load_state_dict(resume_state["scheduler"])
        if scaler is not None and resume_state.get("scaler"):
            scaler.load_state_dict(resume_state["scaler"])
        start_epoch, best_ap = resume_state["epoch"], resume_state.get("best_metric", -1.0)
        logger.info("resumed from %s at epoch %d (best AP %.4f)", resume_path, start_epoch, best_ap)
    logger.info("model: %.2f M parameters; lr %.3g for total batch %d", sum(p.numel() for p in model.parameters())
                / 1e6, scaled_lr(cfg.train, total_batch), total_batch)

    raw_model = model
    if world > 1:
        model = DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda" else None)
    if cfg.train.compile:
        model = torch.compile(model)
    # Validation runs the training model through the one test-time path (crop, flip test, decode).
    backend = TorchBackend(model, ModelInfo.from_config(cfg, metadata=metadata), device, amp_dtype=amp_dtype,
                           channels_last=cfg.train.channels_last, move=False)
    inference = TopDownInference.from_config(backend, cfg)
    loss_fn = KeypointMSELoss(use_target_weight=True, ohkm=cfg.train.ohkm, ohkm_topk=cfg.train.ohkm_topk)
    evaluator = CocoKeypointEvaluator(val_set.ann_file, output_dir=out, box_source=val_set.box_source,
                                      oks_nms_thr=cfg.test.oks_nms_thr, soft_nms=cfg.test.soft_nms,
                                      kpt_score_thr=cfg.test.kpt_score_thr, sigmas=metadata.sigmas,
                                      category_id=metadata.category_id)
    writer = MetricWriter(out, resume_epoch=start_epoch) if dist.is_main_process() else None
    if start_epoch >= cfg.train.epochs:
        logger.info("the run has already completed %d of %d epochs; nothing to train (raise --epochs to continue)",
                    start_epoch, cfg.train.epochs)
    metrics: dict = {}
    for epoch in range(start_epoch, cfg.train.epochs):
        train_loader.sampler.set_epoch(epoch)
        try:
            stats = train_one_epoch(model, train_loader, optimizer, scheduler, loss_fn, device=device, epoch=epoch,
                                    scaler=scaler, amp_dtype=amp_dtype, channels_last=cfg.train.channels_last,
                                    grad_clip=cfg.train.grad_clip, max_iters=cfg.train.max_iters_per_epoch,
                                    log_interval=cfg.train.log_interval, progress=not args.no_progress)
        except NonFiniteLossError as e:
            last = out / "last.pth"
            kept = f"the last good checkpoint is {last}" if last.is_file() else f"no checkpoint was written to {out}"
            logger.error("%s. Stopped; %s", e, kept)
            dist.cleanup()
            sys.exit(1)
        except KeyboardInterrupt:
            if (out / "last.pth").is_file():
                logger.warning("interrupted in epoch %d; continue with --resume from %s", epoch + 1, out / "last.pth")
            raise
        metrics = dict(stats)
        last_epoch = epoch + 1 == cfg.train.epochs
        if (epoch + 1) % cfg.train.val_interval == 0 or last_epoch:
            metrics.update(evaluate(inference, val_loader, evaluator, loss_fn=loss_fn, progress=not args.no_progress))
        if dist.is_main_process():
            is_best = "AP" in metrics and metrics["AP"] > best_ap
            best_ap = max(best_ap, metrics.get("AP", best_ap))
            state = {"model": raw_model.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict() if scaler else None,
                     "epoch": epoch + 1, "best_metric": best_ap, "best_metric_name": "AP",
                     "config": config_to_dict(cfg), "metadata": metadata.to_dict()}
            save_checkpoint(state, out / "last.pth")
            if is_best:
                save_checkpoint(state, out / "best.pth")
            writer.write(epoch + 1, {k: float(v) for k, v in metrics.items()})
            summary = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k in (
                "train_loss", "val_loss", "AP", "AP50", "AR", "samples_per_s", "data_wait"))
            logger.info("epoch %d/%d: %s%s", epoch + 1, cfg.train.epochs, summary, " (best)" if is_best else "")
        dist.barrier()
    if dist.is_main_process() and writer is not None:
        writer.close()
        if (out / "metrics.csv").is_file() and plot_training_curves(out / "metrics.csv", out / "curves.png"):
            logger.info("training curves: %s", out / "curves.png")
    dist.cleanup()
    return metrics


def cli() -> None:
    run_cli(main, get_args_parser())


if __name__ == "__main__":
    cli()
