"""Readers of COCO-format files, one each, with one-line errors: keypoint annotation files and detections files.

    coco = load_coco("data/coco/annotations/person_keypoints_val2017.json")     # pycocotools COCO, validated
    dets = read_detections("detections.json", category_id=1, score_thr=0.0)     # Detections (arrays)
    by_image = dets.by_image()                                                  # image id -> (boxes, scores)

An annotation file is the JSON object of the COCO format (``images``, ``annotations``, ``categories``); a detections
file is a JSON list of ``{image_id, category_id, bbox [x, y, w, h], score}`` (pycocotools' results format for boxes).
Both are read here for training, evaluation and the demo alike.
"""
from __future__ import annotations

import contextlib
import io
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .utils.io import read_json

__all__ = ["load_coco", "read_detections", "Detections", "clip_box"]


def load_coco(ann_file: str | Path, hint: str = "check data.root and the file name"):
    """pycocotools ``COCO`` of a keypoint annotation file; one-line errors for missing or malformed files."""
    from pycocotools.coco import COCO

    data = read_json(ann_file, "annotation file", hint=hint)
    if not isinstance(data, dict):
        raise ValueError(f"annotation file {ann_file} must hold a JSON object, got {type(data).__name__}")
    missing = [k for k in ("images", "annotations") if not isinstance(data.get(k), list)]
    if missing:
        raise ValueError(f"annotation file {ann_file} lacks the list(s) {', '.join(missing)}: not a COCO file?")
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict) or any(k not in img for k in ("id", "file_name", "width", "height")):
            raise ValueError(f"annotation file {ann_file}: images[{i}] needs id, file_name, width and height")
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or any(k not in ann for k in ("id", "image_id", "category_id", "bbox")):
            raise ValueError(f"annotation file {ann_file}: annotations[{i}] needs id, image_id, category_id and bbox")
    data.setdefault("categories", [])
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        coco.createIndex()
    return coco


def clip_box(bbox: list[float], width: int, height: int) -> list[float] | None:
    """COCO box clipped to the image (mmpose/HRNet rule); None when it has no positive width or height."""
    x, y, w, h = (float(v) for v in bbox)
    x1, y1 = max(0.0, x), max(0.0, y)
    x2, y2 = min(width - 1.0, x1 + max(0.0, w)), min(height - 1.0, y1 + max(0.0, h))
    if x2 > x1 and y2 > y1:
        return [x1, y1, x2 - x1, y2 - y1]
    return None


@dataclass
class Detections:
    """Boxes of one category kept from a detections file: ``image_ids`` ``(N,)`` int64, ``boxes`` ``(N, 4)`` xywh
    float64 image pixels, ``scores`` ``(N,)`` float64, in file order; ``dropped`` counts the entries left out by
    reason (other category, low score, empty box); ``total`` is the number of entries in the file."""

    path: str
    image_ids: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    total: int
    dropped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.image_ids)

    def by_image(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """image id -> (boxes ``(n, 4)``, scores ``(n,)``), in file order."""
        out: dict[int, tuple[list, list]] = {}
        for image_id, box, score in zip(self.image_ids.tolist(), self.boxes, self.scores):
            entry = out.setdefault(int(image_id), ([], []))
            entry[0].append(box)
            entry[1].append(score)
        return {k: (np.asarray(b, np.float64).reshape(-1, 4), np.asarray(s, np.float64)) for k, (b, s) in out.items()}


def _number(value: Any) -> float | None:
    """A finite real number, or None (bools, strings, NaN and infinities are not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def read_detections(path: str | Path, *, category_id: int = 1, score_thr: float = 0.0) -> Detections:
    """The boxes of ``category_id`` scoring at least ``score_thr`` in a detections file.

    Every entry must be an object with ``image_id`` (integer), ``category_id``, ``bbox`` (4 finite numbers) and a
    finite numeric ``score``; the first bad entry is named in a one-line ``ValueError``. Boxes without positive
    width and height are dropped (counted). A file without any box of the category is an error as well.
    """
    dets = read_json(path, "detections file", hint="pass a COCO detections JSON (a list of {image_id, category_id, "
                                                    "bbox, score})")
    if not isinstance(dets, list):
        raise ValueError(f"detections file {path} must hold a JSON list of {{image_id, category_id, bbox, score}}, "
                         f"got {type(dets).__name__}")
    reasons: Counter = Counter()
    ids, boxes, scores = [], [], []
    for i, d in enumerate(dets):
        if not isinstance(d, dict) or any(k not in d for k in ("image_id", "category_id", "bbox", "score")):
            raise ValueError(f"detections file {path}: entry {i} needs image_id, category_id, bbox and score")
        bbox, score = d["bbox"], _number(d["score"])
        if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or any(_number(v) is None for v in bbox):
            raise ValueError(f"detections file {path}: entry {i} has bbox {bbox!r}; expected 4 finite numbers "
                             f"[x, y, width, height]")
        if score is None:
            raise ValueError(f"detections file {path}: entry {i} has score {d['score']!r}; expected a finite number")
        if isinstance(d["image_id"], bool) or not isinstance(d["image_id"], int):
            raise ValueError(f"detections file {path}: entry {i} has image_id {d['image_id']!r}; expected an integer")
        if d["category_id"] != category_id:
            reasons["other_category"] += 1
        elif score < score_thr:
            reasons["low_score"] += 1
        elif bbox[2] <= 0 or bbox[3] <= 0:
            reasons["empty_box"] += 1
        else:
            ids.append(d["image_id"])
            boxes.append([float(v) for v in bbox])
            scores.append(score)
    if reasons["other_category"] == len(dets):
        what = "person boxes (category_id 1)" if category_id == 1 else f"boxes of category_id {category_id}"
        raise ValueError(f"detections file {path} holds no {what} among {len(dets)} entries")
    if not ids:
        raise ValueError(f"no detector boxes left from {path}: {len(dets) - reasons['other_category']} boxes of the "
                         f"category, dropped {dict(reasons)} (score threshold {score_thr:g})")
    return Detections(str(path), np.asarray(ids, np.int64), np.asarray(boxes, np.float64).reshape(-1, 4),
                      np.asarray(scores, np.float64), len(dets), dict(reasons))
