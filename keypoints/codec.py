"""HeatmapCodec: keypoints <-> Gaussian heatmaps, the one object shared by the dataset and inference.

Sizes are ``(width, height)``. Keypoints are in crop-input pixels (pixel centres at
integer coordinates); a heatmap cell ``v`` corresponds to input pixel ``v * stride``
(the standard, non-UDP convention of SimpleBaseline/HRNet/mmpose).

- ``encode`` (numpy, runs in data-loader workers): per joint a Gaussian with peak 1 and
  ``sigma`` cells, centred on the nearest heatmap cell ``int(x / stride + 0.5)``, within a
  ``6 * sigma + 1`` window; target weight 1 for labelled joints (v > 0) whose window
  touches the heatmap, else 0.
- ``decode`` (torch, batched on the tensor's device): argmax per heatmap, score = the
  maximum, then a sub-pixel refinement: ``standard`` moves 0.25 cell towards the higher
  neighbour in x and y, ``dark`` is DARK (Zhang et al. 2020: Gaussian blur, log, one
  Newton step), ``none`` keeps the integer argmax.
"""
from __future__ import annotations


import numpy as np
import torch
from torch.nn import functional as F

REFINEMENTS = ("none", "standard", "dark")


class HeatmapCodec:
    def __init__(self, input_size: tuple[int, int] = (192, 256), heatmap_size: tuple[int, int] = (48, 64),
                 sigma: float = 2.0) -> None:
        if len(input_size) != 2 or len(heatmap_size) != 2 or min(*input_size, *heatmap_size) <= 0:
            raise ValueError(f"codec sizes must be positive (width, height) pairs, got {input_size}, {heatmap_size}")
        if sigma <= 0:
            raise ValueError(f"codec sigma must be positive, got {sigma}")
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.heatmap_size = (int(heatmap_size[0]), int(heatmap_size[1]))
        self.sigma = float(sigma)
        self.stride = (self.input_size[0] / self.heatmap_size[0], self.input_size[1] / self.heatmap_size[1])

    def __repr__(self) -> str:
        return f"HeatmapCodec(input_size={self.input_size}, heatmap_size={self.heatmap_size}, sigma={self.sigma})"

    # ------------------------------------------------------------------ encode

    def encode(self, keypoints: np.ndarray, visibility: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints ``(K, 2)`` in input pixels and visibility ``(K,)`` -> heatmaps ``(K, H, W)``, weights ``(K,)``."""
        keypoints = np.asarray(keypoints, dtype=np.float32).reshape(-1, 2)
        visibility = np.asarray(visibility).reshape(-1)
        w, h = self.heatmap_size
        radius = 3.0 * self.sigma
        with np.errstate(invalid="ignore"):
            mu = np.floor(keypoints / np.asarray(self.stride, dtype=np.float32) + 0.5)  # nearest cell
        finite = np.isfinite(mu).all(axis=1)
        mu = np.where(finite[:, None], mu, -1e6)
        # The window [mu - radius, mu + radius] must overlap the heatmap (HRNet's ul/br test).
        inside = ((mu[:, 0] - radius < w) & (mu[:, 1] - radius < h)
                  & (mu[:, 0] + radius + 1 > 0) & (mu[:, 1] + radius + 1 > 0))
        weights = ((visibility > 0) & inside & finite).astype(np.float32)
        dx = np.arange(w, dtype=np.float32)[None, :] - mu[:, :1]
        dy = np.arange(h, dtype=np.float32)[None, :] - mu[:, 1:]
        gx = np.where(np.abs(dx) <= radius, np.exp(-dx ** 2 / (2 * self.sigma ** 2)), 0.0).astype(np.float32)
        gy = np.where(np.abs(dy) <= radius, np.exp(-dy ** 2 / (2 * self.sigma ** 2)), 0.0).astype(np.float32)
        heatmaps = gy[:, :, None] * gx[:, None, :] * weights[:, None, None]
        return heatmaps, weights

    # ------------------------------------------------------------------ decode

    def decode(self, heatmaps: torch.Tensor, refine: str = "standard") -> tuple[torch.Tensor, torch.Tensor]:
        """Heatmaps ``(B, K, H, W)`` -> keypoints ``(B, K, 2)`` in input pixels (float32) and scores ``(B, K)``."""
        coords, scores = self.decode_cells(heatmaps, refine)
        stride = torch.tensor(self.stride, dtype=coords.dtype, device=coords.device)
        return coords * stride, scores

    def decode_cells(self, heatmaps: torch.Tensor, refine: str = "standard") -> tuple[torch.Tensor, torch.Tensor]:
        """As :meth:`decode` but in heatmap cells."""
        if refine not in REFINEMENTS:
            raise ValueError(f"unknown refinement {refine!r}; choose one of {', '.join(REFINEMENTS)}")
        if heatmaps.dim() != 4:
            raise ValueError(f"decode expects heatmaps (B, K, H, W), got {tuple(heatmaps.shape)}")
        heatmaps = heatmaps.float()
        b, k, h, w = heatmaps.shape
        scores, index = heatmaps.flatten(2).max(dim=2)
        x, y = (index % w), torch.div(index, w, rounding_mode="floor")
        coords = torch.stack([x, y], dim=-1).float()
        if refine == "standard":
            coords = coords + 0.25 * self._neighbour_sign(heatmaps, x, y)
        elif refine == "dark":
            coords = coords + self._dark_offset(heatmaps, x, y)
        return coords, scores

    @staticmethod
    def _gather(maps: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """maps (B, K, H, W), integer x, y (B, K) (clamped into range) -> values (B, K)."""
        h, w = maps.shape[-2:]
        idx = y.clamp(0, h - 1) * w + x.clamp(0, w - 1)
        return maps.flatten(2).gather(2, idx.unsqueeze(-1)).squeeze(-1)

    def _neighbour_sign(self, hm: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h, w = hm.shape[-2:]
        g = self._gather
        ddx = torch.sign(g(hm, x + 1, y) - g(hm, x - 1, y))
        ddy = torch.sign(g(hm, x, y + 1) - g(hm, x, y - 1))
        # As HRNet: only strictly inside the border (1 < x < W - 1, 1 < y < H - 1).
        valid = ((x > 1) & (x < w - 1) & (y > 1) & (y < h - 1)).float()
        return torch.stack([ddx, ddy], dim=-1) * valid.unsqueeze(-1)

    def _dark_offset(self, hm: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """DARK offset (cells, (B, K, 2)): one Newton step on the log of the blurred heatmap.

        As mmpose: Gaussian blur with kernel 11 for sigma 2 (OpenCV's sigma for that kernel size), each map
        rescaled to keep its maximum, reflect-101 border; applied where 1 < x < W - 2 and 1 < y < H - 2."""
        b, k, h, w = hm.shape
        size = int((self.sigma * 20 - 7) // 3) | 1  # mmpose's kernel size: 11 for sigma 2, 17 for sigma 3
        blur_sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8  # OpenCV's sigma for a given size
        t = torch.arange(size, dtype=hm.dtype, device=hm.device) - (size - 1) / 2
        g1 = torch.exp(-t ** 2 / (2 * blur_sigma ** 2))
        g1 = g1 / g1.sum()
        flat = hm.reshape(b * k, 1, h, w)
        peak = flat.amax(dim=(2, 3), keepdim=True)
        pad = size // 2
        if b * k == 0:
            return hm.new_zeros(b, k, 2)
        # Maps as channels of one depthwise convolution: on CPU 10-15x faster than a batch of 1-channel maps.
        blurred = F.pad(flat, (pad, pad, pad, pad), mode="reflect").reshape(1, b * k, h + 2 * pad, w + 2 * pad)
        blurred = F.conv2d(blurred, g1.view(1, 1, 1, size).expand(b * k, 1, 1, size), groups=b * k)
        blurred = F.conv2d(blurred, g1.view(1, 1, size, 1).expand(b * k, 1, size, 1), groups=b * k)
        blurred = blurred.reshape(b * k, 1, h, w)
        blurred = blurred * peak / blurred.amax(dim=(2, 3), keepdim=True).clamp_min(1e-12)
        logm = torch.log(blurred.clamp_min(1e-10)).reshape(b, k, h, w)
        g = lambda dx, dy: self._gather(logm, x + dx, y + dy)  # noqa: E731
        c = g(0, 0)
        dx = 0.5 * (g(1, 0) - g(-1, 0))
        dy = 0.5 * (g(0, 1) - g(0, -1))
        dxx = 0.25 * (g(2, 0) - 2 * c + g(-2, 0))
        dyy = 0.25 * (g(0, 2) - 2 * c + g(0, -2))
        dxy = 0.25 * (g(1, 1) - g(1, -1) - g(-1, 1) + g(-1, -1))
        det = dxx * dyy - dxy * dxy
        ok = (x > 1) & (x < w - 2) & (y > 1) & (y < h - 2) & (det.abs() > 1e-12)
        det = torch.where(ok, det, torch.ones_like(det))
        ox = -(dyy * dx - dxy * dy) / det
        oy = -(dxx * dy - dxy * dx) / det
        offset = torch.stack([ox, oy], dim=-1) * ok.unsqueeze(-1).float()
        return offset
