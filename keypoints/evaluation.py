"""COCO keypoint evaluation: a detectron2-style evaluator around unmodified pycocotools.

    evaluator = CocoKeypointEvaluator("data/coco/annotations/person_keypoints_val2017.json",
                                      output_dir="outputs/run", box_source="ground-truth boxes")
    evaluator.reset()
    for batch in loader:
        ...  # keypoints.inference: crop, forward with the flip test, decode to image pixels
        evaluator.process(image_ids, keypoints, box_scores, areas)
    metrics = evaluator.evaluate()  # {"AP": ..., "AP50": ..., ..., "ARl": ..., "num_instances": ...}

``evaluate`` gathers the predictions of every DDP rank on rank 0 (other ranks return ``{}``), rescores each instance
(box score x mean keypoint score above ``kpt_score_thr``), runs OKS-NMS per image, writes the COCO results JSON and
runs ``COCOeval(iouType="keypoints")``: crowd and zero-keypoint ground truth are ignored there, at most 20 detections
per image count. :func:`evaluate_results_file` scores an existing results file from any model the same way.
The dataset's keypoints enter as ``sigmas`` (``COCOeval.params.kpt_oks_sigmas``, also the NMS's) and
``category_id`` (the category scored, or several categories that name the same keypoints); both default to the COCO
person. With several categories every prediction carries its instance's own category id (``process(...,
category_ids=...)``), OKS-NMS runs per image and category, and pycocotools scores them with ``params.catIds`` set to
those ids and ``useCats=1``: AP per category, averaged over the categories that have ground truth (as mmpose does
for AP-10K), with the one set of sigmas.
"""
from __future__ import annotations

import copy
import json
import logging
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .constants import COCO_STAT_NAMES, OKS_SIGMAS, PERSON_CATEGORY_ID
from .postprocess import select_instances
from .coco_files import load_coco
from .utils.distributed import all_gather_object, get_rank, is_distributed
from .utils.io import read_json

__all__ = ["CocoKeypointEvaluator", "evaluate_results_file", "evaluate_results", "validate_results",
           "predictions_to_results", "RESULTS_FILENAME"]

logger = logging.getLogger(__name__)
RESULTS_FILENAME = "coco_keypoint_results.json"
_REQUIRED_FIELDS = ("image_id", "category_id", "keypoints", "score")


def _load_coco(ann_file: str | Path):
    return load_coco(ann_file, hint="pass the path of the validation annotation file, e.g. "
                                    "annotations/person_keypoints_val2017.json (see data.root and data.val_ann)")


def _to_numpy(x: Any, dtype: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _zero_metrics(num_instances: int = 0) -> dict[str, float]:
    return {**{name: 0.0 for name in COCO_STAT_NAMES}, "num_instances": num_instances}


# ----------------------------------------------------------------------------- results files


def validate_results(results: Any, coco_gt, *, num_keypoints: int = len(OKS_SIGMAS)) -> None:
    """Check a COCO keypoint results list against the ground truth; raise ``ValueError`` saying what is wrong.

    Each entry needs ``image_id`` (an image of the annotation file), ``category_id`` (a category of it),
    ``keypoints`` (``3 * num_keypoints`` finite numbers ``x, y, score``) and a finite ``score``.
    """
    if not isinstance(results, list):
        raise ValueError(f"COCO results must be a JSON list of objects, got {type(results).__name__}")
    known_cats = set(coco_gt.getCatIds())
    for i, r in enumerate(results):
        if not isinstance(r, dict):
            raise ValueError(f"results entry {i} must be an object with fields {', '.join(_REQUIRED_FIELDS)}, "
                             f"got {type(r).__name__}")
        missing = [f for f in _REQUIRED_FIELDS if f not in r]
        if missing:
            raise ValueError(f"results entry {i} lacks field(s) {', '.join(missing)}; every entry needs "
                             f"{', '.join(_REQUIRED_FIELDS)}")
        kpts = r["keypoints"]
        if not isinstance(kpts, (list, tuple)) or len(kpts) != 3 * num_keypoints:
            n = len(kpts) if isinstance(kpts, (list, tuple)) else type(kpts).__name__
            raise ValueError(f"results entry {i} has {n} keypoint values; expected {3 * num_keypoints} "
                             f"(x, y, score for each of {num_keypoints} keypoints)")
        try:
            values = np.asarray(kpts, dtype=np.float64)
            score = float(r["score"])
        except (TypeError, ValueError):
            raise ValueError(f"results entry {i} has non-numeric keypoints or score") from None
        if not (np.isfinite(values).all() and np.isfinite(score)):
            raise ValueError(f"results entry {i} has NaN or infinite keypoints or score")
        if r["category_id"] not in known_cats:
            raise ValueError(f"results entry {i} has category_id {r['category_id']!r}; the annotation file has "
                             f"{sorted(known_cats)}")
    _check_image_ids([r["image_id"] for r in results], coco_gt)


def _check_image_ids(image_ids: Sequence, coco_gt) -> None:
    known = set(coco_gt.getImgIds())
    unknown = [i for i in image_ids if i not in known]
    if unknown:
        few = sorted(set(unknown), key=str)[:5]
        raise ValueError(f"{len(unknown)} results refer to image ids not in the annotation file (e.g. {few}); "
                         "evaluate against the annotation file the predictions were made for")


def _category_ids(category_id: int | Sequence[int]) -> tuple[int, ...]:
    ids = (int(category_id),) if isinstance(category_id, (int, np.integer)) else tuple(int(c) for c in category_id)
    if not ids:
        raise ValueError("category_id must be a category id or a non-empty list of ids")
    return ids


def evaluate_results(results: list[dict], coco_gt, *, sigmas: Sequence[float] = OKS_SIGMAS,
                     box_source: str = "unknown", category_id: int | Sequence[int] | None = None
                     ) -> dict[str, float]:
    """Run ``COCOeval(iouType="keypoints")`` on a validated results list (left unmodified) with the OKS ``sigmas``
    ``(K,)``; returns the 10 stats under :data:`keypoints.constants.COCO_STAT_NAMES` plus ``num_instances``.
    ``category_id`` restricts the scoring to that category or those categories (``params.catIds``, ``useCats=1``:
    per-category AP averaged over the categories with ground truth; None: every category of the file, pycocotools'
    default). An empty list gives all-zero stats and a warning (pycocotools' ``loadRes`` cannot load an empty
    list)."""
    from pycocotools.cocoeval import COCOeval

    print(f"COCO keypoint evaluation: {len(results)} instances, boxes: {box_source}")
    if len(results) == 0:
        message = ("no keypoint predictions to evaluate: all COCO keypoint stats are reported as 0.0 "
                   f"(boxes: {box_source}); check that the box source yields boxes for these images")
        warnings.warn(message, RuntimeWarning, stacklevel=2)
        logger.warning(message)
        return _zero_metrics()
    coco_dt = coco_gt.loadRes(copy.deepcopy(results))  # loadRes writes id/area/bbox into the entries
    coco_eval = COCOeval(coco_gt, coco_dt, iouType="keypoints")
    coco_eval.params.useSegm = None
    coco_eval.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=np.float64)
    if category_id is not None:
        coco_eval.params.catIds = list(_category_ids(category_id))
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
    metrics = {name: float(v) for name, v in zip(COCO_STAT_NAMES, coco_eval.stats)}
    metrics["num_instances"] = len(results)
    logger.info("COCO keypoints (boxes: %s): %s", box_source,
                ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k in COCO_STAT_NAMES))
    return metrics


def evaluate_results_file(results_path: str | Path, ann_file: str | Path, *, sigmas: Sequence[float] = OKS_SIGMAS,
                          box_source: str = "unknown", category_id: int | Sequence[int] | None = None
                          ) -> dict[str, float]:
    """Score an existing COCO keypoint results JSON (from any model) against ``ann_file``; see
    :func:`evaluate_results`. The file is validated first (:func:`validate_results`)."""
    results = read_json(results_path, "results file", hint="pass a COCO keypoint results JSON")
    coco_gt = _load_coco(ann_file)
    validate_results(results, coco_gt, num_keypoints=len(sigmas))
    return evaluate_results(results, coco_gt, sigmas=sigmas, box_source=box_source, category_id=category_id)


def predictions_to_results(image_ids: np.ndarray, keypoints: np.ndarray, box_scores: np.ndarray, areas: np.ndarray,
                           *, kpt_score_thr: float = 0.2, oks_nms_thr: float = 0.9, soft_nms: bool = False,
                           sigmas: Sequence[float] = OKS_SIGMAS, category_id: int = PERSON_CATEGORY_ID,
                           category_ids: np.ndarray | None = None) -> list[dict]:
    """Rescore, OKS-NMS per image (and category) and format as a COCO results list (one dict per kept instance).

    ``image_ids (N,)``, ``keypoints (N, K, 3)`` in image pixels with scores, ``box_scores (N,)``, ``areas (N,)`` (image
    px^2), ``category_ids (N,)``: each instance's category (None: ``category_id`` for all). The reported score is the
    rescored one (box x mean keypoint score above ``kpt_score_thr``), also with soft NMS, whose decayed scores only
    decide which (at most 20 per image and category, pycocotools' limit) are kept, as in mmpose and HRNet.
    """
    keypoints = np.asarray(keypoints)
    image_ids = np.asarray(image_ids).reshape(-1)
    if category_ids is None:
        category_ids = np.full(len(image_ids), int(category_id), np.int64)
    category_ids = np.asarray(category_ids, np.int64).reshape(-1)
    # NMS groups: (image, category) pairs, numbered in ascending image order (one category: the images themselves)
    _, groups = np.unique(np.stack([image_ids, category_ids], axis=1).reshape(-1, 2), axis=0, return_inverse=True)
    keep, scores = select_instances(groups.reshape(-1), keypoints, box_scores, areas, kpt_score_thr=kpt_score_thr,
                                    oks_nms_thr=oks_nms_thr, soft=soft_nms, sigmas=sigmas)
    return [{"image_id": int(image_ids[i]), "category_id": int(category_ids[i]),
             "keypoints": [float(v) for v in keypoints[i].reshape(-1)], "score": float(scores[i])} for i in keep]


# ----------------------------------------------------------------------------- evaluator


def _unique_instances(preds: dict[str, np.ndarray] | None) -> dict[str, np.ndarray] | None:
    """With instance ids: sort by id and drop repeats (a DistributedSampler pads with repeated samples)."""
    if preds is None or "instance_ids" not in preds:
        return preds
    _, first = np.unique(preds["instance_ids"], return_index=True)
    return {key: value[first] for key, value in preds.items()}


class CocoKeypointEvaluator:
    """Accumulates top-down predictions and scores them with pycocotools (reset / process / evaluate).

    Args:
        ann_file: COCO keypoint annotation file (e.g. ``person_keypoints_val2017.json``).
        output_dir: where :data:`RESULTS_FILENAME` is written (rank 0); ``None`` writes nothing.
        box_source: how the person boxes were obtained, printed with the result (``"ground-truth boxes"`` or the
            detections file).
        oks_nms_thr: OKS-NMS threshold per image (instances with OKS above it to a better one are dropped).
        soft_nms: soft OKS-NMS (mmpose's Gaussian variant, at most 20 per image) instead of hard OKS-NMS.
        kpt_score_thr: keypoint scores above this enter the instance score.
        sigmas: per-keypoint OKS constants ``(K,)``, used by the NMS and by COCOeval (the dataset's).
        category_id: the category scored (the dataset's), or several that name the same keypoints
            (``metadata.category_ids``): pycocotools then averages the per-category AP (``params.catIds``,
            ``useCats=1``) and every ``process`` call passes each instance's category id.
    """

    def __init__(self, ann_file: str | Path, *, output_dir: str | Path | None = None,
                 box_source: str = "ground-truth boxes", oks_nms_thr: float = 0.9, soft_nms: bool = False,
                 kpt_score_thr: float = 0.2, sigmas: Sequence[float] = OKS_SIGMAS,
                 category_id: int | Sequence[int] = PERSON_CATEGORY_ID) -> None:
        self.ann_file = Path(ann_file)
        if not self.ann_file.is_file():
            raise FileNotFoundError(f"COCO annotation file not found: {self.ann_file}; pass the path of the "
                                    "validation annotation file (see data.root and data.val_ann)")
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.box_source = box_source
        self.oks_nms_thr = float(oks_nms_thr)
        self.soft_nms = bool(soft_nms)
        self.kpt_score_thr = float(kpt_score_thr)
        self.sigmas = tuple(float(s) for s in sigmas)
        self.category_ids = _category_ids(category_id)
        self.category_id = self.category_ids[0]  # the primary one
        self.results_path: Path | None = None
        self._coco_gt = None
        self.reset()

    @property
    def coco_gt(self):
        """The ground truth as a pycocotools ``COCO`` object, loaded on first use."""
        if self._coco_gt is None:
            self._coco_gt = _load_coco(self.ann_file)
        return self._coco_gt

    def reset(self) -> None:
        self._chunks: list[dict[str, np.ndarray]] = []

    def process(self, image_ids: Any, keypoints: Any, box_scores: Any, areas: Any,
                instance_ids: Any | None = None, category_ids: Any | None = None) -> None:
        """Add a batch of B instances (tensors on any device, numpy arrays or lists).

        Args:
            image_ids: ``(B,)`` COCO image ids.
            keypoints: ``(B, K, 3)`` x, y in image pixels and the keypoint score.
            box_scores: ``(B,)`` person box scores (1 for ground-truth boxes).
            areas: ``(B,)`` instance areas in image px^2 for OKS-NMS: the padded crop box ``scale[0] * scale[1]``.
            instance_ids: optional ``(B,)`` unique ids (e.g. dataset indices); when given, duplicates (a
                ``DistributedSampler`` pads the last batch by repeating samples) are dropped before NMS and the
                gathered predictions are ordered by id, so the result does not depend on the world size.
            category_ids: ``(B,)`` each instance's category (the dataset items' ``category_id``); may be left out
                when the evaluator scores one category.
        """
        chunk = {
            "image_ids": _to_numpy(image_ids, np.int64).reshape(-1),
            "keypoints": _to_numpy(keypoints, np.float64),
            "box_scores": _to_numpy(box_scores, np.float64).reshape(-1),
            "areas": _to_numpy(areas, np.float64).reshape(-1),
        }
        n = len(chunk["image_ids"])
        if instance_ids is not None:
            chunk["instance_ids"] = _to_numpy(instance_ids, np.int64).reshape(-1)
        if category_ids is None:
            if len(self.category_ids) > 1:
                raise ValueError(f"process needs category_ids (each instance's category) when the evaluator scores "
                                 f"several categories {list(self.category_ids)}")
            category_ids = np.full(n, self.category_id, np.int64)
        chunk["category_ids"] = _to_numpy(category_ids, np.int64).reshape(-1)
        other = sorted(set(chunk["category_ids"].tolist()) - set(self.category_ids))
        if other:
            raise ValueError(f"process got instances of category {other[:5]}, but the evaluator scores "
                             f"{list(self.category_ids)}; pass category_id=metadata.category_ids to the evaluator")
        k = len(self.sigmas)
        if chunk["keypoints"].shape != (n, k, 3):
            raise ValueError(f"process expects keypoints ({n}, {k}, 3) (x, y, score in image pixels) for {n} image "
                             f"ids, got {chunk['keypoints'].shape}")
        for name in ("box_scores", "areas", "instance_ids", "category_ids"):
            if name in chunk and len(chunk[name]) != n:
                raise ValueError(f"process got {n} image ids but {len(chunk[name])} {name}; pass one per instance")
        if self._chunks and ("instance_ids" in chunk) != ("instance_ids" in self._chunks[0]):
            raise ValueError("pass instance_ids to every process() call or to none")
        self._chunks.append(chunk)

    def _local_predictions(self) -> dict[str, np.ndarray] | None:
        if not self._chunks:
            return None
        return {key: np.concatenate([c[key] for c in self._chunks]) for key in self._chunks[0]}

    def _gather(self) -> dict[str, np.ndarray] | None:
        """All ranks' predictions on rank 0 (``None`` on other ranks, or when nothing was processed anywhere)."""
        local = self._local_predictions()
        if not is_distributed():
            return _unique_instances(local)
        gathered = all_gather_object(local)
        if get_rank() != 0:
            return None
        parts = [p for p in gathered if p is not None]
        if not parts:
            return None
        if len({tuple(sorted(p)) for p in parts}) != 1:
            raise ValueError("pass instance_ids to process() on every rank or on none")
        return _unique_instances({key: np.concatenate([p[key] for p in parts]) for key in parts[0]})

    def predictions(self) -> dict[str, np.ndarray]:
        """The processed predictions before rescoring and NMS (all ranks' on rank 0): ``image_ids (N,)``,
        ``keypoints (N, K, 3)``, ``box_scores (N,)``, ``areas (N,)``, ``category_ids (N,)`` and ``instance_ids (N,)``
        when given, ordered by instance id; empty arrays when nothing was processed."""
        preds = self._gather()
        if preds is None:
            k = len(self.sigmas)
            return {"image_ids": np.zeros(0, np.int64), "keypoints": np.zeros((0, k, 3), np.float32),
                    "box_scores": np.zeros(0, np.float32), "areas": np.zeros(0, np.float32),
                    "category_ids": np.zeros(0, np.int64)}
        return preds

    def evaluate(self) -> dict[str, float]:
        """Gather, rescore, OKS-NMS, write the results JSON and run COCOeval (rank 0; other ranks return ``{}``).

        Returns the 10 COCO keypoint stats (:data:`keypoints.constants.COCO_STAT_NAMES`), ``num_instances`` (after
        NMS) and ``num_predictions`` (before NMS, repeated instance ids dropped). No prediction at all gives 0.0 stats
        and a warning.
        """
        preds = self._gather()
        if is_distributed() and get_rank() != 0:
            return {}
        results = [] if preds is None else predictions_to_results(
            preds["image_ids"], preds["keypoints"], preds["box_scores"], preds["areas"],
            kpt_score_thr=self.kpt_score_thr, oks_nms_thr=self.oks_nms_thr, soft_nms=self.soft_nms, sigmas=self.sigmas,
            category_ids=preds["category_ids"])
        if self.output_dir is not None:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            self.results_path = self.output_dir / RESULTS_FILENAME
            self.results_path.write_text(json.dumps(results))
            logger.info("wrote %d keypoint results to %s", len(results), self.results_path)
        _check_image_ids([r["image_id"] for r in results], self.coco_gt)
        metrics = evaluate_results(results, self.coco_gt, sigmas=self.sigmas, box_source=self.box_source,
                                   category_id=self.category_ids)
        metrics["num_predictions"] = 0 if preds is None else len(preds["image_ids"])
        return metrics
