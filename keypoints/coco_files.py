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
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .utils.io import read_json

__all__ = ["load_coco", "read_detections", "Detections", "clip_box"]

logger = logging.getLogger(__name__)


def _check_entry(entry: Any, keys: tuple[str, ...], seen: set, where: str, what: str, ann_file: str | Path) -> None:
    """``entry`` is a dict with ``keys`` and an ``id`` not in ``seen`` (added to it); else a one-line ValueError."""
    if not isinstance(entry, dict) or any(k not in entry for k in keys):
        raise ValueError(f"annotation file {ann_file}: {where} needs {', '.join(keys[:-1])} and {keys[-1]}")
    if entry["id"] in seen:
        raise ValueError(f"annotation file {ann_file}: {what} id {entry['id']!r} appears twice; {what} ids must be "
                         f"unique")
    seen.add(entry["id"])


def _fix_annotations(data: dict, ann_file: str | Path) -> dict[str, Any]:
    """Check and complete the annotations in place (see :func:`load_coco`); returns what was changed or found."""
    image_ids: set = set()
    for i, img in enumerate(data["images"]):
        _check_entry(img, ("id", "file_name", "width", "height"), image_ids, f"images[{i}]", "image", ann_file)
    counts: Counter = Counter()
    example: dict[str, str] = {}
    orphans: list = []
    ann_ids: set = set()
    with_keypoints: dict[int, list[dict]] = {}  # keypoint value count -> annotations
    for i, ann in enumerate(data["annotations"]):
        _check_entry(ann, ("id", "image_id", "category_id", "bbox"), ann_ids, f"annotations[{i}]", "annotation",
                     ann_file)
        bbox = ann["bbox"]
        if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not _finite(bbox):
            raise ValueError(f"annotation file {ann_file}: annotation {ann['id']} has bbox {bbox!r}; expected 4 finite "
                             f"numbers [x, y, width, height]")
        kpts = ann.get("keypoints")
        if kpts is None:
            ann["num_keypoints"] = 0
        elif not isinstance(kpts, list) or len(kpts) % 3:
            raise ValueError(f"annotation file {ann_file}: annotation {ann['id']} has keypoints that are not a list of "
                             f"x, y, v triples")
        else:
            with_keypoints.setdefault(len(kpts), []).append(ann)
        if "iscrowd" not in ann:
            ann["iscrowd"] = 0
            counts["iscrowd missing (set to 0)"] += 1
        if type(ann.get("area")) not in (int, float) or not math.isfinite(ann["area"]):
            ann["area"] = float(max(0.0, bbox[2]) * max(0.0, bbox[3]))
            counts["area missing (set to the box's width x height)"] += 1
        if ann["image_id"] not in image_ids:
            orphans.append(ann["id"])
    for group in with_keypoints.values():  # one array per keypoint count: COCO train2017 in well under a second
        values = np.array([ann["keypoints"] for ann in group])  # strings: a text dtype, None: an object one
        if values.dtype.kind not in "fi" or values.ndim != 2 or not np.isfinite(values).all():
            for ann in group:
                bad = next((j for j, v in enumerate(ann["keypoints"]) if _number(v) is None), None)
                if bad is not None:
                    raise ValueError(f"annotation file {ann_file}: annotation {ann['id']} has keypoint value "
                                     f"{ann['keypoints'][bad]!r} (keypoint {bad // 3}, {'xyv'[bad % 3]}); ground-truth "
                                     f"keypoints must be finite numbers: fix or remove that annotation")
            values = values.astype(np.float64)  # all numbers after all (bools among them)
        for ann, labelled in zip(group, (values[:, 2::3] > 0).sum(axis=1).tolist()):
            given = ann.get("num_keypoints")
            if given is None:
                counts["num_keypoints missing"] += 1
            elif given != labelled:
                counts["num_keypoints disagreeing with the flags"] += 1
                example.setdefault("disagree", f"annotation {ann['id']} says {given!r}, its flags label {labelled}")
            ann["num_keypoints"] = labelled  # one rule for training and for pycocotools: keypoints with v > 0
    if counts:
        parts = [f"{k} on {v}" + (f" (e.g. {example['disagree']})" if k.startswith("num_keypoints disagreeing") else "")
                 for k, v in counts.items()]
        logger.warning("annotation file %s: %s of %d annotations; num_keypoints is counted from the visibility flags "
                       "(v > 0) for training and evaluation alike", ann_file, ", ".join(parts),
                       len(data["annotations"]))
    if orphans:
        logger.warning("annotation file %s: %d annotations name an image id that is not in 'images' (e.g. annotation "
                       "%s); they are left out of training and evaluation (counted as no_image)", ann_file,
                       len(orphans), orphans[0])
    return {"fixed": dict(counts), "orphans": len(orphans)}


def load_coco(ann_file: str | Path, hint: str = "check data.root and the file name"):
    """pycocotools ``COCO`` of a keypoint annotation file, checked and completed; one-line errors for missing or
    malformed files.

    Errors (``ValueError`` naming the file and the annotation id): a missing required field (``images``: id,
    file_name, width, height; ``annotations``: id, image_id, category_id, bbox), repeated image or annotation ids,
    a bbox that is not 4 finite numbers, keypoints that are not finite numbers (a NaN would change AP silently).
    Completed in place, counted and reported in one warning line: ``num_keypoints`` is set to the number of
    keypoints with visibility ``v > 0`` (missing, or disagreeing with the flags: the flags win, for training and for
    pycocotools' evaluation alike; 0 for annotations without keypoints), a missing ``iscrowd`` is 0, a missing
    ``area`` the box's width x height. Annotations whose ``image_id`` is not in ``images`` are counted (one warning
    line; ``coco.orphan_annotations``) and left to pycocotools, which never evaluates them; the dataset counts them
    as dropped ``no_image``.
    """
    from pycocotools.coco import COCO

    data = read_json(ann_file, "annotation file", hint=hint)
    if not isinstance(data, dict):
        raise ValueError(f"annotation file {ann_file} must hold a JSON object, got {type(data).__name__}")
    missing = [k for k in ("images", "annotations") if not isinstance(data.get(k), list)]
    if missing:
        raise ValueError(f"annotation file {ann_file} lacks the list(s) {', '.join(missing)}: not a COCO file?")
    report = _fix_annotations(data, ann_file)
    data.setdefault("categories", [])
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        coco.createIndex()
    coco.orphan_annotations = report["orphans"]
    coco.fixed_fields = report["fixed"]
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
    """Boxes of the chosen categories kept from a detections file: ``image_ids`` ``(N,)`` int64, ``boxes`` ``(N, 4)``
    xywh float64 image pixels, ``scores`` ``(N,)`` float64, ``category_ids`` ``(N,)`` int64 (each box's own), in file
    order; ``dropped`` counts the entries left out by reason (other category, low score, empty box); ``total`` is the
    number of entries in the file."""

    path: str
    image_ids: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    total: int
    dropped: dict[str, int] = field(default_factory=dict)
    category_ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.category_ids is None:
            self.category_ids = np.zeros(len(self.image_ids), np.int64)

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


def _finite(values: list) -> bool:
    """Every value an int or float (not a bool) and finite; fast enough for every box of COCO train2017."""
    return all(type(v) in (int, float) for v in values) and math.isfinite(sum(values))


def _number(value: Any) -> float | None:
    """A finite real number, or None (bools, strings, NaN and infinities are not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def read_detections(path: str | Path, *, category_id: int | Sequence[int] = 1, score_thr: float = 0.0
                    ) -> Detections:
    """The boxes of ``category_id`` (one id, or several: a model of a set of categories) scoring at least
    ``score_thr`` in a detections file; each keeps its own category id.

    Every entry must be an object with ``image_id`` (integer), ``category_id``, ``bbox`` (4 finite numbers) and a
    finite numeric ``score``; the first bad entry is named in a one-line ``ValueError``. Boxes without positive
    width and height are dropped (counted). A file without any box of the category is an error as well.
    """
    dets = read_json(path, "detections file", hint="pass a COCO detections JSON (a list of {image_id, category_id, "
                                                   "bbox, score})")
    if not isinstance(dets, list):
        raise ValueError(f"detections file {path} must hold a JSON list of {{image_id, category_id, bbox, score}}, "
                         f"got {type(dets).__name__}")
    wanted = {int(category_id)} if isinstance(category_id, (int, np.integer)) else {int(c) for c in category_id}
    reasons: Counter = Counter()
    ids, boxes, scores, cats = [], [], [], []
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
        if d["category_id"] not in wanted:
            reasons["other_category"] += 1
        elif score < score_thr:
            reasons["low_score"] += 1
        elif bbox[2] <= 0 or bbox[3] <= 0:
            reasons["empty_box"] += 1
        else:
            ids.append(d["image_id"])
            boxes.append([float(v) for v in bbox])
            scores.append(score)
            cats.append(d["category_id"])
    if reasons["other_category"] == len(dets):
        what = ("person boxes (category_id 1)" if wanted == {1} else f"boxes of category_id {min(wanted)}"
                if len(wanted) == 1 else f"boxes of category_ids {sorted(wanted)}")
        raise ValueError(f"detections file {path} holds no {what} among {len(dets)} entries")
    if not ids:
        raise ValueError(f"no detector boxes left from {path}: {len(dets) - reasons['other_category']} boxes of the "
                         f"category, dropped {dict(reasons)} (score threshold {score_thr:g})")
    return Detections(str(path), np.asarray(ids, np.int64), np.asarray(boxes, np.float64).reshape(-1, 4),
                      np.asarray(scores, np.float64), len(dets), dict(reasons), np.asarray(cats, np.int64))
