"""The test-time path, once: box -> crop -> backend forward with the flip test -> decode to image pixels.

    inference = TopDownInference.from_config(load_backend("best.pth"), cfg)
    crops, center, scale = inference.crop(image_bgr, boxes)          # (N, 3, H, W) uint8 RGB, (N, 2), (N, 2)
    keypoints = inference.predict_crops(crops, center, scale)[0]     # (N, K, 3): x, y in image pixels, score

Evaluation (:func:`keypoints.engine.evaluate`, fed by the validation dataset whose crops come from the same
:func:`keypoints.geometry.box_to_center_scale` and :func:`keypoints.geometry.warp_crop`) and the Python API
(:class:`keypoints.predictor.PoseEstimator`) both run through :class:`TopDownInference`; any backend
(:mod:`keypoints.backends`) plugs in. Rescoring and OKS-NMS are in :mod:`keypoints.postprocess`.

Conventions: crops are RGB uint8 ``(N, 3, H, W)`` (the network normalises); heatmaps ``(N, K, h, w)`` float32;
keypoints ``(N, K, 3)`` = (x, y) in image pixels (pixel centres at integer coordinates) and the heatmap maximum;
a crop is ``center`` / ``scale`` ``(N, 2)`` in image pixels as in :mod:`keypoints.geometry`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .backends import Backend
from .codec import HeatmapCodec
from .config import Config
from .geometry import box_to_center_scale, crop_to_image, get_affine_transform, warp_crop

__all__ = ["TopDownInference", "crop_boxes", "flip_images", "flip_back", "decode_to_image"]


# ----------------------------------------------------------------------------- crop


def crop_boxes(image_bgr: np.ndarray, boxes: np.ndarray, input_size: tuple[int, int],
               padding: np.ndarray | float = 1.25) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Crops of xywh ``boxes`` ``(N, 4)`` of a BGR uint8 image: RGB uint8 ``(N, 3, H, W)`` (channels-last memory)
    and each crop's ``center`` and ``scale`` ``(N, 2)`` in image pixels. ``padding``: scalar or ``(N,)``.
    The validation dataset crops with the same two functions (box -> center/scale, the warp), bit for bit."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    pad = np.asarray(padding, dtype=np.float64).reshape(-1, 1) if np.ndim(padding) else float(padding)
    width, height = input_size
    center, scale = box_to_center_scale(boxes, width / height, pad)
    batch = np.empty((len(boxes), height, width, 3), dtype=np.uint8)
    for i in range(len(boxes)):
        warp_crop(image_bgr, get_affine_transform(center[i], scale[i], 0.0, input_size), input_size, dst=batch[i])
    return torch.from_numpy(batch).permute(0, 3, 1, 2), center, scale


# ----------------------------------------------------------------------------- flip test


def flip_images(images: torch.Tensor) -> torch.Tensor:
    """Horizontal flip of a batch ``(B, C, H, W)`` (input pixel x -> W - 1 - x)."""
    if images.dim() != 4:
        raise ValueError(f"flip_images expects a (B, C, H, W) batch, got shape {tuple(images.shape)}")
    return images.flip(-1)


def flip_back(heatmaps_flipped: torch.Tensor, flip_index: Sequence[int], shift: bool = True) -> torch.Tensor:
    """Heatmaps ``(B, K, H, W)`` predicted on flipped crops -> heatmaps in the unflipped frame.

    Flips the maps horizontally and swaps the left/right channels (output channel ``k`` reads input channel
    ``flip_index[k]``). With ``shift`` (the standard, non-UDP correction) every column moves one cell to the right and
    column 0 keeps its value, exactly as HRNet's ``out[:, :, :, 1:] = out.clone()[:, :, :, 0:-1]``: mirroring the
    input maps pixel x to W_in - 1 - x, while mirroring the heatmap maps cell u to W_hm - 1 - u, which lands
    ``stride - 1`` input pixels (about one cell) too far left. Do not shift with UDP encoding. The caller averages the
    result with the unflipped heatmaps.
    """
    if heatmaps_flipped.dim() != 4:
        raise ValueError(f"flip_back expects heatmaps (B, K, H, W), got shape {tuple(heatmaps_flipped.shape)}")
    k = heatmaps_flipped.shape[1]
    if len(flip_index) != k:
        raise ValueError(f"flip_index has {len(flip_index)} entries but the heatmaps have {k} channels; "
                         "pass the flip index of the model's keypoints")
    index = torch.as_tensor(list(flip_index), dtype=torch.long, device=heatmaps_flipped.device)
    swapped = heatmaps_flipped.index_select(1, index)
    if not shift:
        return swapped.flip(-1)
    # Flip then shift right in one copy: column 0 is the flipped map's column 0 (input column W - 1), and
    # column j >= 1 is the flipped map's column j - 1, i.e. input column W - j.
    return torch.cat([swapped[..., -1:], swapped[..., 1:].flip(-1)], dim=-1)


# ----------------------------------------------------------------------------- decoding


def decode_to_image(heatmaps: torch.Tensor, codec: HeatmapCodec, center: torch.Tensor | np.ndarray,
                    scale: torch.Tensor | np.ndarray, refine: str = "standard") -> torch.Tensor:
    """Heatmaps ``(B, K, H, W)`` -> keypoints ``(B, K, 3)`` = (x, y) in image pixels and the heatmap maximum.

    ``center`` and ``scale`` ``(B, 2)`` describe each crop in image pixels (no rotation at test time); ``refine`` is
    one of :data:`keypoints.codec.REFINEMENTS`. Runs on the heatmaps' device, float32.
    """
    coords, scores = codec.decode(heatmaps, refine=refine)
    center = torch.as_tensor(center, dtype=coords.dtype, device=coords.device).reshape(-1, 2)
    scale = torch.as_tensor(scale, dtype=coords.dtype, device=coords.device).reshape(-1, 2)
    if center.shape[0] != coords.shape[0] or scale.shape[0] != coords.shape[0]:
        raise ValueError(f"center {tuple(center.shape)} and scale {tuple(scale.shape)} must hold one (x, y) row per "
                         f"heatmap batch entry ({coords.shape[0]})")
    image_xy = crop_to_image(coords, center, scale, codec.input_size)
    return torch.cat([image_xy, scores.unsqueeze(-1)], dim=-1)


# ----------------------------------------------------------------------------- the pipeline


class TopDownInference:
    """Crop, forward (flip test optional), flip back and decode for one ``backend``.

    Geometry (input and heatmap size, flip index) comes from ``backend.info``; ``padding`` is the box enlargement
    before the aspect fix, ``sigma`` the heatmap Gaussian (DARK's blur), ``refine`` one of
    :data:`keypoints.codec.REFINEMENTS`, ``shift_heatmap`` the one-column correction of the flipped maps.
    """

    def __init__(self, backend: Backend, *, padding: float = 1.25, flip: bool = True, shift_heatmap: bool = True,
                 refine: str = "standard", sigma: float = 2.0) -> None:
        info = backend.info
        self.backend = backend
        self.codec = HeatmapCodec(input_size=info.input_size, heatmap_size=info.heatmap_size, sigma=sigma)
        self.input_size, self.flip_index = self.codec.input_size, tuple(info.flip_index)
        self.padding, self.flip, self.shift_heatmap = float(padding), bool(flip), bool(shift_heatmap)
        self.refine = refine
        self.codec.decode_cells(torch.zeros(1, 1, 3, 3), refine)  # fail now on an unknown refinement

    @classmethod
    def from_config(cls, backend: Backend, cfg: Config, flip: bool | None = None) -> "TopDownInference":
        """Test-time settings of ``cfg`` (``cfg.data.padding``, ``sigma``; ``cfg.test.flip`` unless ``flip``)."""
        return cls(backend, padding=cfg.data.padding, flip=cfg.test.flip if flip is None else flip,
                   shift_heatmap=cfg.test.shift_heatmap, refine=cfg.test.refine, sigma=cfg.data.sigma)

    def __repr__(self) -> str:
        return f"TopDownInference({self.backend!r}, flip={self.flip}, refine={self.refine})"

    def crop(self, image_bgr: np.ndarray, boxes: np.ndarray,
             padding: np.ndarray | float | None = None) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
        """:func:`crop_boxes` with this model's input size (``padding`` default: the configured one)."""
        return crop_boxes(image_bgr, boxes, self.input_size, self.padding if padding is None else padding)

    def heatmaps(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(plain heatmaps, test-time heatmaps) float32 for crops ``(N, 3, H, W)``: with the flip test the flipped
        crops run in the same forward pass and their flipped-back maps are averaged in (SPEC section 6)."""
        if not self.flip:
            plain = self.backend(crops)
            return plain, plain
        out = self.backend(torch.cat([crops, flip_images(crops)]))
        n = crops.shape[0]
        plain = out[:n]
        return plain, 0.5 * (plain + flip_back(out[n:], self.flip_index, shift=self.shift_heatmap))

    def decode(self, heatmaps: torch.Tensor, center: torch.Tensor | np.ndarray,
               scale: torch.Tensor | np.ndarray) -> torch.Tensor:
        """:func:`decode_to_image` with this pipeline's codec and refinement: ``(N, K, 3)``."""
        return decode_to_image(heatmaps, self.codec, center, scale, refine=self.refine)

    def predict_crops(self, crops: torch.Tensor, center: torch.Tensor | np.ndarray,
                      scale: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(keypoints ``(N, K, 3)`` in image pixels, plain heatmaps ``(N, K, h, w)``) of crops with their boxes."""
        plain, heatmaps = self.heatmaps(crops)
        return self.decode(heatmaps, center, scale), plain

    def predict_boxes(self, image_bgr: np.ndarray, boxes: np.ndarray, padding: np.ndarray | float | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Keypoints ``(N, K, 3)`` (numpy), ``center`` and ``scale`` ``(N, 2)`` for xywh ``boxes`` of one image,
        all crops in one batch."""
        crops, center, scale = self.crop(image_bgr, boxes, padding)
        keypoints, _ = self.predict_crops(crops, center, scale)
        return keypoints.cpu().numpy(), center, scale
