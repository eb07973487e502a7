"""Post-processing of decoded poses: instance rescoring and OKS-NMS (the selection policy shared by evaluation and
the Python API; cropping, the flip test and decoding are in :mod:`keypoints.inference`).

Conventions: keypoint arrays are ``(N, K, 3)`` holding ``(x, y, score)`` in image pixels; crops are described by
``center`` and ``scale`` ``(N, 2)`` in image pixels as in :mod:`keypoints.geometry`. Rescoring is batched torch or
numpy; NMS is per image and small, so it runs in numpy on the CPU (the OKS matrix itself is vectorised).

The semantics follow the reference top-down recipe (SimpleBaseline/HRNet ``lib/nms/nms.py`` and
``lib/dataset/coco.py``, mmpose ``evaluation/functional/nms.py``):

- rescoring: instance score = box score x mean of the keypoint scores above ``thr`` (0 when none is above);
- OKS between two instances uses ``vars = (2 sigma)^2`` and the mean of the two instance areas,
  ``e = d^2 / vars / ((a_1 + a_2) / 2 + eps) / 2``, OKS = mean over joints of ``exp(-e)``;
- the instance area is the product of the padded crop box sides, ``scale[0] * scale[1]``.

``sigmas`` are the dataset's OKS constants ``(K,)`` (:attr:`keypoints.metadata.DatasetMeta.sigmas`); callers pass
them, the default is the COCO person's.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .constants import OKS_SIGMAS

__all__ = ["rescore", "instance_areas", "oks_matrix", "oks_nms", "soft_oks_nms", "nms_per_image", "select_instances"]


# ----------------------------------------------------------------------------- rescoring


def rescore(box_scores: torch.Tensor | np.ndarray, keypoint_scores: torch.Tensor | np.ndarray,
            thr: float = 0.2) -> torch.Tensor | np.ndarray:
    """Instance scores ``(B,)`` = box score ``(B,)`` x mean of the keypoint scores ``(B, K)`` above ``thr``.

    As HRNet's ``coco.py``: the mean runs over the joints whose score is strictly above ``thr``; an instance with no
    such joint gets score 0. Returns the same kind (torch or numpy) as ``keypoint_scores``.
    """
    is_numpy = isinstance(keypoint_scores, np.ndarray)
    s = torch.as_tensor(keypoint_scores)
    s = s.to(torch.float64 if s.dtype == torch.float64 else torch.float32)
    box = torch.as_tensor(box_scores, dtype=s.dtype, device=s.device).reshape(-1)
    if s.dim() != 2 or box.shape[0] != s.shape[0]:
        raise ValueError(f"rescore expects box_scores (B,) and keypoint_scores (B, K), got {tuple(box.shape)} and "
                         f"{tuple(s.shape)}")
    valid = s > thr
    total = torch.where(valid, s, torch.zeros_like(s)).sum(dim=1)
    count = valid.sum(dim=1)
    mean = torch.where(count > 0, total / count.clamp_min(1), torch.zeros_like(total))
    out = mean * box
    return out.cpu().numpy() if is_numpy else out


def instance_areas(scale: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """OKS-NMS instance areas ``(B,)`` (image px^2) = product of the padded crop box sides ``scale (B, 2)``."""
    return scale[..., 0] * scale[..., 1]


# ----------------------------------------------------------------------------- OKS and NMS (numpy, per image)


def oks_matrix(keypoints_a: np.ndarray, keypoints_b: np.ndarray, areas_a: np.ndarray, areas_b: np.ndarray,
               sigmas: Sequence[float] = OKS_SIGMAS, vis_thr: float | None = None) -> np.ndarray:
    """OKS between every pair of instances: keypoints ``(N, K, 2|3)`` and ``(M, K, 2|3)``, areas ``(N,)``, ``(M,)``
    (image px^2) -> ``(N, M)`` float64.

    HRNet/mmpose ``oks_iou``: ``e = d^2 / (2 sigma)^2 / ((a_n + a_m) / 2 + eps) / 2``, OKS = mean of ``exp(-e)`` over
    the joints. With ``vis_thr``, only joints whose scores exceed it in both instances count (mmpose's rule; HRNet's
    ``list(vg > t) and list(vd > t)`` only looks at the second instance, a known bug); no such joint gives OKS 0.
    """
    a = np.asarray(keypoints_a, dtype=np.float64)
    b = np.asarray(keypoints_b, dtype=np.float64)
    sig = np.asarray(sigmas, dtype=np.float64)
    if a.ndim != 3 or b.ndim != 3 or a.shape[1] != sig.shape[0] or b.shape[1] != sig.shape[0]:
        raise ValueError(f"oks_matrix expects keypoints (N, {len(sig)}, 2|3) and (M, {len(sig)}, 2|3), got "
                         f"{a.shape} and {b.shape}; the sigmas must have one entry per keypoint")
    variances = (sig * 2) ** 2
    dx = b[None, :, :, 0] - a[:, None, :, 0]
    dy = b[None, :, :, 1] - a[:, None, :, 1]
    mean_area = (np.asarray(areas_a, dtype=np.float64)[:, None] + np.asarray(areas_b, dtype=np.float64)[None, :]) / 2
    e = (dx ** 2 + dy ** 2) / variances / (mean_area[..., None] + np.spacing(1)) / 2
    if vis_thr is None:
        return np.exp(-e).mean(axis=-1)
    mask = (a[:, None, :, 2] > vis_thr) & (b[None, :, :, 2] > vis_thr)
    count = mask.sum(axis=-1)
    total = np.where(mask, np.exp(-e), 0.0).sum(axis=-1)
    return np.where(count > 0, total / np.maximum(count, 1), 0.0)


def _descending_order(scores: np.ndarray) -> np.ndarray:
    # HRNet's ``scores.argsort()[::-1]`` with a stable sort, so that ties resolve the same way on every platform
    # (equal scores: the larger index comes first, which is what HRNet's small-array argsort did).
    return np.argsort(scores, kind="stable")[::-1]


def oks_nms(keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray, thr: float = 0.9,
            sigmas: Sequence[float] = OKS_SIGMAS, vis_thr: float | None = None) -> np.ndarray:
    """Greedy OKS-NMS of one image's instances ``(N, K, 3)`` with ``scores (N,)`` and ``areas (N,)``.

    Identical to HRNet's ``oks_nms``: visit instances by descending score, keep the current one and drop every
    remaining instance whose OKS with it is above ``thr`` (OKS <= thr survives). Returns the kept indices ``(n,)``
    (int64) in descending score order; ties in score: the larger index first.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(scores) == 0:
        return np.zeros(0, dtype=np.int64)
    oks = oks_matrix(keypoints, keypoints, areas, areas, sigmas=sigmas, vis_thr=vis_thr)
    order = _descending_order(scores)
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        order = order[1:][oks[i, order[1:]] <= thr]
    return np.asarray(keep, dtype=np.int64)


def soft_oks_nms(keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray, thr: float = 0.9,
                 max_dets: int = 20, sigmas: Sequence[float] = OKS_SIGMAS,
                 vis_thr: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Soft OKS-NMS (mmpose's ``soft_oks_nms``, Gaussian rescoring) of one image's instances.

    Repeatedly take the highest (decayed) score, then decay every remaining score by ``exp(-oks^2 / thr)`` with its
    OKS to the taken instance; stop after ``max_dets`` (COCOeval keeps 20 per image). Returns the kept indices
    ``(n,)`` in selection order and their decayed scores ``(n,)``. mmpose and HRNet keep only the indices and
    report the original instance scores; :func:`nms_per_image` does the same.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(scores) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    oks = oks_matrix(keypoints, keypoints, areas, areas, sigmas=sigmas, vis_thr=vis_thr)
    order = _descending_order(scores)
    current = scores[order]
    keep, kept_scores = [], []
    while order.size > 0 and len(keep) < max_dets:
        i = order[0]
        keep.append(i)
        kept_scores.append(current[0])
        order, current = order[1:], current[1:] * np.exp(-oks[i, order[1:]] ** 2 / thr)
        resort = _descending_order(current)
        order, current = order[resort], current[resort]
    return np.asarray(keep, dtype=np.int64), np.asarray(kept_scores)


def nms_per_image(image_ids: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray, *,
                  thr: float = 0.9, soft: bool = False, sigmas: Sequence[float] = OKS_SIGMAS,
                  vis_thr: float | None = None, max_dets: int = 20) -> np.ndarray:
    """Run (soft) OKS-NMS separately on the instances of each image.

    ``image_ids (N,)``, ``keypoints (N, K, 3)``, ``scores (N,)``, ``areas (N,)`` -> indices into the N instances
    (int64), grouped by ascending image id, each group in NMS order. ``max_dets`` applies to soft NMS only (as
    mmpose); hard NMS keeps every survivor and COCOeval then takes the best 20 per image.
    """
    image_ids = np.asarray(image_ids).reshape(-1)
    keypoints = np.asarray(keypoints)
    scores = np.asarray(scores).reshape(-1)
    areas = np.asarray(areas).reshape(-1)
    if not (len(image_ids) == len(keypoints) == len(scores) == len(areas)):
        raise ValueError(f"nms_per_image needs one entry per instance, got {len(image_ids)} image ids, "
                         f"{len(keypoints)} keypoint sets, {len(scores)} scores and {len(areas)} areas")
    kept = []
    sorted_idx = np.argsort(image_ids, kind="stable")
    bounds = np.flatnonzero(np.diff(image_ids[sorted_idx])) + 1
    for group in np.split(sorted_idx, bounds):
        if group.size == 0:
            continue
        if soft:
            local, _ = soft_oks_nms(keypoints[group], scores[group], areas[group], thr=thr, max_dets=max_dets,
                                    sigmas=sigmas, vis_thr=vis_thr)
        else:
            local = oks_nms(keypoints[group], scores[group], areas[group], thr=thr, sigmas=sigmas, vis_thr=vis_thr)
        kept.append(group[local])
    return np.concatenate(kept).astype(np.int64) if kept else np.zeros(0, dtype=np.int64)


def select_instances(image_ids: np.ndarray, keypoints: np.ndarray, box_scores: np.ndarray, areas: np.ndarray, *,
                     kpt_score_thr: float = 0.2, oks_nms_thr: float | None = 0.9, soft: bool = False,
                     sigmas: Sequence[float] = OKS_SIGMAS) -> tuple[np.ndarray, np.ndarray]:
    """The instance policy of the test-time path (SPEC section 7), shared by evaluation and the Python API.

    Rescores every instance (box score ``(N,)`` x mean keypoint score above ``kpt_score_thr`` of ``keypoints``
    ``(N, K, 3)``) and runs (soft) OKS-NMS per image (``image_ids (N,)``, ``areas (N,)``); ``oks_nms_thr=None``
    keeps every instance, best score first per image. Returns (kept indices ``(n,)`` int64, grouped by ascending
    image id and in NMS order within an image; rescored instance scores ``(N,)`` of all instances).
    """
    keypoints = np.asarray(keypoints)
    scores = rescore(np.asarray(box_scores), keypoints[..., 2], thr=kpt_score_thr)
    if oks_nms_thr is None:
        image_ids = np.asarray(image_ids).reshape(-1)
        order = np.lexsort((-scores, image_ids))  # by image, then best score first (stable on ties)
        return order.astype(np.int64), scores
    keep = nms_per_image(image_ids, keypoints, scores, areas, thr=oks_nms_thr, soft=soft, sigmas=sigmas)
    return keep, scores
