"""Person boxes for the predictor: a torchvision detector loaded from local weights only, and a tracker that
derives the next frame's boxes from the current frame's keypoints.

Boxes are COCO ``[x, y, w, h]`` in image pixels (float32 arrays ``(N, 4)``), scores ``(N,)``.

- :class:`PersonDetector` wraps a torchvision COCO detector (``DETECTORS``). Weights come from a file the
  caller names or from the torch hub cache (``$TORCH_HOME/hub/checkpoints``); nothing is ever downloaded:
  the network is built with ``weights=None, weights_backbone=None`` and the local state dict is loaded.
- :class:`BoxTracker` chooses each frame's boxes and states the mode: ``detector`` (every
  ``redetect_every`` frames when a detector exists, and whenever no track is left), ``tracked`` (the extent of
  each previous pose's confident keypoints, enlarged x ``enlarge``), or ``full-frame`` (the whole image as one
  box: the first frame and the fallback when there is no detector and no track left).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

# Architecture name -> file name of its published COCO weights in the torch hub cache.
DETECTORS = {
    "ssdlite320_mobilenet_v3_large": "ssdlite320_mobilenet_v3_large_coco-a79551df.pth",
    "fasterrcnn_mobilenet_v3_large_320_fpn": "fasterrcnn_mobilenet_v3_large_320_fpn-907ea3f9.pth",
    "fasterrcnn_mobilenet_v3_large_fpn": "fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth",
}
COCO_PERSON_LABEL = 1  # torchvision detection models use the 91-entry COCO category list


def hub_weights(name: str) -> Path | None:
    """Path of ``name``'s published weights if they are already in the torch hub cache, else None."""
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}")
    path = Path(torch.hub.get_dir()) / "checkpoints" / DETECTORS[name]
    return path if path.is_file() else None


def find_local_detector() -> str | None:
    """Name of the first detector (fastest first) whose weights are in the torch hub cache, or None."""
    return next((name for name in DETECTORS if hub_weights(name) is not None), None)


def build_detector(name: str) -> torch.nn.Module:
    """Untrained torchvision detector ``name`` (91 COCO classes); builds nothing that downloads."""
    from torchvision.models import detection

    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}")
    return getattr(detection, name)(weights=None, weights_backbone=None)


class PersonDetector:
    """COCO person boxes from a torchvision detector: BGR uint8 image -> (boxes xywh ``(N, 4)``, scores ``(N,)``)."""

    def __init__(self, model: torch.nn.Module, name: str = "detector", score_thr: float = 0.5,
                 device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.name, self.score_thr = name, float(score_thr)

    def __repr__(self) -> str:
        return f"PersonDetector({self.name}, score_thr={self.score_thr})"

    @classmethod
    def from_weights(cls, name: str, weights: str | Path | None = None, score_thr: float = 0.5,
                     device: str | torch.device = "cpu") -> "PersonDetector":
        """Detector ``name`` with ``weights`` (a state-dict file) or, when None, the file in the torch hub cache."""
        path = Path(weights) if weights is not None else hub_weights(name)
        if path is None:
            cache = Path(torch.hub.get_dir()) / "checkpoints"
            raise FileNotFoundError(f"no weights for detector {name}: {DETECTORS[name]} is not in {cache}; copy it "
                                    f"there or pass its path (--detector-weights); nothing is downloaded")
        from .modelfile import load_weights, read_state_dict

        state = read_state_dict(path, f"{name} detector weights")
        model = build_detector(name)
        load_weights(model, state, f"detector weights {path}",
                     hint=f"pass --detector NAME matching the file (one of {', '.join(DETECTORS)})")
        return cls(model, name=name, score_thr=score_thr, device=device)

    @torch.no_grad()
    def __call__(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rgb = torch.from_numpy(np.ascontiguousarray(image_bgr[..., ::-1])).to(self.device)
        out = self.model([rgb.permute(2, 0, 1).float().div_(255)])[0]
        keep = (out["labels"] == COCO_PERSON_LABEL) & (out["scores"] >= self.score_thr)
        xyxy = out["boxes"][keep].float().cpu().numpy()
        boxes = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1) if len(xyxy) else np.zeros((0, 4))
        return boxes.astype(np.float32), out["scores"][keep].float().cpu().numpy()


def boxes_from_keypoints(keypoints: np.ndarray, image_size: tuple[int, int], kpt_thr: float = 0.3,
                         enlarge: float = 1.25, min_keypoints: int = 3,
                         min_size: float = 8.0) -> tuple[np.ndarray, np.ndarray]:
    """Boxes ``(M, 4)`` xywh around each pose's keypoints ``(N, K, 3)`` scoring above ``kpt_thr``: their extent
    enlarged ``enlarge`` times about its centre, clipped to the image ``(width, height)``. Returns the boxes and
    the indices ``(M,)`` of the poses that gave one (at least ``min_keypoints`` joints, a side >= ``min_size``)."""
    w_img, h_img = image_size
    boxes, kept = [], []
    for i, kp in enumerate(np.asarray(keypoints, dtype=np.float32)):
        pts = kp[kp[:, 2] > kpt_thr, :2]
        if len(pts) < min_keypoints:
            continue
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        centre, half = (lo + hi) / 2, (hi - lo) / 2 * enlarge
        x0, y0 = max(0.0, centre[0] - half[0]), max(0.0, centre[1] - half[1])
        x1, y1 = min(float(w_img), centre[0] + half[0]), min(float(h_img), centre[1] + half[1])
        if max(x1 - x0, y1 - y0) >= min_size and x1 > x0 and y1 > y0:
            boxes.append((x0, y0, x1 - x0, y1 - y0))
            kept.append(i)
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4), np.asarray(kept, dtype=np.int64)


class BoxTracker:
    """Chooses the person boxes of successive video frames (see the module docstring); ``reset()`` between
    unrelated images. Call :meth:`boxes` before the pose network and :meth:`update` with its result."""

    def __init__(self, detector: PersonDetector | None = None, redetect_every: int = 10, kpt_thr: float = 0.3,
                 min_pose_score: float = 0.25, enlarge: float = 1.25) -> None:
        if redetect_every < 1:
            raise ValueError(f"redetect_every must be at least 1 frame, got {redetect_every}")
        self.detector, self.redetect_every = detector, int(redetect_every)
        self.kpt_thr, self.min_pose_score, self.enlarge = float(kpt_thr), float(min_pose_score), float(enlarge)
        self.reset()

    def reset(self) -> None:
        self.tracks = np.zeros((0, 4), dtype=np.float32)
        self.since_detection = 0

    def boxes(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
        """(boxes ``(N, 4)`` xywh, box scores ``(N,)``, mode) for ``image`` (BGR ``(H, W, 3)``)."""
        h, w = image.shape[:2]
        due = self.detector is not None and (len(self.tracks) == 0 or self.since_detection >= self.redetect_every)
        if due:
            self.since_detection = 1
            boxes, scores = self.detector(image)
            return boxes, scores, "detector"
        self.since_detection += 1
        if len(self.tracks):
            return self.tracks, np.ones(len(self.tracks), dtype=np.float32), "tracked"
        return np.array([[0, 0, w, h]], dtype=np.float32), np.ones(1, dtype=np.float32), "full-frame"

    def update(self, keypoints: np.ndarray, pose_scores: np.ndarray, image_size: tuple[int, int]) -> None:
        """Next frame's tracks from this frame's poses ``(N, K, 3)`` with ``pose_scores (N,)`` and the image
        ``(width, height)``; poses scoring below ``min_pose_score`` are dropped."""
        keypoints = np.asarray(keypoints, dtype=np.float32)
        confident = np.asarray(pose_scores) >= self.min_pose_score
        self.tracks, _ = boxes_from_keypoints(keypoints[confident], image_size, self.kpt_thr, self.enlarge)
