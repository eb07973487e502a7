"""Training runs: the run folder, exact resumes, fine-tuning initialisation, the epoch loop and checkpoints.

    metrics = train(TrainRequest(output_dir="outputs/quickstart", config="configs/quickstart.yaml", device="cpu"))

``tools/train.py`` (:mod:`keypoints.cli.train`) is a thin command line over :func:`train`.

**Run folder.** A folder that already holds a run (``last.pth``, ``best.pth`` or ``metrics.csv``) is never written
over silently: a new run there needs ``overwrite`` (which deletes exactly the files a run writes, :data:`RUN_OUTPUTS`,
and nothing else) and a continuation needs ``resume``. One training process per folder: a lock
(``.train.lock``, ``flock``: released by the operating system when the process ends, however it ends) refuses a
second one. Temporary files of interrupted atomic writes are removed when a run starts.

**Resume is exact or refused.** ``resume`` continues from ``last.pth`` (or a named checkpoint) with its optimiser,
scheduler, scaler and epoch. The requested config (the YAML file and overrides, or the stored config and overrides
when no file is given) must equal the stored one; a difference is a one-line error listing the changed keys, unless
each is allowed with ``allow_changes`` and is one of :data:`SAFE_CHANGES` (keys that change neither the model, the
data nor the optimisation). The annotation files must be the ones the run started with (SHA-1 stored in the
checkpoint). ``config.yaml`` is rewritten only for allowed changes, and the log says so.

**Fine-tuning.** ``init_from`` (``--init-from`` / ``train.init_from``) starts a new run from another checkpoint's
weights (:mod:`keypoints.finetune`), epoch 0, fresh optimiser.

**Short runs.** Before each evaluation of a run that lasts fewer than 50 BatchNorm time constants (fine-tuning, tiny
datasets; ``train.bn_recalibration=auto``), the BatchNorm statistics are re-estimated on training batches
(:mod:`keypoints.bn_stats`): their running averages would otherwise still hold the initial values. A dataset with
fewer instances than a batch trains with the batch clipped to it (warned). Keypoints the training set never labels
are recorded in the checkpoint's metadata (warned; drawing leaves them out).

Each epoch writes ``last.pth`` (and ``best.pth`` when the validation AP improves) atomically in the checkpoint
format of :mod:`keypoints.modelfile`, a row of ``metrics.csv`` and TensorBoard scalars; at the end ``curves.png``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch.nn.parallel import DistributedDataParallel

from .backends import ModelInfo, TorchBackend
from .config import Config, apply_overrides, config_from_dict, config_to_dict, load_config, read_config_data
from .bn_stats import recalibrate_batchnorm, recalibration_enabled, smallest_bn_momentum
from .data import build_dataloader, build_dataset, record_unlabelled
from .engine import NonFiniteLossError, evaluate, train_one_epoch
from .evaluation import RESULTS_FILENAME, CocoKeypointEvaluator
from .finetune import init_from_checkpoint
from .inference import TopDownInference
from .losses import KeypointMSELoss
from .metadata import DatasetMeta
from .modelfile import Checkpoint, identify, load_weights, read_checkpoint, write_checkpoint
from .models import build_model
from .optim import build_optimizer, build_scheduler, scaled_lr
from .outputs import FolderLock, check_output_dir, remove_partials, write_text
from .utils import distributed as dist
from .utils.logging import MetricWriter, setup_logging
from .utils.runtime import amp_settings, seed_everything, select_device

logger = logging.getLogger("keypoints.train")

__all__ = ["TrainRequest", "train", "RUN_MARKERS", "RUN_OUTPUTS", "SAFE_CHANGES", "RunLock", "config_changes",
           "data_fingerprints"]

RUN_MARKERS = ("last.pth", "best.pth", "metrics.csv")  # a folder holding one of these holds a run
RUN_OUTPUTS = ("config.yaml", *RUN_MARKERS, "train.log", "curves.png", RESULTS_FILENAME, "tensorboard")
LOCK_NAME = ".train.lock"
# Keys a resumed run may change with allow_changes: the schedule's length (the step milestones stay), how often it
# logs and evaluates, loading processes, where the (identical, fingerprinted) data lives, test-time settings.
SAFE_CHANGES = ("train.epochs", "train.val_interval", "train.log_interval", "data.workers", "data.root",
                "test.batch_size", "test.flip", "test.refine", "test.kpt_score_thr", "test.oks_nms_thr",
                "test.soft_nms", "test.shift_heatmap")


@dataclass
class TrainRequest:
    """What a user asks of :func:`train` (the command line's arguments)."""

    output_dir: str | Path  # the run folder
    config: str | Path | None = None  # YAML config; may be left out with resume (the stored config is used)
    overrides: Sequence[str] = ()  # "key=value" config overrides
    resume: str | None = None  # "last" (output_dir/last.pth) or a checkpoint path
    overwrite: bool = False  # replace the run already in output_dir
    init_from: str | None = None  # fine-tune from this checkpoint (sets train.init_from)
    allow_changes: Sequence[str] = ()  # keys of SAFE_CHANGES a resume may change
    device: str = "auto"  # auto | cpu | cuda
    progress: bool = True  # tqdm bars


# ----------------------------------------------------------------------------- the run folder


class RunLock(FolderLock):
    """One training process per run folder (:class:`keypoints.outputs.FolderLock`; ``folder/.train.lock`` names the
    holder while it is held)."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder, LOCK_NAME, lambda folder, holder: (
            f"{folder} is in use by another training process ({holder}); wait for it to end or stop it, then "
            f"continue with --resume"))


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
    """``overwrite``: delete the files an earlier run wrote in ``out`` (only those)."""
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


# ----------------------------------------------------------------------------- config and data of a run


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): data}


def config_changes(stored: dict, requested: dict) -> list[tuple[str, Any, Any]]:
    """``(key, stored value, requested value)`` of every dotted key whose value differs, in key order."""
    a, b = _flatten(stored), _flatten(requested)
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _sha1(path: str | Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_fingerprints(cfg: Config) -> dict[str, dict[str, Any]]:
    """``{"train_ann": {"file", "size", "sha1"}, "val_ann": {...}}`` of the config's annotation files."""
    out = {}
    for key in ("train_ann", "val_ann"):
        path = Path(cfg.data.root) / getattr(cfg.data, key)
        if path.is_file():
            out[key] = {"file": str(path), "size": path.stat().st_size, "sha1": _sha1(path)}
    return out


def _resolve_config(request: TrainRequest, overrides: list[str], resume: Checkpoint | None
                    ) -> tuple[Config, list[tuple[str, Any, Any]]]:
    """The run's config and, for a resume, the allowed changes to the stored one (others are refused)."""
    if resume is None:
        if not request.config:
            raise ValueError("--config is required (it may be left out only with --resume)")
        return load_config(request.config, overrides), []
    stored = config_to_dict(config_from_dict(resume.config))
    if request.config:
        given = read_config_data(request.config, overrides)
        requested = config_to_dict(config_from_dict(given))
        if "num_keypoints" not in given.get("model", {}):  # follows the dataset; the stored value is the fitted one
            requested["model"]["num_keypoints"] = stored["model"]["num_keypoints"]
    else:
        requested = config_to_dict(config_from_dict(apply_overrides(config_to_dict(config_from_dict(resume.config)),
                                                                    overrides)))
    changes = config_changes(stored, requested)
    refused = [c for c in changes if c[0] not in request.allow_changes]
    if refused:
        listed = "; ".join(f"{k}: {old!r} -> {new!r}" for k, old, new in refused[:6])
        more = f" (+{len(refused) - 6} more)" if len(refused) > 6 else ""
        safe = [k for k, _, _ in refused if k in SAFE_CHANGES]
        allow = f"; allow {', '.join(safe)} with --allow-change" if safe else ""
        raise ValueError(f"--resume: the requested config differs from the run's ({listed}{more}); a resumed run "
                         f"continues exactly the run it resumes: pass the same config and options, or start a new "
                         f"run (another --output-dir, or --overwrite){allow}")
    return config_from_dict(requested), changes


def _check_request(request: TrainRequest) -> None:
    if request.resume and request.overwrite:
        raise ValueError("--resume and --overwrite exclude each other: continue the run in the output folder "
                         "(--resume) or replace it (--overwrite)")
    if request.resume and request.init_from:
        raise ValueError("--resume and --init-from exclude each other: --resume continues a run (its optimiser and "
                         "epoch), --init-from starts a new run from another model's weights")
    unsafe = [k for k in request.allow_changes if k not in SAFE_CHANGES]
    if unsafe:
        raise ValueError(f"--allow-change {unsafe[0]}: only keys that change neither the model, the data nor the "
                         f"optimisation may change on resume: {', '.join(SAFE_CHANGES)}")
    if request.allow_changes and not request.resume:
        raise ValueError("--allow-change applies to --resume only")


def _check_config(cfg: Config) -> None:
    for key, value in (("train.epochs", cfg.train.epochs), ("data.batch_size", cfg.data.batch_size),
                       ("train.val_interval", cfg.train.val_interval), ("train.log_interval", cfg.train.log_interval)):
        if value < 1:
            raise ValueError(f"{key}={value} is not valid; it must be at least 1")


def _fit_to_dataset(cfg: Config, metadata: DatasetMeta, explicit: bool) -> Config:
    """``cfg`` with ``model.num_keypoints`` = the dataset's keypoint count; an error when the config file or the
    overrides set another count (``explicit``)."""
    k = metadata.num_keypoints
    if cfg.model.num_keypoints == k:
        return cfg
    if explicit:
        raise ValueError(f"model.num_keypoints={cfg.model.num_keypoints} but the dataset has {k} keypoints "
                         f"({metadata.describe()}); leave model.num_keypoints out (it follows the dataset) or set it "
                         f"to {k}")
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, num_keypoints=k))


def _check_init_source(path: str) -> Checkpoint:
    """The checkpoint ``--init-from`` names; exported files hold inference graphs, not trainable weights."""
    kind = identify(path, "--init-from model file")
    if kind != "checkpoint":
        raise ValueError(f"--init-from {path} is an exported model ({kind}): it holds a fused inference graph, not "
                         f"trainable weights; pass the checkpoint it was exported from")
    return read_checkpoint(path)


def _batch_for(n_instances: int, batch_size: int, world: int) -> int:
    """``batch_size`` clipped so that each process gets at least one full batch of a tiny dataset (warned)."""
    fits = max(1, n_instances // max(1, world))
    if batch_size <= fits:
        return batch_size
    logger.warning("only %d training instances for %d process(es): batch size lowered from %d to %d (set "
                   "data.batch_size to choose it; the learning rate follows the total batch)", n_instances, world,
                   batch_size, fits)
    return fits


# ----------------------------------------------------------------------------- the run


def train(request: TrainRequest) -> dict[str, float]:
    """Run (or continue) the training run ``request`` describes; returns the last epoch's metrics. Arguments, the
    config and the folder are checked before any data is read; errors are one-line ``ValueError`` /
    ``FileNotFoundError``."""
    _check_request(request)
    overrides = list(request.overrides)
    if request.init_from:
        overrides.append(f"train.init_from={request.init_from}")
    out = check_output_dir(request.output_dir)
    lock = RunLock(out) if int(os.environ.get("RANK", "0")) == 0 else None
    if lock is not None:
        lock.acquire()
    try:
        return _train(request, out, overrides)
    finally:
        if lock is not None:
            lock.release()


def _check_inputs(request: TrainRequest, out: Path) -> None:
    """A new run never writes over (nor --overwrite deletes) a file it reads: the config, the --init-from model."""
    if request.resume:
        return  # a resumed run may read its own config.yaml: it is rewritten only for allowed changes, with a log line
    for flag, given in (("--config", request.config), ("--init-from", request.init_from)):
        if given and Path(given).exists() and any(Path(given).resolve() == (out / name).resolve()
                                                  for name in RUN_OUTPUTS):
            raise ValueError(f"{flag} {given} is a file this run writes in {out} (it would be replaced); copy it "
                             f"out of the run folder first, or choose another --output-dir")


def _train(request: TrainRequest, out: Path, overrides: list[str]) -> dict[str, float]:
    _check_inputs(request, out)
    resume_path = check_run_folder(out, request.resume, request.overwrite)
    resume = read_checkpoint(resume_path) if resume_path else None
    if resume is not None and not resume.has_training_state:
        raise ValueError(f"--resume {resume_path}: the checkpoint holds weights only (no optimiser state), so it "
                         f"cannot continue a run; start a new run from it with --init-from")
    cfg, changes = _resolve_config(request, overrides, resume)
    _check_config(cfg)
    source = _check_init_source(cfg.train.init_from) if cfg.train.init_from and resume is None else None
    explicit_k = "num_keypoints" in read_config_data(request.config, overrides).get("model", {}) \
        if request.config else resume is not None

    rank, local_rank, world = dist.init_distributed(request.device)
    device = select_device(request.device, local_rank)
    removed, stale = [], []
    if dist.is_main_process():
        removed = clear_run(out) if request.overwrite else []
        stale = remove_partials(out)
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
    # the keypoints of the training file's categories (+ config, + those the training set never labels), for every
    # step below and for the checkpoints
    metadata = record_unlabelled(cfg, train_set)
    cfg = _fit_to_dataset(cfg, metadata, explicit_k)
    val_set = build_dataset(cfg, "val", metadata=metadata)
    fingerprints = data_fingerprints(cfg)
    if resume is not None:
        _check_same_data(resume, fingerprints, resume_path)
    if dist.is_main_process():
        _write_config(cfg, out, resume is not None, changes)
    logger.info("keypoints: %s", metadata.describe())
    batch = _batch_for(len(train_set), cfg.data.batch_size, world)
    train_loader = build_dataloader(train_set, cfg, train=True, distributed=world > 1, batch_size=batch)
    val_loader = build_dataloader(val_set, cfg, train=False, distributed=world > 1)
    logger.info("train: %d instances, %d iterations/epoch; val: %d instances (%s)", len(train_set),
                len(train_loader), len(val_set), val_set.box_source)

    model = build_model(cfg.model, metadata.num_keypoints)
    init_info = None
    if source is not None:
        report = init_from_checkpoint(model, source, metadata, source_name=cfg.train.init_from,
                                      target_model_config=config_to_dict(cfg)["model"])
        logger.info("--init-from %s (epoch %d, %s): %s", cfg.train.init_from, source.epoch,
                    source.metadata.category_name, report.summary())
        init_info = {"path": cfg.train.init_from, "epoch": source.epoch, **report.to_dict()}
    model = model.to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if world > 1 and cfg.train.sync_bn:
        if device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            logger.warning("train.sync_bn needs CUDA (SyncBatchNorm has no CPU kernels); keeping per-process BatchNorm")
    total_batch = batch * world
    optimizer = build_optimizer(model, cfg.train, total_batch)
    iters_per_epoch = len(train_loader) if cfg.train.max_iters_per_epoch <= 0 else \
        min(len(train_loader), cfg.train.max_iters_per_epoch)
    scheduler = build_scheduler(optimizer, cfg.train, iters_per_epoch)
    scaler = torch.amp.GradScaler(device.type) if use_scaler else None
    recalibrate = recalibration_enabled(cfg.train.bn_recalibration, total_iterations=cfg.train.epochs * iters_per_epoch,
                                        model=model)
    if recalibrate:
        logger.info("BatchNorm statistics are re-estimated on up to %d training batches before each evaluation "
                    "(train.bn_recalibration=%s: %d iterations x BN momentum %.3g)", cfg.train.bn_recalibration_batches,
                    cfg.train.bn_recalibration, cfg.train.epochs * iters_per_epoch, smallest_bn_momentum(model) or 0)
    start_epoch, best_ap = 0, -1.0
    if resume is not None:
        load_weights(model, resume.weights, f"checkpoint {resume_path}")
        optimizer.load_state_dict(resume.optimizer)
        scheduler.load_state_dict(resume.scheduler)
        if scaler is not None and resume.scaler:
            scaler.load_state_dict(resume.scaler)
        start_epoch = resume.epoch
        best_ap = resume.best_metric if resume.best_metric is not None else -1.0
        init_info = resume.init_from
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
                                      category_id=metadata.category_ids)
    writer = MetricWriter(out, resume_epoch=start_epoch) if dist.is_main_process() else None
    if start_epoch >= cfg.train.epochs:
        logger.info("the run has already completed %d of %d epochs; nothing to train (raise the epochs with --epochs "
                    "N --allow-change train.epochs to continue)", start_epoch, cfg.train.epochs)
    metrics: dict[str, float] = {}
    for epoch in range(start_epoch, cfg.train.epochs):
        train_loader.sampler.set_epoch(epoch)
        try:
            stats = train_one_epoch(model, train_loader, optimizer, scheduler, loss_fn, device=device, epoch=epoch,
                                    scaler=scaler, amp_dtype=amp_dtype, channels_last=cfg.train.channels_last,
                                    grad_clip=cfg.train.grad_clip, max_iters=cfg.train.max_iters_per_epoch,
                                    log_interval=cfg.train.log_interval, progress=request.progress)
        except NonFiniteLossError as e:
            last = out / "last.pth"
            kept = f"the last good checkpoint is {last}" if last.is_file() else f"no checkpoint was written to {out}"
            logger.error("%s. Stopped; %s", e, kept)
            dist.cleanup()
            raise NonFiniteLossError(f"{e}. Stopped; {kept}") from None
        except KeyboardInterrupt:
            if (out / "last.pth").is_file():
                logger.warning("interrupted in epoch %d; continue with --resume from %s", epoch + 1, out / "last.pth")
            raise
        metrics = dict(stats)
        if (epoch + 1) % cfg.train.val_interval == 0 or epoch + 1 == cfg.train.epochs:
            if recalibrate:
                recalibrate_batchnorm(raw_model, train_loader, num_batches=min(cfg.train.bn_recalibration_batches,
                                                                               iters_per_epoch),
                                      device=device, channels_last=cfg.train.channels_last, amp_dtype=amp_dtype)
            metrics.update(evaluate(inference, val_loader, evaluator, loss_fn=loss_fn, progress=request.progress))
        if dist.is_main_process():
            is_best = "AP" in metrics and metrics["AP"] > best_ap
            best_ap = max(best_ap, metrics.get("AP", best_ap))
            checkpoint = Checkpoint(weights=raw_model.state_dict(), config=config_to_dict(cfg), metadata=metadata,
                                    epoch=epoch + 1, optimizer=optimizer.state_dict(),
                                    scheduler=scheduler.state_dict(), scaler=scaler.state_dict() if scaler else None,
                                    best_metric=best_ap, data=fingerprints, init_from=init_info)
            write_checkpoint(checkpoint, out / "last.pth")
            if is_best:
                write_checkpoint(checkpoint, out / "best.pth")
            writer.write(epoch + 1, {k: float(v) for k, v in metrics.items()})
            summary = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k in (
                "train_loss", "val_loss", "AP", "AP50", "AR", "samples_per_s", "data_wait"))
            logger.info("epoch %d/%d: %s%s", epoch + 1, cfg.train.epochs, summary, " (best)" if is_best else "")
        dist.barrier()
    if dist.is_main_process() and writer is not None:
        writer.close()
        from .visualize import plot_training_curves

        if (out / "metrics.csv").is_file() and plot_training_curves(out / "metrics.csv", out / "curves.png"):
            logger.info("training curves: %s", out / "curves.png")
    dist.cleanup()
    return metrics


def _check_same_data(resume: Checkpoint, fingerprints: dict, path: Path) -> None:
    if not resume.data:
        logger.warning("%s stores no fingerprints of its annotation files (written before they were stored): the "
                       "data cannot be compared with the run's", path)
        return
    for key, stored in resume.data.items():
        now = fingerprints.get(key)
        if now is None or now["sha1"] != stored.get("sha1"):
            what = "is missing" if now is None else f"differs (SHA-1 {now['sha1'][:12]} vs {stored['sha1'][:12]})"
            raise ValueError(f"--resume: the {key.replace('_', ' ')} file {now['file'] if now else stored['file']} "
                             f"{what} from the one the run started with ({stored['file']}); a resumed run needs the "
                             f"same data: restore it, or start a new run")


def _write_config(cfg: Config, out: Path, resumed: bool, changes: list[tuple[str, Any, Any]]) -> None:
    """``config.yaml`` of a new run; for a resume only when allowed changes were made (logged) or it is missing."""
    from .config import dump_config

    path = out / "config.yaml"
    if resumed and path.is_file() and not changes:
        return
    write_text(path, dump_config(cfg))
    if resumed and changes:
        logger.warning("resume with allowed changes (--allow-change): %s; config.yaml rewritten",
                       "; ".join(f"{k}: {old!r} -> {new!r}" for k, old, new in changes))
