"""Top-down keypoints (COCO person by default, or any COCO-format keypoint dataset) with MobileNetV3 + Dynamic ReLU.

``from keypoints import PoseEstimator`` is the Python API (:mod:`keypoints.predictor`); ``DatasetMeta``
(:mod:`keypoints.metadata`) describes a dataset's keypoints. Both are imported on first use so that
``import keypoints`` stays cheap (no torch, no OpenCV).
"""
import os

# albumentations (imported by keypoints.data) asks the internet for a newer version at import unless told not to.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"

__all__ = ["PoseEstimator", "PoseResult", "Prediction", "DatasetMeta", "__version__"]


def __getattr__(name: str):
    if name in ("PoseEstimator", "PoseResult", "Prediction"):
        from . import predictor

        return getattr(predictor, name)
    if name == "DatasetMeta":
        from .metadata import DatasetMeta

        return DatasetMeta
    raise AttributeError(f"module 'keypoints' has no attribute {name!r}")
