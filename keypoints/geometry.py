"""Box and crop geometry shared by the dataset (forward warp) and inference (back-projection).

Conventions: boxes are COCO ``[x, y, w, h]`` in image pixels; a crop is described by
its ``center`` (x, y) and ``scale`` (w, h), both in image pixels (no HRNet /200 factor);
sizes are ``(width, height)``. The crop maps ``center`` to ``(W/2, H/2)`` of the
network input and ``scale`` to ``(W, H)`` (the standard, non-UDP mapping).
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import torch


def box_to_center_scale(box: np.ndarray, aspect_ratio: float, padding: float = 1.25) -> tuple[np.ndarray, np.ndarray]:
    """COCO box(es) ``[..., 4]`` -> center ``[..., 2]``, scale ``[..., 2]``: padded by ``padding``, short side
    enlarged so that w / h == ``aspect_ratio`` (input width / height)."""
    box = np.asarray(box, dtype=np.float64)
    x, y, w, h = box[..., 0], box[..., 1], box[..., 2], box[..., 3]
    center = np.stack([x + w * 0.5, y + h * 0.5], axis=-1)
    wide = w > aspect_ratio * h
    w, h = np.where(wide, w, h * aspect_ratio), np.where(wide, w / aspect_ratio, h)
    return center.astype(np.float32), (np.stack([w, h], axis=-1) * padding).astype(np.float32)


def _rotate(point: np.ndarray, angle_rad: float) -> np.ndarray:
    s, c = math.sin(angle_rad), math.cos(angle_rad)
    return np.array([point[0] * c - point[1] * s, point[0] * s + point[1] * c], dtype=np.float64)


def get_affine_transform(center: np.ndarray, scale: np.ndarray, rotation: float, output_size: tuple[int, int],
                         shift: tuple[float, float] = (0.0, 0.0), inverse: bool = False) -> np.ndarray:
    """2x3 matrix mapping image pixels to the crop (or back with ``inverse``), from three point pairs.

    ``rotation`` in degrees (counter-clockwise in the image as displayed); ``shift`` is a fraction of ``scale``.
    """
    center = np.asarray(center, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    out_w, out_h = output_size
    src_center = center + scale * np.asarray(shift, dtype=np.float64)
    src_dir = _rotate(np.array([0.0, scale[0] * -0.5]), math.radians(rotation))
    dst_dir = np.array([0.0, out_w * -0.5])
    src = np.zeros((3, 2), dtype=np.float32)
    dst = np.zeros((3, 2), dtype=np.float32)
    src[0], src[1] = src_center, src_center + src_dir
    dst[0], dst[1] = (out_w * 0.5, out_h * 0.5), np.array([out_w * 0.5, out_h * 0.5]) + dst_dir
    # Third point: the second rotated by 90 degrees about the first.
    src[2] = src[1] + np.array([src[0, 1] - src[1, 1], src[1, 0] - src[0, 0]])
    dst[2] = dst[1] + np.array([dst[0, 1] - dst[1, 1], dst[1, 0] - dst[0, 0]])
    return cv2.getAffineTransform(dst, src) if inverse else cv2.getAffineTransform(src, dst)


def warp_crop(image: np.ndarray, matrix: np.ndarray, output_size: tuple[int, int], *, bgr_to_rgb: bool = True,
              dst: np.ndarray | None = None) -> np.ndarray:
    """The one crop warp of the project: ``image`` ``(H, W, 3)`` uint8 through the 2x3 ``matrix`` into an
    ``output_size`` (width, height) crop, linear interpolation, constant 0 border (SPEC section 4), and with
    ``bgr_to_rgb`` the channel order swapped on the small crop (exact). ``dst`` ``(h, w, 3)`` receives the result
    when given (e.g. a row of a batch). Training (random matrices), validation and the API all crop through here."""
    out = cv2.warpAffine(image, matrix, tuple(int(v) for v in output_size), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    if bgr_to_rgb:
        out = cv2.cvtColor(out, cv2.COLOR_BGR2RGB)
    if dst is None:
        return out
    dst[...] = out
    return dst


def affine_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to points ``[..., 2]``."""
    points = np.asarray(points, dtype=np.float64)
    return (points @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)


def crop_to_image(coords: torch.Tensor, center: torch.Tensor, scale: torch.Tensor,
                  input_size: tuple[int, int]) -> torch.Tensor:
    """Back-project crop-input coordinates ``(B, K, 2)`` to image pixels (no rotation), batched on any device.

    Inverse of :func:`get_affine_transform` with rotation 0 and no shift: x = c + (u - W/2) * s / W.
    """
    size = torch.tensor(input_size, dtype=coords.dtype, device=coords.device)
    center = center.to(coords.dtype)[:, None, :]
    scale = scale.to(coords.dtype)[:, None, :]
    return center + (coords - size / 2) * scale / size
