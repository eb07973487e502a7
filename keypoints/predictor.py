"""The Python API: a BGR image (and optionally person boxes) in, COCO keypoints in image pixels out.

    import cv2
    from keypoints import PoseEstimator

    estimator = PoseEstimator.from_checkpoint("outputs/quickstart/best.pth")            # PyTorch, CPU or CUDA
    estimator = PoseEstimator.from_checkpoint("model.onnx", backend="onnxruntime")      # tools/export.py output
    prediction = estimator(cv2.imread("people.jpg"), boxes=[[x, y, w, h], ...])        # box_mode "given"
    for person in prediction.people:
        person.keypoints, person.box, person.score     # (17, 3) x, y, score; (4,) xywh; pose score

Without boxes the estimator's :class:`~keypoints.detection.BoxTracker` chooses them and the prediction says how
(``box_mode``): ``detector`` (a torchvision detector with local weights, re-run every N frames), ``tracked``
(boxes from the previous frame's keypoints) or ``full-frame`` (the whole image: the first frame, and the
fallback when nothing is tracked and there is no detector). Call :meth:`PoseEstimator.reset` between unrelated
images.

Pipeline (one batch per image): box -> crop ``center``/``scale`` (:func:`keypoints.geometry.box_to_center_scale`,
padding and aspect from the config; the full frame is not padded) -> ``cv2.warpAffine`` of
:func:`~keypoints.geometry.get_affine_transform` -> RGB uint8 crops ``(N, 3, H, W)`` (the network normalises)
-> :func:`keypoints.engine.predict_heatmaps` (flip test optional) -> :func:`keypoints.postprocess.decode_to_image`
-> pose score = :func:`~keypoints.postprocess.rescore` (box score x mean keypoint score above the threshold)
-> OKS-NMS across the people of the frame (not for boxes given by the caller: one result per given box, in order).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
from torch import nn

from .codec import HeatmapCodec
from .config import Config, config_from_dict
from .constants import FLIP_INDEX
from .detection import BoxTracker, PersonDetector
from .engine import predict_heatmaps
from .geometry import box_to_center_scale, get_affine_transform
from .postprocess import decode_to_image, instance_areas, oks_nms, rescore

BACKENDS = ("torch", "onnxruntime")


@dataclass
class PoseResult:
    """One person: ``keypoints`` ``(K, 3)`` = x, y in image pixels and the heatmap score; ``box`` ``(4,)`` xywh
    the crop was taken from; ``score`` the pose score; ``box_score`` the score of the box (1 unless detected)."""

    keypoints: np.ndarray
    box: np.ndarray
    score: float
    box_score: float = 1.0

    def to_dict(self) -> dict:
        return {"keypoints": np.round(self.keypoints, 3).tolist(), "box": np.round(self.box, 2).tolist(),
                "score": round(float(self.score), 5), "box_score": round(float(self.box_score), 5)}


@dataclass
class Prediction:
    """The people of one image, best pose score first (given boxes: in their order), and how boxes were chosen."""

    people: list[PoseResult]
    box_mode: str  # given | detector | tracked | full-frame
    image_size: tuple[int, int]  # (width, height)
    crops: int = 0  # crops that went through the network (flipped copies not counted)
    extra: dict = field(default_factory=dict)

    @property
    def keypoints(self) -> np.ndarray:
        """All people's keypoints ``(N, K, 3)``."""
        return np.stack([p.keypoints for p in self.people]) if self.people else np.zeros((0, 17, 3), np.float32)

    def to_dict(self) -> dict:
        return {"box_mode": self.box_mode, "image_size": list(self.image_size), "crops": self.crops,
                "people": [p.to_dict() for p in self.people], **self.extra}


class PoseEstimator:
    """Top-down keypoints for the people of an image. ``model`` is the pose network (or an
    :class:`~keypoints.onnx_backend.OnnxPoseSession`): RGB crops ``(B, 3, H, W)`` in [0, 255] -> heatmaps.
    Sizes are ``(width, height)``; see the module docstring for the pipeline and :meth:`from_checkpoint`."""

    def __init__(self, model: nn.Module, *, input_size: tuple[int, int], heatmap_size: tuple[int, int],
                 sigma: float = 2.0, padding: float = 1.25, flip: bool = True, shift_heatmap: bool = True,
                 refine: str = "standard", kpt_score_thr: float = 0.2, oks_nms_thr: float | None = 0.9,
                 flip_index: Sequence[int] = FLIP_INDEX, device: str | torch.device = "cpu",
                 tracker: BoxTracker | None = None, backend: str = "torch") -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend={backend!r} is not valid; choose one of {', '.join(BACKENDS)}")
        self.device = torch.device(device)
        self.backend = backend
        if backend == "torch":
            model = model.eval().to(self.device)
            if self.device.type == "cpu":  # crops arrive as NHWC, i.e. already channels_last
                model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.codec = HeatmapCodec(input_size=input_size, heatmap_size=heatmap_size, sigma=sigma)
        self.input_size, self.padding = self.codec.input_size, float(padding)
        self.aspect_ratio = self.input_size[0] / self.input_size[1]
        self.flip, self.shift_heatmap, self.refine, self.flip_index = flip, shift_heatmap, refine, tuple(flip_index)
        self.kpt_score_thr, self.oks_nms_thr = float(kpt_score_thr), oks_nms_thr
        self.tracker = tracker if tracker is not None else BoxTracker()

    def __repr__(self) -> str:
        return (f"PoseEstimator(backend={self.backend}, device={self.device}, input_size={self.input_size}, "
                f"flip={self.flip}, detector={self.tracker.detector})")

    @classmethod
    def from_config(cls, model: nn.Module, cfg: Config, *, device: str | torch.device = "cpu",
                    backend: str = "torch", flip: bool | None = None, detector: PersonDetector | None = None,
                    redetect_every: int = 10, track_kpt_thr: float = 0.3,
                    min_pose_score: float = 0.25) -> "PoseEstimator":
        """Estimator for ``model`` with the geometry and test settings of ``cfg`` (``flip`` None: ``cfg.test.flip``)."""
        tracker = BoxTracker(detector, redetect_every=redetect_every, kpt_thr=track_kpt_thr,
                             min_pose_score=min_pose_score)
        return cls(model, input_size=cfg.data.input_size, heatmap_size=cfg.data.heatmap_size, sigma=cfg.data.sigma,
                   padding=cfg.data.padding, flip=cfg.test.flip if flip is None else flip,
                   shift_heatmap=cfg.test.shift_heatmap, refine=cfg.test.refine, kpt_score_thr=cfg.test.kpt_score_thr,
                   oks_nms_thr=cfg.test.oks_nms_thr, device=device, tracker=tracker, backend=backend)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto", backend: str = "torch", *,
                        onnx_path: str | Path | None = None, threads: int | None = None, **kwargs) -> "PoseEstimator":
        """Estimator from a training checkpoint (``backend="torch"``) or an exported model
        (``backend="onnxruntime"``: ``path`` is the ``.onnx`` file written by tools/export.py, or the checkpoint
        with ``onnx_path``, default the checkpoint's name with ``.onnx``). ``device``: auto | cpu | cuda (torch);
        ``threads``: ONNX Runtime intra-op threads (default every core); other keyword arguments go to
        :meth:`from_config` (flip, detector, redetect_every, track_kpt_thr, min_pose_score)."""
        from .utils.checkpoint import load_checkpoint
        from .utils.runtime import select_device

        path = Path(path)
        if backend not in BACKENDS:
            raise ValueError(f"backend={backend!r} is not valid; choose one of {', '.join(BACKENDS)}")
        if backend == "torch":
            if path.suffix == ".onnx":
                raise ValueError(f"{path} is an ONNX model; use backend='onnxruntime' or pass the .pth checkpoint")
            from .models import load_pose_model

            model, cfg = load_pose_model(str(path))
            return cls.from_config(model, cfg, device=select_device(device), **kwargs)
        from .onnx_backend import CONFIG_KEY, OnnxPoseSession

        if path.suffix == ".onnx":
            onnx_path = path
            session = OnnxPoseSession(onnx_path, threads=threads)
            if CONFIG_KEY not in session.metadata:
                raise ValueError(f"{path} has no '{CONFIG_KEY}' metadata (not written by tools/export.py); pass the "
                                 f"training checkpoint with onnx_path={str(path)!r}")
            cfg = config_from_dict(json.loads(session.metadata[CONFIG_KEY]))
        else:
            cfg = config_from_dict(load_checkpoint(path)["config"])
            onnx_path = Path(onnx_path) if onnx_path is not None else path.with_suffix(".onnx")
            if not onnx_path.is_file():
                raise FileNotFoundError(f"ONNX model not found: {onnx_path}; export it first: python tools/export.py "
                                        f"--checkpoint {path} --output {onnx_path}")
            session = OnnxPoseSession(onnx_path, threads=threads)
        return cls.from_config(session, cfg, device="cpu", backend="onnxruntime", **kwargs)

    def reset(self) -> None:
        """Forget the tracked boxes (call between unrelated images)."""
        self.tracker.reset()

    # ------------------------------------------------------------------ steps

    def crop_boxes(self, image_bgr: np.ndarray, boxes: np.ndarray,
                   padding: np.ndarray | float | None = None) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
        """Crops ``(N, 3, H, W)`` uint8 RGB (channels_last memory) of xywh ``boxes`` ``(N, 4)``, with each crop's
        ``center`` and ``scale`` ``(N, 2)`` in image pixels. ``padding``: scalar or ``(N,)``, default the config's."""
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        pad = self.padding if padding is None else np.asarray(padding, dtype=np.float64).reshape(-1, 1)
        center, scale = box_to_center_scale(boxes, self.aspect_ratio, pad)
        w, h = self.input_size
        batch = np.empty((len(boxes), h, w, 3), dtype=np.uint8)
        for i in range(len(boxes)):
            matrix = get_affine_transform(center[i], scale[i], 0.0, self.input_size)
            cv2.warpAffine(image_bgr, matrix, (w, h), dst=batch[i], flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        rgb = torch.from_numpy(np.ascontiguousarray(batch[..., ::-1])).permute(0, 3, 1, 2)
        return rgb, center, scale

    def predict_boxes(self, image_bgr: np.ndarray, boxes: np.ndarray, box_scores: np.ndarray | None = None,
                      padding: np.ndarray | float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Keypoints ``(N, K, 3)`` (image pixels, score), pose scores ``(N,)`` and crop areas ``(N,)`` for
        ``boxes`` ``(N, 4)`` xywh with ``box_scores`` ``(N,)`` (default 1), all crops in one batch."""
        crops, center, scale = self.crop_boxes(image_bgr, boxes, padding)
        box_scores = np.ones(len(crops), np.float32) if box_scores is None else np.asarray(box_scores, np.float32)
        heatmaps = predict_heatmaps(self.model, crops.to(self.device), flip=self.flip, flip_index=self.flip_index,
                                    shift_heatmap=self.shift_heatmap)
        keypoints = decode_to_image(heatmaps, self.codec, center, scale, refine=self.refine).cpu().numpy()
        scores = rescore(box_scores.reshape(-1), keypoints[..., 2], thr=self.kpt_score_thr)
        return keypoints, scores, instance_areas(scale)

    def __call__(self, image_bgr: np.ndarray, boxes: Sequence[Sequence[float]] | np.ndarray | None = None,
                 box_scores: Sequence[float] | np.ndarray | None = None) -> Prediction:
        """People of one BGR uint8 image ``(H, W, 3)``. ``boxes`` ``(N, 4)`` xywh in image pixels (optional, with
        ``box_scores`` ``(N,)``); without them the tracker chooses (see the module docstring)."""
        if not isinstance(image_bgr, np.ndarray) or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
            raise ValueError(f"expected a BGR image (H, W, 3) as cv2.imread gives it, got "
                             f"{getattr(image_bgr, 'shape', type(image_bgr).__name__)}")
        h, w = image_bgr.shape[:2]
        padding = None
        if boxes is not None:
            boxes, mode = np.asarray(boxes, dtype=np.float32).reshape(-1, 4), "given"
            scores_in = np.ones(len(boxes), np.float32) if box_scores is None else np.asarray(box_scores, np.float32)
            if len(scores_in) != len(boxes):
                raise ValueError(f"got {len(boxes)} boxes but {len(scores_in)} box scores; pass one score per box")
        else:
            boxes, scores_in, mode = self.tracker.boxes(image_bgr)
            if mode == "full-frame":
                padding = 1.0  # the frame is the whole field of view: no margin to add
        if len(boxes) == 0:
            self.tracker.update(np.zeros((0, len(self.flip_index), 3)), np.zeros(0), (w, h))
            return Prediction([], mode, (w, h))
        keypoints, scores, areas = self.predict_boxes(image_bgr, boxes, scores_in, padding)
        order = np.arange(len(boxes))
        if mode != "given":
            order = oks_nms(keypoints, scores, areas, thr=self.oks_nms_thr) if self.oks_nms_thr is not None \
                else np.argsort(-scores, kind="stable")
        self.tracker.update(keypoints[order], scores[order], (w, h))
        people = [PoseResult(keypoints[i], boxes[i].copy(), float(scores[i]), float(scores_in[i])) for i in order]
        return Prediction(people, mode, (w, h), crops=len(boxes))
