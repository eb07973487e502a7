"""Top-down crop transforms: random geometry (flip, half-body, scale, rotation, shift), the affine crop,
and photometric augmentation with albumentations on the crop.

Conventions (as :mod:`keypoints.geometry`): image pixels with pixel centres at integer coordinates;
a crop is ``center`` (x, y) and ``scale`` (w, h) in image pixels, mapped to the network input of
``input_size`` (width, height); rotation in degrees, counter-clockwise as displayed.

The horizontal flip is folded into the affine matrix instead of flipping the whole image
(x' = W_img - 1 - x, an exact pixel permutation, so the warp samples the same values as
HRNet's ``image[:, ::-1]`` followed by the crop, without copying the full image). Keypoints
go through the same matrix and the left/right joints are swapped with ``flip_index``. The flip index and the
upper-body set are the dataset's (:class:`keypoints.metadata.DatasetMeta`); the defaults are the COCO person's.

Random draws (geometry and albumentations alike) come from the transform's own
``numpy.random.Generator``; :meth:`TopDownTransform.reseed` restarts it. The dataset reseeds it per
sample when the sampler passes ``(index, seed)`` (``keypoints.data.sampler.SeededSampler``), so the
augmentation of a sample depends only on (seed, epoch, index), not on workers or resumption.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import albumentations as A
import cv2
import numpy as np

from ..constants import FLIP_INDEX, UPPER_BODY
from ..geometry import affine_points, get_affine_transform, warp_crop

FAMILIES = ("hrnet", "mmpose")


@dataclass
class CropParams:
    """One sampled crop. ``center``/``scale`` are in the (possibly flipped) image, in pixels."""

    center: np.ndarray  # (2,) float64, crop centre (x, y)
    scale: np.ndarray  # (2,) float64, crop box (w, h)
    rotation: float = 0.0  # degrees, counter-clockwise
    shift: tuple[float, float] = (0.0, 0.0)  # centre shift as a fraction of ``scale``
    flip: bool = False  # the image (and keypoints) are mirrored before the crop
    half_body: bool = False  # ``center``/``scale`` come from the half-body extent


def flip_matrix(image_width: int) -> np.ndarray:
    """3x3 matrix of the horizontal flip x' = W - 1 - x of an image ``image_width`` pixels wide."""
    return np.array([[-1.0, 0.0, image_width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def flip_keypoints(keypoints: np.ndarray, visibility: np.ndarray, image_width: int,
                   flip_index: Sequence[int] = FLIP_INDEX) -> tuple[np.ndarray, np.ndarray]:
    """Mirror keypoints ``(K, 2)`` (x' = W - 1 - x) and swap left/right joints; visibility ``(K,)`` follows."""
    index = np.asarray(flip_index)
    flipped = np.array(keypoints, dtype=np.float32, copy=True)
    flipped[:, 0] = image_width - 1 - flipped[:, 0]
    return flipped[index], np.asarray(visibility)[index]


def truncated_normal(rng: np.random.Generator, low: float = -1.0, high: float = 1.0) -> float:
    """One standard-normal draw restricted to [low, high] (rejection sampling; mmpose's truncnorm)."""
    while True:
        x = rng.standard_normal()
        if low <= x <= high:
            return float(x)


def half_body_box(keypoints: np.ndarray, visibility: np.ndarray, rng: np.random.Generator, aspect_ratio: float,
                  upper_body_prob: float = 0.7, enlarge: float = 1.5,
                  upper_ids: Sequence[int] = UPPER_BODY) -> tuple[np.ndarray, np.ndarray] | None:
    """HRNet's half-body crop: centre = mean of the chosen labelled joints, box = their extent with the short side
    fixed to ``aspect_ratio`` (w / h), times ``enlarge``. Upper body with ``upper_body_prob`` when it has more than
    two labelled joints, else the lower body (if it has more than two). None when fewer than two joints remain."""
    labelled = visibility > 0
    is_upper = np.zeros(len(keypoints), dtype=bool)
    is_upper[list(upper_ids)] = True
    upper, lower = keypoints[labelled & is_upper], keypoints[labelled & ~is_upper]
    if rng.random() < upper_body_prob and len(upper) > 2:
        chosen = upper
    else:
        chosen = lower if len(lower) > 2 else upper
    if len(chosen) < 2:
        return None
    center = chosen.mean(axis=0).astype(np.float64)
    w, h = (chosen.max(axis=0) - chosen.min(axis=0)).astype(np.float64)
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    elif w < aspect_ratio * h:
        w = h * aspect_ratio
    return center, np.array([w, h]) * enlarge


def build_photometric(brightness_contrast_prob: float = 0.5, hue_saturation_prob: float = 0.3, blur_prob: float = 0.1,
                      coarse_dropout_prob: float = 0.2, seed: int | None = 0) -> A.Compose:
    """Colour, blur and dropout augmentation of an RGB uint8 crop ``(H, W, 3)`` (no geometry, so no keypoints).

    Built with ``strict=True`` (a misspelt argument fails instead of being ignored) and ``seed`` for reproducibility.
    Dropout holes cover 5-15 % of each side, 1-4 holes, filled with 0 (like the constant border of the warp).
    """
    return A.Compose([
        A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=brightness_contrast_prob),
        A.HueSaturationValue(hue_shift_limit=10, sat_shift_limit=30, val_shift_limit=20, p=hue_saturation_prob),
        A.OneOf([A.Blur(blur_limit=(3, 5), p=1.0), A.MotionBlur(blur_limit=(3, 7), p=1.0)], p=blur_prob),
        A.CoarseDropout(num_holes_range=(1, 4), hole_height_range=(0.05, 0.15), hole_width_range=(0.05, 0.15),
                        fill=0, p=coarse_dropout_prob),
    ], strict=True, seed=seed)


class TopDownTransform:
    """Image + one person box -> network-input crop and keypoints in crop pixels.

    With the defaults it is the validation transform (the plain crop of ``center``/``scale``). Training sets the
    probabilities: horizontal flip, half-body (with at least ``half_body_min_joints`` labelled joints), scale and
    rotation from ``family`` ("hrnet": scale = clip(N(1, s), lo, hi) with s = (hi - lo) / 2, rotation =
    clip(N(0, r / 2), -r, r) with probability ``rotation_prob``; "mmpose": truncated normals on [-1, 1] mapped to
    the same ranges), an optional centre shift (truncated normal x ``shift_factor`` of the box, with ``shift_prob``),
    and ``photometric`` (an albumentations pipeline for the RGB crop, e.g. :func:`build_photometric`).
    """

    def __init__(self, input_size: tuple[int, int], *, flip_prob: float = 0.0, flip_index: Sequence[int] = FLIP_INDEX,
                 upper_body: Sequence[int] = UPPER_BODY, half_body_prob: float = 0.0, half_body_min_joints: int = 9,
                 upper_body_prob: float = 0.7, half_body_scale: float = 1.5, family: str = "hrnet",
                 scale_range: tuple[float, float] = (1.0, 1.0), rotation_max: float = 0.0, rotation_prob: float = 0.0,
                 shift_factor: float = 0.0, shift_prob: float = 0.0, photometric: A.Compose | None = None,
                 seed: int | None = 0) -> None:
        if family not in FAMILIES:
            raise ValueError(f"unknown augmentation family {family!r}; choose one of {', '.join(FAMILIES)}")
        if not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range must be 0 < low <= high, got {tuple(scale_range)}")
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.aspect_ratio = self.input_size[0] / self.input_size[1]
        self.flip_prob, self.flip_index, self.upper_body = flip_prob, tuple(flip_index), tuple(upper_body)
        self.half_body_prob, self.half_body_min_joints = half_body_prob, half_body_min_joints
        self.upper_body_prob, self.half_body_scale = upper_body_prob, half_body_scale
        self.family, self.scale_range = family, (float(scale_range[0]), float(scale_range[1]))
        self.rotation_max, self.rotation_prob = float(rotation_max), rotation_prob
        self.shift_factor, self.shift_prob = shift_factor, shift_prob
        self.photometric = photometric
        self.reseed(seed)
        # The validation transform draws nothing (and skips the sampling code entirely).
        self.is_random = bool(flip_prob > 0 or half_body_prob > 0 or self.scale_range[0] != self.scale_range[1]
                              or self.scale_range[0] != 1.0 or (rotation_prob > 0 and rotation_max > 0)
                              or (shift_prob > 0 and shift_factor > 0) or photometric is not None)

    def reseed(self, seed: int | None) -> None:
        """Restart the random stream from ``seed``; albumentations draws from the same generator (about 30 us, cheap
        enough per sample, where ``Compose.set_random_seed`` would build two generators per transform)."""
        self.rng = np.random.default_rng(seed)
        if self.photometric is not None:
            self.photometric.set_random_state(self.rng, random.Random(seed))

    def __repr__(self) -> str:
        if not self.is_random:
            return f"TopDownTransform(input_size={self.input_size}, no augmentation)"
        return (f"TopDownTransform(input_size={self.input_size}, flip={self.flip_prob}, "
                f"half_body={self.half_body_prob}, family={self.family}, scale={self.scale_range}, "
                f"rotation=+-{self.rotation_max}@{self.rotation_prob}, "
                f"shift={self.shift_factor}@{self.shift_prob}, photometric={self.photometric is not None})")

    # ------------------------------------------------------------------ sampling

    def _scale_rotation(self) -> tuple[float, float]:
        lo, hi = self.scale_range
        rng, r = self.rng, self.rotation_max
        if self.family == "hrnet":
            scale = float(np.clip(rng.normal(1.0, (hi - lo) / 2), lo, hi)) if hi > lo else lo
            rotate = rng.random() < self.rotation_prob
            rotation = float(np.clip(rng.normal(0.0, r / 2), -r, r)) if rotate and r > 0 else 0.0
        else:
            scale = truncated_normal(rng) * (hi - lo) / 2 + (hi + lo) / 2 if hi > lo else lo
            rotation = truncated_normal(rng) * r if r > 0 and rng.random() < self.rotation_prob else 0.0
        return scale, rotation

    def sample(self, center: np.ndarray, scale: np.ndarray, keypoints: np.ndarray, visibility: np.ndarray,
               image_width: int) -> CropParams:
        """Draw the crop for one instance. ``center``/``scale`` (2,) in image pixels; ``keypoints`` (K, 2) and
        ``visibility`` (K,) in the unflipped image; returned ``center`` is in the flipped image when ``flip``."""
        params = CropParams(center=np.asarray(center, np.float64).copy(), scale=np.asarray(scale, np.float64).copy())
        if not self.is_random:
            return params
        rng = self.rng
        if (self.half_body_prob > 0 and int((visibility > 0).sum()) >= self.half_body_min_joints
                and rng.random() < self.half_body_prob):
            box = half_body_box(keypoints, visibility, rng, self.aspect_ratio, self.upper_body_prob,
                                self.half_body_scale, upper_ids=self.upper_body)
            if box is not None:
                params.center, params.scale = box
                params.half_body = True
        factor, params.rotation = self._scale_rotation()
        params.scale = params.scale * factor
        if self.shift_factor > 0 and rng.random() < self.shift_prob:
            params.shift = (truncated_normal(rng) * self.shift_factor, truncated_normal(rng) * self.shift_factor)
        if self.flip_prob > 0 and rng.random() < self.flip_prob:
            params.flip = True
            params.center[0] = image_width - 1 - params.center[0]
        return params

    # ------------------------------------------------------------------ applying

    def matrix(self, params: CropParams, image_width: int) -> np.ndarray:
        """2x3 matrix from the original (unflipped) image to the crop, flip included."""
        m = get_affine_transform(params.center, params.scale, params.rotation, self.input_size, params.shift)
        if params.flip:
            m = m @ flip_matrix(image_width)
        return m

    def __call__(self, image: np.ndarray, center: np.ndarray, scale: np.ndarray, keypoints: np.ndarray,
                 visibility: np.ndarray, bgr: bool = False) -> dict:
        """Crop one instance.

        Args:
            image: ``(H, W, 3)`` uint8, RGB (or BGR as ``cv2.imread`` gives it with ``bgr=True``: the channel swap
                then happens on the small crop, which is cheaper than on the full image).
            center, scale: ``(2,)`` box centre (x, y) and size (w, h) in image pixels.
            keypoints: ``(K, 2)`` image pixels; visibility: ``(K,)`` COCO v in {0, 1, 2}.
        Returns:
            dict with ``image`` (input H, input W, 3) uint8 RGB crop, ``keypoints`` (K, 2) float32 crop pixels
            (left/right swapped when flipped), ``visibility`` (K,), ``matrix`` (2, 3) image -> crop and ``params``.
        """
        keypoints = np.asarray(keypoints, dtype=np.float32).reshape(-1, 2)
        visibility = np.asarray(visibility).reshape(-1)
        width = image.shape[1]
        params = self.sample(center, scale, keypoints, visibility, width)
        m = self.matrix(params, width)
        crop = warp_crop(image, m, self.input_size, bgr_to_rgb=bgr)
        if self.photometric is not None:
            crop = self.photometric(image=crop)["image"]
        points = affine_points(keypoints, m)
        if params.flip:
            if len(self.flip_index) != len(points):
                raise ValueError(f"flip_index has {len(self.flip_index)} entries for {len(points)} keypoints; pass the "
                                 f"dataset's flip index (DatasetMeta.flip_index)")
            index = np.asarray(self.flip_index)
            points, visibility = points[index], visibility[index]
        return {"image": crop, "keypoints": points, "visibility": visibility, "matrix": m, "params": params}


def inverse_matrix(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine matrix (crop -> image for a matrix from :meth:`TopDownTransform.matrix`)."""
    return cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))
