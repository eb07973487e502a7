"""The Python API: a BGR image (and optionally person boxes) in, keypoints in image pixels out.

    import cv2
    from keypoints import PoseEstimator

    estimator = PoseEstimator.from_checkpoint("outputs/quickstart/best.pth")            # PyTorch, CPU or CUDA
    estimator = PoseEstimator.from_checkpoint("model.onnx")                             # ONNX Runtime
    prediction = estimator(cv2.imread("people.jpg"), boxes=[[x, y, w, h], ...])        # box_mode "given"
    for person in prediction.people:
        person.keypoints, person.box, person.score     # (K, 3) x, y, score; (4,) xywh; pose score
    estimator.metadata                                 # the model's keypoints (names, skeleton, sigmas, category)

Without boxes the estimator's :class:`~keypoints.detection.BoxTracker` chooses them and the prediction says how
(``box_mode``): ``detector`` (a torchvision detector with local weights, re-run every N frames), ``tracked``
(boxes from the previous frame's keypoints) or ``full-frame`` (the whole image: the first frame, and the
fallback when nothing is tracked and there is no detector). Call :meth:`PoseEstimator.reset` between unrelated
images.

Video (``tracking=True``; never for images or evaluation): every person gets a ``track_id`` that stays while they
stay in view, and keypoints are smoothed per person with the One-Euro filter (``cfg.video``; see
:mod:`keypoints.tracking` and :mod:`keypoints.smoothing`). Pass each frame's time in seconds, and reset between
clips:

    stream = PoseEstimator.from_checkpoint("best.pth", tracking=True)           # smoothing: cfg.video (one-euro)
    for index, frame in enumerate(frames):
        prediction = stream(frame, timestamp=index / fps)                        # None: the wall clock (webcams)
        [(p.track_id, p.keypoints) for p in prediction.people]
    stream.reset()

Pipeline (one batch per image): :class:`keypoints.inference.TopDownInference` (box -> crop -> any backend with the
flip test -> decode to image pixels; the same path as evaluation) -> :func:`keypoints.postprocess.select_instances`
(pose score = box score x mean keypoint score above the threshold; OKS-NMS across the people of the frame, except
for boxes given by the caller: one result per given box, in order). The keypoints, OKS sigmas and category are
the model file's (:attr:`PoseEstimator.metadata`): a model trained on another dataset (animals, hands, ...) needs no
extra setting; a person detector only makes sense for person models.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .backends import Backend, ModelInfo, TorchBackend, load_backend
from .config import Config
from .detection import BoxTracker, PersonDetector
from .inference import TopDownInference
from .metadata import DatasetMeta
from .postprocess import instance_areas, select_instances
from .tracking import PoseTracker


@dataclass
class PoseResult:
    """One person: ``keypoints`` ``(K, 3)`` = x, y in image pixels and the heatmap score; ``box`` ``(4,)`` xywh
    the crop was taken from; ``score`` the pose score; ``box_score`` the score of the box (1 unless detected)."""

    keypoints: np.ndarray
    box: np.ndarray
    score: float
    box_score: float = 1.0
    track_id: int | None = None  # the person's identity in a stream (tracking=True), else None

    def to_dict(self) -> dict:
        return {"keypoints": np.round(self.keypoints, 3).tolist(), "box": np.round(self.box, 2).tolist(),
                "score": round(float(self.score), 5), "box_score": round(float(self.box_score), 5),
                "track_id": self.track_id}


@dataclass
class Prediction:
    """The people of one image, best pose score first (given boxes: in their order), and how boxes were chosen."""

    people: list[PoseResult]
    box_mode: str  # given | detector | tracked | full-frame
    image_size: tuple[int, int]  # (width, height)
    crops: int = 0  # crops that went through the network (flipped copies not counted)
    num_keypoints: int = 17

    @property
    def keypoints(self) -> np.ndarray:
        """All people's keypoints ``(N, K, 3)``."""
        if not self.people:
            return np.zeros((0, self.num_keypoints, 3), np.float32)
        return np.stack([p.keypoints for p in self.people])

    def to_dict(self) -> dict:
        return {"box_mode": self.box_mode, "image_size": list(self.image_size), "crops": self.crops,
                "people": [p.to_dict() for p in self.people]}


def check_image(image_bgr: object) -> np.ndarray:
    """The API's image contract: a non-empty uint8 BGR array ``(H, W, 3)`` as ``cv2.imread`` gives it."""
    if not isinstance(image_bgr, np.ndarray) or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise ValueError(f"expected a BGR image (H, W, 3) as cv2.imread gives it, got "
                         f"{getattr(image_bgr, 'shape', type(image_bgr).__name__)}")
    if image_bgr.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image (values 0-255, as cv2.imread gives it), got {image_bgr.dtype}; "
                         f"convert it first, e.g. (img * 255).round().astype(np.uint8) for floats in 0-1")
    if image_bgr.shape[0] == 0 or image_bgr.shape[1] == 0:
        raise ValueError(f"the image is empty ({image_bgr.shape[1]}x{image_bgr.shape[0]} pixels)")
    return image_bgr


def check_boxes(boxes: object, box_scores: object | None,
                image_size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Caller boxes ``(N, 4)`` xywh (float64) with finite positive sizes, each overlapping the image of
    ``image_size`` (width, height) when given, and their scores ``(N,)``: finite and >= 0 (default 1)."""
    array = np.asarray(boxes, dtype=np.float64)
    if array.size == 0:
        array = array.reshape(0, 4)
    if array.ndim == 1 and array.shape[0] == 4:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"boxes must be (N, 4) [x, y, width, height] in image pixels, got shape {array.shape}")
    if not np.isfinite(array).all() or (array[:, 2:] <= 0).any():
        bad = int(np.flatnonzero(~np.isfinite(array).all(axis=1) | (array[:, 2:] <= 0).any(axis=1))[0])
        raise ValueError(f"box {bad} is {array[bad].tolist()}: boxes need finite coordinates and a positive width "
                         f"and height")
    if image_size is not None:
        w, h = image_size
        outside = (array[:, 0] >= w) | (array[:, 1] >= h) | (array[:, 0] + array[:, 2] <= 0) | \
            (array[:, 1] + array[:, 3] <= 0)
        if outside.any():
            bad = int(np.flatnonzero(outside)[0])
            raise ValueError(f"box {bad} is {array[bad].tolist()}: it lies wholly outside the {w}x{h} image "
                             f"(boxes are [x, y, width, height] in this image's pixels)")
    scores = np.ones(len(array)) if box_scores is None else np.asarray(box_scores, dtype=np.float64).reshape(-1)
    if len(scores) != len(array):
        raise ValueError(f"got {len(array)} boxes but {len(scores)} box scores; pass one score per box")
    if not (np.isfinite(scores) & (scores >= 0)).all():
        bad = int(np.flatnonzero(~(np.isfinite(scores) & (scores >= 0)))[0])
        raise ValueError(f"box score {bad} is {scores[bad]}: box scores must be finite numbers >= 0")
    return array, scores


class PoseEstimator:
    """Top-down keypoints for the people of an image through ``inference`` (any backend); see the module
    docstring for the pipeline and :meth:`from_checkpoint` for the usual way to build one."""

    def __init__(self, inference: TopDownInference, *, kpt_score_thr: float = 0.2, oks_nms_thr: float | None = 0.9,
                 tracker: BoxTracker | None = None, pose_tracker: PoseTracker | None = None) -> None:
        self.inference = inference
        self.kpt_score_thr, self.oks_nms_thr = float(kpt_score_thr), oks_nms_thr
        self.tracker = tracker if tracker is not None else BoxTracker()
        self.pose_tracker = pose_tracker  # track ids and smoothing of a stream; None: every image on its own

    @property
    def backend(self) -> Backend:
        return self.inference.backend

    @property
    def metadata(self) -> DatasetMeta:
        """The model's dataset metadata (keypoint names, skeleton, OKS sigmas, category, drawing colours)."""
        return self.backend.info.metadata

    def __repr__(self) -> str:
        return (f"PoseEstimator({self.backend!r}, flip={self.inference.flip}, detector={self.tracker.detector})")

    @classmethod
    def from_config(cls, model: nn.Module | Backend, cfg: Config, *, device: str | torch.device = "cpu",
                    flip: bool | None = None, detector: PersonDetector | None = None, redetect_every: int = 10,
                    track_kpt_thr: float = 0.3, min_pose_score: float = 0.25,
                    metadata: DatasetMeta | None = None, tracking: bool = False, smoothing: str | None = None,
                    min_cutoff: float | None = None, beta: float | None = None) -> "PoseEstimator":
        """Estimator for ``model`` (a pose network, run on ``device``, or any backend) with the geometry and test
        settings of ``cfg`` (``flip`` None: ``cfg.test.flip``). ``metadata``: the keypoints a bare network was
        trained on (default: COCO person for 17 heatmaps); a backend carries its own. ``tracking``: the calls are
        the frames of one stream: people get track ids and keypoints are smoothed (``smoothing`` none | one-euro,
        ``min_cutoff`` Hz, ``beta`` 1/pixel; None: ``cfg.video``'s)."""
        backend = model if isinstance(model, Backend) else TorchBackend(
            model.eval(), ModelInfo.from_config(cfg, metadata=metadata), device)
        tracker = BoxTracker(detector, redetect_every=redetect_every, kpt_thr=track_kpt_thr,
                             min_pose_score=min_pose_score)
        video = cfg.video
        smoothing = (video.smoothing if tracking else "none") if smoothing is None else smoothing
        if smoothing != "none" and not tracking:
            raise ValueError(f"smoothing={smoothing!r} needs tracking=True (each person's filter follows its track "
                             f"id); images and evaluation are never smoothed")
        pose_tracker = PoseTracker(
            backend.info.metadata.sigmas, match_thr=video.track_thr, max_missed=video.max_missed,
            kpt_thr=video.kpt_thr, smoothing=smoothing, d_cutoff=video.d_cutoff,
            min_cutoff=video.min_cutoff if min_cutoff is None else min_cutoff,
            beta=video.beta if beta is None else beta) if tracking else None
        return cls(TopDownInference.from_config(backend, cfg, flip=flip), kpt_score_thr=cfg.test.kpt_score_thr,
                   oks_nms_thr=cfg.test.oks_nms_thr, tracker=tracker, pose_tracker=pose_tracker)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto", backend: str = "auto", *,
                        trust_code: bool = False, threads: int | None = None, **kwargs) -> "PoseEstimator":
        """Estimator from any model file :func:`keypoints.backends.load_backend` reads, known by its content: a
        training checkpoint (PyTorch), an ONNX export (ONNX Runtime, or ``backend="openvino"``) or an AOTInductor
        package (compiled; it holds native code, so it loads only with ``trust_code=True``). ``device``: auto | cpu
        | cuda (torch); ``threads``: the runtime's CPU threads (default every core); other keyword arguments go to
        :meth:`from_config` (flip, detector, redetect_every, track_kpt_thr, min_pose_score, tracking, smoothing,
        min_cutoff, beta)."""
        model = load_backend(path, backend, trust_code=trust_code, device=device, threads=threads)
        return cls.from_config(model, model.config, **kwargs)

    def reset(self) -> None:
        """Forget the tracked boxes, track ids and filters (call between unrelated images or clips)."""
        self.tracker.reset()
        if self.pose_tracker is not None:
            self.pose_tracker.reset()

    def predict_boxes(self, image_bgr: np.ndarray, boxes: np.ndarray, box_scores: np.ndarray | None = None,
                      padding: np.ndarray | float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Keypoints ``(N, K, 3)`` (image pixels, score), pose scores ``(N,)`` and crop areas ``(N,)`` for
        ``boxes`` ``(N, 4)`` xywh with ``box_scores`` ``(N,)`` (default 1), all crops in one batch, in box order."""
        h, w = check_image(image_bgr).shape[:2]
        boxes, box_scores = check_boxes(boxes, box_scores, (w, h))
        keypoints, _, scale = self.inference.predict_boxes(image_bgr, boxes, padding)
        areas = instance_areas(scale)
        _, scores = select_instances(np.zeros(len(boxes)), keypoints, box_scores, areas,
                                     kpt_score_thr=self.kpt_score_thr, oks_nms_thr=None, sigmas=self.metadata.sigmas)
        return keypoints, scores, areas

    def __call__(self, image_bgr: np.ndarray, boxes: Sequence[Sequence[float]] | np.ndarray | None = None,
                 box_scores: Sequence[float] | np.ndarray | None = None, timestamp: float | None = None) -> Prediction:
        """People of one BGR uint8 image ``(H, W, 3)``. ``boxes`` ``(N, 4)`` xywh in image pixels (optional, with
        ``box_scores`` ``(N,)``); without them the tracker chooses (see the module docstring). With tracking, the
        frame's ``timestamp`` in seconds, increasing (a video's frame time; None: the wall clock, for cameras);
        without tracking it is not used."""
        h, w = check_image(image_bgr).shape[:2]
        num_keypoints = self.backend.info.num_keypoints
        padding = None
        if boxes is not None:
            (boxes, scores_in), mode = check_boxes(boxes, box_scores, (w, h)), "given"
        else:
            boxes, scores_in, mode = self.tracker.boxes(image_bgr)
            if mode == "full-frame":
                padding = 1.0  # the frame is the whole field of view: no margin to add
        if len(boxes) == 0:
            self.tracker.update(np.zeros((0, num_keypoints, 3)), np.zeros(0), (w, h))
            self._track(np.zeros((0, num_keypoints, 3)), timestamp)  # every track counts a missed frame
            return Prediction([], mode, (w, h), num_keypoints=num_keypoints)
        keypoints, _, scale = self.inference.predict_boxes(image_bgr, boxes, padding)
        order, scores = select_instances(np.zeros(len(boxes)), keypoints, scores_in, instance_areas(scale),
                                         kpt_score_thr=self.kpt_score_thr,
                                         oks_nms_thr=None if mode == "given" else self.oks_nms_thr,
                                         sigmas=self.metadata.sigmas)
        if mode == "given":
            order = np.arange(len(boxes))
        self.tracker.update(keypoints[order], scores[order], (w, h))  # boxes follow the unsmoothed keypoints
        track_ids, shown = self._track(keypoints[order], timestamp)
        people = [PoseResult(shown[j], np.asarray(boxes[i], np.float64).copy(), float(scores[i]),
                             float(scores_in[i]), track_ids[j]) for j, i in enumerate(order)]
        return Prediction(people, mode, (w, h), crops=len(boxes), num_keypoints=num_keypoints)

    def _track(self, keypoints: np.ndarray, timestamp: float | None) -> tuple[list[int | None], np.ndarray]:
        """(track id or None per person, keypoints ``(N, K, 3)`` smoothed by the pose tracker, same dtype) of this
        frame's people ``keypoints``; without tracking: Nones and the keypoints as they are."""
        if self.pose_tracker is None:
            return [None] * len(keypoints), keypoints
        ids, smoothed = self.pose_tracker.update(keypoints, time.perf_counter() if timestamp is None else timestamp)
        return [int(i) for i in ids], smoothed.astype(keypoints.dtype)
