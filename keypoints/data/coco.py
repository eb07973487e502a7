"""COCO keypoint dataset (any category: people, animals, objects) for top-down training and evaluation.

One item per instance (a person, an animal, ...): the affine crop of its box (``TopDownTransform``) and the Gaussian
targets of its keypoints (``HeatmapCodec.encode``). Boxes come from the ground truth or from a
detector file (a JSON list of ``{image_id, category_id, bbox [x, y, w, h], score}``).

Ground-truth instances kept (HRNet's ``_load_coco_keypoint_annotation_kernal``, mmpose's box
clipping): one of the metadata's categories (by default the file's keypoint category; several categories that name
the same keypoints form one set), on an image listed in ``images``, not crowd, at least one keypoint with ``v > 0``
(``num_keypoints`` is recounted from the flags by :func:`keypoints.coco_files.load_coco`), and the box clipped to
the image, ``x1 = max(0, x)``, ``x2 = min(W - 1, x1 + max(0, w))`` (same in y), with positive width and height.
Detector boxes: those categories with ``score >= det_score_thr``; their items carry zero targets. Every item carries
its instance's own category id (the annotation's, or the detection's).
"""
from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..codec import HeatmapCodec
from ..coco_files import clip_box, load_coco, read_detections
from ..geometry import box_to_center_scale
from ..metadata import DatasetMeta
from ..utils.io import BadImageError, read_image
from .transforms import TopDownTransform

logger = logging.getLogger(__name__)

BAD_IMAGE_MODES = ("skip", "error")


def check_image_dir(image_dir: str, ann_file: str) -> None:
    """A one-line ``FileNotFoundError`` when the image folder is missing or empty."""
    if not os.path.isdir(image_dir):
        raise FileNotFoundError(f"image folder not found: {image_dir} (check data.root and the image dir)")
    if next(os.scandir(image_dir), None) is None:
        raise FileNotFoundError(f"image folder {image_dir} is empty; put the images named by {ann_file} "
                                f"there (check data.root and the image dir)")


class CocoKeypointDataset(Dataset):
    """Top-down instances of one category (or a set of categories naming the same keypoints) of a COCO keypoint file.

    Args:
        ann_file: a COCO keypoint file (``person_keypoints_*.json``, or any dataset's).
        image_dir: folder of the images named by ``file_name``.
        codec: target encoder; its ``input_size`` (width, height) fixes the crop aspect ratio.
        transform: ``TopDownTransform`` (random for training, plain crop for validation).
        boxes: ``"gt"`` or the path of a detections JSON.
        det_score_thr: detector boxes below this score are dropped.
        bad_images: ``"skip"`` (log, count, return the next readable instance) or ``"error"`` (raise).
        padding: box enlargement before the aspect-ratio fix.
        metadata: the keypoints (category ids, names, count) to read; None: from the file's keypoint category with
            default settings (:meth:`DatasetMeta.from_coco_categories`). A file that holds none of its categories,
            or whose category of one of its ids lists other keypoints, is refused (a model trained on other
            keypoints); ``category_ids`` are the metadata's ids the file holds.
        coco: the file already loaded by :func:`keypoints.coco_files.load_coco` (not read again).

    Items (dict): ``image`` uint8 ``(3, H, W)`` RGB crop (a channels-last view); ``heatmaps`` float32
    ``(K, h, w)``; ``target_weight`` float32 ``(K,)``; ``keypoints`` float32 ``(K, 3)`` (x, y in crop pixels,
    visibility); ``image_id`` int; ``category_id`` int (the instance's); ``center``, ``scale`` float32 ``(2,)``:
    the instance's crop box in image pixels before training augmentation (exactly the crop with the validation
    transform); ``box_score`` float32 scalar (1 for ground truth); ``index`` int (the instance actually returned)
    and ``requested`` int (the instance asked for: they differ when unreadable images were skipped, which the
    training and evaluation loops count). Detector boxes give zero heatmaps, weights and keypoints.

    ``stats`` holds the counts of kept and dropped images/instances per reason (``other_category``, ``no_image``:
    the annotation's image is not in ``images``, ``crowd``, ``no_keypoints``, ``empty_box``; detector boxes:
    ``other_category``, ``low_score``, ``empty_box``) and ``bad_images`` read so far in this process;
    ``box_source`` describes where the boxes come from. :meth:`label_counts` counts the labels per keypoint.
    """

    def __init__(self, ann_file: str | Path, image_dir: str | Path, codec: HeatmapCodec, transform: TopDownTransform,
                 *, boxes: str = "gt", det_score_thr: float = 0.0, bad_images: str = "skip",
                 padding: float = 1.25, metadata: DatasetMeta | None = None, coco=None) -> None:
        if bad_images not in BAD_IMAGE_MODES:
            raise ValueError(f"bad_images={bad_images!r} is not valid; choose one of {', '.join(BAD_IMAGE_MODES)}")
        self.ann_file, self.image_dir = str(ann_file), str(image_dir)
        check_image_dir(self.image_dir, self.ann_file)
        self.codec, self.transform = codec, transform
        self.bad_images, self.padding = bad_images, float(padding)
        self.aspect_ratio = codec.input_size[0] / codec.input_size[1]
        self.coco = coco if coco is not None else load_coco(ann_file)
        categories = self.coco.dataset.get("categories", [])
        if metadata is None:
            metadata = DatasetMeta.from_coco_categories(categories, source=f"annotation file {ann_file}")
        self.category_ids = metadata.check_category(categories, f"annotation file {ann_file}")
        self.metadata = metadata
        self.num_keypoints = metadata.num_keypoints
        self.stats: dict[str, Any] = {"images_total": len(self.coco.imgs), "bad_images": 0}
        if boxes == "gt":
            records = self._gt_records()
            self.box_source = "ground-truth boxes"
        else:
            records = self._detection_records(boxes, det_score_thr)
            self.box_source = f"detector boxes from {boxes} ({len(records)} boxes, score >= {det_score_thr:g})"
        self.stats["images_kept"] = len({r["image_id"] for r in records})
        self.stats["instances_kept"] = len(records)
        self._pack(records)
        self._bad_paths: set[str] = set()
        dropped = ", ".join(f"{k} {v}" for k, v in self.stats["dropped"].items()) or "none"
        logger.info("%s: %d instances on %d of %d images (%s); dropped: %s", Path(self.ann_file).name,
                    len(records), self.stats["images_kept"], self.stats["images_total"], self.box_source, dropped)

    # ------------------------------------------------------------------ records

    def _record(self, image_id: int, bbox: list[float], score: float, keypoints: np.ndarray | None,
                ann_id: int = -1, category_id: int = 0) -> dict:
        img = self.coco.imgs[image_id]
        center, scale = box_to_center_scale(np.asarray(bbox), self.aspect_ratio, self.padding)
        return {"image_id": image_id, "file": os.path.join(self.image_dir, img["file_name"]), "center": center,
                "scale": scale, "score": float(score), "keypoints": keypoints, "ann_id": ann_id,
                "category_id": int(category_id)}

    def _gt_records(self) -> list[dict]:
        reasons: Counter = Counter()
        wanted = set(self.category_ids)
        orphans = sum(1 for ann in self.coco.anns.values() if ann["image_id"] not in self.coco.imgs)
        if orphans:
            reasons["no_image"] = orphans  # pycocotools indexes them under image ids that do not exist
        records = []
        for image_id in self.coco.getImgIds():
            img = self.coco.imgs[image_id]
            for ann in self.coco.imgToAnns.get(image_id, []):
                kpts = np.asarray(ann.get("keypoints", []), dtype=np.float32)
                if ann["category_id"] not in wanted:
                    reasons["other_category"] += 1
                    continue
                if ann.get("iscrowd", 0):
                    reasons["crowd"] += 1
                    continue
                k = self.num_keypoints
                if kpts.size != 3 * k:
                    if kpts.size:
                        raise ValueError(f"annotation file {self.ann_file}: annotation {ann['id']} has {kpts.size} "
                                         f"keypoint values, but its category {self.metadata.category_name!r} lists "
                                         f"{k} keypoints (x, y, v each: {3 * k}); fix the annotation or the "
                                         f"category's keypoints")
                    reasons["no_keypoints"] += 1
                    continue
                kpts = kpts.reshape(k, 3)
                if ann.get("num_keypoints", int((kpts[:, 2] > 0).sum())) <= 0 or not (kpts[:, 2] > 0).any():
                    reasons["no_keypoints"] += 1
                    continue
                box = clip_box(ann["bbox"], img["width"], img["height"])
                if box is None or ann.get("area", 1) <= 0:
                    reasons["empty_box"] += 1
                    continue
                records.append(self._record(image_id, box, 1.0, kpts, ann["id"], ann["category_id"]))
        self.stats["instances_total"] = len(self.coco.anns)
        self.stats["dropped"] = dict(reasons)
        if not records:
            what = "person" if self.metadata.category_name == "person" else repr(self.metadata.category_name)
            need = (f"category {self.category_ids[0]}" if len(self.category_ids) == 1 else
                    f"one of categories {list(self.category_ids)}")
            raise ValueError(f"no usable {what} instances in {self.ann_file}: {len(self.coco.anns)} annotations, "
                             f"dropped {dict(reasons) or 'none'} (need {need}, an image in 'images', not crowd, "
                             f"keypoints, a box)")
        return records

    def _detection_records(self, det_file: str, score_thr: float) -> list[dict]:
        dets = read_detections(det_file, category_id=self.category_ids, score_thr=score_thr)
        unknown = sorted(set(dets.image_ids.tolist()) - set(self.coco.imgs))
        if unknown:
            raise ValueError(f"detections file {det_file} names {len(unknown)} image ids not in {self.ann_file}: "
                             f"{unknown[:10]}{' ...' if len(unknown) > 10 else ''} (wrong split?)")
        self.stats["instances_total"] = dets.total
        self.stats["dropped"] = dets.dropped
        return [self._record(int(i), box, float(score), None, category_id=int(c))
                for i, box, score, c in zip(dets.image_ids, dets.boxes, dets.scores, dets.category_ids)]

    def _pack(self, records: list[dict]) -> None:
        """Records as numpy arrays: workers then share them copy-on-read (a list of dicts would be copied, as
        reference counting writes to every object touched)."""
        n = len(records)
        self._files = np.array([r["file"] for r in records])
        self.image_ids = np.array([r["image_id"] for r in records], dtype=np.int64)  # (N,) per instance
        self.ann_ids = np.array([r["ann_id"] for r in records], dtype=np.int64)  # (N,) -1 for detector boxes
        self.instance_category_ids = np.array([r["category_id"] for r in records], dtype=np.int64)  # (N,)
        self._centers = np.stack([r["center"] for r in records]).astype(np.float32)
        self._scales = np.stack([r["scale"] for r in records]).astype(np.float32)
        self._scores = np.array([r["score"] for r in records], dtype=np.float32)
        self._has_kpts = np.array([r["keypoints"] is not None for r in records])
        kpts = np.zeros((n, self.num_keypoints, 3), dtype=np.float32)
        for i, r in enumerate(records):
            if r["keypoints"] is not None:
                kpts[i] = r["keypoints"]
        self._keypoints = kpts

    # ------------------------------------------------------------------ items

    def __len__(self) -> int:
        return len(self.image_ids)

    def reseed(self, seed: int) -> None:
        """Restart the transform's random stream (the loader's worker_init_fn calls it)."""
        self.transform.reseed(seed)

    def label_counts(self) -> np.ndarray:
        """Labels per keypoint ``(K,)`` int64: the ground-truth instances kept whose keypoint ``k`` has ``v > 0``
        (all zeros for detector boxes, which carry no labels). A keypoint at 0 is never supervised in training
        (unless the flip augmentation brings its partner's labels: see
        :func:`keypoints.data.unlabelled_keypoints`)."""
        kpts = self._keypoints[self._has_kpts]
        return (kpts[:, :, 2] > 0).sum(axis=0).astype(np.int64)

    def instance(self, i: int) -> dict:
        """Raw instance ``i``: image ``path``, ``center``/``scale`` (2,) and ``keypoints`` (K, 3) in image pixels,
        ``image_id`` and ``category_id``."""
        return {"path": str(self._files[i]), "center": self._centers[i], "scale": self._scales[i],
                "keypoints": self._keypoints[i], "image_id": int(self.image_ids[i]),
                "category_id": int(self.instance_category_ids[i])}

    def read_image(self, path: str) -> np.ndarray:
        """BGR uint8 ``(H, W, 3)`` as stored (EXIF orientation ignored: COCO coordinates are in stored pixel space);
        raises ``BadImageError``."""
        return read_image(path, exif=False)

    def __getitem__(self, index: int | tuple[int, int]) -> dict:
        """Item ``index``; ``(index, seed)`` (from ``SeededSampler``) first reseeds the transform with ``seed``."""
        if isinstance(index, (tuple, list)):
            index, seed = index
            self.transform.reseed(int(seed))
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} instances")
        index %= n
        for attempt in range(n):
            i = (index + attempt) % n
            path = str(self._files[i])
            if path in self._bad_paths:
                continue
            try:
                item = self._load(i, path)
                item["requested"] = index  # != "index" when unreadable images were skipped: the loops count it
                return item
            except BadImageError as e:
                if self.bad_images == "error":
                    if e.problem == "image file not found":
                        raise FileNotFoundError(f"{e} (set data.bad_images=skip to skip such files)") from None
                    raise ValueError(f"{e} (set data.bad_images=skip to skip such files)") from None
                self._bad_paths.add(path)
                self.stats["bad_images"] = len(self._bad_paths)
                logger.warning("skipping unreadable image (%s): %s", e.problem, path)
        raise FileNotFoundError(f"none of the {n} instances of {self.ann_file} has a readable image in "
                                f"{self.image_dir} (check data.root and the image folder)")

    def _load(self, i: int, path: str) -> dict:
        image = self.read_image(path)
        kpts = self._keypoints[i]
        out = self.transform(image, self._centers[i], self._scales[i], kpts[:, :2], kpts[:, 2], bgr=True)
        if self._has_kpts[i]:
            heatmaps, weights = self.codec.encode(out["keypoints"], out["visibility"])
            keypoints = np.concatenate([out["keypoints"], out["visibility"][:, None].astype(np.float32)], axis=1)
        else:
            w, h = self.codec.heatmap_size
            k = self.num_keypoints
            heatmaps = np.zeros((k, h, w), dtype=np.float32)
            weights = np.zeros(k, dtype=np.float32)
            keypoints = np.zeros((k, 3), dtype=np.float32)
        return {
            # (3, H, W) view of the HWC crop: collation copies it into the batch anyway, so no copy here.
            "image": torch.from_numpy(out["image"]).permute(2, 0, 1),
            "heatmaps": torch.from_numpy(heatmaps),
            "target_weight": torch.from_numpy(weights),
            "keypoints": torch.from_numpy(keypoints),
            "image_id": int(self.image_ids[i]),
            "category_id": int(self.instance_category_ids[i]),
            "center": torch.from_numpy(self._centers[i].copy()),
            "scale": torch.from_numpy(self._scales[i].copy()),
            "box_score": torch.tensor(self._scores[i]),
            "index": i,
        }
