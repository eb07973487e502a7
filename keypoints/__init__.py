"""Top-down COCO person keypoints with MobileNetV3 + Dynamic ReLU.

``from keypoints import PoseEstimator`` is the Python API (:mod:`keypoints.predictor`); it is imported on first
use so that ``import keypoints`` stays cheap (no torch, no OpenCV).
"""
import os

# albumentations (imported by keypoints.data) asks the internet for a newer version at import unless told not to.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"

__all__ = ["PoseEstimator", "PoseResult", "Prediction", "__version__"]


def __getattr__(name: str):
    if name in ("PoseEstimator", "PoseResult", "Prediction"):
        from . import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module 'keypoints' has no attribute {name!r}")
