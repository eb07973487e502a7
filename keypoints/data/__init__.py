"""Data builders: the only readers of the data/aug config. Everything they build takes explicit kwargs.

    cfg = load_config("configs/quickstart.yaml")
    train_set = build_dataset(cfg, "train")                  # train_set.metadata: the dataset's keypoints
    metadata = build_metadata(cfg)                           # the same, read from the training annotation file
    loader = build_dataloader(train_set, cfg, train=True)
    val_set = build_dataset(cfg, "val", metadata=train_set.metadata)  # boxes from cfg.test.boxes
    det_set = build_dataset(cfg, "val", boxes="dets.json")   # detector boxes
    metadata = record_unlabelled(cfg, train_set)             # + keypoints the training set never labels (warned)
"""
from __future__ import annotations

import logging
import os
import random
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..codec import HeatmapCodec
from ..config import Config
from ..coco_files import load_coco
from ..metadata import DatasetMeta
from ..utils.io import BadImageError
from .coco import CocoKeypointDataset, check_image_dir
from .sampler import SeededSampler
from .transforms import TopDownTransform, build_photometric

SPLITS = ("train", "val")
logger = logging.getLogger(__name__)


def build_codec(cfg: Config) -> HeatmapCodec:
    """Heatmap codec of ``cfg.data`` (input and heatmap sizes, sigma)."""
    return HeatmapCodec(input_size=cfg.data.input_size, heatmap_size=cfg.data.heatmap_size, sigma=cfg.data.sigma)


def metadata_from_coco(cfg: Config, coco, source: str) -> DatasetMeta:
    """:class:`DatasetMeta` of a loaded COCO file's category (or set of categories) ``cfg.data.category_id`` (0, an
    id, a list of ids or "all") with the config's flip pairs, OKS sigmas and upper body (what the file cannot
    say)."""
    data = cfg.data
    return DatasetMeta.from_coco_categories(
        coco.dataset.get("categories", []), data.category_id, flip_pairs=data.flip_pairs, sigmas=data.oks_sigmas,
        default_sigma=data.default_sigma, upper_body=data.upper_body, source=source)


def build_metadata(cfg: Config, split: str = "train") -> DatasetMeta:
    """The dataset's keypoints: the category of ``split``'s annotation file (names, skeleton) plus the config's
    ``data.flip_pairs``, ``data.oks_sigmas``, ``data.default_sigma``, ``data.upper_body`` and ``data.category_id``."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not valid; choose one of {', '.join(SPLITS)}")
    ann = os.path.join(cfg.data.root, cfg.data.train_ann if split == "train" else cfg.data.val_ann)
    return metadata_from_coco(cfg, load_coco(ann), f"annotation file {ann}")


def unlabelled_keypoints(counts: Sequence[int], flip_index: Sequence[int] | None = None) -> tuple[int, ...]:
    """0-based keypoints without a training label, from :meth:`CocoKeypointDataset.label_counts` ``(K,)``. With
    ``flip_index`` (training flips: ``aug.flip_prob > 0``) a keypoint whose mirror partner has labels counts as
    labelled: a flipped crop supervises it with the partner's labels."""
    counts = np.asarray(counts).reshape(-1)
    return tuple(k for k in range(len(counts))
                 if counts[k] == 0 and (flip_index is None or counts[flip_index[k]] == 0))


def record_unlabelled(cfg: Config, dataset: CocoKeypointDataset) -> DatasetMeta:
    """``dataset.metadata`` with :attr:`DatasetMeta.unlabelled` set to the keypoints ``dataset`` (the training set)
    never labels (:func:`unlabelled_keypoints`; the flip augmentation counts when ``cfg.aug.flip_prob > 0``), with
    one warning line naming them; the model still predicts them, but drawing leaves them out by default."""
    meta = dataset.metadata
    counts = dataset.label_counts()
    missing = unlabelled_keypoints(counts, meta.flip_index if cfg.aug.flip_prob > 0 else None)
    if missing:
        logger.warning("%d of %d keypoints have no label in the %d training instances of %s: %s; the model predicts "
                       "them without supervision (recorded in the model's metadata; not drawn by default)",
                       len(missing), meta.num_keypoints, len(dataset), dataset.ann_file,
                       ", ".join(meta.keypoint_names[k] for k in missing))
    return meta.with_unlabelled(missing)


def build_transforms(cfg: Config, train: bool, metadata: DatasetMeta | None = None) -> TopDownTransform:
    """Training transform (``cfg.aug``, seeded from ``cfg.train.seed``) or the plain validation crop. ``metadata``
    (default: COCO person) gives the flip index and the upper body; without an upper body there are no half-body
    crops."""
    if not train:
        return TopDownTransform(cfg.data.input_size)
    meta = metadata if metadata is not None else DatasetMeta.coco_person()
    aug = cfg.aug
    photometric = None
    if aug.photometric:
        photometric = build_photometric(brightness_contrast_prob=aug.brightness_contrast_prob,
                                        hue_saturation_prob=aug.hue_saturation_prob, blur_prob=aug.blur_prob,
                                        coarse_dropout_prob=aug.coarse_dropout_prob, seed=cfg.train.seed)
    return TopDownTransform(
        cfg.data.input_size, flip_prob=aug.flip_prob, flip_index=meta.flip_index, upper_body=meta.upper_body,
        half_body_prob=aug.half_body_prob if meta.upper_body else 0.0,
        half_body_min_joints=aug.half_body_min_joints, upper_body_prob=aug.upper_body_prob,
        half_body_scale=aug.half_body_scale, family=aug.family, scale_range=aug.scale_range,
        rotation_max=aug.rotation_max, rotation_prob=aug.rotation_prob, shift_factor=aug.shift_factor,
        shift_prob=aug.shift_prob, photometric=photometric, seed=cfg.train.seed)


def build_dataset(cfg: Config, split: str, boxes: str | None = None,
                  metadata: DatasetMeta | None = None) -> CocoKeypointDataset:
    """COCO dataset of ``split`` under ``cfg.data.root``. Training always uses ground-truth boxes; validation uses
    ``boxes`` (default ``cfg.test.boxes``: "gt" or a detections JSON, relative paths tried as given, then under the
    data root) with the plain crop. ``metadata``: the keypoints to read (a model's; the file's category must list
    them); default: :func:`build_metadata` of this split's file (``dataset.metadata``)."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not valid; choose one of {', '.join(SPLITS)}")
    data = cfg.data
    train = split == "train"
    ann = data.train_ann if train else data.val_ann
    images = data.train_images if train else data.val_images
    if train:
        if boxes not in (None, "gt"):
            raise ValueError(f"training uses ground-truth boxes; got boxes={boxes!r}")
        boxes = "gt"
    elif boxes is None:
        boxes = cfg.test.boxes
    if boxes != "gt" and not os.path.isfile(boxes) and os.path.isfile(os.path.join(data.root, boxes)):
        boxes = os.path.join(data.root, boxes)
    ann_file = os.path.join(data.root, ann)
    image_dir = os.path.join(data.root, images)
    check_image_dir(image_dir, ann_file)  # before the (possibly large) annotation file is read
    coco = load_coco(ann_file)
    if metadata is None:
        metadata = metadata_from_coco(cfg, coco, f"annotation file {ann_file}")
    return CocoKeypointDataset(
        ann_file, image_dir, build_codec(cfg), build_transforms(cfg, train, metadata), boxes=boxes,
        det_score_thr=cfg.test.det_score_thr, bad_images=data.bad_images, padding=data.padding, metadata=metadata,
        coco=coco)


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed numpy, random and the dataset's transform from torch's per-worker seed
    (base seed drawn from the loader's generator + worker id); with :class:`SeededSampler` the per-sample seeds
    take over, so this only matters for other samplers and for the global generators. It must not call
    ``cv2.setNumThreads``: resizing OpenCV's thread pool inherited through fork deadlocks the worker."""
    seed = torch.initial_seed() % 2 ** 32
    np.random.seed(seed)
    random.seed(seed)
    info = torch.utils.data.get_worker_info()
    dataset = info.dataset if info is not None else None
    while dataset is not None and not hasattr(dataset, "reseed"):
        dataset = getattr(dataset, "dataset", None)  # Subset and similar wrappers
    if dataset is not None:
        dataset.reseed(seed)


def build_dataloader(dataset: Dataset, cfg: Config, train: bool, distributed: bool = False,
                     batch_size: int | None = None) -> DataLoader:
    """Loader of ``dataset`` with a :class:`SeededSampler`: each sample's augmentation is a function of
    (``cfg.train.seed``, epoch, index) alone (call ``loader.sampler.set_epoch(epoch)`` each epoch). Training
    shuffles and drops the last incomplete batch; ``distributed`` gives each rank its share of the same
    permutation (evaluation pads by repetition; the evaluator drops repeats by ``index``). ``batch_size``
    defaults to ``cfg.data.batch_size`` (training) or ``cfg.test.batch_size`` (per process)."""
    if batch_size is None:
        batch_size = cfg.data.batch_size if train else cfg.test.batch_size
    rank, world = 0, 1
    if distributed:
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            raise ValueError("distributed=True needs an initialised torch.distributed process group")
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    sampler = SeededSampler(len(dataset), shuffle=train, seed=cfg.train.seed, rank=rank, world_size=world,
                            drop_last=train)
    workers = cfg.data.workers
    generator = torch.Generator()
    generator.manual_seed(cfg.train.seed + 1000 * rank)  # worker base seeds (numpy/random globals)
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, pin_memory=torch.cuda.is_available(),
        drop_last=train, persistent_workers=workers > 0, worker_init_fn=seed_worker, generator=generator)


__all__ = ["build_codec", "build_metadata", "metadata_from_coco", "build_transforms", "build_dataset",
           "build_dataloader", "seed_worker", "unlabelled_keypoints", "record_unlabelled",
           "CocoKeypointDataset", "TopDownTransform", "build_photometric", "load_coco", "BadImageError",
           "SeededSampler", "DatasetMeta"]
